"""From a background and observations to arrays: ``x_b``, ``y``, ``H``, ``R`` and first flags, per variable.

This is what every analysis method consumes (optimal interpolation now,
diffusion later).  For each observed background variable (a *target*):

* ``background``: SI values shaped ``(time, level, lat, lon)`` (singleton axes
  where the variable has no time or level);
* ``H``: the sparse operator of :mod:`xphyda.obs.operator` from one time of the
  state (``level * lat * lon``) to all observations of that variable;
* ``y`` and ``sigma_o`` in SI, ``time_index`` (which background time each
  observation belongs to) and ``flags`` (:data:`xphyda.obs.qc.FLAGS`) after the
  checks that do not need an error model: missing values, outside the grid,
  outside the time window, duplicates.

Examples
--------
>>> import numpy as np, xarray as xr, xphyda
>>> bg = xphyda.tutorial.open_dataset("era5-z-t")
>>> obs = xr.Dataset({"t": ("station", [250.0, np.nan], {"units": "K"})},
...                  coords={"lat": ("station", [45.0, 10.0]), "lon": ("station", [7.0, 20.0]),
...                          "pressure": ("station", [500.0, 850.0], {"units": "hPa"})})
>>> problem = build_problem(bg, obs)
>>> t = problem.targets["t"]
>>> t.H.shape, t.flags.tolist()
((2, 130320), [0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import xarray as xr

from ..errors import GridError, ObservationError
from ..grid import Grid, discover_grid
from .dataset import ObsVariable, observation_variables, variable_kind
from .operator import build_operator
from .qc import FLAGS, duplicates, match_times
from .uncertainty import scale_to_si

__all__ = ["ObsProblem", "Target", "build_problem"]


@dataclass(eq=False)
class Target:
    """Observations of one background variable, as arrays (SI units)."""

    name: str
    kind: str | None
    units: str
    scale: float
    offset: float
    dims: tuple[str, ...]
    background: np.ndarray
    levels_pa: np.ndarray | None
    H: sp.csr_matrix
    y: np.ndarray
    sigma_o: np.ndarray
    time_index: np.ndarray
    flags: np.ndarray
    pieces: list[tuple[ObsVariable, slice]] = field(default_factory=list)

    @property
    def nlev(self) -> int:
        return self.background.shape[1]

    def level_weights(self) -> np.ndarray:
        """``(n_obs, nlev)``: how much of each observation's weight falls on each level."""
        nh = self.background.shape[2] * self.background.shape[3]
        ind = sp.csr_matrix(
            (np.ones(self.nlev * nh), (np.arange(self.nlev * nh), np.repeat(np.arange(self.nlev), nh))),
            shape=(self.nlev * nh, self.nlev),
        )
        return np.asarray((self.H @ ind).todense())

    def from_si(self, values: np.ndarray, *, difference: bool = False) -> np.ndarray:
        """SI values back to the background variable's units (``difference``: scale only)."""
        return values / self.scale if difference else (values - self.offset) / self.scale


@dataclass(eq=False)
class ObsProblem:
    """Everything an analysis method needs, for every observed variable."""

    grid: Grid
    kind: str
    times: np.ndarray | None
    targets: dict[str, Target]
    variables: list[ObsVariable]

    def count(self, flag: str | None = None) -> int:
        """Number of observations (with ``flag``, if given)."""
        return int(
            sum((t.flags == FLAGS[flag]).sum() if flag else t.flags.size for t in self.targets.values())
        )


def _state(background: xr.Dataset, name: str, grid: Grid):
    da = background[name]
    allowed = {grid.lat, grid.lon, grid.level, grid.time} - {None}
    extra = [d for d in da.dims if d not in allowed]
    if grid.lat not in da.dims or grid.lon not in da.dims:
        raise GridError(
            f"background variable {name!r} is not on the horizontal grid ({grid.lat}, {grid.lon}); its dims are "
            f"{da.dims}. Fix: observe only variables on the grid (variables=[...]) or drop it"
        )
    if extra:
        hint = (
            f"select a member (background.isel({grid.member}=0)) or the ensemble mean"
            if grid.member in extra
            else f"select along {extra} first (background.isel(...))"
        )
        raise GridError(
            f"background variable {name!r} has dimensions {extra} that an analysis does not know "
            f"how to treat. Fix: {hint}"
        )
    order = [d for d in (grid.time, grid.level, grid.lat, grid.lon) if d is not None and d in da.dims]
    kind = variable_kind(name, da)
    units = da.attrs.get("units")
    scale, offset = scale_to_si(units, kind, name=name)
    values = np.asarray(da.transpose(*order).values, dtype=np.float64) * scale + offset
    shape = (
        da.sizes[grid.time] if grid.time in da.dims else 1,
        da.sizes[grid.level] if grid.level in da.dims else 1,
        grid.shape[0],
        grid.shape[1],
    )
    return kind, units, scale, offset, tuple(order), values.reshape(shape)


def _time_window(times: np.ndarray, window) -> np.timedelta64 | None:
    if window is not None:
        import pandas as pd

        try:
            return np.timedelta64(pd.Timedelta(window).value, "ns")
        except (ValueError, TypeError):
            raise ObservationError(
                f"time_window {window!r} is not a duration; give e.g. '3h' or numpy.timedelta64(3, 'h')"
            ) from None
    if times.size < 2:
        return None
    return np.timedelta64(
        int(np.min(np.diff(np.sort(times.astype("datetime64[ns]")).astype(np.int64))) // 2), "ns"
    )


def _surface(background, name: str) -> bool:
    """Whether background variable ``name`` is a surface field (sp, msl, t2m, u10, v10), which has no level."""
    from ..errors import VariableError
    from ..grid import find_variable

    for key in ("sp", "msl", "t2m", "u10", "v10"):
        try:
            if find_variable(background, key, required=False) == name:
                return True
        except VariableError:
            continue
    return False


def _target(background, grid, name, pieces: list[ObsVariable], times, window) -> Target:
    kind, units, scale, offset, dims, xb = _state(background, name, grid)
    levels = grid.level_pa if grid.level in dims else None
    # one pressure level as a scalar coordinate (background.sel(level=500)): observations that carry a pressure
    # are compared at it, those at other pressures are outside the grid (surface fields have no level)
    if (levels is None and grid.level_pa is not None and grid.level_pa.size == 1 and grid.level not in background.dims
            and all(p.pressure is not None for p in pieces) and not _surface(background, name)):
        levels = grid.level_pa
    y = np.concatenate([p.values for p in pieces])
    n = y.size
    flags = np.zeros(n, dtype=np.int8)
    flags[~np.isfinite(y)] = FLAGS["missing_value"]
    pressure = None
    if levels is not None:
        if any(p.pressure is None for p in pieces):
            if levels.size > 1:
                which = [p.name for p in pieces if p.pressure is None]
                raise ObservationError(
                    f"observations {which} have no pressure, but background {name!r} has "
                    f"{levels.size} levels. "
                    "Fix: give each observation a pressure, obs.assign_coords(pressure=('station', "
                    "values)) with "
                    "units 'hPa', or a pressure-level dimension"
                )
            pressure = np.full(n, levels[0])
        else:
            pressure = np.concatenate([p.pressure for p in pieces])
    lat = np.concatenate([p.lat for p in pieces])
    lon = np.concatenate([p.lon for p in pieces])
    sel = np.flatnonzero(flags == 0)
    op = build_operator(
        lat[sel],
        lon[sel],
        grid.lat_values,
        grid.lon_values,
        pressure=None if pressure is None else pressure[sel],
        levels=levels,
    )
    pick = sp.csr_matrix((np.ones(sel.size), (sel, np.arange(sel.size))), shape=(n, sel.size))
    H = (pick @ op.matrix).tocsr()
    inside = np.zeros(n, dtype=bool)
    inside[sel] = op.inside
    flags[(flags == 0) & ~inside] = FLAGS["outside_grid"]

    time_index = np.zeros(n, dtype=np.intp)
    if times is not None and xb.shape[0] > 1:
        if any(p.time is None for p in pieces):
            raise ObservationError(
                f"background {name!r} has {xb.shape[0]} times but observations "
                f"{[p.name for p in pieces if p.time is None]} carry no time. Fix: add a time coordinate "
                "(obs.assign_coords(time=...)) or select one background time (background.isel(time=0))"
            )
        obs_t = np.concatenate([np.asarray(p.time).astype("datetime64[ns]") for p in pieces])
        time_index, ok = match_times(obs_t, times, window=window)
        flags[(flags == 0) & ~ok] = FLAGS["outside_time_window"]
    elif times is not None and all(p.time is not None for p in pieces) and window is not None:
        obs_t = np.concatenate([np.asarray(p.time).astype("datetime64[ns]") for p in pieces])
        _, ok = match_times(obs_t, times, window=window)
        flags[(flags == 0) & ~ok] = FLAGS["outside_time_window"]
    missing_b = ~np.isfinite(xb)  # (time, level, lat, lon): a land-masked field, or gaps
    if missing_b.any():  # an observation interpolated from such a point would spread NaN over the analysis
        for t in np.unique(time_index[flags == 0]):
            rows = np.flatnonzero((flags == 0) & (time_index == t))
            touch = (abs(H[rows]) @ missing_b[t].reshape(-1).astype(np.float64)) > 0
            flags[rows[touch]] = FLAGS["background_missing"]
    dup = duplicates(lat, lon, pressure, time_index, flags == 0)
    flags[dup] = FLAGS["duplicate"]
    offsets = np.cumsum([0] + [p.size for p in pieces])
    return Target(
        name=name,
        kind=kind,
        units=units,
        scale=scale,
        offset=offset,
        dims=dims,
        background=xb,
        levels_pa=levels,
        H=H,
        y=y,
        sigma_o=np.concatenate([p.sigma for p in pieces]),
        time_index=time_index,
        flags=flags,
        pieces=[(p, slice(int(a), int(b))) for p, a, b in zip(pieces, offsets[:-1], offsets[1:])],
    )


def _extent(grid: Grid) -> str:
    lo = grid.sphere().lon
    return (
        f"latitude {grid.lat_values.min():g} to {grid.lat_values.max():g}, "
        f"longitude {lo[0]:g} to {lo[-1]:g}" + (" (global)" if grid.periodic else "")
    )


def build_problem(
    background: xr.Dataset,
    obs,
    *,
    variables=None,
    obs_error=None,
    time_window=None,
    regrid="auto",
    min_coverage: float = 0.5,
    regrid_backend: str = "auto",
) -> ObsProblem:
    """Turn ``obs`` into per-variable arrays against ``background`` (see the module notes).

    Parameters
    ----------
    background : xarray.Dataset
        The state (dims latitude, longitude, and optionally level and time).
    obs : xarray.Dataset or xarray.DataArray
        Observations of any of the three kinds (:mod:`xphyda.obs.dataset`).
    variables : list of str, optional
        Observation variables to use (default: all observed variables).
    obs_error : number, str, pint.Quantity or mapping, optional
        See :mod:`xphyda.obs.uncertainty`.
    time_window : str or timedelta, optional
        Largest distance between an observation and its background time
        (default: half the smallest spacing of the background times; any
        distance for a single time).
    regrid : {"auto", "bilinear", "conservative"}, callable or None
        How gridded observations on another grid are used: ``"auto"`` remaps
        finer products conservatively and observes coarser ones at their own
        points; ``None`` always observes them at their points (see
        :mod:`xphyda.obs.dataset`).
    min_coverage : float
        See :func:`xphyda.obs.regridding.regrid`.
    regrid_backend : {"auto", "xesmf", "xphyda"}

    Returns
    -------
    ObsProblem

    Raises
    ------
    ObservationError
        When no observation can be used (all missing, outside the grid or the time window).
    """
    if not isinstance(background, xr.Dataset):
        raise ObservationError(f"the background must be an xarray Dataset; got {type(background).__name__}")
    grid = discover_grid(background)
    kind, obsvars = observation_variables(
        background,
        obs,
        grid=grid,
        variables=variables,
        obs_error=obs_error,
        regrid=regrid,
        min_coverage=min_coverage,
        regrid_backend=regrid_backend,
    )
    times = None
    if grid.time is not None:
        times = np.atleast_1d(np.asarray(background[grid.time].values))
        if not np.issubdtype(times.dtype, np.datetime64):
            times = None
    window = _time_window(times, time_window) if times is not None else None
    by_target: dict[str, list[ObsVariable]] = {}
    for v in obsvars:
        by_target.setdefault(v.target, []).append(v)
    targets = {
        name: _target(background, grid, name, pieces, times, window) for name, pieces in by_target.items()
    }
    problem = ObsProblem(grid=grid, kind=kind, times=times, targets=targets, variables=obsvars)
    if problem.count("used") == 0:
        counts = {f: problem.count(f) for f in FLAGS if problem.count(f)}
        raise ObservationError(
            f"none of the {problem.count()} observations can be used: {counts}. The background covers "
            f"{_extent(grid)}"
            + (
                f" and levels {grid.level_pa.min() / 100:g}-{grid.level_pa.max() / 100:g} hPa"
                if grid.level_pa is not None
                else ""
            )
            + ". Fix: check the observations' coordinates, units of pressure (without units they are read as hPa) and times"
        )
    return problem
