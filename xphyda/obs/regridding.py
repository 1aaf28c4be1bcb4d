"""Regrid gridded observations to the analysis grid, without spreading or filling gaps.

Two layers: numpy kernels that build sparse weight matrices and apply them
(:func:`bilinear_weights`, :func:`conservative_weights`, :func:`apply_weights`),
and the xarray front :func:`regrid`, which uses xESMF when it is importable and
these kernels otherwise, or any regridder object the user passes.

* ``"bilinear"`` reuses the observation operator
  (:func:`xphyda.obs.operator.build_operator`) with the target grid points as
  observations: periodic in longitude, handled near the poles.
* ``"conservative"`` is first-order conservative remapping with the exact
  spherical overlap of lat-lon cells.  Cells are bounded by meridians and
  parallels half-way between grid points (and by the poles on global grids), so
  the overlap of two cells is ``a^2 * (overlap in longitude, radians) *
  (overlap in sin(latitude))``, exactly; the global integral is conserved to
  rounding error.  (ESMF, behind xESMF, bounds cells by great circles instead,
  so its weights differ slightly near the poles.)

Gaps (NaN) are never filled and never spread: each target value is the
weighted mean of the *observed* source values it overlaps, kept only when
they cover at least ``min_coverage`` of its weight (default one half, so the
unobserved area is preserved); targets outside the source grid stay NaN.

Examples
--------
>>> import numpy as np
>>> src_lat, src_lon = np.linspace(-87.5, 87.5, 36), np.arange(0.0, 360.0, 5.0)
>>> dst_lat, dst_lon = np.linspace(80.0, -80.0, 9), np.arange(-180.0, 180.0, 20.0)
>>> W = conservative_weights(src_lat, src_lon, dst_lat, dst_lon)
>>> W.shape, bool(np.allclose(W.sum(axis=1), 1.0))
((162, 2592), True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..errors import ObservationError, PhydaError
from ..grid import Grid, discover_grid
from ..physics.operators import SphereGrid
from .operator import build_operator

__all__ = [
    "METHODS",
    "apply_weights",
    "bilinear_weights",
    "conservative_weights",
    "lat_edges",
    "lon_edges",
    "regrid",
]

METHODS = ("auto", "bilinear", "conservative")
"""Regridding methods by name (a callable regridder is also accepted by :func:`regrid`)."""


# --------------------------------------------------------------------------- numpy kernels
def lat_edges(lat, *, global_lat: bool | None = None) -> np.ndarray:
    """Cell edges (``n + 1``, degrees, in the order of ``lat``), as in :class:`SphereGrid`."""
    sphere = SphereGrid(lat, np.arange(3.0) * 120.0, global_lat=global_lat)
    la = sphere.lat
    edges = np.concatenate(
        [[la[0] - 0.5 * (la[1] - la[0])], 0.5 * (la[1:] + la[:-1]), [la[-1] + 0.5 * (la[-1] - la[-2])]]
    )
    if sphere.global_lat:
        edges[0], edges[-1] = np.sign(la[0]) * 90.0, np.sign(la[-1]) * 90.0
    return np.clip(edges, -90.0, 90.0)


def lon_edges(lon, *, periodic: bool | None = None) -> np.ndarray:
    """Cell edges (``n + 1``, degrees, increasing, unwrapped); periodic grids span exactly 360."""
    sphere = SphereGrid(np.array([-60.0, 0.0, 60.0]), lon, periodic=periodic)
    raw = np.asarray(lon, dtype=np.float64).ravel()
    lo = raw if np.all(np.diff(raw) > 0) else raw[0] + np.mod(raw - raw[0], 360.0)  # unwrapped, given degrees
    mid = 0.5 * (lo[1:] + lo[:-1])
    if sphere.periodic:
        first = 0.5 * (lo[0] + lo[-1] - 360.0)
        return np.concatenate([[first], mid, [first + 360.0]])
    return np.concatenate([[lo[0] - 0.5 * (lo[1] - lo[0])], mid, [lo[-1] + 0.5 * (lo[-1] - lo[-2])]])


def _overlap_1d(dst: np.ndarray, src: np.ndarray, period: float | None) -> np.ndarray:
    """Overlap lengths ``(n_dst, n_src)`` of intervals given by consecutive edges."""
    a, b = np.minimum(dst[:-1], dst[1:]), np.maximum(dst[:-1], dst[1:])
    c, d = np.minimum(src[:-1], src[1:]), np.maximum(src[:-1], src[1:])
    shifts = (0.0,)
    if period is not None:
        a0 = np.mod(a, period)
        b, a = a0 + (b - a), a0
        c0 = np.mod(c, period)
        d, c = c0 + (d - c), c0
        shifts = (-period, 0.0, period)
    out = np.zeros((a.size, c.size))
    for s in shifts:
        out += np.maximum(
            0.0, np.minimum(b[:, None], d[None, :] + s) - np.maximum(a[:, None], c[None, :] + s)
        )
    return out


def conservative_weights(src_lat, src_lon, dst_lat, dst_lon) -> sp.csr_matrix:
    """First-order conservative weights ``(n_dst, n_src)`` with exact lat-lon cell overlaps.

    Row ``i`` holds the fraction of target cell ``i`` covered by each source
    cell (rows sum to 1 where the source grid covers the target cell).  Points
    are flattened in C order from ``(lat, lon)`` in each grid's own order.
    """
    slat, dlat = np.sin(np.deg2rad(lat_edges(src_lat))), np.sin(np.deg2rad(lat_edges(dst_lat)))
    wlat = _overlap_1d(dlat, slat, None) / np.abs(np.diff(dlat))[:, None]
    wlon = _overlap_1d(lon_edges(dst_lon), lon_edges(src_lon), 360.0) / np.diff(lon_edges(dst_lon))[:, None]
    return sp.kron(sp.csr_matrix(wlat), sp.csr_matrix(wlon), format="csr")


def bilinear_weights(src_lat, src_lon, dst_lat, dst_lon) -> sp.csr_matrix:
    """Bilinear weights ``(n_dst, n_src)``: rows of target points outside the source grid are empty."""
    la, lo = np.meshgrid(
        np.asarray(dst_lat, dtype=np.float64), np.asarray(dst_lon, dtype=np.float64), indexing="ij"
    )
    return build_operator(la.ravel(), lo.ravel(), src_lat, src_lon).matrix


def apply_weights(weights: sp.spmatrix, values, *, min_coverage: float = 0.5) -> np.ndarray:
    """Apply regridding weights to ``values`` of shape ``(..., n_src)``, skipping NaN.

    A target value is the weighted mean of its finite source values, kept
    where they carry at least ``min_coverage`` of the target's full weight.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> W = sp.csr_matrix([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    >>> apply_weights(W, [1.0, float("nan"), 3.0]).tolist()
    [1.0, 3.0]
    """
    if not 0.0 < min_coverage <= 1.0:
        raise PhydaError(f"min_coverage must be in (0, 1]; got {min_coverage}")
    x = np.asarray(values, dtype=np.float64)
    flat = x.reshape(-1, x.shape[-1])
    ok = np.isfinite(flat)
    num = np.asarray(weights @ np.where(ok, flat, 0.0).T).T
    cover = np.asarray(weights @ ok.T.astype(np.float64)).T
    keep = (cover >= min_coverage - 1e-9) & (cover > 1e-12)
    out = np.where(keep, num / np.where(keep, cover, 1.0), np.nan)
    return out.reshape(x.shape[:-1] + (weights.shape[0],))


# --------------------------------------------------------------------------- xarray front
def _xesmf():
    try:
        import xesmf
    except ImportError:
        return None
    return xesmf


def _spacing(g: Grid) -> float:
    return float(np.sqrt(np.abs(np.diff(g.lat_values)).mean() * np.diff(g.sphere().lon).mean()))


def _target_grid(target) -> Grid:
    return target if isinstance(target, Grid) else discover_grid(target)


def finer(src: Grid, dst: Grid) -> bool:
    """Whether grid ``src`` is finer than ``dst`` (smaller mean spacing)."""
    return _spacing(src) < _spacing(dst)


def _choose(method, src: Grid, dst: Grid) -> str:
    if method == "auto":
        return "conservative" if finer(src, dst) else "bilinear"
    if method not in METHODS:
        raise ObservationError(
            f"unknown regridding method {method!r}; choose one of {METHODS} or pass a regridder object "
            "(a callable taking and returning a DataArray, such as an xesmf.Regridder)"
        )
    return method


def _with_target_coords(out: xr.DataArray, dst: Grid, target) -> xr.DataArray:
    coords = {dst.lat: dst.lat_values, dst.lon: dst.lon_values}
    if not isinstance(target, Grid):
        coords = {dst.lat: target[dst.lat], dst.lon: target[dst.lon]}
    return out.assign_coords(coords)


def _regrid_array(
    da: xr.DataArray, src: Grid, dst: Grid, target, method: str, min_coverage: float, backend: str
) -> xr.DataArray:
    xe = _xesmf() if backend in ("auto", "xesmf") else None
    if backend == "xesmf" and xe is None:
        raise ObservationError(
            "backend='xesmf' was requested but xESMF is not importable; it needs ESMF, which only "
            "conda provides: "
            "`conda install -c conda-forge xesmf` (or use backend='xphyda')"
        )
    if xe is not None:
        return _regrid_xesmf(xe, da, src, dst, target, method, min_coverage)
    if method == "conservative":
        weights = conservative_weights(src.lat_values, src.lon_values, dst.lat_values, dst.lon_values)
    else:
        weights = bilinear_weights(src.lat_values, src.lon_values, dst.lat_values, dst.lon_values)
    nd = dst.shape

    def kernel(a):
        return apply_weights(weights, a.reshape(a.shape[:-2] + (-1,)), min_coverage=min_coverage).reshape(
            a.shape[:-2] + nd
        )

    out = xr.apply_ufunc(
        kernel,
        da,
        input_core_dims=[[src.lat, src.lon]],
        output_core_dims=[["__lat__", "__lon__"]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"__lat__": nd[0], "__lon__": nd[1]}},
        keep_attrs=True,
    )
    out = out.rename({"__lat__": dst.lat, "__lon__": dst.lon})
    return _with_target_coords(out, dst, target)


def _regrid_xesmf(xe, da, src: Grid, dst: Grid, target, method: str, min_coverage: float) -> xr.DataArray:
    def grid_ds(g: Grid):
        return xr.Dataset(
            coords={
                "lat": ("lat", g.lat_values),
                "lon": ("lon", g.lon_values),
                "lat_b": ("lat_b", lat_edges(g.lat_values)),
                "lon_b": ("lon_b", lon_edges(g.lon_values)),
            }
        )

    regridder = xe.Regridder(grid_ds(src), grid_ds(dst), method, periodic=bool(src.periodic))
    tmp = da.drop_vars([src.lat, src.lon]).rename({src.lat: "lat", src.lon: "lon"})
    out = regridder(tmp, skipna=True, na_thres=1.0 - min_coverage, keep_attrs=True)
    out = out.drop_vars([c for c in ("lat", "lon") if c in out.coords]).rename(
        {"lat": dst.lat, "lon": dst.lon}
    )
    return _with_target_coords(out, dst, target)


def _apply_user(regridder: Callable, da: xr.DataArray, dst: Grid, name: str) -> xr.DataArray:
    out = regridder(da)
    if not isinstance(out, xr.DataArray):
        raise ObservationError(
            f"the regridder returned {type(out).__name__} for {name!r}; it must return a DataArray"
        )
    try:
        got = discover_grid(out)
    except PhydaError as exc:
        raise ObservationError(
            f"the regridder's output for {name!r} has no usable lat-lon grid: {exc}"
        ) from None
    same = (
        got.shape == dst.shape
        and np.allclose(got.lat_values, dst.lat_values)
        and np.allclose(np.mod(got.lon_values, 360.0), np.mod(dst.lon_values, 360.0))
    )
    if not same:
        raise ObservationError(
            f"the regridder's output for {name!r} is on a {got.shape} grid that is not the analysis "
            f"grid {dst.shape}; "
            "build the regridder with the background as its target (for example "
            "xesmf.Regridder(obs, background, ...))"
        )
    return (
        out.rename({got.lat: dst.lat, got.lon: dst.lon}) if (got.lat, got.lon) != (dst.lat, dst.lon) else out
    )


def regrid(obs, target, *, method="auto", min_coverage: float = 0.5, backend: str = "auto"):
    """Regrid gridded observations to the grid of ``target``; NaN gaps stay unobserved.

    Parameters
    ----------
    obs : xarray.Dataset or xarray.DataArray
        Data on a 1-D latitude-longitude grid (any order and longitude convention).
        Variables without both horizontal dimensions are passed through.
    target : xarray.Dataset, xarray.DataArray or Grid
        Supplies the destination latitudes and longitudes (and their names).
    method : {"auto", "bilinear", "conservative"} or callable
        ``"auto"`` is conservative when the source grid is finer than the
        target, bilinear otherwise.  A callable (such as an ``xesmf.Regridder``)
        is applied to each DataArray and must return it on the target grid.
    min_coverage : float
        Fraction of a target value's weight that must come from observed
        (non-NaN) sources; otherwise the target is NaN.
    backend : {"auto", "xesmf", "xphyda"}
        ``"auto"`` uses xESMF when it is importable.

    Returns
    -------
    Same type as ``obs``, on the target grid.

    Examples
    --------
    >>> import xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> coarse = ds.isel(latitude=slice(1, None, 4), longitude=slice(0, None, 4))
    >>> out = regrid(ds, coarse, method="conservative", backend="xphyda")
    >>> out.t.shape
    (1, 2, 45, 90)
    """
    src = discover_grid(obs)
    dst = _target_grid(target)
    if backend not in ("auto", "xesmf", "xphyda"):
        raise ObservationError(f"backend must be 'auto', 'xesmf' or 'xphyda'; got {backend!r}")
    name = getattr(obs, "name", None)
    chosen = method if callable(method) else _choose(method, src, dst)

    def one(da: xr.DataArray, key) -> xr.DataArray:
        if src.lat not in da.dims and src.lon not in da.dims:
            return da
        if src.lat not in da.dims or src.lon not in da.dims:
            raise ObservationError(
                f"variable {key!r} has only one horizontal dimension {da.dims}; regridding needs both "
                f"{src.lat!r} and {src.lon!r}. Fix: drop it first (obs.drop_vars({key!r}))"
            )
        if callable(chosen):
            return _apply_user(chosen, da, dst, str(key))
        return _regrid_array(da, src, dst, target, chosen, min_coverage, backend)

    if isinstance(obs, xr.DataArray):
        return one(obs, name)
    out = {k: one(v, k) for k, v in obs.data_vars.items()}
    ds = xr.Dataset(out, attrs=obs.attrs)
    return ds.drop_vars([c for c in (src.lat, src.lon) if c in ds.coords and c not in (dst.lat, dst.lon)])
