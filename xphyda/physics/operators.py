"""Finite-volume operators on a latitude-longitude sphere, for numpy and torch.

One implementation serves both backends: every kernel takes numpy arrays or
torch tensors (differentiable) and returns the same type.  Arrays hold SI
values with latitude and longitude as their last two axes, in the grid's own
order (ascending or descending latitude).

Discretisation
--------------
Each grid point is the centre of a cell bounded by the meridians half-way to its
neighbours and by the parallels half-way to its neighbours.  On a global grid the
outermost parallels are the poles, so a pole row is a polar cap and the rows next
to it are ordinary cells; on a regional grid the outermost cells are extended by
half a spacing.  With ``s = sin(latitude)`` at the cell edges:

* divergence ``D = (1 / (a c)) du/dlambda + (1 / a) d(v cos(phi)) / ds``,
* vorticity ``zeta = (1 / (a c)) dv/dlambda - (1 / a) d(u cos(phi)) / ds``,
* gradient ``(1 / (a c)) df/dlambda, (1 / a) df/dphi``,

where ``c = (s_north - s_south) / (phi_north - phi_south)`` is the cell-averaged
cosine (finite at the poles, equal to ``cos(phi)`` to second order elsewhere), the
meridional flux ``v cos(phi)`` is taken at the cell edges from the mean of the two
neighbouring rows (zero at a pole), and ``d/dlambda`` is a centred difference,
periodic on a grid that wraps around the globe.  ``df/dphi`` is a second-order
centred difference (second-order one-sided on the first and last rows).  The
divergence and vorticity are therefore the flux and circulation of each cell
divided by its area: exact zero for solid-body rotation, bounded at the poles,
and second-order accurate away from them.

Vertical operators act on pressure levels (Pa): second-order ``d/dp`` on levels,
and the layer forms (difference and mean of adjacent levels) used by the
continuity and hydrostatic residuals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GridError
from .constants import EARTH_RADIUS

__all__ = [
    "SphereGrid",
    "ddlambda",
    "ddp",
    "ddphi",
    "divergence",
    "gradient",
    "layer_difference",
    "layer_mean",
    "omega_from_continuity",
    "vorticity",
]


# --------------------------------------------------------------------------- backends
def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _cat(parts, axis: int):
    if _is_torch(parts[0]):
        import torch

        return torch.cat(parts, dim=axis)
    return np.concatenate(parts, axis=axis)


def _like(a: np.ndarray, x):
    """Convert a numpy metric array to the backend, dtype and device of ``x``."""
    if _is_torch(x):
        import torch

        return torch.as_tensor(a, dtype=x.dtype, device=x.device)
    return np.asarray(a, dtype=np.result_type(x.dtype, np.float32))


def _take(x, sl: slice, axis: int):
    index = [slice(None)] * x.ndim
    index[axis] = sl
    return x[tuple(index)]


# --------------------------------------------------------------------------- grid
@dataclass(frozen=True, eq=False)
class SphereGrid:
    """Geometry of a latitude-longitude grid, precomputed in float64.

    Parameters
    ----------
    lat, lon : array_like
        Cell-centre latitudes and longitudes in degrees, in the data's order.
        Latitudes strictly monotonic (either direction), longitudes strictly
        increasing (any origin; they are unwrapped).
    radius : float
        Sphere radius in metres (ERA5's 6 371 229 m by default).
    periodic : bool, optional
        Whether longitude wraps around the globe; inferred from the spacing when
        not given.
    global_lat : bool, optional
        Whether the outermost rows reach the poles (cap cells); inferred when not
        given: true when the first and last rows lie within one row spacing of
        opposite poles (regular grids with or without pole rows, Gaussian grids).

    Examples
    --------
    >>> import numpy as np
    >>> g = SphereGrid(np.linspace(90, -90, 5), np.arange(0, 360, 90.0))
    >>> g.periodic, g.global_lat
    (True, True)
    """

    lat: np.ndarray
    lon: np.ndarray
    radius: float = EARTH_RADIUS
    periodic: bool | None = None
    global_lat: bool | None = None
    # derived (filled in __post_init__)
    phi: np.ndarray = field(init=False, repr=False)
    lam: np.ndarray = field(init=False, repr=False)
    coscell: np.ndarray = field(init=False, repr=False)
    dsin: np.ndarray = field(init=False, repr=False)
    cos_edge: np.ndarray = field(init=False, repr=False)
    cos_row: np.ndarray = field(init=False, repr=False)
    dlam: float | None = field(init=False, repr=False)
    pole_rows: tuple[bool, bool] = field(init=False, repr=False)
    dphi_even: float | None = field(init=False, repr=False)  # see _even_step

    def __post_init__(self):
        lat = np.asarray(self.lat, dtype=np.float64).ravel()
        lon = np.asarray(self.lon, dtype=np.float64).ravel()
        if lat.size < 3 or lon.size < 3:
            raise GridError(
                f"grid too small: found {lat.size} latitudes and {lon.size} longitudes, "
                "expected at least 3 of each for centred differences"
            )
        dlat = np.diff(lat)
        if not (np.all(dlat > 0) or np.all(dlat < 0)):
            raise GridError(
                "latitude must be strictly monotonic (ascending or descending) without "
                f"duplicates; found {lat[:5]}...; sort it with ds.sortby('latitude')"
            )
        if np.any(np.abs(lat) > 90 + 1e-9):
            raise GridError(f"latitude outside [-90, 90]: found min {lat.min()}, max {lat.max()}")
        lon = np.unwrap(np.deg2rad(lon), period=2 * np.pi)
        if not np.all(np.diff(lon) > 0):
            raise GridError(
                "longitude must be strictly increasing without duplicates; found "
                f"{np.rad2deg(lon[:5])}...; sort it with ds.sortby('longitude')"
            )
        dl = np.diff(lon)
        periodic = self.periodic
        if periodic is None:
            span = lon[-1] - lon[0] + dl.mean()
            periodic = bool(abs(span - 2 * np.pi) < 0.5 * dl.mean())
        phi = np.deg2rad(lat)
        mid = 0.5 * (phi[1:] + phi[:-1])
        first = phi[0] - 0.5 * (phi[1] - phi[0])
        last = phi[-1] + 0.5 * (phi[-1] - phi[-2])
        global_lat = self.global_lat
        if global_lat is None:  # both outer rows within one spacing of a pole
            reach = abs(phi[0]) + abs(phi[1] - phi[0]), abs(phi[-1]) + abs(phi[-1] - phi[-2])
            global_lat = bool(min(reach) >= np.pi / 2 - 1e-9 and phi[0] * phi[-1] < 0)
        if global_lat:
            first, last = np.sign(phi[0]) * np.pi / 2, np.sign(phi[-1]) * np.pi / 2
        edges = np.concatenate([[first], mid, [last]])
        edges = np.clip(edges, -np.pi / 2, np.pi / 2)
        dsin = np.diff(np.sin(edges))
        dphi = np.diff(edges)
        set_ = object.__setattr__
        set_(self, "lat", lat)
        set_(self, "lon", np.asarray(self.lon, dtype=np.float64).ravel() + np.rad2deg(lon - np.deg2rad(np.asarray(self.lon, dtype=np.float64).ravel())).round(9))
        set_(self, "periodic", periodic)
        set_(self, "global_lat", global_lat)
        set_(self, "phi", phi)
        set_(self, "lam", lon)
        # even spacing (to 1e-4 of a spacing, e.g. float32 coordinates): one exact number
        even = (2 * np.pi / lon.size) if periodic else (lon[-1] - lon[0]) / (lon.size - 1)
        steps = np.diff(np.concatenate([lon, [lon[0] + 2 * np.pi]])) if periodic else dl
        set_(self, "dlam", float(even) if np.all(np.abs(steps - even) <= 1e-4 * even) else None)
        set_(self, "coscell", dsin / dphi)
        set_(self, "dsin", dsin)
        cos_edge = np.cos(edges)
        if global_lat:
            cos_edge[0] = cos_edge[-1] = 0.0
        set_(self, "cos_edge", cos_edge)
        at_pole = np.abs(lat) >= 90.0 - 1e-9
        set_(self, "pole_rows", (bool(at_pole[0]), bool(at_pole[-1])))
        set_(self, "cos_row", np.where(at_pole, 1.0, np.cos(phi)))  # pole rows: see gradient()
        set_(self, "dphi_even", _even_step(phi))

    @property
    def shape(self) -> tuple[int, int]:
        """``(nlat, nlon)``."""
        return (self.lat.size, self.lon.size)

    @property
    def cell_area(self) -> np.ndarray:
        """Cell areas in m2, shape ``(nlat, nlon)`` (sums to 4 pi a^2 on a global grid)."""
        dlam = self._dlam_cell()
        return self.radius**2 * np.abs(self.dsin)[:, None] * dlam[None, :]

    def _dlam_cell(self) -> np.ndarray:
        lam = self.lam
        if self.periodic:
            ext = np.concatenate([[lam[-1] - 2 * np.pi], lam, [lam[0] + 2 * np.pi]])
        else:
            ext = np.concatenate([[2 * lam[0] - lam[1]], lam, [2 * lam[-1] - lam[-2]]])
        return 0.5 * (ext[2:] - ext[:-2])

    def check_shape(self, x, name: str = "field") -> None:
        """Raise :class:`GridError` unless the last two axes of ``x`` match the grid."""
        if tuple(x.shape[-2:]) != self.shape:
            raise GridError(
                f"{name} has horizontal shape {tuple(x.shape[-2:])}, expected {self.shape} "
                "(latitude, longitude) as its last two axes"
            )

    def _rows(self, start: int, stop: int) -> SphereGrid:
        """The rows ``start:stop`` of this grid, with this grid's own metric factors.

        For evaluating an operator on a band of rows (see
        :func:`xphyda.physics.residuals._by_slabs`): every row of the band that has
        its neighbours in the band gets exactly the numbers of the whole grid; a
        band's first and last rows are treated as the grid's outer rows only where
        they are (elsewhere they are a halo, to be discarded).
        """
        if (start, stop) == (0, self.lat.size):
            return self
        sub = object.__new__(SphereGrid)
        n = self.lat.size
        set_ = object.__setattr__
        for name in ("lon", "radius", "periodic", "global_lat", "lam", "dlam", "dphi_even"):
            set_(sub, name, getattr(self, name))
        for name in ("lat", "phi", "coscell", "dsin", "cos_row"):
            set_(sub, name, getattr(self, name)[start:stop])
        set_(sub, "cos_edge", self.cos_edge[start:stop + 1])
        set_(sub, "pole_rows", (self.pole_rows[0] and start == 0, self.pole_rows[1] and stop == n))
        return sub


# --------------------------------------------------------------------------- horizontal
def _factor(scale, f):
    """A python float, or a metric array converted to the backend of ``f``."""
    return float(scale) if np.ndim(scale) == 0 else _like(np.asarray(scale), f)


# In-place updates of *fresh* temporaries (results of arithmetic or concatenation, never
# views of an input): one allocation fewer per step, which is most of the cost on large
# grids.  Both are safe for torch autograd, since neither multiplying by a constant nor
# adding needs the overwritten value for the backward pass.
def _in_place_ok(x, y) -> bool:
    shape = getattr(y, "shape", ())
    if tuple(np.broadcast_shapes(tuple(x.shape), tuple(shape))) != tuple(x.shape):
        return False  # the result is larger than x
    if _is_torch(x):
        return x.dtype == getattr(y, "dtype", x.dtype) or not hasattr(y, "dtype")
    return np.result_type(x, y) == x.dtype  # e.g. integer input is promoted instead


def _scale_(x, k):
    """``x *= k`` for a fresh ``x`` and a constant ``k`` (number or metric array); returns ``x``."""
    if not _in_place_ok(x, k):
        return x * k
    x *= k
    return x


def _add_(x, y):
    """``x += y`` for a fresh ``x``; returns ``x`` (or ``x + y`` when that is larger or wider)."""
    if not _in_place_ok(x, y):
        return x + y
    x += y
    return x


def _even_step(x: np.ndarray) -> float | None:
    """The mean spacing of ``x`` when it is even (to 1e-4 of a spacing), else None."""
    h = np.diff(x)
    mean = h.mean()
    return float(mean) if np.all(np.abs(h - mean) <= 1e-4 * np.abs(mean)) else None


def _fast(f) -> bool:
    """Whether ``f`` is a floating numpy array: its results can be written into preallocated arrays."""
    return isinstance(f, np.ndarray) and f.dtype.kind == "f"


_AUTO = object()


def _derivative(f, x: np.ndarray, axis: int, scale=1.0, step=_AUTO):
    """``scale * df/dx`` along ``axis``: second order, centred inside and one-sided at both ends.

    ``x`` is strictly monotonic; unevenly spaced points get the three-point
    weights of the local spacings.  ``scale`` is a number or an array that
    broadcasts against ``f`` without varying along ``axis``.  ``step`` is
    :func:`_even_step` of ``x`` when already known (a grid's, for its rows).
    """
    axis = axis % f.ndim
    n = x.size

    def at(i, j=None):
        return _take(f, slice(i, j), axis)

    if step is _AUTO:
        step = _even_step(x)
    if step is not None:  # even spacing: one number
        first = 4.0 * at(1, 2) - 3.0 * at(0, 1) - at(2, 3)
        last = 3.0 * at(n - 1, n) - 4.0 * at(n - 2, n - 1) + at(n - 3, n - 2)
        if _fast(f):  # the same numbers, written in place of a concatenation
            out = np.empty(f.shape, f.dtype)
            _take(out, slice(0, 1), axis)[...] = first
            np.subtract(at(2, n), at(0, n - 2), out=_take(out, slice(1, n - 1), axis))
            _take(out, slice(n - 1, n), axis)[...] = last
        else:
            out = _cat([first, at(2, n) - at(0, n - 2), last], axis)
        return _scale_(out, _factor(np.asarray(scale) * (0.5 / step), f))
    h = np.diff(x)
    h0, h1 = h[:-1], h[1:]
    weights = (-h1 / (h0 * (h0 + h1)), (h1 - h0) / (h0 * h1), h0 / (h1 * (h0 + h1)))
    inner = sum(_like(_axis_view(w, f.ndim, axis), f) * at(i, n - 2 + i) for i, w in enumerate(weights))

    def one_sided(i0, i1, i2):
        d1, d2 = x[i1] - x[i0], x[i2] - x[i0]
        ws = (-(d1 + d2) / (d1 * d2), d2 / (d1 * (d2 - d1)), -d1 / (d2 * (d2 - d1)))
        return sum(float(w) * at(i, i + 1) for w, i in zip(ws, (i0, i1, i2)))

    out = _cat([one_sided(0, 1, 2), inner, one_sided(n - 1, n - 2, n - 3)], axis)
    return out if np.ndim(scale) == 0 and float(scale) == 1.0 else _scale_(out, _factor(scale, f))


def _ddlambda(f, grid: SphereGrid, scale=1.0):
    """``scale * df/dlambda``; ``scale`` is a number or a ``(nlat, 1)`` metric array."""
    grid.check_shape(f)
    if not grid.periodic:
        return _derivative(f, grid.lam, -1, scale)
    n = grid.shape[1]
    at = lambda i, j: _take(f, slice(i, j), -1)
    # f[i + 1] - f[i - 1] with wrap-around, without rolled copies of f
    if _fast(f):  # the same numbers, written in place of a concatenation
        diff = np.empty(f.shape, f.dtype)
        np.subtract(at(1, 2), at(n - 1, n), out=diff[..., :1])
        np.subtract(at(2, n), at(0, n - 2), out=diff[..., 1:n - 1])
        np.subtract(at(0, 1), at(n - 2, n - 1), out=diff[..., n - 1:])
    else:
        diff = _cat([at(1, 2) - at(n - 1, n), at(2, n) - at(0, n - 2), at(0, 1) - at(n - 2, n - 1)], -1)
    if grid.dlam is not None:
        return _scale_(diff, _factor(np.asarray(scale) * (0.5 / grid.dlam), f))
    lam = grid.lam
    span = np.roll(lam, -1) - np.roll(lam, 1)
    span[0] += 2 * np.pi
    span[-1] += 2 * np.pi
    return _scale_(diff, _factor(np.asarray(scale) / span, f))


def ddlambda(f, grid: SphereGrid):
    """Derivative with respect to longitude (radians): centred, periodic where the grid wraps.

    On an evenly spaced grid the spacing is one number (``2 pi / nlon`` on a global
    grid), so rolling the input in longitude rolls the output bit for bit.  On a
    regional grid the first and last columns get second-order one-sided differences.
    """
    return _ddlambda(f, grid)


def ddphi(f, grid: SphereGrid):
    """Second-order derivative with respect to latitude (radians) on possibly uneven rows."""
    grid.check_shape(f)
    return _derivative(f, grid.phi, -2, step=grid.dphi_even)


def gradient(f, grid: SphereGrid):
    """Horizontal gradient ``(df/dx, df/dy)`` in units of ``f`` per metre (finite differences).

    ``df/dx = (1 / (a cos(phi))) df/dlambda`` with the cosine of the row itself (not the
    cell average: the gradient is a point value); on a pole row, where ``df/dx`` in
    the local east-north frame is the limit along each meridian, it is taken from
    the neighbouring row (first order).  ``df/dy = (1 / a) df/dphi``.

    Examples
    --------
    >>> import numpy as np
    >>> g = SphereGrid(np.linspace(-80, 80, 17), np.arange(0, 360, 10.0))
    >>> f = np.sin(np.deg2rad(g.lat))[:, None] * np.ones(36)
    >>> dfdx, dfdy = gradient(f, g)
    >>> float(abs(dfdx).max())
    0.0
    """
    grid.check_shape(f)
    dfdx = _ddlambda(f, grid, 1.0 / (grid.radius * grid.cos_row[:, None]))
    first, last = grid.pole_rows
    if (first or last) and isinstance(dfdx, np.ndarray):  # dfdx is ours: copy the rows in place
        if first:
            dfdx[..., 0, :] = dfdx[..., 1, :]
        if last:
            dfdx[..., -1, :] = dfdx[..., -2, :]
    elif first or last:
        row = lambda i: _take(dfdx, slice(i, i + 1 if i != -1 else None), -2)
        dfdx = _cat([row(1 if first else 0), _take(dfdx, slice(1, -1), -2), row(-2 if last else -1)], -2)
    dfdy = _derivative(f, grid.phi, -2, 1.0 / grid.radius, step=grid.dphi_even)
    return dfdx, dfdy


def _meridional_flux_divergence(g, grid: SphereGrid, scale: float = 1.0):
    """``(1 / a) d(g cos(phi)) / d(sin(phi))`` in finite-volume form (``g`` is v or u).

    The flux through each inner cell edge is the mean of the two rows times the
    cosine of the edge; through a pole it is zero; through the outer edge of a
    regional grid, half a spacing beyond the outer row, ``g`` is extrapolated
    linearly from the two outer rows (``1.5 g[0] - 0.5 g[1]``).
    """
    grid.check_shape(g)
    n = grid.shape[0]
    flux = _scale_(_take(g, slice(1, n), -2) + _take(g, slice(0, n - 1), -2), _like(0.5 * grid.cos_edge[1:-1, None], g))
    first, last = _take(flux, slice(0, 1), -2), -_take(flux, slice(n - 2, n - 1), -2)
    if not grid.global_lat:
        row = lambda i: _take(g, slice(i, i + 1), -2)
        first = first - (1.5 * row(0) - 0.5 * row(1)) * float(grid.cos_edge[0])
        last = last + (1.5 * row(n - 1) - 0.5 * row(n - 2)) * float(grid.cos_edge[-1])
    if _fast(flux):  # the same numbers, written in place of a concatenation
        out = np.empty(flux.shape[:-2] + g.shape[-2:], flux.dtype)
        out[..., :1, :] = first
        np.subtract(flux[..., 1:, :], flux[..., :-1, :], out=out[..., 1:n - 1, :])
        out[..., n - 1:, :] = last
    else:
        inner = _take(flux, slice(1, n - 1), -2) - _take(flux, slice(0, n - 2), -2)
        out = _cat([first, inner, last], -2)
    return _scale_(out, _like(scale / (grid.radius * grid.dsin[:, None]), g))


def divergence(u, v, grid: SphereGrid):
    """Horizontal divergence of the wind ``(u, v)`` in s-1 (finite-volume form).

    Examples
    --------
    Solid-body rotation is non-divergent, at the poles too:

    >>> import numpy as np
    >>> g = SphereGrid(np.linspace(90, -90, 19), np.arange(0, 360, 10.0))
    >>> u = 20 * np.cos(np.deg2rad(g.lat))[:, None] * np.ones(36)
    >>> float(abs(divergence(u, 0 * u, g)).max()) < 1e-20
    True
    """
    return _divergence(u, v, grid)


def _divergence(u, v, grid: SphereGrid, scale: float = 1.0):
    """``scale`` times :func:`divergence`; with ``scale`` a power of two the numbers are exactly those
    of the divergence scaled afterwards (the layer mean of :func:`xphyda.physics.kernels.continuity`
    takes half of it), without the pass over the result."""
    grid.check_shape(u, "u")
    grid.check_shape(v, "v")
    zonal = _ddlambda(u, grid, scale / (grid.radius * grid.coscell[:, None]))
    return _add_(zonal, _meridional_flux_divergence(v, grid, scale))


def vorticity(u, v, grid: SphereGrid):
    """Relative vorticity of the wind ``(u, v)`` in s-1 (circulation per cell area).

    Examples
    --------
    >>> import numpy as np
    >>> g = SphereGrid(np.linspace(-60, 60, 121), np.arange(0, 360, 1.0))
    >>> u = 20 * np.cos(np.deg2rad(g.lat))[:, None] * np.ones(360)
    >>> exact = 2 * 20 * np.sin(np.deg2rad(g.lat))[:, None] / g.radius
    >>> err = np.abs(vorticity(u, 0 * u, g) - exact)[1:-1].max() / np.abs(exact).max()
    >>> bool(err < 1e-4)
    True
    """
    grid.check_shape(u, "u")
    grid.check_shape(v, "v")
    zonal = _ddlambda(v, grid, 1.0 / (grid.radius * grid.coscell[:, None]))
    return _add_(zonal, _scale_(_meridional_flux_divergence(u, grid), -1.0))


# --------------------------------------------------------------------------- vertical
def _check_levels(p, f, axis: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64).ravel()
    if f.shape[axis] != p.size:
        raise GridError(
            f"field has {f.shape[axis]} levels on axis {axis} but {p.size} pressures were given"
        )
    dp = np.diff(p)
    if p.size > 1 and not (np.all(dp > 0) or np.all(dp < 0)):
        raise GridError(f"pressure levels must be strictly monotonic without duplicates; found {p}")
    return p


def _axis_view(a: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = a.size
    return a.reshape(shape)


def ddp(f, p, *, axis: int = -3):
    """Second-order derivative with respect to pressure (``p`` in Pa) along ``axis``.

    Centred on interior levels (uneven spacing allowed), second-order one-sided on
    the end levels; needs at least 3 levels.
    """
    p = _check_levels(p, f, axis)
    if p.size < 3:
        raise GridError(f"d/dp needs at least 3 pressure levels, found {p.size}")
    return _derivative(f, p, axis)


def layer_difference(f, *, axis: int = -3):
    """``f[k + 1] - f[k]`` along ``axis``: one value per layer between adjacent levels."""
    n = f.shape[axis]
    return _take(f, slice(1, n), axis) - _take(f, slice(0, n - 1), axis)


def layer_mean(f, *, axis: int = -3):
    """``(f[k] + f[k + 1]) / 2`` along ``axis``: one value per layer between adjacent levels."""
    return _scale_(_layer_sum(f, axis), 0.5)


def _layer_sum(f, axis: int):
    n = f.shape[axis]
    return _take(f, slice(1, n), axis) + _take(f, slice(0, n - 1), axis)


def omega_from_continuity(u, v, lat, lon, plev_pa, *, axis: int = -3, radius: float = EARTH_RADIUS):
    """Vertical velocity omega (Pa s-1) that satisfies the layer continuity equation exactly.

    Integrates ``d(omega)/dp = -D`` downward from ``omega = 0`` at ``p = 0``: the top
    level gets ``-p_top * D_top`` and each layer adds ``-(p[k+1] - p[k]) * (D[k] + D[k+1]) / 2``
    (the trapezoid rule), so :func:`xphyda.physics.kernels.continuity` is zero to
    rounding.  Levels may be ordered either way.

    Parameters
    ----------
    u, v : array
        Winds in m s-1, shape ``(..., level, lat, lon)`` (level on ``axis``).
    lat, lon : array_like
        Degrees, in the arrays' order.
    plev_pa : array_like
        Pressure of each level in Pa.

    Returns
    -------
    array
        omega, same shape and backend as ``u``.
    """
    grid = SphereGrid(lat, lon, radius=radius)
    p = _check_levels(plev_pa, u, axis)
    axis = axis % u.ndim
    div = divergence(u, v, grid)
    order = np.argsort(p)  # top (smallest p) first
    n = p.size
    parts = [None] * n
    k0 = int(order[0])
    omega = -float(p[k0]) * _take(div, slice(k0, k0 + 1), axis)
    parts[k0] = omega
    for a, b in zip(order[:-1], order[1:]):
        a, b = int(a), int(b)
        d_a, d_b = _take(div, slice(a, a + 1), axis), _take(div, slice(b, b + 1), axis)
        omega = omega - float(p[b] - p[a]) * 0.5 * (d_a + d_b)
        parts[b] = omega
    return _cat(parts, axis)
