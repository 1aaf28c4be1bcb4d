"""Time-invariant fields (land-sea mask, orography) on a model grid, for the network's inputs.

A model built with static fields (``phyda train --static lsm z_surface``, or
:func:`xphyda.model.phyda.adapt`) sees them beside the state.  This module
reads them from any store xphyda can open -- the jcm corpus (``lsm``,
``z_surface``), a WeatherBench2 Zarr (``land_sea_mask``,
``geopotential_at_surface``), a netCDF file -- and puts them on the model grid:
as they are when the store is on that grid (in any latitude order or longitude
convention), else regridded with :func:`xphyda.data.regrid.regrid` (conservative when
coarsening).  The name ``latitude`` is the grid's own latitude, needing no store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..errors import DataError
from .regrid import regrid

__all__ = ["check_static", "static_fields"]


def _where(source) -> str:
    return "the given Dataset" if isinstance(source, xr.Dataset) else repr(str(source))


def _open(source) -> xr.Dataset:
    from .sources import open_source

    try:
        parts = open_source(source, engine=None, chunks=None, storage_options=None)[0]
    except DataError:
        raise
    except Exception as exc:  # a backend's own error for an unreadable file
        raise DataError(f"the static fields' store {_where(source)} cannot be opened "
                        f"({' '.join(str(exc).split())[:200]}). "
                        "Fix: pass a Zarr store, a netCDF file or a folder of trajectory stores") from exc
    for other in parts[1:]:
        other.close()
    return parts[0]  # static fields are the same in every trajectory of a corpus


def _checked(source, names) -> tuple[list[str], xr.Dataset | None]:
    """``names`` as a list and the opened store, after checking that the store has every one of them."""
    if isinstance(names, str):
        raise DataError(f"names must be a sequence of field names; got the string {names!r}. Fix: [{names!r}]")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise DataError(f"static field names must be unique; got {names}. Fix: name each field once")
    need = [n for n in names if n != "latitude"]
    if need and source is None:
        raise DataError(f"static fields {need} need a store to read them from; none was given. "
                        "Fix: pass the store that holds them (--static-from STORE)")
    ds = _open(source) if need else None
    missing = [n for n in need if n not in ds.data_vars]
    if missing:
        known = sorted(map(str, ds.data_vars))
        if not isinstance(source, xr.Dataset):
            ds.close()
        raise DataError(f"{_where(source)} has no variable {missing[0]!r}; its variables are {known}. "
                        "Fix: name one of them, or 'latitude' for the model grid's latitude")
    return names, ds


def _map(ds: xr.Dataset, name: str, source) -> xr.DataArray:
    """The field ``name`` as one loaded ``(lat, lon)`` map with finite, not constant values."""
    from ..grid import discover_grid

    da = ds[name]
    g = discover_grid(da)
    extra = [d for d in da.dims if d not in (g.lat, g.lon)]
    if any(da.sizes[d] > 1 for d in extra):
        raise DataError(f"{name!r} in {_where(source)} has dims {tuple(da.dims)} with sizes "
                        f"{[da.sizes[d] for d in da.dims]}; a static field is one (latitude, longitude) map. "
                        f"Fix: select one of {[d for d in extra if da.sizes[d] > 1]} and write the map to a store")
    da = da.squeeze(extra, drop=True).transpose(g.lat, g.lon).load()
    values = np.asarray(da.values, float)
    if not np.isfinite(values).all():
        raise DataError(f"{name!r} in {_where(source)} has {int((~np.isfinite(values)).sum())} missing values; "
                        "a static field must be defined everywhere. Fix: fill them first (e.g. field.fillna(0)) and "
                        "write the field to a store")
    if np.ptp(values) == 0:
        raise DataError(f"{name!r} in {_where(source)} is constant ({values.flat[0]:g} everywhere), so it cannot "
                        "tell one place from another. Fix: leave it out")
    return da


def check_static(source, names) -> list[str]:
    """Check that ``source`` has the static fields ``names``, each one finite, not constant map; return the names.

    Reads the fields on the store's own grid (small 2-D maps), so a run can
    refuse them before any training work.

    Raises
    ------
    DataError
        As :func:`static_fields` does.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"lsm": (("lat", "lon"), [[0.0, 1.0], [1.0, 1.0]])},
    ...                 coords={"lat": [45.0, -45.0], "lon": [0.0, 180.0]})
    >>> check_static(ds, ("lsm", "latitude"))
    ['lsm', 'latitude']
    """
    names, ds = _checked(source, names)
    try:
        for name in names:
            if name != "latitude":
                _map(ds, name, source)
    finally:
        if ds is not None and not isinstance(source, xr.Dataset):
            ds.close()
    return names


def _one_field(ds: xr.Dataset, name: str, source, lat: np.ndarray, lon: np.ndarray, method: str) -> np.ndarray:
    from ..grid import discover_grid

    da = _map(ds, name, source)
    g = discover_grid(da)
    same = da.sizes[g.lat] == lat.size and da.sizes[g.lon] == lon.size
    if same:
        src_lat, src_lon = np.asarray(da[g.lat], float), np.asarray(da[g.lon], float)
        i = np.argsort(-src_lat)  # model grids run north to south
        j = np.argsort(np.mod(src_lon, 360.0))
        same = np.allclose(src_lat[i], lat, atol=1e-6) and np.allclose(np.mod(src_lon[j], 360.0), lon, atol=1e-6)
    if same:
        values = np.asarray(da.values, float)[i][:, j]
    else:
        out = regrid(da, (lat, lon), method=method)
        og = discover_grid(out)
        out = out.transpose(og.lat, og.lon)
        jj = np.argsort(np.mod(np.asarray(out[og.lon], float), 360.0))
        values = np.asarray(out.values, float)[:, jj]
    if not np.isfinite(values).all():
        raise DataError(f"{name!r} from {_where(source)} has {int((~np.isfinite(values)).sum())} missing values on "
                        "the model grid (cells the store does not cover). Fix: give a global field")
    return values


def static_fields(source, names: Sequence[str], lat, lon, *, method: str = "auto") -> dict[str, np.ndarray]:
    """Static fields by name, as ``(nlat, nlon)`` float64 arrays on the model grid ``(lat, lon)``.

    Parameters
    ----------
    source : path, URL or xarray.Dataset, optional
        Where the fields are: anything :func:`xphyda.data.pipeline.open_store` accepts
        (for a corpus folder, its first trajectory).  Not needed if ``names``
        is only ``["latitude"]``.
    names : sequence of str
        Variables of ``source``; ``"latitude"`` is the grid's latitude itself.
    lat, lon : array_like
        The model grid in degrees: latitudes north to south, longitudes 0..360
        ascending (as a model card stores them).
    method : {"auto", "conservative", "bilinear"}
        Regridding when the store is on another grid (see :func:`xphyda.data.regrid.regrid`).

    Returns
    -------
    dict of str to numpy.ndarray
        In the order of ``names``; raw values in the store's units
        (:func:`xphyda.model.phyda.standardise_static` standardises them).

    Raises
    ------
    DataError
        If a name is missing from the store, a field is not a single map, is
        constant or has missing values, the store cannot be opened, or ``lat``
        and ``lon`` are not a model grid (north to south, 0..360 ascending).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> lat, lon = np.array([45.0, -45.0]), np.array([0.0, 90.0, 180.0, 270.0])
    >>> ds = xr.Dataset({"lsm": (("lat", "lon"), [[0.0, 1, 1, 0], [0, 0, 1, 0]])},
    ...                 coords={"lat": [-45.0, 45.0], "lon": [-180.0, -90.0, 0.0, 90.0]})
    >>> static_fields(ds, ["lsm", "latitude"], lat, lon)["lsm"]  # flipped to north-south, rolled to 0..360
    array([[1., 0., 0., 0.],
           [1., 0., 0., 1.]])
    """
    lat, lon = np.asarray(lat, float).ravel(), np.asarray(lon, float).ravel()
    if not (lat.size > 1 and lon.size > 1 and np.all(np.diff(lat) < 0) and np.all(np.diff(lon) > 0)
            and lon[0] >= 0 and lon[-1] < 360 and np.all(np.abs(lat) <= 90)):
        raise DataError(f"the model grid must run north to south in latitude and 0..360 ascending in longitude "
                        f"(as a model card stores it); got latitudes {lat[:3]}... and longitudes {lon[:3]}... . "
                        "Fix: pass card['grid']['latitude'] and card['grid']['longitude']")
    names, ds = _checked(source, names)
    try:
        out = {}
        for name in names:
            out[name] = (np.repeat(lat[:, None], lon.size, axis=1) if name == "latitude"
                         else _one_field(ds, name, source, lat, lon, method))
    finally:
        if ds is not None and not isinstance(source, xr.Dataset):
            ds.close()
    return out
