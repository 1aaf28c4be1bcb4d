"""Regrid latitude-longitude fields to the model grid: conservative or bilinear, numpy only.

On a rectilinear latitude-longitude grid the cell area is ``a^2 d(sin phi) d(lambda)``,
a product of a latitude factor and a longitude factor.  First-order conservative
remapping is therefore *separable*: the weights are ``W_lat (x) W_lon``, where
``W_lat[i, j]`` is the overlap of target row ``i`` and source row ``j`` measured in
``sin(latitude)`` and ``W_lon[i, j]`` the overlap of the columns in longitude (with
wrap-around), each row normalised to sum to one.  Regridding is two small matrix
products, ``W_lat @ field @ W_lon.T``; for integer coarsening factors of aligned
grids it is exactly the area-weighted block mean.  Bilinear interpolation uses the
same machinery with linear-interpolation matrices (latitude clamped to the
outermost source rows, longitude periodic).

Cell edges follow :class:`xphyda.physics.operators.SphereGrid`: half-way between
rows, the poles for the outermost rows of a global grid.

This module is deliberately small; the observations module may provide a richer
regridder (for example xESMF).

Examples
--------
>>> ds = model_grid(4, 8)
>>> ds["latitude"].values.tolist()
[67.5, 22.5, -22.5, -67.5]
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import GridError
from ..grid import discover_grid
from ..physics.operators import SphereGrid

__all__ = ["model_grid", "regrid", "regrid_weights", "same_grid"]

_LAT_ATTRS = {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude", "axis": "Y"}
_LON_ATTRS = {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude", "axis": "X"}


def model_grid(nlat: int, nlon: int, *, kind: str = "equiangular", poles: bool = False) -> xr.Dataset:
    """A global model grid as an empty Dataset with ``latitude`` (descending) and ``longitude``.

    Parameters
    ----------
    nlat, nlon : int
        Number of rows and columns.
    kind : {"equiangular", "gaussian"}
        ``"equiangular"``: evenly spaced rows (WeatherBench2's ``64x32_equiangular``
        grids when ``poles=False``); ``"gaussian"``: the Gaussian latitudes of a
        spectral model (48 x 96 is jcm's T31 grid).
    poles : bool
        For ``"equiangular"``: put the first and last rows on the poles
        (``nlat = 181`` gives ERA5's 1-degree grid).

    Returns
    -------
    xarray.Dataset
        Coordinates only, longitudes ``0, 360 / nlon, ...``.

    Examples
    --------
    >>> g = model_grid(48, 96, kind="gaussian")
    >>> g.sizes["latitude"], g.sizes["longitude"], round(float(g.latitude[0]), 3)
    (48, 96, 87.159)
    """
    if int(nlat) < 3 or int(nlon) < 3:
        raise GridError(f"model_grid needs at least 3 rows and 3 columns, got nlat={nlat}, nlon={nlon}")
    if kind == "gaussian":
        lat = np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(int(nlat))[0]))[::-1]
    elif kind == "equiangular":
        if poles:
            lat = np.linspace(90.0, -90.0, int(nlat))
        else:
            step = 180.0 / nlat
            lat = 90.0 - step * (np.arange(nlat) + 0.5)
    else:
        raise GridError(f"unknown grid kind {kind!r}; expected 'equiangular' or 'gaussian'")
    lon = np.arange(int(nlon)) * (360.0 / nlon)
    return xr.Dataset(
        coords={"latitude": ("latitude", lat, _LAT_ATTRS), "longitude": ("longitude", lon, _LON_ATTRS)}
    )


# --------------------------------------------------------------------------- 1-D weights
def _lat_edges_sin(lat: np.ndarray) -> np.ndarray:
    """``sin`` of the row edges, in the order of ``lat`` (SphereGrid's cell convention)."""
    g = SphereGrid(lat, np.arange(0.0, 360.0, 120.0))
    phi = g.phi
    if g.global_lat:
        first = np.sign(phi[0]) * np.pi / 2
    else:
        first = phi[0] - 0.5 * (phi[1] - phi[0])
    s0 = np.sin(np.clip(first, -np.pi / 2, np.pi / 2))
    return np.concatenate([[s0], s0 + np.cumsum(g.dsin)])


def _lon_edges(lon: np.ndarray, periodic: bool) -> np.ndarray:
    if periodic:
        ext = np.concatenate([[lon[-1] - 360.0], lon, [lon[0] + 360.0]])
    else:
        ext = np.concatenate([[2 * lon[0] - lon[1]], lon, [2 * lon[-1] - lon[-2]]])
    return 0.5 * (ext[1:] + ext[:-1])


def _overlap(src_edges: np.ndarray, tgt_edges: np.ndarray, period: float | None) -> np.ndarray:
    """Matrix of overlaps ``|[tgt_i] ∩ [src_j]|`` of intervals given by increasing or decreasing edges."""
    s_lo, s_hi = np.minimum(src_edges[:-1], src_edges[1:]), np.maximum(src_edges[:-1], src_edges[1:])
    t_lo, t_hi = np.minimum(tgt_edges[:-1], tgt_edges[1:]), np.maximum(tgt_edges[:-1], tgt_edges[1:])
    shifts = (-period, 0.0, period) if period else (0.0,)
    out = np.zeros((t_lo.size, s_lo.size))
    for sh in shifts:
        lo = np.maximum(t_lo[:, None], s_lo[None, :] + sh)
        hi = np.minimum(t_hi[:, None], s_hi[None, :] + sh)
        out += np.clip(hi - lo, 0.0, None)
    return out


def _normalise_rows(w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w / np.where(total > 0, total, 1.0), np.nan)


def _linear(src: np.ndarray, tgt: np.ndarray, period: float | None) -> np.ndarray:
    """Linear-interpolation matrix from ``src`` to ``tgt`` (periodic, or clamped at the ends)."""
    n = src.size
    order = np.argsort(src)
    s = src[order]
    if period:
        s = np.concatenate([s, [s[0] + period]])
        cols = np.concatenate([order, [order[0]]])
        t = s[0] + np.mod(tgt - s[0], period)
    else:
        cols = order
        t = np.clip(tgt, s[0], s[-1])
    k = np.clip(np.searchsorted(s, t, side="right") - 1, 0, s.size - 2)
    frac = (t - s[k]) / (s[k + 1] - s[k])
    w = np.zeros((tgt.size, n))
    rows = np.arange(tgt.size)
    np.add.at(w, (rows, cols[k]), 1.0 - frac)
    np.add.at(w, (rows, cols[k + 1]), frac)
    return w


def _spacing(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x)).mean())


def _choose(method: str, src_lat, src_lon, tgt_lat, tgt_lon) -> str:
    if method == "auto":
        coarser = all(
            _spacing(t) >= _spacing(s) * (1 - 1e-6) for s, t in ((src_lat, tgt_lat), (src_lon, tgt_lon))
        )
        return "conservative" if coarser else "bilinear"
    return method


def regrid_weights(
    src_lat, src_lon, tgt_lat, tgt_lon, *, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """The two 1-D weight matrices ``(W_lat, W_lon)`` of a separable regridding.

    ``field_on_target = W_lat @ field @ W_lon.T`` for a field with latitude and
    longitude as its last two axes.

    Parameters
    ----------
    src_lat, src_lon, tgt_lat, tgt_lon : array_like
        Cell-centre coordinates in degrees, in the arrays' order.
    method : {"auto", "conservative", "bilinear"}
        ``"auto"`` is conservative when the target is at least as coarse as the
        source in both directions, bilinear otherwise.

    Examples
    --------
    Halving an equiangular grid: each target row is the area-weighted mean of two
    source rows; target column 0 (centred on 0 E) takes half of source column 0 and
    a quarter of each neighbour:

    >>> import numpy as np
    >>> src, tgt = model_grid(8, 16), model_grid(4, 8)
    >>> wl, wx = regrid_weights(src.latitude, src.longitude, tgt.latitude, tgt.longitude)
    >>> np.round(wl[0, :3], 3).tolist(), wx[0, [15, 0, 1]].tolist()
    ([0.26, 0.74, 0.0], [0.25, 0.5, 0.25])
    """
    src_lat, src_lon, tgt_lat, tgt_lon = (
        np.asarray(a, dtype=np.float64).ravel() for a in (src_lat, src_lon, tgt_lat, tgt_lon)
    )
    src_periodic = SphereGrid(src_lat, src_lon).periodic
    method = _choose(method, src_lat, src_lon, tgt_lat, tgt_lon)
    if method == "conservative":
        tgt_periodic = SphereGrid(tgt_lat, tgt_lon).periodic
        w_lat = _overlap(_lat_edges_sin(src_lat), _lat_edges_sin(tgt_lat), None)
        w_lon = _overlap(
            _lon_edges(src_lon, src_periodic),
            _lon_edges(tgt_lon, tgt_periodic),
            360.0 if src_periodic else None,
        )
    elif method == "bilinear":
        w_lat = _linear(src_lat, tgt_lat, None)
        w_lon = _linear(src_lon, tgt_lon, 360.0 if src_periodic else None)
    else:
        raise GridError(f"unknown regrid method {method!r}; expected 'auto', 'conservative' or 'bilinear'")
    return _normalise_rows(w_lat), _normalise_rows(w_lon)


def _apply(x: np.ndarray, w_lat: np.ndarray, w_lon: np.ndarray) -> np.ndarray:
    """``W_lat @ x @ W_lon.T`` over the last two axes; NaNs are left out (weights renormalised)."""
    x64 = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x64)
    if not bad.any():
        out = w_lat @ x64 @ w_lon.T
    else:
        good = (~bad).astype(np.float64)
        num = w_lat @ np.where(bad, 0.0, x64) @ w_lon.T
        den = w_lat @ good @ w_lon.T
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 1e-9, num / den, np.nan)
    return out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


def same_grid(a, b, *, atol: float = 1e-6) -> bool:
    """Whether two objects have the same latitude and longitude values (longitudes modulo 360)."""
    ga, gb = discover_grid(a), discover_grid(b)
    if ga.shape != gb.shape:
        return False
    dlon = np.mod(ga.lon_values - gb.lon_values + 180.0, 360.0) - 180.0
    return bool(np.allclose(ga.lat_values, gb.lat_values, atol=atol) and np.allclose(dlon, 0.0, atol=atol))


def regrid(ds, grid, *, method: str = "auto"):
    """Regrid every variable of ``ds`` with latitude and longitude dims to ``grid``; lazy for dask.

    A simple, dependency-free regridder for training data: first-order
    conservative (separable overlaps on the sphere, see the module docstring) or
    bilinear.  The observations module may provide a better regridder (xESMF,
    higher-order conservative); this one only needs numpy.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Data on a regular or Gaussian latitude-longitude grid (any latitude order).
    grid : xarray.Dataset, xarray.DataArray or tuple of array_like
        The target grid: an object with latitude and longitude coordinates (for
        example from :func:`model_grid`) or ``(lat, lon)`` in degrees.
    method : {"auto", "conservative", "bilinear"}
        See :func:`regrid_weights`.  Use conservative to coarsen (it keeps
        area means), bilinear to refine.

    Returns
    -------
    Same type as ``ds``, on the target grid, with the source's coordinate names
    and the target's latitude order.  Variables without both horizontal dims are
    passed through.  NaN source cells are left out of each target cell's mean.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> src = model_grid(8, 16)
    >>> da = xr.DataArray(np.ones((8, 16)), coords=src.coords, name="t", attrs={"units": "K"})
    >>> out = regrid(da, model_grid(4, 8))
    >>> out.shape, float(out.mean())
    ((4, 8), 1.0)
    """
    g = discover_grid(ds)
    if isinstance(grid, (xr.Dataset, xr.DataArray)):
        tg = discover_grid(grid)
        tgt_lat, tgt_lon = tg.lat_values, tg.lon_values
    else:
        try:
            tgt_lat, tgt_lon = (np.asarray(a, dtype=np.float64).ravel() for a in grid)
        except (TypeError, ValueError):
            raise GridError(
                f"grid must be a Dataset/DataArray with latitude and longitude or a (lat, lon) pair, got {type(grid).__name__}. "
                "Fix: grid=xphyda.data.model_grid(32, 64)"
            ) from None
    w_lat, w_lon = regrid_weights(g.lat_values, g.lon_values, tgt_lat, tgt_lon, method=method)
    used = _choose(method, g.lat_values, g.lon_values, tgt_lat, tgt_lon)

    def one(da: xr.DataArray) -> xr.DataArray:
        if g.lat not in da.dims or g.lon not in da.dims:
            return da
        if da.chunks is not None:
            da = da.chunk({g.lat: -1, g.lon: -1})
        out = xr.apply_ufunc(
            _apply,
            da,
            kwargs={"w_lat": w_lat, "w_lon": w_lon},
            input_core_dims=[[g.lat, g.lon]],
            output_core_dims=[["__lat", "__lon"]],
            exclude_dims={g.lat, g.lon},
            dask="parallelized",
            output_dtypes=[da.dtype],
            dask_gufunc_kwargs={"output_sizes": {"__lat": tgt_lat.size, "__lon": tgt_lon.size}},
            keep_attrs=True,
        )
        return out.rename({"__lat": g.lat, "__lon": g.lon})

    coords = {g.lat: (g.lat, tgt_lat, dict(ds[g.lat].attrs)), g.lon: (g.lon, tgt_lon, dict(ds[g.lon].attrs))}
    if isinstance(ds, xr.DataArray):
        out = one(ds.drop_vars([g.lat, g.lon])).assign_coords(coords)
    else:
        out = ds.drop_vars([g.lat, g.lon]).map(one, keep_attrs=True).assign_coords(coords)
        note = f"regridded {used} from {g.shape[0]}x{g.shape[1]} to {tgt_lat.size}x{tgt_lon.size} (xphyda.data.regrid)"
        out.attrs["history"] = (str(ds.attrs.get("history", "")) + "\n" + note).strip()
    return out.transpose(*ds.dims) if isinstance(ds, xr.DataArray) else out
