"""Find and open training stores: file formats, fsspec URLs, trajectory folders, variable names.

:func:`~xphyda.data.store.open_store` builds on these; they open lazily and do
not interpret the data (that is the store module's plan).

Examples
--------
>>> resolve_variable("geopotential"), resolve_variable("2m_temperature")
('z', 't2m')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..errors import DataError, VariableError
from ..grid import VARIABLES
from .channels import LEVEL_VARIABLES, SURFACE_VARIABLES

__all__ = ["GRIB_SUFFIXES", "NETCDF_SUFFIXES", "open_source", "requested_variables", "resolve_variable"]

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
GRIB_SUFFIXES = (".grib", ".grib2", ".grb", ".grb2")
_NETCDF, _GRIB = NETCDF_SUFFIXES, GRIB_SUFFIXES
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
        if (
            name in alias.names
            or name.lower() in (n.lower() for n in alias.names)
            or name in alias.standard_names
        ):
            return "z" if key == "gh" else key
    raise VariableError(
        f"unknown variable name {name!r}: it is neither a short name {list(LEVEL_VARIABLES + SURFACE_VARIABLES)} "
        "nor an ERA5 / WeatherBench2 / CF name xphyda knows. "
        f"Fix: map it explicitly, e.g. variables={{'t': {name!r}}} (short name -> name in the store)"
    )


def requested_variables(variables) -> dict[str, str | None]:
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
    """Open netCDF / GRIB files (``chunks=None``: lazily indexed without dask, one file only).

    Parameters
    ----------
    paths : list of str
        Files (local paths, or URLs of ``protocol``).
    engine : str, optional
        xarray engine (default ``netcdf4``).
    chunks : mapping, optional
        Dask chunks (``None``: no dask; several files always use dask).
    protocol : str
        fsspec protocol of ``paths``.
    storage_options : mapping, optional
        fsspec options of remote files.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    DataError
        If a file cannot be read by the engine (not netCDF / GRIB, empty, truncated...):
        names the file and the formats a store may have, instead of the library's message alone.
    """
    given = list(paths)
    if protocol not in ("file", "local"):
        import fsspec

        # netCDF libraries need a local file: fetch a cached local copy (picklable, no open handles)
        paths = [fsspec.open_local(f"simplecache::{p}", **{protocol: storage_options or {}}) for p in paths]
    kwargs = {"engine": engine or "netcdf4"}
    if kwargs["engine"] == "cfgrib":
        kwargs["backend_kwargs"] = {"indexpath": ""}
    try:
        if len(paths) == 1:
            return xr.open_dataset(paths[0], chunks=chunks, **kwargs)
        return xr.open_mfdataset(
            sorted(paths),
            combine="by_coords",
            data_vars="minimal",
            coords="minimal",
            compat="override",
            chunks=chunks if chunks is not None else {},
            **kwargs,
        )
    except (OSError, EOFError) as exc:  # the netCDF / HDF5 / eccodes libraries' "not my format", "truncated"
        raise _unreadable(given, paths, kwargs["engine"], exc) from exc


def _unreadable(given: list[str], local: list[str], engine: str, exc: BaseException) -> DataError:
    """The DataError for files the engine cannot read: which file, what a store may be, and the fix."""
    bad = getattr(exc, "filename", None)
    if bad is not None and os.fspath(bad) in local:
        bad = given[local.index(os.fspath(bad))]
    if bad is None:
        bad = given[0] if len(given) == 1 else f"one of {len(given)} files ({given[0]!r} ...)"
    what = "GRIB" if engine == "cfgrib" else "netCDF" if engine in ("netcdf4", "h5netcdf", "scipy") else engine
    check = "`grib_ls FILE`" if what == "GRIB" else "`ncdump -h FILE`"
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return DataError(
        f"could not read {bad if bad.startswith('one of') else repr(bad)} as {what} (engine {engine!r}: "
        f"{reason}). Expected a netCDF (.nc) or GRIB file, a Zarr store (folder), or a corpus folder of "
        f"traj{{k}}.zarr stores. Fix: check that the file is complete and really {what} ({check}; an "
        "interrupted download or an HTML error page saved under that name fails like this), re-create or "
        "re-download it, or convert it to netCDF or Zarr"
    )


def _open_zarr(url: str, chunks, storage_options) -> xr.Dataset:
    try:
        return xr.open_zarr(url, chunks=chunks, storage_options=storage_options or None)
    except ValueError as exc:
        if "conflicting sizes" not in str(exc):
            raise
        raise DataError(
            f"the Zarr store {url!r} has variables of different lengths ({exc}); it is being written, or a run "
            "was interrupted in the middle of a chunk. Fix: wait for the writer to finish, or rerun "
            "`phyda simulate` with the same arguments (it resumes and truncates the partial chunk)"
        ) from None


def open_source(source, *, engine, chunks, storage_options) -> tuple[list[xr.Dataset], list[int] | None, str]:
    """Open ``source`` lazily: ``(datasets, trajectory numbers or None, description)``.

    ``chunks=None`` opens without dask (lazily indexed backend arrays: reading a few
    states touches only their chunks); a mapping opens with dask.
    """
    if isinstance(source, xr.Dataset):
        if "trajectory" in source.dims:  # a canonical multi-trajectory Dataset (from open_store)
            numbers = [int(k) for k in source["trajectory"].values]
            parts = []
            for i in range(len(numbers)):
                one = source.isel(trajectory=i, drop=True)
                if "available" in one.coords:
                    one = one.isel(time=np.flatnonzero(one["available"].values)).drop_vars("available")
                parts.append(one)
            return parts, numbers, "a Dataset of trajectories"
        return [source], None, "a Dataset"
    if isinstance(source, xr.DataArray):
        return [source.to_dataset(name=source.name or "state")], None, "an in-memory DataArray"
    import fsspec

    so = dict(storage_options or {})
    if isinstance(source, (list, tuple)):
        paths = [os.fspath(p) for p in source]
        fs, _ = fsspec.core.url_to_fs(paths[0], **so)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        if all(p.rstrip("/").endswith(".zarr") for p in paths):
            return (
                [_open_zarr(p, chunks, so) for p in paths],
                list(range(len(paths))),
                f"{len(paths)} Zarr stores",
            )
        grib = all(p.lower().endswith(_GRIB) for p in paths)
        return (
            [_open_netcdf(paths, engine or ("cfgrib" if grib else None), chunks, protocol, so)],
            None,
            f"{len(paths)} files",
        )
    text = os.fspath(source)
    fs, root = fsspec.core.url_to_fs(text, **so)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    if any(c in text for c in "*?["):
        found = sorted(prefix + p for p in fs.glob(root))
        if not found:
            raise DataError(f"no files match {text!r}. Fix: check the pattern (for example 'era5/*.nc')")
        return open_source(found, engine=engine, chunks=chunks, storage_options=so)
    if not fs.exists(root):
        raise DataError(
            f"no store at {text!r}: the path does not exist; expected a Zarr store, a corpus folder of "
            "traj{k}.zarr stores, or netCDF / GRIB files. Fix: check the path or URL"
        )
    if fs.isdir(root):
        entries = [p.rstrip("/") for p in fs.ls(root, detail=False)]
        base = {p.rsplit("/", 1)[-1] for p in entries}
        if base & {"zarr.json", ".zgroup", ".zmetadata"}:
            return [_open_zarr(text, chunks, so)], None, text
        trajs = sorted(((int(m.group(1)), p) for p in entries if (m := _TRAJ.search(p))), key=lambda t: t[0])
        if trajs:
            dss = [_open_zarr(prefix + p, chunks, so) for _, p in trajs]
            return dss, [k for k, _ in trajs], text
        files = sorted(prefix + p for p in entries if p.lower().endswith(_NETCDF + _GRIB))
        if files:
            return open_source(files, engine=engine, chunks=chunks, storage_options=so)
        raise DataError(
            f"{text!r} is a folder but not a Zarr store, and holds no 'traj*.zarr' trajectories nor netCDF / GRIB "
            f"files; it has {sorted(base)[:10]}. Fix: point at the Zarr store itself, or at a folder of "
            "traj{k}.zarr stores or of *.nc files"
        )
    lower = text.lower()
    if lower.endswith(_NETCDF + _GRIB) or engine is not None:
        grib = lower.endswith(_GRIB)
        return (
            [
                _open_netcdf(
                    [prefix + root if prefix else root],
                    engine or ("cfgrib" if grib else None),
                    chunks,
                    protocol,
                    so,
                )
            ],
            None,
            text,
        )
    raise DataError(
        f"cannot tell the format of {text!r}: expected a Zarr store (folder), a netCDF file ({', '.join(_NETCDF)}) "
        f"or a GRIB file ({', '.join(_GRIB)}). Fix: pass engine='netcdf4' / 'cfgrib', or open it yourself with "
        "xarray and pass the Dataset"
    )
