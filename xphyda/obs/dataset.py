"""Observation Datasets: their three kinds, and their flattening into observation vectors.

The kind is read from the structure, never from a flag:

``"points"``
    Stations, radiosondes, aircraft: latitude and longitude are coordinates
    along one observation dimension of any name (``station``, ``obs``, ``index``),
    or scalars for a single station.  Optional: a pressure coordinate per
    observation (or a pressure-level dimension, for soundings) and a time
    coordinate (per observation, or a time dimension).
``"gridded"``
    Data on another 1-D latitude-longitude grid (a satellite product, another
    model).  By default (``regrid="auto"``) a product finer than the analysis
    grid is remapped conservatively to it (superobservations, one per analysis
    cell), and a coarser one is observed where it is: each of its grid points is
    a point observation, interpolated from the state by ``H``, so no
    pseudo-observations are invented between its points.  ``regrid="bilinear"``,
    ``"conservative"`` or a regridder object always regrid
    (:func:`xphyda.obs.regridding.regrid`); ``regrid=None`` never does.
``"grid"``
    Data on the analysis grid itself (either latitude order, either longitude
    convention) with NaN where unobserved: the masked setting.

Data variables are observations named like the background's variables, or
recognised through :data:`xphyda.grid.VARIABLES` (CF standard names and common
names); NaN means not observed.  Ancillary variables (named by another
variable's ``ancillary_variables`` attribute, or with a ``standard_error`` /
``status_flag`` standard-name modifier) and non-numeric variables are not
observations.

Examples
--------
>>> import numpy as np, xarray as xr, xphyda
>>> bg = xphyda.tutorial.open_dataset("era5-z-t")
>>> obs = xr.Dataset({"t": ("station", [250.0, 270.0], {"units": "K"})},
...                  coords={"lat": ("station", [45.0, -30.0]), "lon": ("station", [7.0, -60.0]),
...                          "pressure": ("station", [500.0, 850.0], {"units": "hPa"})})
>>> observation_kind(obs, bg)
'points'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import CoordinateError, GridError, ObservationError, UnitsError, VariableError
from ..grid import VARIABLES, Grid, discover_grid, find_coord
from ..units import parse_units, registry
from .uncertainty import observation_error, scale_to_si

__all__ = [
    "KINDS",
    "ObsVariable",
    "match_variable",
    "observation_kind",
    "observation_variables",
    "variable_kind",
]

KINDS = ("points", "gridded", "grid")
"""The three kinds of observation Dataset."""

_ANCILLARY_MODIFIERS = ("standard_error", "status_flag", "number_of_observations", "detection_minimum")


@dataclass(frozen=True, eq=False)
class ObsVariable:
    """One observed variable, flattened: arrays of length ``n`` in SI units.

    ``template`` is the observation DataArray on its own dimensions (after
    regridding for gridded data): diagnostics are reshaped to it.
    """

    name: str
    target: str
    kind: str | None
    template: xr.DataArray
    values: np.ndarray
    sigma: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    pressure: np.ndarray | None
    time: np.ndarray | None
    error_source: str

    @property
    def size(self) -> int:
        return self.values.size


# --------------------------------------------------------------------------- kinds
def _coord(obs, key: str) -> str:
    try:
        return find_coord(obs, key)
    except CoordinateError as exc:
        if "candidate" in str(exc):  # ambiguous; find_coord's own fix (a keyword) does not apply to observations
            found = str(exc).split(", expected")[0]
            raise ObservationError(
                f"the observations' {key} is ambiguous: {found}; expected one per observation. Fix: drop the "
                "others (obs.drop_vars([...])), or for platforms on different dimensions put them on one "
                "dimension (xr.concat([a, b.rename(...)], 'station'))"
            ) from None
        hint = ""
        if isinstance(obs, xr.Dataset):
            like = [
                str(v) for v in obs.data_vars if str(v).lower() in ("lat", "latitude", "lon", "longitude")
            ]
            if like:
                hint = f" The data variables {like} look like coordinates: obs = obs.set_coords({like})."
        raise ObservationError(
            f"observations need latitude and longitude coordinates; {exc}.{hint} For station data, "
            "obs = obs.assign_coords(lat=('station', lats), lon=('station', lons)) with units "
            "'degrees_north' / 'degrees_east'"
        ) from None


def _same_grid(a: Grid, b: Grid) -> bool:
    if a.shape != b.shape:
        return False
    lat_ok = np.allclose(np.sort(a.lat_values), np.sort(b.lat_values), atol=1e-6)
    lon_ok = np.allclose(
        np.sort(np.mod(a.lon_values, 360.0)), np.sort(np.mod(b.lon_values, 360.0)), atol=1e-6
    )
    return bool(lat_ok and lon_ok)


def observation_kind(obs, background) -> str:
    """``"points"``, ``"gridded"`` or ``"grid"`` (see the module notes).

    Raises
    ------
    ObservationError
        When latitude or longitude is missing, or the coordinates are 2-D.
    """
    lat, lon = _coord(obs, "latitude"), _coord(obs, "longitude")
    la, lo = obs[lat], obs[lon]
    if la.ndim == 0 and lo.ndim == 0:
        return "points"
    if la.ndim == 1 and lo.ndim == 1 and la.dims == lo.dims:
        return "points"
    if la.dims == (lat,) and lo.dims == (lon,):
        bg = background if isinstance(background, Grid) else discover_grid(background)
        return "grid" if _same_grid(discover_grid(obs), bg) else "gridded"
    raise ObservationError(
        f"observation coordinates {lat!r} {la.dims} and {lon!r} {lo.dims} are neither per "
        "observation nor a 1-D "
        "lat-lon grid. For a curvilinear grid give the data as points: obs.stack(obs=[...the two "
        "grid dims...])"
    )


def on_analysis_grid(obs: xr.Dataset, grid: Grid) -> xr.Dataset:
    """``obs`` (kind ``"grid"``) reordered onto the analysis grid's exact coordinates and names."""
    src = discover_grid(obs)
    ilat = np.array([int(np.argmin(np.abs(src.lat_values - v))) for v in grid.lat_values])
    diff = np.abs(np.mod(src.lon_values[None, :] - grid.lon_values[:, None] + 180.0, 360.0) - 180.0)
    ilon = diff.argmin(axis=1)
    out = obs.isel({src.lat: ilat, src.lon: ilon}).drop_vars([src.lat, src.lon])
    out = (
        out.rename({src.lat: grid.lat, src.lon: grid.lon})
        if (src.lat, src.lon) != (grid.lat, grid.lon)
        else out
    )
    return out.assign_coords({grid.lat: grid.lat_values, grid.lon: grid.lon_values})


# --------------------------------------------------------------------------- variables
def _alias_keys(name: str, attrs) -> list[str]:
    by_name = [k for k, a in VARIABLES.items() if name in a.names or name.lower() in a.names]
    if by_name:
        return by_name
    sn = attrs.get("standard_name")
    return [k for k, a in VARIABLES.items() if sn and sn in a.standard_names]


def variable_kind(name: str, da: xr.DataArray) -> str | None:
    """Kind of quantity of a variable (from :data:`VARIABLES`), or ``None`` if unknown."""
    keys = _alias_keys(name, da.attrs)
    return VARIABLES[keys[0]].kind if keys else None


def _equivalent(keys) -> set[str]:
    out = set(keys)
    if out & {"z", "gh"}:
        out |= {"z", "gh"}
    return out


def match_variable(name: str, da: xr.DataArray, background: xr.Dataset) -> str:
    """Name of the background variable that observation variable ``name`` observes.

    The same name wins; otherwise the alias table (names first, then CF
    standard names), with geopotential and geopotential height equivalent.

    Raises
    ------
    VariableError
        When no background variable, or more than one, matches.
    """
    if name in background.data_vars:
        return name
    keys = _equivalent(_alias_keys(name, da.attrs))
    found = [str(v) for v, bv in background.data_vars.items() if keys & set(_alias_keys(str(v), bv.attrs))]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise VariableError(
            f"observation variable {name!r} matches several background variables {found}; "
            f"rename it to the one it observes (obs.rename({{{name!r}: {found[0]!r}}}))"
        )
    raise VariableError(
        f"observation variable {name!r} matches no background variable (the background has "
        f"{sorted(map(str, background.data_vars))}). Fix: rename it to the variable it observes, "
        f"e.g. obs.rename({{{name!r}: 't'}}), or leave it out with variables=[...] or obs.drop_vars({name!r})"
    )


def _is_ancillary(name: str, obs: xr.Dataset) -> bool:
    sn = str(obs[name].attrs.get("standard_name", ""))
    if any(sn.endswith(m) for m in _ANCILLARY_MODIFIERS):
        return True
    return any(name in str(v.attrs.get("ancillary_variables", "")).split() for v in obs.data_vars.values())


def _candidates(obs: xr.Dataset, variables: Sequence[str] | None) -> list[str]:
    if variables is not None:
        if isinstance(variables, str):
            variables = [variables]
        missing = [v for v in variables if v not in obs.data_vars]
        if missing:
            raise VariableError(
                f"variables {missing} were requested but are not in the observations; they have "
                f"{sorted(map(str, obs.data_vars))}"
            )
        return list(variables)
    return [
        str(v)
        for v, da in obs.data_vars.items()
        if np.issubdtype(da.dtype, np.number) and not _is_ancillary(str(v), obs)
    ]


# --------------------------------------------------------------------------- flattening
def _pressure_name(obs) -> str | None:
    try:
        return find_coord(obs, "level", required=False)
    except GridError:  # a height or model-level coordinate (station elevation...): no pressure
        return None
    except CoordinateError as exc:
        raise ObservationError(
            f"the observations' pressure is ambiguous: {exc}. Fix: keep one pressure coordinate per "
            "observation (obs.drop_vars(...)) or rename the other"
        ) from None


def _pressure_pa(coord: xr.DataArray, name: str) -> np.ndarray:
    from ..grid import pressure_pa

    return pressure_pa(coord, name, what="observation pressure", holder="obs",
                       fix_not_pressure="observations at heights need pressures",
                       fix_fill="or set fill values (such as 99999) to NaN: those observations are then flagged, "
                       "the others used")


def _broadcast(da: xr.DataArray, coord: str) -> np.ndarray:
    return np.asarray(da[coord].broadcast_like(da).transpose(*da.dims).values).ravel()


def _flatten(
    name: str, da: xr.DataArray, obs: xr.Dataset, background: xr.Dataset, *, lat: str, lon: str, obs_error
) -> ObsVariable:
    target = match_variable(name, da, background)
    kind = variable_kind(target, background[target])
    units = da.attrs.get("units")
    try:
        scale, offset = scale_to_si(units, kind, name=name)
    except UnitsError as exc:
        raise UnitsError(
            f"observation {name!r} cannot be compared with background {target!r}: {exc}"
        ) from None
    if kind is None:  # unknown kind: the background's units must have the same dimensionality
        scale_to_si(background[target].attrs.get("units"), None, name=target)
        ureg = registry()
        a, b = parse_units(units, name=name), parse_units(background[target].attrs.get("units"), name=target)
        if ureg.Quantity(1, a).dimensionality != ureg.Quantity(1, b).dimensionality:
            raise UnitsError(
                f"observation {name!r} has units {units!r} but background {target!r} has "
                f"{background[target].attrs.get('units')!r}; they measure different quantities"
            )
    raw = np.asarray(da.values, dtype=np.float64)
    pname = _pressure_name(da)
    pressure = None
    if pname is not None:
        pa = da[pname].copy(data=_pressure_pa(da[pname], pname))
        pressure = np.asarray(pa.broadcast_like(da).transpose(*da.dims).values, dtype=np.float64).ravel()
    sigma, source = observation_error(
        da, obs, name=name, target=target, kind=kind, obs_error=obs_error, pressure=pressure
    )
    tname = find_coord(da, "time", required=False)
    time = _broadcast(da, tname) if tname is not None else None
    return ObsVariable(
        name=name,
        target=target,
        kind=kind,
        template=da,
        values=(raw * scale + offset).ravel(),
        sigma=sigma.ravel(),
        lat=np.asarray(_broadcast(da, lat), dtype=np.float64),
        lon=np.asarray(_broadcast(da, lon), dtype=np.float64),
        pressure=pressure,
        time=time,
        error_source=source,
    )


def observation_variables(
    background: xr.Dataset,
    obs,
    *,
    grid: Grid | None = None,
    variables=None,
    obs_error=None,
    regrid="auto",
    min_coverage: float = 0.5,
    regrid_backend: str = "auto",
) -> tuple[str, list[ObsVariable]]:
    """Detect the kind of ``obs``, bring it to the analysis grid if gridded, and flatten each variable.

    Returns
    -------
    kind : str
        One of :data:`KINDS`.
    variables : list of ObsVariable

    Raises
    ------
    ObservationError, VariableError, UnitsError
        Missing coordinates, unknown variables, wrong units, all-NaN
        observations, bad errors.
    """
    if isinstance(obs, xr.DataArray):
        if obs.name is None:
            raise ObservationError(
                "an observation DataArray needs a name (the variable it observes): obs.rename('t')"
            )
        obs = obs.to_dataset()
    if not isinstance(obs, xr.Dataset):
        raise ObservationError(
            f"observations must be an xarray Dataset or DataArray; got {type(obs).__name__}"
        )
    grid = grid or discover_grid(background)
    kind = observation_kind(obs, grid)
    names = _candidates(obs, variables)
    if not names:
        raise ObservationError(
            "the observations hold no observed variable (data variables: "
            f"{sorted(map(str, obs.data_vars))}); "
            "observations are numeric data variables named like the background's"
        )
    for n in names:  # fail on unknown variables before any regridding work
        match_variable(n, obs[n], background)
    if kind == "gridded":
        from .regridding import finer
        from .regridding import regrid as _regrid

        if regrid == "auto":  # superobservations from finer products; coarser ones observed where they are
            regrid = "conservative" if finer(discover_grid(obs), grid) else None
        if regrid is not None:
            keep = set(names) | {
                a for n in names for a in str(obs[n].attrs.get("ancillary_variables", "")).split()
            }
            obs = _regrid(
                obs[[v for v in obs.data_vars if v in keep]],
                grid,
                method=regrid,
                min_coverage=min_coverage,
                backend=regrid_backend,
            )
    elif kind == "grid":
        obs = on_analysis_grid(obs, grid)
    lat, lon = _coord(obs, "latitude"), _coord(obs, "longitude")
    out = []
    for n in names:
        da = obs[n]
        if da.size == 0 or not bool(np.isfinite(np.asarray(da.values, dtype=np.float64)).any()):
            raise ObservationError(
                f"observation variable {n!r} is all "
                f"NaN{' after regridding' if kind == 'gridded' else ''}: nothing "
                f"is observed. Fix: drop it (obs.drop_vars({n!r}) or variables=[...])"
                + ("; check that the observation grid overlaps the background's" if kind == "gridded" else "")
            )
        lost = [c for c in (lat, lon) if c not in da.coords]
        if lost:
            raise ObservationError(
                f"observation variable {n!r} (dimensions {da.dims}) has no coordinates {lost}: the observations' "
                f"latitude {lat!r} and longitude {lon!r} lie along {obs[lat].dims}. Expected every observation "
                "variable along the dimension of one latitude and one longitude. Fix: put the platforms on one "
                "dimension, e.g. xr.concat([a, b.rename(flight='station', flat='lat', flon='lon')], 'station') "
                "(the values of a variable a platform lacks are NaN, flagged missing_value), or assimilate them "
                "one after the other"
            )
        out.append(_flatten(n, da, obs, background, lat=lat, lon=lon, obs_error=obs_error))
    return kind, out
