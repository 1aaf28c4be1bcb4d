"""Discover the grid and the variables of a Dataset, by CF conventions and by name.

Coordinates are found by a table of criteria (CF ``standard_name``, ``units``,
``axis``, and the names ERA5, WeatherBench2 and cfgrib use), with cf-xarray's
own CF lookup as the first source.  A lookup must find exactly one candidate;
otherwise it raises :class:`~xphyda.errors.CoordinateError` naming what it
found and the keyword that settles it.

Variables are found through the one alias table :data:`VARIABLES` (standard
name first, then ERA5 short names and common alternatives), with keyword
overrides such as ``u="uwnd"``.

Examples
--------
>>> import numpy as np, xarray as xr
>>> ds = xr.Dataset(coords={"latitude": ("latitude", [10.0, 0.0, -10.0]),
...                         "longitude": ("longitude", [0.0, 120.0, 240.0])})
>>> g = discover_grid(ds)
>>> g.lat, g.lon, g.lat_descending, g.periodic
('latitude', 'longitude', True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .errors import CoordinateError, GridError, UnitsError, VariableError

__all__ = ["COORDINATES", "VARIABLES", "Grid", "discover_grid", "find_coord", "find_variable"]


@dataclass(frozen=True)
class CoordCriteria:
    standard_names: tuple[str, ...]
    units: tuple[str, ...]
    axis: str | None
    names: tuple[str, ...]


COORDINATES: dict[str, CoordCriteria] = {
    "latitude": CoordCriteria(
        ("latitude", "grid_latitude"),
        ("degrees_north", "degree_north", "degree_N", "degrees_N", "degreeN", "degreesN"),
        "Y",
        ("latitude", "lat", "nav_lat", "y_lat"),
    ),
    "longitude": CoordCriteria(
        ("longitude", "grid_longitude"),
        ("degrees_east", "degree_east", "degree_E", "degrees_E", "degreeE", "degreesE"),
        "X",
        ("longitude", "lon", "nav_lon", "x_lon"),
    ),
    "level": CoordCriteria(
        ("air_pressure",),
        (),
        "Z",
        ("level", "pressure_level", "isobaricInhPa", "plev", "lev", "pressure", "isobaric"),
    ),
    "time": CoordCriteria(("time",), (), "T", ("time", "valid_time")),
    "member": CoordCriteria(("realization",), (), None, ("number", "member", "realization", "ensemble")),
}

# Vertical coordinates that are not pressure: recognised only to say so clearly.
_MODEL_LEVEL_HINTS = (
    "atmosphere_hybrid_sigma_pressure_coordinate",
    "atmosphere_sigma_coordinate",
    "atmosphere_hybrid_height_coordinate",
    "model_level_number",
    "hybrid",
    "model_level",
    "sigma",
    "height",
    "altitude",
)


@dataclass(frozen=True)
class VariableAlias:
    """How a state variable is recognised and what kind of quantity it is."""

    standard_names: tuple[str, ...]
    names: tuple[str, ...]
    kind: str
    long_name: str


VARIABLES: dict[str, VariableAlias] = {
    "z": VariableAlias(("geopotential",), ("z", "Z", "geopotential", "phi"), "geopotential", "geopotential"),
    "gh": VariableAlias(
        ("geopotential_height",), ("gh", "hgt", "zg", "geopotential_height"), "geopotential", "geopotential height"
    ),
    "t": VariableAlias(("air_temperature",), ("t", "T", "ta", "temperature", "air"), "temperature", "temperature"),
    "u": VariableAlias(("eastward_wind",), ("u", "U", "ua", "uwnd", "u_wind", "u_component_of_wind"), "speed", "eastward wind"),
    "v": VariableAlias(("northward_wind",), ("v", "V", "va", "vwnd", "v_wind", "v_component_of_wind"), "speed", "northward wind"),
    "w": VariableAlias(
        ("lagrangian_tendency_of_air_pressure",),
        ("w", "omega", "wap", "vertical_velocity"),
        "omega",
        "vertical velocity (omega)",
    ),
    "q": VariableAlias(("specific_humidity",), ("q", "hus", "shum", "specific_humidity"), "specific_humidity", "specific humidity"),
    "r": VariableAlias(("relative_humidity",), ("r", "hur", "rh", "rhum", "relative_humidity"), "relative_humidity", "relative humidity"),
    "msl": VariableAlias(
        ("air_pressure_at_mean_sea_level", "air_pressure_at_sea_level"),
        ("msl", "mslp", "prmsl", "slp", "mean_sea_level_pressure"),
        "pressure",
        "mean sea-level pressure",
    ),
    "sp": VariableAlias(("surface_air_pressure",), ("sp", "ps", "pres", "surface_pressure"), "pressure", "surface pressure"),
    "t2m": VariableAlias((), ("t2m", "2t", "tas", "2m_temperature"), "temperature", "2-metre temperature"),
    "u10": VariableAlias((), ("u10", "10u", "uas", "10m_u_component_of_wind"), "speed", "10-metre eastward wind"),
    "v10": VariableAlias((), ("v10", "10v", "vas", "10m_v_component_of_wind"), "speed", "10-metre northward wind"),
}
"""The alias table: key -> (CF standard names, names, kind of quantity, long name)."""


@dataclass(frozen=True, eq=False)
class Grid:
    """What xphyda knows about a Dataset's grid (names, orientation, levels).

    Build it with :func:`discover_grid`; it is immutable and holds read-only
    numpy copies of the coordinate values (``level_pa`` in Pa).
    """

    lat: str
    lon: str
    level: str | None = None
    time: str | None = None
    member: str | None = None
    lat_values: np.ndarray = field(default=None, repr=False)
    lon_values: np.ndarray = field(default=None, repr=False)
    level_pa: np.ndarray | None = field(default=None, repr=False)

    @property
    def lat_descending(self) -> bool:
        return bool(self.lat_values[0] > self.lat_values[-1])

    @property
    def lon_convention(self) -> str:
        """``"0..360"`` or ``"-180..180"``."""
        return "-180..180" if float(np.min(self.lon_values)) < 0 else "0..360"

    @property
    def periodic(self) -> bool:
        return self.sphere().periodic

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat_values.size, self.lon_values.size)

    def sphere(self, radius: float | None = None):
        """The :class:`~xphyda.physics.operators.SphereGrid` of this grid."""
        from .physics.operators import SphereGrid

        kwargs = {} if radius is None else {"radius": radius}
        return SphereGrid(self.lat_values, self.lon_values, **kwargs)


# --------------------------------------------------------------------------- coordinates
def _cf_candidates(obj, key: str) -> list[str]:
    try:
        import cf_xarray  # noqa: F401  (registers the .cf accessor)
    except ImportError:  # pragma: no cover - cf-xarray is a dependency
        return []
    try:
        if key in ("latitude", "longitude", "time"):
            found = obj.cf.coordinates.get(key, [])
        elif key == "level":
            found = obj.cf.axes.get("Z", []) + obj.cf.coordinates.get("vertical", [])
        else:
            found = obj.cf.standard_names.get("realization", [])
    except Exception:  # cf-xarray can fail on unusual attributes; fall back to the table
        return []
    return [str(n) for n in found]


def _is_pressure_units(units) -> bool:
    if not units:
        return False
    from .units import registry

    try:
        ureg = registry()
        return ureg.Quantity(1, ureg.parse_units(str(units))).dimensionality == ureg.Quantity(1, "Pa").dimensionality
    except Exception:
        return False


def _matches(var: xr.DataArray, name: str, crit: CoordCriteria, key: str) -> bool:
    attrs = var.attrs
    if attrs.get("standard_name") in crit.standard_names:
        return True
    if crit.units and attrs.get("units") in crit.units:
        return True
    if name in crit.names or name.lower() in crit.names:
        return True
    if key == "level" and _is_pressure_units(attrs.get("units")) and var.ndim == 1 and name in var.dims:
        return True
    return bool(crit.axis and attrs.get("axis") == crit.axis and key != "level")


def _rank(obj, name: str, crit: CoordCriteria) -> int:
    """How strongly a candidate matches, for the optional keys only (lower is better)."""
    var = obj[name]
    if name in obj.dims:
        return 0
    if var.attrs.get("standard_name") in crit.standard_names:
        return 1
    return 2


def _is_model_level(var: xr.DataArray, name: str) -> bool:
    """A vertical coordinate that is not pressure: hybrid, sigma, model level number, height..."""
    sn = str(var.attrs.get("standard_name", ""))
    if sn in _MODEL_LEVEL_HINTS or name in _MODEL_LEVEL_HINTS:
        return True
    units = var.attrs.get("units")
    return bool(units) and sn != "air_pressure" and not _is_pressure_units(units)


def find_coord(obj, key: str, override: str | None = None, *, required: bool = True) -> str | None:
    """Name of the one coordinate of kind ``key`` (``latitude``, ``longitude``, ``level``, ``time``, ``member``).

    A coordinate is a candidate when its CF ``standard_name``, ``units``, ``axis``
    or its name matches :data:`COORDINATES`.  Dimension coordinates win over other
    coordinates; for the optional ``time`` and ``member`` a CF ``standard_name``
    settles a remaining tie (cfgrib's ``valid_time`` over ``time``, the forecast
    reference time).  Vertical coordinates that are not pressure (hybrid, sigma,
    height) are never taken as pressure levels.

    Raises
    ------
    CoordinateError
        If none (and ``required``) or several candidates are found.
    GridError
        If the only latitude/longitude candidates are 2-D, or the only vertical
        coordinate is not pressure while pressure levels are required.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset(coords={"isobaricInhPa": ("isobaricInhPa", [850, 500], {"units": "hPa"})})
    >>> find_coord(ds, "level")
    'isobaricInhPa'
    """
    if override is not None:
        if not isinstance(override, str) or override not in obj.coords:
            raise CoordinateError(
                f"{key} coordinate {override!r} was requested but is not a coordinate of the data; "
                f"its coordinates are {sorted(map(str, obj.coords))}"
                + (f" (dimension {override!r} has no coordinate values: assign them with "
                   f"ds.assign_coords({override}=...))" if isinstance(override, str) and override in obj.dims else "")
            )
        return override
    crit = COORDINATES[key]
    found = {n for n in _cf_candidates(obj, key) if n in obj.coords}
    for name, var in obj.coords.items():
        if _matches(var, str(name), crit, key):
            found.add(str(name))
    multi = sorted(n for n in found if obj[n].ndim > 1)
    found = {n for n in found if obj[n].ndim <= 1}
    if key in ("latitude", "longitude") and multi and not found:
        raise GridError(
            f"{key} coordinate {multi[0]!r} is {obj[multi[0]].ndim}-D (dims {obj[multi[0]].dims}); xphyda needs "
            "a 1-D latitude and longitude (a regular or Gaussian grid). Fix: regrid the data first"
        )
    if key == "level":
        rejected = sorted(n for n in found if _is_model_level(obj[n], n))
        found -= set(rejected)
        if not found and rejected and required:
            _reject_model_levels(obj, rejected[0])
    # prefer dimension coordinates when both exist
    dims = {n for n in found if n in obj.dims}
    if dims:
        found = dims
    if key in ("time", "member") and len(found) > 1:
        best = min(_rank(obj, n, crit) for n in found)
        found = {n for n in found if _rank(obj, n, crit) == best}
    if key == "level" and not found and required:
        _reject_model_levels(obj)
    if len(found) > 1:
        example = {"latitude": "lat", "longitude": "lon"}.get(key, key)
        raise CoordinateError(
            f"found {len(found)} candidate {key} coordinates {sorted(found)}, expected exactly one. "
            f"Fix: name the one to use, for example {example}={min(found)!r}, "
            "or drop the other with ds.drop_vars(...)"
        )
    if not found:
        if required:
            raise CoordinateError(
                f"no {key} coordinate found; looked for CF standard_name {crit.standard_names}, "
                f"units {crit.units or 'of pressure' if key == 'level' else crit.units}, "
                f"or a name in {crit.names}; the data has coordinates {sorted(map(str, obj.coords))}. "
                f"Fix: add CF attributes (ds['x'].attrs['standard_name'] = {crit.standard_names[0]!r}) "
                f"or pass the name by keyword"
            )
        return None
    return found.pop()


def _reject_model_levels(obj, name: str | None = None) -> None:
    """Raise :class:`GridError` for ``name``, or for any coordinate that looks like model levels."""
    if name is None:
        hinted = [
            str(n) for n, v in obj.coords.items()
            if str(v.attrs.get("standard_name", "")) in _MODEL_LEVEL_HINTS or str(n) in _MODEL_LEVEL_HINTS
        ]
        if not hinted:
            return
        name = hinted[0]
    var = obj[name]
    raise GridError(
        f"vertical coordinate {name!r} is not pressure (standard_name {var.attrs.get('standard_name')!r}, "
        f"units {var.attrs.get('units')!r}): it looks like model levels, height or another vertical "
        "coordinate, but xphyda needs pressure levels. Fix: interpolate to pressure levels first "
        "(for example metpy.interpolate.log_interpolate_1d), or name the pressure coordinate with level='...'"
    )


def pressure_pa(var: xr.DataArray, name: str, *, what: str, holder: str, fix_not_pressure: str,
                fix_fill: str) -> np.ndarray:
    """The values of pressure coordinate ``var`` in Pa (an ERA5 / cfgrib name without units is in hPa).

    Raises :class:`~xphyda.errors.UnitsError` for units that are not a pressure, and for values above
    1100 hPa (pascals labelled hPa, or an undecoded fill value); ``what`` and ``holder`` name the coordinate
    and its Dataset in the message (``"vertical coordinate"``, ``"ds"``).
    """
    from .units import parse_units, registry

    units = var.attrs.get("units")
    if units is None and name in ("isobaricInhPa", "level", "pressure_level"):
        units = "hPa"  # ERA5 / cfgrib convention, documented
    unit = parse_units(units, name=name)
    ureg = registry()
    if ureg.Quantity(1, unit).dimensionality != ureg.Quantity(1, "Pa").dimensionality:
        raise UnitsError(
            f"{what} {name!r} has units {units!r}, expected a pressure such as 'hPa' or 'Pa'. "
            f"Fix: {holder}[{name!r}].attrs['units'] = 'hPa' if these are pressures, {fix_not_pressure}"
        )
    values = ureg.Quantity(np.asarray(var.values, dtype=np.float64), unit).m_as("Pa")
    if np.any(values > 110000.0):
        said = "no units" if var.attrs.get("units") is None else f"units {units!r}"
        raise UnitsError(
            f"{what} {name!r} has {said} and values up to {np.nanmax(values) / 100:g} hPa; expected pressures of "
            f"at most 1100 hPa. Fix: {holder}[{name!r}].attrs['units'] = 'Pa' if they are in pascals, {fix_fill}"
        )
    return values


def _level_pa(obj, name: str) -> np.ndarray:
    var = obj[name]
    values = np.atleast_1d(pressure_pa(var, name, what="vertical coordinate", holder="ds",
                                       fix_not_pressure="or interpolate to pressure levels",
                                       fix_fill="or decode a fill value such as 99999 to NaN (xr.decode_cf)"))
    if values.size > 1:
        d = np.diff(values)
        if not (np.all(d > 0) or np.all(d < 0)):
            raise GridError(
                f"pressure coordinate {name!r} must be strictly monotonic without duplicates; "
                f"found {np.asarray(var.values)}. Fix: ds.sortby({name!r}) and drop duplicates"
            )
    if np.any(values <= 0):
        raise GridError(
            f"pressure coordinate {name!r} has non-positive values {np.asarray(var.values)}; pressure levels must "
            f"be > 0. Fix: drop those levels (ds.sel({name}=ds[{name!r}] > 0)), or set the right units "
            f"(ds[{name!r}].attrs['units'] = 'hPa')"
        )
    return values


def _check_horizontal(obj, lat: str, lon: str) -> tuple[np.ndarray, np.ndarray]:
    latv = np.asarray(obj[lat].values, dtype=np.float64)
    lonv = np.asarray(obj[lon].values, dtype=np.float64)
    if latv.ndim != 1 or lonv.ndim != 1:
        raise GridError(
            f"latitude {lat!r} and longitude {lon!r} must be 1-D (a regular or Gaussian lat-lon grid); "
            f"found {latv.ndim}-D and {lonv.ndim}-D. Regrid curvilinear data first"
        )
    for name, vals, lim in ((lat, latv, 90.0), (lon, lonv, 360.0)):
        if vals.size == 0 or not np.all(np.isfinite(vals)):
            raise GridError(
                f"coordinate {name!r} is empty or has NaN values (found {vals.size} values, "
                f"{int(np.sum(~np.isfinite(vals)))} not finite); expected finite degrees. "
                f"Fix: keep the finite points, ds.isel({name}=np.isfinite(ds[{name!r}].values)), or assign the values"
            )
        if vals.size > 1:
            d = np.diff(vals)
            if np.any(d == 0):
                raise GridError(f"coordinate {name!r} has duplicated values; drop them (ds.drop_duplicates({name!r}))")
            if not (np.all(d > 0) or np.all(d < 0)):
                raise GridError(
                    f"coordinate {name!r} is not sorted; found {vals[:6]}... Fix: ds.sortby({name!r})"
                )
    if np.any(np.abs(latv) > 90):
        raise GridError(
            f"latitude {lat!r} has values outside [-90, 90]: min {latv.min()}, max {latv.max()}. "
            f"Fix: check that {lat!r} holds latitudes in degrees (not radians or a grid index), "
            f"or name the latitude coordinate with lat='...'"
        )
    if lonv.min() < -180 - 1e-9 or lonv.max() > 360 + 1e-9:
        raise GridError(
            f"longitude {lon!r} has values outside [-180, 360]: min {lonv.min()}, max {lonv.max()}. "
            f"Fix: wrap it into one convention, ds.assign_coords({lon}=ds[{lon!r}] % 360).sortby({lon!r})"
        )
    if lonv.size > 1 and np.all(np.diff(lonv) < 0):
        raise GridError(f"longitude {lon!r} is descending; expected ascending. Fix: ds.sortby({lon!r})")
    if lonv.size > 2 and abs(abs(lonv[-1] - lonv[0]) - 360.0) < 1e-6:
        raise GridError(
            f"longitude {lon!r} repeats the seam: {lonv[0]} and {lonv[-1]} are the same meridian. "
            f"Fix: drop the last column, ds.isel({lon}=slice(None, -1))"
        )
    if lonv.min() < 0 and lonv.max() > 180:
        raise GridError(
            f"longitude {lon!r} mixes conventions: values from {lonv.min()} to {lonv.max()} "
            "(both negative and above 180). Fix: convert to one convention, e.g. "
            f"ds.assign_coords({lon}=ds[{lon!r}] % 360).sortby({lon!r})"
        )
    return latv, lonv


def discover_grid(obj, *, lat=None, lon=None, level=None, time=None, member=None, need_levels: bool = False) -> Grid:
    """Find the coordinates of ``obj`` and check them.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
    lat, lon, level, time, member : str, optional
        Names that override discovery.
    need_levels : bool
        Raise if no pressure-level coordinate is found.

    Returns
    -------
    Grid
    """
    lat = find_coord(obj, "latitude", lat)
    lon = find_coord(obj, "longitude", lon)
    level = find_coord(obj, "level", level, required=need_levels)
    time = find_coord(obj, "time", time, required=False)
    member = find_coord(obj, "member", member, required=False)
    for key, name in (("latitude", lat), ("longitude", lon), ("level", level)):
        if name is not None and obj[name].ndim == 1 and obj[name].dims[0] != name:
            dim = obj[name].dims[0]
            raise CoordinateError(
                f"{key} coordinate {name!r} lies along dimension {dim!r} but is not a dimension itself. "
                f"Fix: ds.swap_dims({dim}={name!r})"
            )
    latv, lonv = _check_horizontal(obj, lat, lon)
    level_pa = _level_pa(obj, level) if level is not None else None
    frozen = []
    for values in (latv, lonv, level_pa):  # copies, read-only like the Grid itself
        if values is not None:
            values = np.array(values, dtype=np.float64)
            values.flags.writeable = False
        frozen.append(values)
    return Grid(lat, lon, level, time, member, *frozen)


# --------------------------------------------------------------------------- variables
def find_variable(ds: xr.Dataset, key: str, override: str | None = None, *, required: bool = True) -> str | None:
    """Name of the data variable for ``key`` of :data:`VARIABLES` (``"u"``, ``"t"``, ``"z"``...).

    ``key="z"`` also finds geopotential height (``gh``), which the units boundary
    converts to geopotential.

    Raises
    ------
    VariableError
        When the variable is missing (and ``required``) or ambiguous, or the
        override does not exist.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"air": ("x", [280.0], {"standard_name": "air_temperature"})})
    >>> find_variable(ds, "t")
    'air'
    """
    if override is not None:
        if override not in ds.data_vars:
            raise VariableError(
                f"variable {override!r} was given for {key!r} but is not in the dataset; "
                f"its variables are {sorted(map(str, ds.data_vars))}"
            )
        return override
    keys = [key] + (["gh"] if key == "z" else [])
    for k in keys:
        alias = VARIABLES[k]
        by_sn = [str(n) for n, v in ds.data_vars.items() if v.attrs.get("standard_name") in alias.standard_names]
        # t2m is also air_temperature: a variable named as another key's alias is not this key's
        others = {n for k2, a in VARIABLES.items() if k2 not in keys for n in a.names}
        by_sn = [n for n in by_sn if n not in others or n in alias.names]
        if len(by_sn) > 1:
            raise VariableError(
                f"found {len(by_sn)} variables with standard_name {alias.standard_names[0]!r}: {by_sn}; "
                f"expected one. Fix: pass the one to use by keyword, e.g. {key}={by_sn[0]!r}"
            )
        if by_sn:
            return by_sn[0]
        by_name = [n for n in alias.names if n in ds.data_vars]
        if by_name:
            return by_name[0]
    if required:
        alias = VARIABLES[key]
        raise VariableError(
            f"no variable for {key!r} ({alias.long_name}) found: looked for standard_name "
            f"{alias.standard_names} and names {alias.names}"
            + (f" and {VARIABLES['gh'].names}" if key == "z" else "")
            + f"; the dataset has {sorted(map(str, ds.data_vars))}. "
            f"Fix: pass it by keyword, e.g. {key}='my_name'"
        )
    return None


def _show(v) -> str:
    """A coordinate value for a message: times to the second, durations as such, numbers with %g."""
    v = np.asarray(v)
    if v.dtype.kind == "M":
        return str(v.astype("datetime64[s]"))
    if v.dtype.kind == "m":
        import pandas as pd

        return str(pd.Timedelta(int(v.astype("timedelta64[ns]").astype(np.int64)), unit="ns"))
    if v.dtype.kind in "iuf":
        return f"{float(v):g}"
    return str(v)


def require_finite(da: xr.DataArray, name: str, *, fix: str) -> None:
    """Raise :class:`~xphyda.errors.DataError` if ``da`` holds NaN or infinite values, saying where they are.

    An analysis spreads the background over its neighbours, so a single missing
    background value would spoil a region (optimal interpolation) or the whole
    state (the diffusion model); xphyda refuses it instead.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray([[1.0, np.nan], [2.0, 3.0]], dims=("lat", "lon"),
    ...                   coords={"lat": [10.0, 20.0], "lon": [0.0, 5.0]})
    >>> require_finite(da, "t", fix="fill them")
    Traceback (most recent call last):
        ...
    xphyda.errors.DataError: background variable 't' has 1 non-finite value (1 NaN, 0 infinite) of 4, at lat 10, lon 5; expected finite values everywhere: an analysis spreads a missing background value over its neighbours. Fix: fill them
    """
    from .errors import DataError

    values = np.asarray(da.values)
    if not np.issubdtype(values.dtype, np.floating) and not np.issubdtype(values.dtype, np.complexfloating):
        return
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    where = []
    for axis, dim in enumerate(da.dims):
        hit = np.flatnonzero(bad.any(axis=tuple(a for a in range(bad.ndim) if a != axis)))
        if dim in da.coords and da[dim].ndim == 1:
            c = np.asarray(da[dim].values)[hit]
            lo, hi = _show(c.min()), _show(c.max())
        else:
            dim, lo, hi = f"{dim} index", str(hit.min()), str(hit.max())
        where.append(f"{dim} {lo}" if lo == hi else f"{dim} {lo} to {hi}")
    for name_, c in da.coords.items():  # a selected level, time or step (a scalar coordinate) is part of the place
        v = np.asarray(c.values)
        if v.ndim == 0 and v.dtype.kind in "iufmM":
            where.append(f"{name_} {_show(v)}")
    n, nan = int(bad.sum()), int(np.isnan(values).sum())
    raise DataError(
        f"background variable {name!r} has {n} non-finite value{'s' if n > 1 else ''} ({nan} NaN, {n - nan} "
        f"infinite) of {values.size}, at {', '.join(where)}; expected finite values everywhere: an analysis "
        f"spreads a missing background value over its neighbours. Fix: {fix}"
    )
