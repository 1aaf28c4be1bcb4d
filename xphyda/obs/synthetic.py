"""Synthetic observations drawn from a "truth" state, for observing-system simulation experiments.

Examples
--------
>>> import xphyda
>>> truth = xphyda.tutorial.open_dataset("era5-z-t")
>>> obs = simulate(truth, n_stations=50, seed=0)
>>> obs.t.dims, obs.t.attrs["ancillary_variables"]
(('time', 'level', 'station'), 't_error')
>>> masked = simulate(truth, fraction=0.05, seed=0)
>>> round(float(masked.t.notnull().mean()), 3)
0.05
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import numpy as np
import xarray as xr

from ..errors import ObservationError, VariableError
from ..grid import Grid, discover_grid, find_coord
from .dataset import _pressure_name, _pressure_pa, variable_kind
from .operator import build_operator
from .uncertainty import default_obs_error, error_to_si, scale_to_si

__all__ = ["simulate"]


def _variables(truth: xr.Dataset, grid: Grid, variables) -> list[str]:
    if variables is None:
        names = [
            str(v)
            for v, da in truth.data_vars.items()
            if grid.lat in da.dims and grid.lon in da.dims and np.issubdtype(da.dtype, np.number)
        ]
    else:
        names = [variables] if isinstance(variables, str) else list(variables)
        missing = [v for v in names if v not in truth.data_vars]
        if missing:
            raise VariableError(
                f"variables {missing} are not in the truth; it has {sorted(map(str, truth.data_vars))}"
            )
    if not names:
        raise VariableError("the truth has no data variable on its latitude-longitude grid to observe")
    return names


def _noise(name: str, da: xr.DataArray, noise) -> xr.DataArray:
    """Noise standard deviation in the variable's own units: 0-d, or along its pressure levels."""
    given = noise.get(name) if isinstance(noise, Mapping) else noise
    kind = variable_kind(name, da)
    units = da.attrs.get("units")
    if given is None:
        if kind is None:
            raise ObservationError(
                f"no default observation error for {name!r}; pass noise={{{name!r}: value}}"
            )
        scale = scale_to_si(units, kind, name=name)[0]
        pname = _pressure_name(da)
        if pname is None or da[pname].ndim > 1 or da[pname].size == 0:
            return xr.DataArray(float(default_obs_error(kind)) / scale)
        sd = default_obs_error(kind, _pressure_pa(da[pname], pname)) / scale
        if np.all(sd == sd.flat[0]):  # one value for every level
            return xr.DataArray(float(sd.flat[0]))
        return xr.DataArray(sd, dims=da[pname].dims, coords={pname: da[pname]})
    value = error_to_si(given, units, kind, name=name) / scale_to_si(units, kind, name=name)[0]
    if not np.isfinite(value) or value < 0:
        raise ObservationError(f"noise for {name!r} must be a non-negative standard deviation; got {given!r}")
    return xr.DataArray(value)


def _spread(sd: xr.DataArray, template: xr.DataArray, dims) -> np.ndarray:
    """``sd`` broadcast to ``template`` with dimensions in the order ``dims``."""
    return np.asarray(sd.broadcast_like(template).transpose(*dims).values, dtype=np.float64)


def _station_coords(stations, n_stations, rng) -> tuple[np.ndarray, np.ndarray, dict]:
    if n_stations is not None:
        n = int(n_stations)
        if n < 1:
            raise ObservationError(f"n_stations must be at least 1; got {n_stations!r}")
        lat = np.rad2deg(np.arcsin(rng.uniform(-1.0, 1.0, n)))  # uniform on the sphere
        lon = rng.uniform(0.0, 360.0, n)
        return lat, lon, {}
    if isinstance(stations, xr.Dataset | xr.DataArray):
        g_lat, g_lon = find_coord(stations, "latitude"), find_coord(stations, "longitude")
        la, lo = stations[g_lat], stations[g_lon]
        if la.ndim != 1 or la.dims != lo.dims:
            raise ObservationError("stations must have latitude and longitude along one station dimension")
        extra = {
            str(k): (la.dims[0], np.asarray(v.values), v.attrs)
            for k, v in stations.coords.items()
            if v.dims == la.dims and k not in (g_lat, g_lon)
        }
        return np.asarray(la.values, dtype=float), np.asarray(lo.values, dtype=float), extra
    if isinstance(stations, Mapping):
        lat, lon = (
            stations.get("lat", stations.get("latitude")),
            stations.get("lon", stations.get("longitude")),
        )
    else:
        arr = np.asarray(stations, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ObservationError(
                f"stations must be (lat, lon) pairs, a mapping or a Dataset; got shape {arr.shape}"
            )
        lat, lon = arr[:, 0], arr[:, 1]
    if lat is None or lon is None:
        raise ObservationError("stations as a mapping need 'lat' and 'lon' entries")
    return np.asarray(lat, dtype=float).ravel(), np.asarray(lon, dtype=float).ravel(), {}


def simulate(
    truth: xr.Dataset,
    *,
    fraction: float | None = None,
    n_stations: int | None = None,
    stations=None,
    noise=None,
    variables: Sequence[str] | None = None,
    seed: int = 0,
    obs_dim: str = "station",
) -> xr.Dataset:
    """Draw synthetic observations from ``truth``, with Gaussian noise.

    Give exactly one of ``fraction``, ``n_stations`` or ``stations``.

    Parameters
    ----------
    truth : xarray.Dataset
        The true state on a lat-lon grid (levels and times optional).
    fraction : float, optional
        Observe this fraction of the grid columns, drawn without replacement for
        each time; all variables and levels of a drawn column are observed.
        Returns observations on the truth's grid, NaN elsewhere (kind ``"grid"``).
    n_stations : int, optional
        Draw this many stations uniformly on the sphere (kind ``"points"``).
    stations : Dataset, mapping or sequence of (lat, lon), optional
        Given station positions (kind ``"points"``); other coordinates along the
        station dimension of a Dataset (names, ids) are kept.
    noise : float, str or dict, optional
        Noise standard deviation in each variable's units (``0`` for none);
        default :func:`xphyda.obs.uncertainty.default_obs_error` (for specific
        humidity on pressure levels, one value per level).  It is
        recorded as a CF ancillary ``standard_error`` variable ``{name}_error``.
    variables : list of str, optional
        Variables to observe (default: all on the grid).
    seed : int
        Seed of the random generator: the same seed gives the same observations.
    obs_dim : str
        Name of the station dimension.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ObservationError
        For contradictory or invalid choices.
    """
    chosen = [
        k
        for k, v in (("fraction", fraction), ("n_stations", n_stations), ("stations", stations))
        if v is not None
    ]
    if len(chosen) != 1:
        raise ObservationError(
            f"give exactly one of fraction, n_stations or stations; got {chosen or 'none'}"
        )
    grid = discover_grid(truth)
    names = _variables(truth, grid, variables)
    rng = np.random.default_rng(seed)
    out: dict[str, xr.DataArray] = {}
    if fraction is not None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ObservationError(f"fraction must be in (0, 1]; got {fraction!r}")
        nt = truth.sizes[grid.time] if grid.time in truth.dims else 1
        nh = grid.shape[0] * grid.shape[1]
        count = max(1, round(float(fraction) * nh))
        mask = np.zeros((nt, nh), dtype=bool)
        for t in range(nt):
            mask[t, rng.choice(nh, size=count, replace=False)] = True
        horizontal = {grid.lat: truth[grid.lat], grid.lon: truth[grid.lon]}
        observed = xr.DataArray(mask[0].reshape(grid.shape), dims=[grid.lat, grid.lon], coords=horizontal)
        if grid.time in truth.dims:
            observed = xr.DataArray(
                mask.reshape((nt,) + grid.shape),
                dims=[grid.time, grid.lat, grid.lon],
                coords={grid.time: truth[grid.time], **horizontal},
            )
        for name in names:
            da = truth[name]
            sd = _noise(name, da, noise)
            values = np.asarray(da.values, dtype=np.float64)
            noisy = values + rng.normal(0.0, 1.0, values.shape) * _spread(sd, da, da.dims)
            seen = (
                observed
                if grid.time in da.dims or grid.time not in observed.dims
                else observed.isel({grid.time: 0})
            )
            out[name] = da.copy(data=noisy.astype(da.dtype)).where(seen)
    else:
        lat, lon, extra = _station_coords(stations, n_stations, rng)
        op = build_operator(lat, lon, grid.lat_values, grid.lon_values)
        for name in names:
            da = truth[name]
            sd = _noise(name, da, noise)
            rest = [d for d in da.dims if d not in (grid.lat, grid.lon)]
            arr = np.asarray(da.transpose(*rest, grid.lat, grid.lon).values, dtype=np.float64)
            flat = arr.reshape(-1, grid.shape[0] * grid.shape[1])
            values = np.asarray(op.matrix @ flat.T).T.reshape(arr.shape[:-2] + (lat.size,))
            column = _spread(sd, da.isel({grid.lat: 0, grid.lon: 0}, drop=True), rest)[..., None]
            values = np.where(op.inside, values + rng.normal(0.0, 1.0, values.shape) * column, np.nan)
            coords = {d: da[d] for d in rest if d in da.coords}
            out[name] = xr.DataArray(
                values.astype(da.dtype), dims=rest + [obs_dim], coords=coords, attrs=dict(da.attrs)
            )
        station_coords = {
            "lat": (obs_dim, lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": (obs_dim, lon, {"standard_name": "longitude", "units": "degrees_east"}),
            **extra,
        }
    ds = xr.Dataset(out)
    if fraction is None:
        ds = ds.assign_coords(station_coords)
    for name in names:
        sd = _noise(name, truth[name], noise)
        ds[name].attrs = dict(truth[name].attrs)
        if bool((sd > 0).any()):
            sn = truth[name].attrs.get("standard_name")
            ds[f"{name}_error"] = sd.assign_attrs(
                {
                    "long_name": f"standard deviation of the noise added to {name}",
                    "units": truth[name].attrs.get("units", ""),
                    **({"standard_name": f"{sn} standard_error"} if sn else {}),
                },
            )
            ds[name].attrs["ancillary_variables"] = f"{name}_error"
    how = (
        f"fraction={fraction}"
        if fraction is not None
        else f"n_stations={n_stations}"
        if n_stations is not None
        else f"{lat.size} given stations"
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    ds.attrs = {
        "title": "synthetic observations drawn from a truth state (xphyda.obs.simulate)",
        "history": f"{stamp}: xphyda.obs.simulate({how}, seed={seed})",
    }
    return ds
