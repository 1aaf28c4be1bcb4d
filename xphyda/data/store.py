"""Open training stores (Zarr, netCDF, GRIB; local or fsspec URLs) into one canonical layout.

The canonical layout returned by :func:`open_store`
---------------------------------------------------
* dimensions ``time``, ``level``, ``latitude``, ``longitude`` (``level`` only on
  pressure-level variables), with a leading ``trajectory`` dimension when the
  store is a folder of independent trajectories (``traj0.zarr``, ``traj1.zarr`` ...);
* ``time`` increasing (datetime64), ``level`` in hPa in *ascending* pressure (top
  first, as WeatherBench2), ``latitude`` *descending* (north to south, as ERA5 and
  the jcm corpus), ``longitude`` ascending in ``[0, 360)``;
* variables named by their short keys (``z t u v q w r``; ``sp msl t2m u10 v10``)
  whatever the store calls them (``geopotential``, ``temperature``, ``u_component_of_wind``...),
  converted to SI float32 with CF ``units``, ``standard_name`` and ``long_name``;
* lazy (dask), so a store larger than memory is fine; nothing is read until asked.

When the trajectories of a folder do not share the same times, they are aligned on
the union of times and a boolean coordinate ``available (trajectory, time)`` marks
the states each trajectory really has.

Examples
--------
>>> import numpy as np, xphyda
>>> era5 = xphyda.tutorial.open_dataset("era5-z-t")
>>> ds = open_store(era5, variables=["temperature"], levels=[850])
>>> ds["t"].dims, ds["t"].attrs["units"], float(ds.latitude[0])
(('time', 'level', 'latitude', 'longitude'), 'K', 90.0)
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from ..errors import CoordinateError, DataError, GridError, VariableError
from ..grid import VARIABLES, discover_grid, find_variable
from ..units import to_si
from .channels import LEVEL_VARIABLES, SURFACE_VARIABLES, variable_attrs
from .regrid import model_grid, regrid, same_grid  # noqa: F401  (model_grid: examples)

__all__ = ["open_store", "write_store", "resolve_variable"]

_NETCDF = (".nc", ".nc4", ".netcdf", ".cdf")
_GRIB = (".grib", ".grib2", ".grb", ".grb2")
_TRAJ = re.compile(r"traj(\d+)\.zarr$")


# --------------------------------------------------------------------------- names
def resolve_variable(name: str) -> str:
    """Short key (``"t"``) of a variable name: a key, an ERA5 / WeatherBench2 name or an alias.

    Examples
    --------
    >>> resolve_variable("u_component_of_wind"), resolve_variable("mean_sea_level_pressure")
    ('u', 'msl')
    """
    if name in VARIABLES:
        return "z" if name == "gh" else name
    for key, alias in VARIABLES.items():
        if name in alias.names or name.lower() in (n.lower() for n in alias.names) or name in alias.standard_names:
            return "z" if key == "gh" else key
    raise VariableError(
        f"unknown variable name {name!r}: it is neither a short name {list(LEVEL_VARIABLES + SURFACE_VARIABLES)} "
        "nor an ERA5 / WeatherBench2 / CF name xphyda knows. "
        f"Fix: map it explicitly, e.g. variables={{'t': {name!r}}} (short name -> name in the store)"
    )


def _requested(variables) -> dict[str, str | None]:
    """``{key: override store name or None}`` in request order."""
    if variables is None:
        return {}
    if isinstance(variables, str):
        variables = [variables]
    if isinstance(variables, Mapping):
        items = [(resolve_variable(k), v) for k, v in variables.items()]
    else:
        items = [(resolve_variable(v), None) for v in variables]
    out: dict[str, str | None] = {}
    for key, override in items:
        if key in out:
            raise VariableError(f"variable {key!r} was requested twice (names map to the same short name)")
        out[key] = override
    return out


# --------------------------------------------------------------------------- opening
def _open_netcdf(paths: list[str], engine: str | None, chunks, protocol: str, storage_options) -> xr.Dataset:
    if protocol not in ("file", "local"):
        import fsspec

        # netCDF libraries need a local file: fetch a cached local copy (picklable, no open handles)
        paths = [fsspec.open_local(f"simplecache::{p}", **{protocol: storage_options or {}}) for p in paths]
    kwargs = {"engine": engine or "netcdf4", "chunks": chunks if chunks is not None else {}}
    if kwargs["engine"] == "cfgrib":
        kwargs["backend_kwargs"] = {"indexpath": ""}
    if len(paths) == 1:
        return xr.open_dataset(paths[0], **kwargs)
    return xr.open_mfdataset(sorted(paths), combine="by_coords", **kwargs)


def _open_source(source, *, engine, chunks, storage_options) -> tuple[list[xr.Dataset], list[int] | None, str]:
    """Open ``source`` lazily: ``(datasets, trajectory numbers or None, description)``."""
    if isinstance(source, xr.Dataset):
        return [source], None, "an in-memory Dataset"
    if isinstance(source, xr.DataArray):
        return [source.to_dataset(name=source.name or "state")], None, "an in-memory DataArray"
    import fsspec

    so = dict(storage_options or {})
    if isinstance(source, (list, tuple)):
        paths = [os.fspath(p) for p in source]
        fs, _ = fsspec.core.url_to_fs(paths[0], **so)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        if all(p.rstrip("/").endswith(".zarr") for p in paths):
            return [xr.open_zarr(p, chunks=chunks if chunks is not None else {}, storage_options=so or None)
                    for p in paths], list(range(len(paths))), f"{len(paths)} Zarr stores"
        grib = all(p.lower().endswith(_GRIB) for p in paths)
        return [_open_netcdf(paths, engine or ("cfgrib" if grib else None), chunks, protocol, so)], None, f"{len(paths)} files"
    text = os.fspath(source)
    fs, root = fsspec.core.url_to_fs(text, **so)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    if any(c in text for c in "*?["):
        found = sorted(prefix + p for p in fs.glob(root))
        if not found:
            raise DataError(f"no files match {text!r}. Fix: check the pattern (for example 'era5/*.nc')")
        return _open_source(found, engine=engine, chunks=chunks, storage_options=so)
    if not fs.exists(root):
        raise DataError(f"no store at {text!r}: the path does not exist. Fix: check the path or URL")
    if fs.isdir(root):
        entries = [p.rstrip("/") for p in fs.ls(root, detail=False)]
        base = {p.rsplit("/", 1)[-1] for p in entries}
        if base & {"zarr.json", ".zgroup", ".zmetadata"}:
            return [xr.open_zarr(text, chunks=chunks if chunks is not None else {}, storage_options=so or None)], None, text
        trajs = sorted(((int(m.group(1)), p) for p in entries if (m := _TRAJ.search(p))), key=lambda t: t[0])
        if trajs:
            dss = [xr.open_zarr(prefix + p, chunks=chunks if chunks is not None else {}, storage_options=so or None)
                   for _, p in trajs]
            return dss, [k for k, _ in trajs], text
        files = sorted(prefix + p for p in entries if p.lower().endswith(_NETCDF + _GRIB))
        if files:
            return _open_source(files, engine=engine, chunks=chunks, storage_options=so)
        raise DataError(
            f"{text!r} is a folder but not a Zarr store, and holds no 'traj*.zarr' trajectories nor netCDF / GRIB "
            f"files; it has {sorted(base)[:10]}. Fix: point at the Zarr store itself, or at a folder of "
            "traj{k}.zarr stores or of *.nc files"
        )
    lower = text.lower()
    if lower.endswith(_NETCDF + _GRIB) or engine is not None:
        grib = lower.endswith(_GRIB)
        return [_open_netcdf([prefix + root if prefix else root], engine or ("cfgrib" if grib else None),
                             chunks, protocol, so)], None, text
    raise DataError(
        f"cannot tell the format of {text!r}: expected a Zarr store (folder), a netCDF file ({', '.join(_NETCDF)}) "
        f"or a GRIB file ({', '.join(_GRIB)}). Fix: pass engine='netcdf4' / 'cfgrib', or open it yourself with "
        "xarray and pass the Dataset"
    )


# --------------------------------------------------------------------------- canonical form
def _default_keys(raw: xr.Dataset) -> dict[str, str | None]:
    found = {}
    for key in LEVEL_VARIABLES + SURFACE_VARIABLES:
        try:
            name = find_variable(raw, key, required=False)
        except VariableError:
            name = None
        if name is not None and name not in found.values():
            found[key] = name
    if not found:
        raise VariableError(
            f"the store has no variable xphyda recognises; it has {sorted(map(str, raw.data_vars))}. "
            "Fix: name them, e.g. variables={'t': 'my_temperature'}"
        )
    return found


def _canonical(raw: xr.Dataset, want: dict[str, str | None], levels, time, names: Mapping, where: str) -> xr.Dataset:
    grid = discover_grid(raw, lat=names.get("lat"), lon=names.get("lon"), level=names.get("level"),
                         time=names.get("time"))
    if grid.time is None:
        raise CoordinateError(
            f"{where} has no time coordinate; training needs times. Fix: "
            "ds.expand_dims(time=[np.datetime64('2007-01-01T12')]) and pass the Dataset, or name it with names={'time': ...}"
        )
    if grid.time not in raw.dims:
        raw = raw.expand_dims(grid.time)
    if grid.level is not None and grid.level not in raw.dims:
        raw = raw.expand_dims(grid.level)  # a single pressure level stored as a scalar coordinate
    if not np.issubdtype(raw[grid.time].dtype, np.datetime64):
        raise CoordinateError(
            f"time coordinate {grid.time!r} of {where} has dtype {raw[grid.time].dtype}, expected datetime64. "
            "Fix: give it CF 'units' such as 'hours since 2000-01-01' and reopen, or xr.decode_cf(ds)"
        )
    if time is not None:
        raw = raw.sel({grid.time: time if isinstance(time, slice) else slice(*time)})
        if raw.sizes[grid.time] == 0:
            raise DataError(f"no times of {where} fall in time={time!r}")
    if not want:
        want = _default_keys(raw)
    store_names, missing = {}, []
    for key, override in want.items():
        name = find_variable(raw, key, override, required=False)
        (missing.append(key) if name is None else store_names.__setitem__(key, name))
    if missing:
        try:
            present = _default_keys(raw)
        except VariableError:
            present = {}
        raise VariableError(
            f"variables {missing} ({', '.join(VARIABLES[k].long_name for k in missing)}) are not in {where}; "
            f"it has state variables {dict(present)} (short name: store name) and data variables "
            f"{sorted(map(str, raw.data_vars))}. Fix: request only available ones, or map a store name: "
            f"variables={{{missing[0]!r}: 'name_in_store'}}"
        )
    rename = {grid.time: "time", grid.lat: "latitude", grid.lon: "longitude"}
    if grid.level is not None:
        rename[grid.level] = "level"
    keep = set(rename)
    out = {}
    for key, name in store_names.items():
        da = raw[name]
        extra = [d for d in da.dims if d not in keep]
        big = [d for d in extra if da.sizes[d] > 1]
        if big:
            raise DataError(
                f"variable {name!r} of {where} has extra dimensions {[(d, da.sizes[d]) for d in big]} besides "
                f"time, level, latitude, longitude. Fix: select one, e.g. ds.isel({big[0]}=0), and pass the Dataset"
            )
        if grid.time not in da.dims:
            raise DataError(f"variable {name!r} of {where} has no time dimension; it looks static (dims {da.dims})")
        da = da.squeeze(extra, drop=True).drop_vars([c for c in da.coords if c not in da.dims and c not in keep],
                                                    errors="ignore")
        da = to_si(da, VARIABLES[key].kind, name=name).astype(np.float32)
        da.attrs = {**variable_attrs(key), "source_variable": str(name)}
        out[key] = da.rename({d: rename[d] for d in da.dims})
    ds = xr.Dataset(out)
    ds = ds.drop_vars([c for c in ds.coords if c not in ("time", "level", "latitude", "longitude")])
    ds = ds.assign_coords(latitude=("latitude", grid.lat_values, {"units": "degrees_north", "standard_name": "latitude"}),
                          longitude=("longitude", np.mod(grid.lon_values, 360.0),
                                     {"units": "degrees_east", "standard_name": "longitude"}))
    ds["time"].attrs = {"standard_name": "time"}
    if "level" in ds.dims:
        ds = ds.assign_coords(level=("level", grid.level_pa / 100.0,
                                     {"units": "hPa", "standard_name": "air_pressure", "positive": "down"}))
        if levels is not None:
            ds = _select_levels(ds, levels, where)
        ds = ds.isel(level=np.argsort(ds["level"].values, kind="stable"))
    elif levels is not None:
        raise GridError(
            f"levels={list(levels)} were requested but {where} has no pressure-level variable among "
            f"{sorted(store_names)}. Fix: levels=None, or request pressure-level variables"
        )
    elif "level" in ds.coords:
        ds = ds.drop_vars("level")
    if ds.sizes["latitude"] > 1 and ds["latitude"].values[0] < ds["latitude"].values[-1]:
        ds = ds.isel(latitude=slice(None, None, -1))
    lon = ds["longitude"].values
    order = np.argsort(lon, kind="stable")
    if not np.array_equal(order, np.arange(lon.size)):
        ds = ds.isel(longitude=order)
    _, first = np.unique(ds["longitude"].values, return_index=True)
    if first.size != ds.sizes["longitude"]:  # e.g. both 0 and 360 were stored
        ds = ds.isel(longitude=np.sort(first))
    t = ds["time"].values
    if t.size > 1:
        if np.unique(t).size != t.size:
            raise DataError(f"{where} has duplicated times. Fix: ds.drop_duplicates('time') and pass the Dataset")
        if np.any(t[1:] < t[:-1]):
            ds = ds.isel(time=np.argsort(t, kind="stable"))
    ds.attrs = {k: v for k, v in raw.attrs.items() if k not in ("spinup_diagnostics", "trajectory")}
    return ds


def _select_levels(ds: xr.Dataset, levels: Sequence[float], where: str) -> xr.Dataset:
    have = ds["level"].values
    idx, missing = [], []
    for p in levels:
        hit = np.flatnonzero(np.isclose(have, float(p), rtol=0, atol=1e-6))
        (idx.append(int(hit[0])) if hit.size else missing.append(float(p)))
    if missing:
        raise GridError(
            f"pressure levels {missing} hPa are not in {where}; available levels are "
            f"{sorted(float(x) for x in have)} hPa. Fix: levels=[...] with available ones (or None for all)"
        )
    return ds.isel(level=idx)


def _join_trajectories(dss: list[xr.Dataset], numbers: list[int]) -> xr.Dataset:
    first = dss[0]
    for k, d in zip(numbers[1:], dss[1:]):
        for c in ("latitude", "longitude") + (("level",) if "level" in first.dims else ()):
            if d.sizes.get(c) != first.sizes.get(c) or not np.allclose(d[c].values, first[c].values):
                raise GridError(f"trajectory {k} has a different {c} coordinate from trajectory {numbers[0]}; "
                                "all trajectories of a store must share one grid")
        if sorted(d.data_vars) != sorted(first.data_vars):
            raise VariableError(f"trajectory {k} has variables {sorted(d.data_vars)}, trajectory {numbers[0]} has "
                                f"{sorted(first.data_vars)}; all trajectories must have the same variables")
    same = all(d.sizes["time"] == first.sizes["time"] and np.array_equal(d.time.values, first.time.values) for d in dss)
    out = xr.concat(dss, dim="trajectory", join="exact" if same else "outer", combine_attrs="override",
                    coords="minimal", compat="override")
    if not same:
        avail = np.stack([np.isin(out.time.values, d.time.values) for d in dss])
        out = out.assign_coords(available=(("trajectory", "time"), avail,
                                           {"long_name": "whether the trajectory has this state"}))
    return out.assign_coords(trajectory=("trajectory", np.asarray(numbers), {"long_name": "trajectory number"}))


def open_store(source, *, variables: Sequence[str] | Mapping[str, str] | None = None,
               levels: Sequence[float] | None = None, grid=None, regrid_method: str = "auto",
               time: slice | tuple | None = None, names: Mapping[str, str] | None = None,
               chunks: Mapping | None = None, engine: str | None = None,
               storage_options: Mapping | None = None) -> xr.Dataset:
    """Open a training store lazily in the canonical layout (see the module docstring).

    Parameters
    ----------
    source : str, os.PathLike, list of paths, or xarray.Dataset
        A Zarr store; a folder of trajectory stores ``traj{k}.zarr`` (the jcm
        corpus); a netCDF or GRIB file, a folder or a glob of them (combined by
        time); any fsspec URL (``gs://``, ``s3://``, ``memory://``...); or an opened
        Dataset (for GRIB files with several hypercubes, open them with cfgrib first).
    variables : sequence of str or mapping, optional
        Variables to keep, by short name (``"z"``), ERA5 / WeatherBench2 name
        (``"geopotential"``) or alias; a mapping ``{"t": "air"}`` names the store's
        variable explicitly.  Default: every variable xphyda recognises.
    levels : sequence of float, optional
        Pressure levels in hPa to keep (default all).
    grid : xarray.Dataset or (lat, lon), optional
        Model grid to regrid to (for example :func:`~xphyda.data.model_grid`);
        skipped when the store is already on it.
    regrid_method : {"auto", "conservative", "bilinear"}
        See :func:`~xphyda.data.regrid`.
    time : slice or (start, end), optional
        Keep only these times (label-based, inclusive).
    names : mapping, optional
        Coordinate names that override discovery: keys ``lat``, ``lon``, ``level``, ``time``.
    chunks : mapping, optional
        Dask chunks; default the store's own chunks.
    engine : str, optional
        xarray engine for files (default ``netcdf4`` for netCDF, ``cfgrib`` for GRIB).
    storage_options : mapping, optional
        Passed to fsspec for remote stores (credentials, tokens).

    Returns
    -------
    xarray.Dataset
        Canonical layout, SI units, float32, lazy.

    Raises
    ------
    DataError, VariableError, GridError, CoordinateError, UnitsError
        Each names what was found, what was expected and the fix.

    Examples
    --------
    >>> import xphyda
    >>> ds = open_store(xphyda.tutorial.open_dataset("era5-z-t"), grid=model_grid(32, 64))
    >>> sorted(ds.data_vars), dict(ds.sizes)
    (['t', 'z'], {'time': 1, 'level': 2, 'latitude': 32, 'longitude': 64})
    """
    want = _requested(variables)
    dss, numbers, where = _open_source(source, engine=engine, chunks=chunks, storage_options=storage_options)
    names = dict(names or {})
    canon = []
    for i, raw in enumerate(dss):
        label = where if numbers is None else f"trajectory {numbers[i]} of {where}"
        canon.append(_canonical(raw, dict(want), levels, time, names, label))
    ds = canon[0] if numbers is None else _join_trajectories(canon, numbers)
    note = (f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC xphyda.data.open_store: {where}; "
            f"variables {sorted(ds.data_vars)} in SI")
    if grid is not None and not same_grid(ds, grid):
        ds = regrid(ds, grid, method=regrid_method)
        if ds["latitude"].values[0] < ds["latitude"].values[-1]:
            ds = ds.isel(latitude=slice(None, None, -1))
        note += f", regridded ({regrid_method}) to {ds.sizes['latitude']}x{ds.sizes['longitude']}"
    history = str(ds.attrs.get("history", ""))
    ds.attrs["history"] = (history + "\n" + note).strip() if history else note
    return ds


def write_store(ds: xr.Dataset, path, *, time_chunk: int = 1, storage_options: Mapping | None = None) -> str:
    """Write a canonical Dataset (for example regridded) to Zarr, chunked for random-access training.

    Training reads one state at a time in random order: a store whose chunks hold
    many times (the corpus writes 120 per chunk) makes every sample decode whole
    chunks.  Writing the regridded, SI, float32 channels once with ``time_chunk=1``
    makes sample reads cheap.  A Dataset with a ``trajectory`` dimension is written
    as ``path/traj{k}.zarr``, which :func:`open_store` reads back the same way.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`open_store` (computed chunk by chunk through dask; never all in memory).
    path : str or os.PathLike
        Destination (local or fsspec URL); overwritten.
    time_chunk : int
        States per chunk.

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> import tempfile, xphyda
    >>> ds = open_store(xphyda.tutorial.open_dataset("era5-z-t"), grid=model_grid(16, 32))
    >>> out = write_store(ds, tempfile.mkdtemp() + "/era5.zarr")
    >>> open_store(out)["z"].shape
    (1, 2, 16, 32)
    """
    import warnings

    path = os.fspath(path)
    if "trajectory" in ds.dims:
        for k in ds["trajectory"].values:
            one = ds.sel(trajectory=k, drop=True)
            if "available" in one.coords:
                one = one.isel(time=np.flatnonzero(one["available"].values)).drop_vars("available")
            write_store(one, f"{path.rstrip('/')}/traj{int(k)}.zarr", time_chunk=time_chunk,
                        storage_options=storage_options)
        return path
    chunked = ds.chunk({d: (time_chunk if d == "time" else -1) for d in ds.dims})
    for v in chunked.variables.values():
        v.encoding = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        chunked.to_zarr(path, mode="w", consolidated=True, storage_options=dict(storage_options or {}) or None)
    return path
