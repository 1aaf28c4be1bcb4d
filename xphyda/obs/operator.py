"""The observation operator H: sparse interpolation from a lat-lon state to observations.

Numpy back end (no xarray).  ``H`` is a :class:`scipy.sparse.csr_matrix` of
shape ``(n_obs, n_state)`` acting on a state flattened in C order from
``(level, lat, lon)`` (or ``(lat, lon)`` without levels), in the grid's own
order.  ``H @ x`` interpolates, ``H.T @ y`` is the exact adjoint; for torch,
:func:`to_torch` wraps both as a differentiable operator on ``(batch, n_state)``
tensors.

Interpolation
-------------
* Horizontal: bilinear in (latitude, longitude) in degrees, periodic in
  longitude on grids that wrap around the globe.  Any longitude convention on
  either side (0..360, -180..180) and either latitude order.  An observation
  exactly on a grid line or node uses only that line or node.
* Near the poles, on a global grid without pole rows (a Gaussian or
  "cell-centred" grid), an observation poleward of the last row is interpolated
  linearly in latitude between the bilinear value on the last row and the
  value at the pole, taken as the mean of the last row.  The result is
  continuous, independent of longitude at the pole, and linear.
* Vertical: linear in ``log p`` between the two levels that bracket the
  observation's pressure; no extrapolation.

Observations that the grid does not cover (outside a regional grid, or a
pressure outside the levels, or non-finite coordinates) have an empty row and
``inside=False``.

Examples
--------
>>> import numpy as np
>>> lat, lon = np.array([10.0, 0.0, -10.0]), np.arange(0.0, 360.0, 90.0)
>>> op = build_operator([5.0], [-45.0], lat, lon)
>>> op.matrix.shape, op.inside.tolist()
((1, 12), [True])
>>> x = np.arange(12.0)
>>> float((op.matrix @ x)[0])  # mean of the four neighbours (rows 0, 1 and columns 3, 0)
3.5
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..errors import GridError, ObservationError
from ..physics.operators import SphereGrid

__all__ = ["Operator", "build_operator", "horizontal_weights", "to_torch", "vertical_weights"]

_EPS = 1e-9  # degrees / relative log-pressure tolerance at the edges of the domain


class Operator(NamedTuple):
    """An observation operator: the sparse matrix and which observations it covers."""

    matrix: sp.csr_matrix
    """``(n_obs, n_state)`` interpolation weights; a row is empty where ``inside`` is False."""
    inside: np.ndarray
    """Boolean ``(n_obs,)``: the observation lies within the grid (and levels)."""


# --------------------------------------------------------------------------- horizontal
def _lon_brackets(lon: np.ndarray, grid_lon: np.ndarray, sphere: SphereGrid):
    """Columns ``j0, j1`` and weight ``t`` of ``j1`` for each longitude; plus inside."""
    # offsets from the first column in the given degrees (no round trip through radians, so that
    # stations on a meridian get exact weights); SphereGrid has checked that they increase
    rel = grid_lon - grid_lon[0]
    if np.any(np.diff(rel) <= 0):  # given across the date line or meridian 0: unwrap
        rel = np.mod(rel, 360.0)
    n = rel.size
    x = np.mod(lon - grid_lon[0], 360.0)
    x = np.where(np.isclose(x, 360.0, rtol=0, atol=_EPS), 0.0, x)
    j0 = np.clip(np.searchsorted(rel, x, side="right") - 1, 0, n - 1)
    if sphere.periodic:
        j1 = np.where(j0 == n - 1, 0, j0 + 1)
        right = np.where(j0 == n - 1, 360.0, rel[np.minimum(j0 + 1, n - 1)])
        inside = np.isfinite(x)
    else:
        j0 = np.minimum(j0, n - 2)
        j1 = j0 + 1
        right = rel[j1]
        inside = np.isfinite(x) & (x <= rel[-1] + _EPS)
    t = np.clip((x - rel[j0]) / (right - rel[j0]), 0.0, 1.0)
    return j0, j1, np.where(inside, t, 0.0), inside


def horizontal_weights(
    lat, lon, grid_lat, grid_lon, *, periodic: bool | None = None, global_lat: bool | None = None
):
    """Bilinear weights of observations at ``(lat, lon)`` on a lat-lon grid, as COO triplets.

    Parameters
    ----------
    lat, lon : array_like
        Observation coordinates in degrees (any longitude convention).
    grid_lat, grid_lon : array_like
        1-D grid coordinates in degrees, latitude monotonic (either order),
        longitude increasing (any origin).
    periodic, global_lat : bool, optional
        Whether the grid wraps in longitude / reaches the poles; inferred as in
        :class:`~xphyda.physics.operators.SphereGrid` when not given.

    Returns
    -------
    rows, cols, weights : numpy.ndarray
        Observation index, flat ``lat * nlon + lon`` grid index and weight of
        each entry (entries may repeat; rows of an observation sum to 1).
    inside : numpy.ndarray
        Boolean per observation.

    Examples
    --------
    >>> grid_lat, grid_lon = [10.0, 0.0, -10.0], [0.0, 90.0, 180.0, 270.0]
    >>> rows, cols, w, inside = horizontal_weights([0.0], [90.0], grid_lat, grid_lon)
    >>> [int(c) for c, x in zip(cols, w) if x > 0], inside.tolist()
    ([5], [True])
    """
    lat = np.asarray(lat, dtype=np.float64).ravel()
    lon = np.asarray(lon, dtype=np.float64).ravel()
    if lat.shape != lon.shape:
        raise ObservationError(
            f"observation latitudes and longitudes differ in length ({lat.size} and {lon.size}); "
            "give one latitude and one longitude per observation"
        )
    sphere = SphereGrid(grid_lat, grid_lon, periodic=periodic, global_lat=global_lat)
    nlat, nlon = sphere.shape
    # latitude in ascending order, mapped back to the grid's rows
    ascending = sphere.lat[-1] > sphere.lat[0]
    la = sphere.lat if ascending else sphere.lat[::-1]

    def row(k):
        return k if ascending else nlat - 1 - k

    valid = np.isfinite(lat) & (np.abs(lat) <= 90.0)
    phi = np.where(valid, lat, 0.0)
    k0 = np.clip(np.searchsorted(la, phi, side="right") - 1, 0, nlat - 2)
    t_lat = (phi - la[k0]) / (la[k0 + 1] - la[k0])
    north = phi > la[-1] + _EPS
    south = phi < la[0] - _EPS
    if sphere.global_lat:
        polar = valid & (north | south)
    else:
        polar = np.zeros_like(valid)
        valid &= ~(north | south)
    t_lat = np.clip(t_lat, 0.0, 1.0)
    j0, j1, t_lon, inside_lon = _lon_brackets(lon, np.asarray(grid_lon, dtype=np.float64).ravel(), sphere)
    inside = valid & inside_lon

    idx = np.flatnonzero(inside & ~polar)
    r0, r1 = row(k0[idx]), row(k0[idx] + 1)
    a, b = t_lat[idx], t_lon[idx]
    rows = [np.repeat(idx, 4)]
    cols = [
        np.stack(
            [r0 * nlon + j0[idx], r0 * nlon + j1[idx], r1 * nlon + j0[idx], r1 * nlon + j1[idx]], 1
        ).ravel()
    ]
    wts = [np.stack([(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b], 1).ravel()]

    pidx = np.flatnonzero(inside & polar)
    if pidx.size:  # between the last row and the pole: last row's bilinear value -> its zonal mean
        edge = np.where(north[pidx], la[-1], la[0])
        pole = np.where(north[pidx], 90.0, -90.0)
        s = (phi[pidx] - edge) / (pole - edge)
        r = np.where(north[pidx], row(nlat - 1), row(0))
        b = t_lon[pidx]
        rows += [np.repeat(pidx, 2), np.repeat(pidx, nlon)]
        cols += [
            np.stack([r * nlon + j0[pidx], r * nlon + j1[pidx]], 1).ravel(),
            (r[:, None] * nlon + np.arange(nlon)[None, :]).ravel(),
        ]
        wts += [np.stack([(1 - s) * (1 - b), (1 - s) * b], 1).ravel(), np.repeat(s / nlon, nlon)]
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(wts), inside


# --------------------------------------------------------------------------- vertical
def vertical_weights(pressure, levels):
    """Levels ``k0, k1`` and weight ``t`` of ``k1`` for linear interpolation in ``log p``.

    Parameters
    ----------
    pressure : array_like
        Observation pressures (same unit as ``levels``, any positive unit).
    levels : array_like
        1-D strictly monotonic pressure levels of the state.

    Returns
    -------
    k0, k1 : numpy.ndarray of int
    t : numpy.ndarray
        Weight of level ``k1`` (``1 - t`` for ``k0``).
    inside : numpy.ndarray of bool
        Pressure finite, positive and within the levels (no extrapolation).

    Examples
    --------
    >>> k0, k1, t, inside = vertical_weights([700.0], [500.0, 850.0])
    >>> int(k0[0]), int(k1[0]), round(float(t[0]), 4), bool(inside[0])
    (0, 1, 0.6341, True)
    """
    p = np.asarray(pressure, dtype=np.float64).ravel()
    lev = np.asarray(levels, dtype=np.float64).ravel()
    if lev.size == 0 or np.any(~np.isfinite(lev)) or np.any(lev <= 0):
        raise GridError(f"pressure levels must be finite and positive; found {lev}")
    order = np.argsort(lev)
    x = np.log(lev[order])
    if np.any(np.diff(x) <= 0):
        raise GridError(f"pressure levels must not repeat; found {lev}")
    valid = np.isfinite(p) & (p > 0)
    xo = np.log(np.where(valid, p, 1.0))
    tol = _EPS * max(1.0, float(np.abs(x).max()))
    inside = valid & (xo >= x[0] - tol) & (xo <= x[-1] + tol)
    if x.size == 1:
        zero = np.zeros(p.size, dtype=np.intp)
        return order[zero], order[zero], np.zeros(p.size), inside
    k = np.clip(np.searchsorted(x, xo, side="right") - 1, 0, x.size - 2)
    t = np.clip((xo - x[k]) / (x[k + 1] - x[k]), 0.0, 1.0)
    return order[k], order[k + 1], np.where(inside, t, 0.0), inside


# --------------------------------------------------------------------------- operator
def build_operator(
    lat,
    lon,
    grid_lat,
    grid_lon,
    *,
    pressure=None,
    levels=None,
    periodic: bool | None = None,
    global_lat: bool | None = None,
) -> Operator:
    """Build the sparse observation operator for point observations.

    Parameters
    ----------
    lat, lon : array_like
        Observation coordinates in degrees, one per observation.
    grid_lat, grid_lon : array_like
        1-D coordinates of the state's grid, in the state's order.
    pressure : array_like, optional
        Observation pressures (same unit as ``levels``).  Needed when the state
        has more than one level.
    levels : array_like, optional
        The state's pressure levels; the state is then ``(level, lat, lon)``.
    periodic, global_lat : bool, optional
        Override the inference of :class:`~xphyda.physics.operators.SphereGrid`.

    Returns
    -------
    Operator
        ``matrix`` (CSR, ``(n_obs, [nlev *] nlat * nlon)``) and ``inside``.

    Raises
    ------
    ObservationError
        If the state has several levels and no pressure is given.

    Examples
    --------
    >>> import numpy as np
    >>> op = build_operator([45.0], [10.0], [90.0, 45.0, 0.0], [0.0, 10.0, 20.0, 30.0],
    ...                     pressure=[700.0], levels=[500.0, 850.0])
    >>> op.matrix.shape, op.matrix.nnz
    ((1, 24), 2)
    """
    rows, cols, wts, inside = horizontal_weights(
        lat, lon, grid_lat, grid_lon, periodic=periodic, global_lat=global_lat
    )
    n_obs = inside.size
    nh = np.asarray(grid_lat).size * np.asarray(grid_lon).size
    nlev = 1 if levels is None else np.asarray(levels).size
    if nlev > 1:
        if pressure is None:
            raise ObservationError(
                f"the state has {nlev} pressure levels but the observations carry no pressure; "
                "give one pressure per observation (pressure=...) in the unit of the levels"
            )
        k0, k1, t, inside_v = vertical_weights(pressure, levels)
        if k0.size != n_obs:
            raise ObservationError(
                f"{k0.size} pressures given for {n_obs} observations; give one per observation"
            )
        inside = inside & inside_v
        keep = inside[rows]
        rows, cols, wts = rows[keep], cols[keep], wts[keep]
        r, c, w = rows, cols, wts
        rows = np.concatenate([r, r])
        cols = np.concatenate([k0[r] * nh + c, k1[r] * nh + c])
        wts = np.concatenate([w * (1 - t[r]), w * t[r]])
    elif levels is not None and pressure is not None:
        _, _, _, inside_v = vertical_weights(pressure, levels)
        inside = inside & inside_v
        keep = inside[rows]
        rows, cols, wts = rows[keep], cols[keep], wts[keep]
    nz = wts != 0
    matrix = sp.csr_matrix((wts[nz], (rows[nz], cols[nz])), shape=(n_obs, nlev * nh))
    matrix.sum_duplicates()
    return Operator(matrix, inside)


# --------------------------------------------------------------------------- torch
@cache
def _apply_function():
    import torch

    class _ApplyH(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, h, ht):
            ctx.ht, ctx.h = ht, h
            return (h @ x.T).T

        @staticmethod
        def backward(ctx, grad):
            return (ctx.ht @ grad.T).T, None, None

    return _ApplyH


class TorchOperator:
    """``H`` and ``H^T`` as differentiable torch maps on ``(batch, n)`` tensors.

    Build it with :func:`to_torch`.  ``op(x)`` maps ``(batch, n_state)`` (or
    ``(n_state,)``) to ``(batch, n_obs)``; ``op.adjoint(y)`` maps back.  Both
    propagate gradients (the backward of one is the other).
    """

    def __init__(self, matrix: sp.spmatrix, *, dtype=None, device=None):
        import torch

        dtype = dtype or torch.float32
        self.shape = matrix.shape
        self._h = self._sparse(matrix, dtype, device)
        self._ht = self._sparse(matrix.T, dtype, device)

    @staticmethod
    def _sparse(m: sp.spmatrix, dtype, device):
        import torch

        coo = sp.coo_matrix(m)
        index = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64)
        values = torch.as_tensor(coo.data, dtype=dtype)
        return torch.sparse_coo_tensor(
            index, values, size=m.shape, device=device, check_invariants=True
        ).coalesce()

    def _run(self, x, a, b, n_in: int):
        squeeze = x.ndim == 1
        x2 = x[None] if squeeze else x
        if x2.ndim != 2 or x2.shape[-1] != n_in:
            raise ObservationError(
                f"expected a tensor of shape (batch, {n_in}) or ({n_in},); got {tuple(x.shape)}"
            )
        out = _apply_function().apply(x2.to(a.dtype), a, b)
        return out[0] if squeeze else out

    def __call__(self, x):
        """``H x`` for ``x`` of shape ``(batch, n_state)`` or ``(n_state,)``."""
        return self._run(x, self._h, self._ht, self.shape[1])

    def adjoint(self, y):
        """``H^T y`` for ``y`` of shape ``(batch, n_obs)`` or ``(n_obs,)``."""
        return self._run(y, self._ht, self._h, self.shape[0])

    def __repr__(self) -> str:
        return f"TorchOperator(shape={self.shape}, nnz={self._h._nnz()})"


def to_torch(matrix, *, dtype=None, device=None) -> TorchOperator:
    """Wrap a sparse ``H`` (or an :class:`Operator`) for torch: ``op(x)`` and ``op.adjoint(y)``.

    Examples
    --------
    >>> import torch
    >>> op = build_operator([5.0], [45.0], [10.0, 0.0, -10.0], [0.0, 90.0, 180.0, 270.0])
    >>> H = to_torch(op, dtype=torch.float64)
    >>> y = H(torch.ones(2, 12))
    >>> tuple(y.shape), H.adjoint(y).sum().item()
    ((2, 1), 2.0)
    """
    if isinstance(matrix, Operator):
        matrix = matrix.matrix
    return TorchOperator(matrix, dtype=dtype, device=device)
