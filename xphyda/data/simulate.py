"""Generate the GCM training corpus: jcm (SPEEDY physics, T31 L8) on pressure levels.

The corpus is written as one Zarr store per independent trajectory,
``STORE/traj{k}.zarr``, in ERA5 / WeatherBench2 layout (dims ``time``,
``level`` [hPa], ``latitude`` [descending], ``longitude``).  Each store holds
``z t u v q w`` on pressure levels, ``sp`` and ``msl`` and the static fields
``z_surface`` and ``lsm``.

How a sigma-level state becomes a pressure-level state
------------------------------------------------------
* The top sigma level (0.025) is dropped: its winds are unrealistic.
* Between the kept model levels, ``u v t q`` are interpolated linearly in
  ``log p`` with ``p = sigma * ps`` in every column; ``z`` is interpolated as the
  hydrostatic integral of the linearly interpolated virtual temperature, pinned
  to the model's ``z`` at both ends of the layer
  (:func:`interp_geopotential_log_p`), which keeps the hypsometric residual on
  pressure levels small.
* Above the highest kept level (sigma 0.095, i.e. 100 hPa is above it only where
  ``ps`` > 1053 hPa) the two highest levels are extrapolated linearly in
  ``log p`` (``q`` clipped at 0).
* Below the lowest model level (sigma 0.95; this includes every pressure level
  below the ground), ERA5-like: a 6.5 K/km lapse-rate atmosphere from the
  lowest level, ``T = T_low (p / p_low) ** (Rd Gamma / g)``; geopotential is
  the hypsometric integral of that profile with the lowest level's humidity,
  ``z = z_low + g Tv_low / Gamma * (1 - (p / p_low) ** (Rd Gamma / g))``
  (so the hypsometric residual below ground is ~0);
  ``u v q`` keep their lowest-level values.  The data are therefore NaN-free.
* ``w`` (omega, Pa s-1) is not a model output on pressure levels: it is derived
  from the pressure-level winds by the continuity equation
  (:func:`xphyda.physics.operators.omega_from_continuity`), so the stored corpus
  satisfies xphyda's continuity residual to float32 rounding.
* ``msl`` is reduced from ``ps`` with the same lapse-rate atmosphere below the
  surface (no ECMWF high-terrain corrections).

The pure-numpy helpers (:func:`interp_log_p`, :func:`extrapolate_below`,
:func:`sigma_to_pressure_levels`, :func:`omega_on_pressure_levels`,
:func:`hypsometric_residual`, :func:`mean_sea_level_pressure`) need no GCM.
:func:`simulate` needs the optional ``jcm`` package (``pip install "xphyda[gcm]"``).
The module itself is callable: ``xphyda.data.simulate(store, years=...)`` is
``xphyda.data.simulate.simulate(store, years=...)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import sys
import time as _time
import types
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xphyda.errors import DataError, GridError, PhydaError

__all__ = [
    "DEFAULT_LEVELS_HPA",
    "MissingDependencyError",
    "corpus_summary",
    "extrapolate_below",
    "hypsometric_residual",
    "interp_geopotential_log_p",
    "interp_log_p",
    "mean_sea_level_pressure",
    "omega_on_pressure_levels",
    "sigma_to_pressure_levels",
    "simulate",
]

logger = logging.getLogger(__name__)

DEFAULT_LEVELS_HPA = (100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
"""Pressure levels of the corpus, hPa."""

RD = 287.04
"""Dry-air gas constant used for extrapolation and residuals, J kg-1 K-1."""
G = 9.80665
"""Standard gravity, m s-2."""
LAPSE_RATE = 0.0065
"""Standard-atmosphere lapse rate used below the lowest model level, K m-1."""
VIRTUAL_FACTOR = 0.608
"""``Tv = T (1 + 0.608 q)``."""
TOP_SIGMA_DROPPED = 0.05
"""Sigma levels below this value (the 0.025 level) are not used."""

_INSTALL_HINT = 'pip install "xphyda[gcm]"'


class MissingDependencyError(PhydaError, ImportError):
    """An optional dependency (here the ``jcm`` GCM) is not installed."""


# --------------------------------------------------------------------------
# pure numpy helpers
# --------------------------------------------------------------------------


def interp_log_p(field, p_src, p_target, *, axis: int = -3):
    """Interpolate columns linearly in ``log p``, extrapolating linearly beyond the ends.

    Parameters
    ----------
    field : numpy.ndarray
        Values on the source levels, level on ``axis``.
    p_src : numpy.ndarray
        Source pressures (any positive unit), broadcastable to ``field``;
        strictly increasing along ``axis`` (top of the atmosphere first).
    p_target : array_like
        1-D target pressures, same unit as ``p_src``.
    axis : int
        Level axis of ``field`` and ``p_src``.

    Returns
    -------
    numpy.ndarray
        ``field`` on ``p_target``, level on ``axis``.  Targets outside the source
        range are extrapolated from the two nearest levels.

    Raises
    ------
    GridError
        If fewer than two source levels are given or they are not increasing.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([100.0, 1000.0])[:, None, None]
    >>> f = np.array([0.0, 1.0])[:, None, None]
    >>> interp_log_p(f, p, [np.sqrt(1e5), 1e4])[:, 0, 0].round(6).tolist()
    [0.5, 2.0]
    """
    field = np.asarray(field)
    f = np.moveaxis(field, axis, -1)
    k0, x0, x1, x_t = _log_p_bracket(p_src, p_target, field.shape, axis)
    f0 = np.take_along_axis(f, k0, axis=-1)
    f1 = np.take_along_axis(f, k0 + 1, axis=-1)
    out = f0 + (x_t - x0) / (x1 - x0) * (f1 - f0)
    return np.moveaxis(out, -1, axis)


def _log_p_bracket(p_src, p_target, shape, axis):
    """Bracketing source levels of every target: ``(k0, log p[k0], log p[k0 + 1], log p_target)``, level last."""
    x_t = np.log(np.asarray(p_target, dtype=np.float64).ravel())
    x = np.log(np.moveaxis(np.broadcast_to(np.asarray(p_src), shape), axis, -1).astype(np.float64))
    n = x.shape[-1]
    if n < 2:
        raise GridError(f"interp_log_p needs at least 2 source levels, got {n}.")
    if np.any(np.diff(x, axis=-1) <= 0):
        raise GridError("interp_log_p: source pressures must increase strictly along the level axis "
                        "(top of the atmosphere first); sort the levels first.")
    count = (x[..., None, :] <= x_t[:, None]).sum(axis=-1)  # (..., L)
    k0 = np.clip(count - 1, 0, n - 2)
    return k0, np.take_along_axis(x, k0, axis=-1), np.take_along_axis(x, k0 + 1, axis=-1), x_t


def interp_geopotential_log_p(z, tv, p_src, p_target, *, axis: int = -3):
    """Interpolate geopotential in ``log p`` consistently with the hydrostatic equation.

    Within each source layer ``[s0, s1]`` (``s = ln p``, ``h = s1 - s0``) virtual
    temperature is taken linear in ``s`` and ``z`` is its hydrostatic integral
    constrained to both end values:
    ``z = z_lin + Rd (Tv1 - Tv0) (s - s0) (s1 - s) / (2 h)``, with ``z_lin`` the
    linear-in-``log p`` interpolant.  Then the hypsometric relation with
    trapezoidal (two-level mean) ``Tv`` holds exactly between target levels in the
    same source layer, instead of erring by the curvature of ``Tv``.  Outside the
    source range the same formula extrapolates.

    Parameters
    ----------
    z : numpy.ndarray
        Geopotential on the source levels, m2 s-2, level on ``axis``.
    tv : numpy.ndarray
        Virtual temperature on the source levels, K, same shape.
    p_src, p_target, axis
        As in :func:`interp_log_p`.

    Returns
    -------
    numpy.ndarray
        Geopotential on ``p_target``.
    """
    z_lin = interp_log_p(z, p_src, p_target, axis=axis)
    tv = np.moveaxis(np.asarray(tv, dtype=np.float64), axis, -1)
    k0, x0, x1, x_t = _log_p_bracket(p_src, p_target, np.shape(z), axis)
    t0 = np.take_along_axis(tv, k0, axis=-1)
    t1 = np.take_along_axis(tv, k0 + 1, axis=-1)
    corr = RD * (t1 - t0) * (x_t - x0) * (x1 - x_t) / (2.0 * (x1 - x0))
    return z_lin + np.moveaxis(corr, -1, axis)


def extrapolate_below(p, p_low, t_low, z_low, q_low, *, lapse_rate: float = LAPSE_RATE):
    """Temperature and geopotential below the lowest model level (ERA5-like).

    ``T = T_low (p / p_low) ** (Rd Gamma / g)`` and geopotential is the exact
    hypsometric integral of that profile with ``q`` held at the lowest level's
    value, so virtual temperature lapses at exactly ``Gamma`` per metre of
    geopotential height (``T`` itself at ``Gamma / (1 + 0.608 q)``, 0.6 % less
    at 10 g/kg).

    Parameters
    ----------
    p : array_like
        Target pressure(s), Pa, broadcastable against the other arguments.
    p_low, t_low, z_low, q_low : array_like
        Pressure (Pa), temperature (K), geopotential (m2 s-2) and specific
        humidity (kg kg-1) of the lowest model level.
    lapse_rate : float
        ``Gamma`` in K m-1 (default 6.5 K/km).

    Returns
    -------
    t, z : numpy.ndarray
        Temperature (K) and geopotential (m2 s-2) at ``p``.
    """
    alpha = RD * lapse_rate / G
    ratio = (np.asarray(p, dtype=np.float64) / p_low) ** alpha
    t = t_low * ratio
    tv_low = t_low * (1.0 + VIRTUAL_FACTOR * q_low)
    z = z_low + G * tv_low / lapse_rate * (1.0 - ratio)
    return t, z


def sigma_to_pressure_levels(fields: Mapping[str, np.ndarray], sigma, ps, plev_pa, *,
                             axis: int = -3, lapse_rate: float = LAPSE_RATE) -> dict:
    """Move ``u v t q z`` from sigma levels to pressure levels, NaN-free.

    Parameters
    ----------
    fields : mapping
        ``{"u", "v", "t", "q", "z"}`` arrays ``(..., level, lat, lon)`` on sigma
        levels (level on ``axis``), units m s-1, m s-1, K, kg kg-1, m2 s-2.
    sigma : array_like
        1-D sigma of the levels, strictly increasing (top first).
    ps : numpy.ndarray
        Surface pressure, Pa, shape of ``fields`` without the level axis.
    plev_pa : array_like
        1-D target pressure levels, Pa.
    axis : int
        Level axis (negative, counted from the end).
    lapse_rate : float
        Lapse rate for the treatment below the lowest level, K m-1.

    Returns
    -------
    dict
        The same keys on ``plev_pa`` (level on ``axis``), float64.  Above the
        top level the fields are extrapolated linearly in ``log p`` (``q``
        clipped at 0); below the lowest level see :func:`extrapolate_below`.
    """
    missing = {"u", "v", "t", "q", "z"} - set(fields)
    if missing:
        raise DataError(f"sigma_to_pressure_levels: missing fields {sorted(missing)}.")
    sigma = np.asarray(sigma, dtype=np.float64).ravel()
    plev = np.asarray(plev_pa, dtype=np.float64).ravel()
    ps = np.asarray(ps, dtype=np.float64)
    lev_shape = [1] * (ps.ndim + 1)
    lev_shape[axis] = sigma.size
    p_src = np.expand_dims(ps, axis) * sigma.reshape(lev_shape)
    out = {k: interp_log_p(np.asarray(fields[k], dtype=np.float64), p_src, plev, axis=axis)
           for k in ("u", "v", "t", "q")}
    tv = np.asarray(fields["t"], dtype=np.float64) * (1.0 + VIRTUAL_FACTOR * np.asarray(fields["q"]))
    out["z"] = interp_geopotential_log_p(np.asarray(fields["z"], dtype=np.float64), tv, p_src, plev,
                                         axis=axis)
    out["q"] = np.maximum(out["q"], 0.0)

    def low(a):
        return np.take(np.asarray(a, dtype=np.float64), [-1], axis=axis)

    p_low = low(p_src)
    tgt_shape = [1] * (ps.ndim + 1)
    tgt_shape[axis] = plev.size
    p_t = plev.reshape(tgt_shape)
    below = p_t > p_low
    t_b, z_b = extrapolate_below(p_t, p_low, low(fields["t"]), low(fields["z"]),
                                 low(fields["q"]), lapse_rate=lapse_rate)
    out["t"] = np.where(below, t_b, out["t"])
    out["z"] = np.where(below, z_b, out["z"])
    for k in ("u", "v", "q"):
        out[k] = np.where(below, low(fields[k]), out[k])
    return out


def omega_on_pressure_levels(u, v, lat, lon, plev_pa):
    """Vertical velocity omega (Pa s-1) from the continuity equation on pressure levels.

    Thin wrapper of :func:`xphyda.physics.operators.omega_from_continuity`:
    ``omega = -p_top D_top`` at the top level, then trapezoid integration of
    ``d omega / dp = -D`` downward, ``D`` the finite-volume horizontal divergence.

    Parameters
    ----------
    u, v : numpy.ndarray
        Winds, m s-1, shape ``(..., level, lat, lon)``.
    lat, lon : array_like
        Degrees, in the arrays' order.
    plev_pa : array_like
        Pressure of each level, Pa.

    Returns
    -------
    numpy.ndarray
        omega, same shape as ``u`` (float64).
    """
    from xphyda.physics.operators import omega_from_continuity

    return omega_from_continuity(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64),
                                 np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64),
                                 np.asarray(plev_pa, dtype=np.float64))


def hypsometric_residual(z, t, q, plev_pa, *, axis: int = -3):
    """Hypsometric residual of each layer between adjacent pressure levels, in metres.

    ``(z_k+1 - z_k - Rd * mean(Tv) * ln(p_k / p_k+1)) / g`` with ``Tv = T (1 + 0.608 q)``
    and ``mean`` the average of the two levels.

    Parameters
    ----------
    z, t, q : numpy.ndarray
        Geopotential (m2 s-2), temperature (K), specific humidity (kg kg-1).
    plev_pa : array_like
        Pressure of each level, Pa (any order).
    axis : int
        Level axis.

    Returns
    -------
    numpy.ndarray
        One value per layer (``nlev - 1`` along ``axis``), metres.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([50000.0, 100000.0])
    >>> z = RD * 250.0 * np.log(1e5 / p)       # isothermal, dry
    >>> float(abs(hypsometric_residual(z, np.full(2, 250.0), np.zeros(2), p, axis=0)[0])) < 1e-9
    True
    """
    z, t, q = (np.moveaxis(np.asarray(a, dtype=np.float64), axis, 0) for a in (z, t, q))
    p = np.asarray(plev_pa, dtype=np.float64).ravel()
    tv = t * (1.0 + VIRTUAL_FACTOR * q)
    dlnp = np.log(p[:-1] / p[1:]).reshape((-1,) + (1,) * (z.ndim - 1))
    res = (z[1:] - z[:-1] - RD * 0.5 * (tv[1:] + tv[:-1]) * dlnp) / G
    return np.moveaxis(res, 0, axis)


def mean_sea_level_pressure(ps, z_surface, t_low, p_low, *, lapse_rate: float = LAPSE_RATE):
    """Reduce surface pressure to mean sea level with a constant-lapse-rate atmosphere.

    The surface air temperature is the lowest-level temperature extrapolated to
    ``ps`` with ``lapse_rate``; then ``msl = ps (1 + Gamma zs / (g Ts)) ** (g / (Rd Gamma))``.

    Parameters
    ----------
    ps : array_like
        Surface pressure, Pa.
    z_surface : array_like
        Surface geopotential, m2 s-2.
    t_low, p_low : array_like
        Temperature (K) and pressure (Pa) of the lowest model level.
    lapse_rate : float
        K m-1.

    Returns
    -------
    numpy.ndarray
        Mean-sea-level pressure, Pa.
    """
    ps = np.asarray(ps, dtype=np.float64)
    t_s = t_low * (ps / p_low) ** (RD * lapse_rate / G)
    return ps * (1.0 + lapse_rate * np.asarray(z_surface) / (G * t_s)) ** (G / (RD * lapse_rate))


# --------------------------------------------------------------------------
# jcm driver
# --------------------------------------------------------------------------


_VAR_ATTRS = {
    "z": ("m2 s-2", "geopotential", "Geopotential"),
    "t": ("K", "air_temperature", "Temperature"),
    "u": ("m s-1", "eastward_wind", "U component of wind"),
    "v": ("m s-1", "northward_wind", "V component of wind"),
    "q": ("kg kg-1", "specific_humidity", "Specific humidity"),
    "w": ("Pa s-1", "lagrangian_tendency_of_air_pressure",
          "Vertical velocity (omega, from the continuity equation on pressure levels)"),
    "sp": ("Pa", "surface_air_pressure", "Surface pressure"),
    "msl": ("Pa", "air_pressure_at_mean_sea_level", "Mean sea level pressure (lapse-rate reduction)"),
    "z_surface": ("m2 s-2", "surface_geopotential", "Surface geopotential (model orography, spectral)"),
    "lsm": ("1", "land_area_fraction", "Land-sea mask (land fraction)"),
}

_JCM_NAMES = {"u": "u_wind", "v": "v_wind", "t": "temperature", "q": "specific_humidity",
              "z": "geopotential"}


def _require_jcm():
    """Import jcm or raise :class:`MissingDependencyError` with the install hint."""
    try:
        import jcm
        from jcm.model import Model  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"simulate() needs the optional GCM 'jcm', which could not be imported ({exc}). "
            f'Install it with: {_INSTALL_HINT}') from exc
    return jcm


def _build_model(start_time: str):
    """Build the SPEEDY T31 L8 model offline from the boundary data inside the jcm wheel."""
    from importlib import resources

    from jcm.forcing import ForcingData
    from jcm.model import Model
    from jcm.physics.speedy.speedy_coords import get_speedy_coords
    from jcm.terrain import TerrainData

    bc = resources.files("jcm.data.bc.t30.clim")
    coords = get_speedy_coords()
    terrain = TerrainData.from_file(bc / "terrain.nc", coords=coords)
    forcing = ForcingData.from_file(bc / "forcing.nc", coords=coords, align_mode="wrap_year")
    model = Model(coords=coords, terrain=terrain, start_time=start_time)
    return model, forcing, terrain


def _perturb_temperature(model, rng: np.random.Generator, amplitude_k: float) -> None:
    """Add white gridpoint temperature noise (std ``amplitude_k`` K) to the model state, in place."""
    if amplitude_k <= 0:
        return
    import jax.numpy as jnp
    from dinosaur.scales import units

    state, run = model.dycore_state, model.run_state
    scale = float(model.dycore.physics_specs.nondimensionalize(1.0 * units.kelvin))
    nodal = rng.standard_normal(model.coords.horizontal.nodal_shape
                                if state.temperature_variation.ndim == 2 else
                                (state.temperature_variation.shape[0],)
                                + tuple(model.coords.horizontal.nodal_shape))
    modal = model.coords.horizontal.to_modal(jnp.asarray(amplitude_k * scale * nodal,
                                                         dtype=state.temperature_variation.dtype))
    new = state.replace(temperature_variation=state.temperature_variation + modal)
    model.restore_state(new, model.physics_carry, time=run.time, step=run.step)


def _ckpt_path(state_dir: Path, index: int) -> Path:
    return state_dir / f"chunk{index:05d}.msgpack"


def _spinup_diagnostics(ds, sigma_bounds) -> dict:
    """Chunk-mean global diagnostics of a jcm output dataset (all sigma levels)."""
    lat = np.deg2rad(ds["lat"].values)
    w_lat = np.cos(lat)[None, None, :]  # (level, lon, lat) order of jcm
    dsig = np.diff(np.asarray(sigma_bounds, dtype=np.float64))  # top -> bottom
    sig = ds["level"].values
    w_lev = dsig[::-1] if sig[0] > sig[-1] else dsig
    w = w_lev[:, None, None] * w_lat * np.ones((1, ds.sizes["lon"], 1))
    w = w / w.sum()

    def gmean(a):
        return float((np.asarray(a, dtype=np.float64).mean(axis=0) * w).sum())

    t = ds["temperature"].values
    ke = 0.5 * (ds["u_wind"].values.astype(np.float64) ** 2 + ds["v_wind"].values.astype(np.float64) ** 2)
    ps = ds["normalized_surface_pressure"].values.astype(np.float64).mean(axis=0) * 1e5
    w2 = np.cos(lat)[None, :] / (np.cos(lat).sum() * ps.shape[0])
    return {"t_mean_K": gmean(t), "ke_mean_J_per_kg": gmean(ke),
            "q_mean_g_per_kg": 1e3 * gmean(ds["specific_humidity"].values),
            "ps_mean_hPa": float((ps * w2).sum() / 100.0)}


def _to_pressure_dataset(ds, plev_hpa, z_surface, lsm):
    """Convert one chunk of jcm output (sigma levels) to the corpus layout (xarray.Dataset)."""
    import xarray as xr

    sig_all = ds["level"].values.astype(np.float64)
    keep = np.where(sig_all >= TOP_SIGMA_DROPPED)[0]
    keep = keep[np.argsort(sig_all[keep])]  # top first
    sigma = sig_all[keep]
    lat = ds["lat"].values.astype(np.float64)
    lat_order = np.argsort(-lat)  # north -> south
    lon = ds["lon"].values.astype(np.float64)

    def arr(name, levels=True):
        a = ds[name].values  # (time, [level,] lon, lat)
        if levels:
            a = a[:, keep]
        a = np.swapaxes(a, -1, -2)[..., lat_order, :]
        return a.astype(np.float64)

    sig_fields = {k: arr(n) for k, n in _JCM_NAMES.items()}
    ps = arr("normalized_surface_pressure", levels=False) * 1e5
    plev_pa = np.asarray(plev_hpa, dtype=np.float64) * 100.0
    out = sigma_to_pressure_levels(sig_fields, sigma, ps, plev_pa)
    out = {k: v.astype(np.float32) for k, v in out.items()}
    lat_d = lat[lat_order]
    out["w"] = omega_on_pressure_levels(out["u"], out["v"], lat_d, lon, plev_pa).astype(np.float32)
    zs = np.swapaxes(np.asarray(z_surface, dtype=np.float64), 0, 1)[lat_order]
    msl = mean_sea_level_pressure(ps, zs, sig_fields["t"][:, -1], sigma[-1] * ps)
    times = ds["time"].values.astype("datetime64[ns]")
    dims3 = ("time", "level", "latitude", "longitude")
    dims2 = ("time", "latitude", "longitude")
    data = {k: (dims3, out[k]) for k in ("z", "t", "u", "v", "q", "w")}
    data["sp"] = (dims2, ps.astype(np.float32))
    data["msl"] = (dims2, msl.astype(np.float32))
    data["z_surface"] = (("latitude", "longitude"), zs.astype(np.float32))
    data["lsm"] = (("latitude", "longitude"),
                   np.swapaxes(np.asarray(lsm, dtype=np.float32), 0, 1)[lat_order])
    coords = {
        "time": ("time", times),
        "level": ("level", np.asarray(plev_hpa, dtype=np.int64),
                  {"units": "hPa", "standard_name": "air_pressure", "long_name": "pressure_level",
                   "positive": "down", "axis": "Z"}),
        "latitude": ("latitude", lat_d, {"units": "degrees_north", "standard_name": "latitude",
                                         "long_name": "latitude (Gaussian, T31)", "axis": "Y"}),
        "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude",
                                         "long_name": "longitude", "axis": "X"}),
    }
    out_ds = xr.Dataset(data, coords=coords)
    out_ds["time"].attrs.update(standard_name="time", long_name="time", axis="T")
    for name, (units_, std, long) in _VAR_ATTRS.items():
        out_ds[name].attrs.update(units=units_, standard_name=std, long_name=long)
    return out_ds


def _encoding(ds, states_per_chunk: int) -> dict:
    enc = {"time": {"units": "hours since 2000-01-01 00:00:00", "calendar": "proleptic_gregorian",
                    "dtype": "int64"}}
    for name, var in ds.data_vars.items():
        chunks = tuple(states_per_chunk if d == "time" else var.sizes[d] for d in var.dims)
        enc[name] = {"chunks": chunks}
    return enc


def _time_arrays(group):
    """(name, array) of every array in a zarr group whose first dimension is ``time``."""
    out = []
    for name, a in group.arrays():
        dims = getattr(a.metadata, "dimension_names", None) or a.attrs.get("_ARRAY_DIMENSIONS")
        if dims and dims[0] == "time":
            out.append((name, a))
    return out


def _complete_chunks(path: Path, states_per_chunk: int) -> int:
    """Number of complete time chunks in a store; truncates a partially written chunk.

    The arrays' own metadata is read, not the consolidated copy: a run killed while
    appending leaves the consolidated metadata at the last complete chunk and some
    arrays longer than others.  Those are cut back to the last chunk that every
    array holds, and the metadata is consolidated again, so the next append
    continues the time axis without a gap, a duplicate or arrays of unequal length.
    """
    import zarr

    if not (path / "zarr.json").exists() and not (path / ".zgroup").exists():
        return 0
    # zarr 3 reads consolidated metadata by default; zarr 2's open_group never does
    own_metadata = {"use_consolidated": False} if int(zarr.__version__.split(".")[0]) >= 3 else {}
    try:
        group = zarr.open_group(str(path), mode="r+", **own_metadata)
    except Exception as exc:  # pragma: no cover - corrupt store
        raise DataError(f"cannot open corpus store {path} to resume ({exc}); delete it to restart.") from exc
    arrays = _time_arrays(group)
    if not arrays or "time" not in [n for n, _ in arrays]:
        return 0
    n_min = min(a.shape[0] for _, a in arrays)
    done = n_min // states_per_chunk
    keep = done * states_per_chunk
    if any(a.shape[0] != keep for _, a in arrays):
        logger.warning("truncating partially written chunk in %s to %d states", path, keep)
        for _, a in arrays:
            if a.shape[0] != keep:
                a.resize((keep,) + tuple(a.shape[1:]))
    _consolidate(path)  # also when the kill came between the last append and its consolidation
    return done


def _write_chunk(path: Path, ds, states_per_chunk: int, attrs: dict, first: bool) -> None:
    """Write (first chunk) or append one chunk, then consolidate the metadata."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        if first:
            ds = ds.copy()
            ds.attrs.update(attrs)
            ds.to_zarr(str(path), mode="w", consolidated=True,
                       encoding=_encoding(ds, states_per_chunk))
        else:
            ds = ds.drop_vars([n for n, v in ds.data_vars.items() if "time" not in v.dims])
            ds.attrs.update(attrs)
            ds.to_zarr(str(path), append_dim="time", consolidated=True)


def _save_json(path: Path, obj) -> None:
    # one temporary name per process: parallel ``--trajectory`` processes write corpus.json at once
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def _run_trajectory(store: Path, k: int, *, seed: int, spinup_chunks: int, data_chunks: int,
                    chunk_days: float, save_interval_hours: float, plev_hpa, data_start: str,
                    spinup_days: float, perturbation_k: float, attrs: dict, progress: bool,
                    model_cache: dict, branch: tuple[Path, int] | None = None) -> Path:
    """Spin up (or resume) and integrate one trajectory, writing ``store/traj{k}.zarr``.

    With ``branch = (parent_state, branch_chunk)`` the trajectory starts from the
    parent's checkpoint of chunk ``branch_chunk`` (copied into its own state
    folder) instead of jcm's rest state, and is perturbed right after it.
    """
    import shutil

    from jcm.checkpoint import load_checkpoint, save_checkpoint

    path = store / f"traj{k}.zarr"
    state_dir = store / "state" / f"traj{k}"
    state_dir.mkdir(parents=True, exist_ok=True)
    perturb_after = spinup_chunks
    if branch is not None:
        parent_state, perturb_after = branch
        if not any(state_dir.glob("chunk*.msgpack")) and not path.exists():
            shutil.copyfile(parent_state, _ckpt_path(state_dir, perturb_after))
    spc = round(chunk_days * 24 / save_interval_hours)
    start = np.datetime64(data_start, "s") - np.timedelta64(round(spinup_days * 86400), "s")
    start_str = str(start)
    if start_str not in model_cache:
        model_cache.clear()
        model_cache[start_str] = _build_model(start_str)
    model, forcing, terrain = model_cache[start_str]
    sigma_bounds = np.asarray(model.coords.vertical.boundaries)

    data_done = _complete_chunks(path, spc)
    done = spinup_chunks + data_done if data_done else 0
    if not data_done:
        saved = sorted(int(p.stem[5:]) for p in state_dir.glob("chunk*.msgpack"))
        saved = [i for i in saved if i <= spinup_chunks]
        done = saved[-1] if saved else 0
    total = spinup_chunks + data_chunks
    model.bootstrap_state(model.initial_state(random_seed=int(seed) * 1000 + k))
    if done:
        ckpt = _ckpt_path(state_dir, done)
        if not ckpt.exists():
            raise DataError(f"resume of trajectory {k}: {path} has {data_done} chunks but the model state "
                            f"{ckpt} is missing; delete {path} and {state_dir} to restart.")
        load_checkpoint(model, ckpt)
        logger.info("trajectory %d: resuming after chunk %d/%d", k, done, total)
    diag_path = state_dir / "spinup_diagnostics.json"
    diags = json.loads(diag_path.read_text()) if diag_path.exists() else []
    diags = [d for d in diags if d["chunk"] <= done]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total * chunk_days, initial=done * chunk_days, unit="day",
                   desc=f"traj{k}", mininterval=5.0, dynamic_ncols=True)
    try:
        for index in range(done + 1, total + 1):
            if index == perturb_after + 1:
                rng = np.random.default_rng([int(seed), k, 12345])
                _perturb_temperature(model, rng, perturbation_k)
            t0 = _time.time()
            pred = model.resume(forcing=forcing, save_interval=save_interval_hours / 24.0,
                                total_time=chunk_days)
            ds = pred.to_xarray()
            diag = {"chunk": index, "day": index * chunk_days, **_spinup_diagnostics(ds, sigma_bounds)}
            save_checkpoint(model, _ckpt_path(state_dir, index))
            if index > spinup_chunks:
                out = _to_pressure_dataset(ds, plev_hpa, terrain.phis0, terrain.fmask)
                attrs_k = dict(attrs, trajectory=k, spinup_diagnostics=json.dumps(diags))
                _write_chunk(path, out, spc, attrs_k, first=(index == spinup_chunks + 1))
            old = _ckpt_path(state_dir, index - 1)
            if index - 1 != spinup_chunks and old.exists():
                old.unlink()
            diags.append(diag)
            _save_json(diag_path, diags)
            phase = "spinup" if index <= spinup_chunks else "data"
            logger.info("traj%d chunk %d/%d (%s) %.1fs  T=%.2fK KE=%.1fJ/kg ps=%.1fhPa q=%.3fg/kg",
                        k, index, total, phase, _time.time() - t0, diag["t_mean_K"],
                        diag["ke_mean_J_per_kg"], diag["ps_mean_hPa"], diag["q_mean_g_per_kg"])
            if bar is not None:
                bar.set_postfix_str(phase)
                bar.update(chunk_days)
            del pred, ds
    finally:
        if bar is not None:
            bar.close()
    _mark_complete(path)
    return path


def _consolidate(path: Path) -> None:
    import warnings

    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        zarr.consolidate_metadata(str(path))


def _mark_complete(path: Path) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    group.attrs.update({"complete": "true"})
    _consolidate(path)


def simulate(store, *, years: float = 5.0, spinup_days: float = 360.0, trajectories: int = 2,
             levels: Sequence[float] = DEFAULT_LEVELS_HPA, seed: int = 0,
             save_interval_hours: float = 6.0, chunk_days: float = 30.0, progress: bool = True,
             trajectory: int | Sequence[int] | None = None, data_start: str = "2000-01-01",
             perturbation_k: float = 0.1, command: str | None = None,
             branch_from: str | os.PathLike | None = None) -> list[Path]:
    """Run the jcm GCM and write a pressure-level training corpus (resumable).

    Each trajectory starts from jcm's isothermal rest state with a seeded
    surface-pressure perturbation, is spun up for ``spinup_days`` (not stored),
    receives white temperature noise of ``perturbation_k`` K, and is integrated
    in chunks of ``chunk_days``; every chunk is converted to pressure levels (see
    the module docstring) and appended to ``store/traj{k}.zarr`` with
    consolidated metadata, so the stores are readable while the run goes on.
    The model state is checkpointed after every chunk (jcm's msgpack
    checkpoints, no pickle) in ``store/state/traj{k}/``; calling again with the
    same arguments resumes after the last complete chunk.

    With ``branch_from``, no spin-up from rest: trajectory ``k`` starts from the
    spun-up state of trajectory ``k mod n`` of that existing corpus (its ``n``
    trajectories' checkpoints at their data start), receives its own
    temperature noise there, and ``spinup_days`` is then the time it runs on
    before storing, while it is still close to its parent (about 40 days for
    the z500 difference to saturate at T31; see the corpus documentation).
    The stored data start ``spinup_days`` after the parent's; ``data_start``
    is taken from the parent.

    Parameters
    ----------
    store : str or path-like
        Output directory.
    years : float
        Total simulated years stored, summed over all trajectories; each
        trajectory stores ``years / trajectories`` years rounded up to whole chunks.
    spinup_days : float
        Spin-up length (rounded up to whole chunks), discarded.
    trajectories : int
        Number of independent trajectories.
    levels : sequence of float
        Pressure levels, hPa.
    seed : int
        Base random seed; trajectory ``k`` uses ``(seed, k)``.
    save_interval_hours : float
        Interval between stored states (instantaneous), hours.
    chunk_days : float
        Integration chunk length in days; the model compiles once for it.
    progress : bool
        Show a tqdm progress bar in simulated days.
    trajectory : int or sequence of int, optional
        Run only these trajectory indices (to run trajectories as parallel
        processes); default all, one after the other.
    data_start : str
        Date of the first stored state's chunk start (the spin-up precedes it).
    perturbation_k : float
        Standard deviation of the temperature noise added after spin-up, K.
    command : str, optional
        Command line recorded in the provenance attributes.
    branch_from : str or path-like, optional
        An existing corpus folder (with its ``corpus.json`` and ``state/``) to
        branch from; its ``chunk_days`` and ``save_interval_hours`` must equal these.

    Returns
    -------
    list of pathlib.Path
        The trajectory stores written.

    Raises
    ------
    MissingDependencyError
        If ``jcm`` is not installed (``pip install "xphyda[gcm]"``).
    DataError
        If the arguments are inconsistent or a store cannot be resumed.
    """
    jcm = _require_jcm()
    if trajectories < 1 or years <= 0 or chunk_days <= 0 or spinup_days < 0:
        raise DataError(f"simulate: need trajectories >= 1, years > 0, chunk_days > 0, spinup_days >= 0; got "
                        f"{trajectories=}, {years=}, {chunk_days=}, {spinup_days=}.")
    spc = chunk_days * 24.0 / save_interval_hours
    if abs(spc - round(spc)) > 1e-9 or round(spc) < 1:
        raise DataError(f"chunk_days={chunk_days} must hold a whole number of {save_interval_hours} h states.")
    plev = [float(x) for x in levels]
    if len(plev) < 2 or len(set(plev)) != len(plev) or min(plev) <= 0:
        raise DataError(f"levels must be >= 2 distinct positive pressures in hPa, got {levels}.")
    plev_hpa = sorted(plev)
    ks = range(trajectories) if trajectory is None else (
        [int(trajectory)] if np.ndim(trajectory) == 0 else [int(x) for x in trajectory])
    if any(not 0 <= k < trajectories for k in ks):
        raise DataError(f"trajectory indices {list(ks)} outside 0..{trajectories - 1}.")
    spinup_chunks = math.ceil(spinup_days / chunk_days - 1e-9)
    data_chunks = math.ceil(years * 365.25 / trajectories / chunk_days - 1e-9)
    store = Path(store)
    starts: dict[int, Path] = {}
    if branch_from is not None:
        parent, branch_chunk, starts = _branch_points(Path(branch_from), ks, chunk_days, save_interval_hours, seed)
        start = np.datetime64(parent["data_start"], "s")
        data_start = str(start + np.timedelta64(round(spinup_chunks * chunk_days * 86400), "s"))
        spinup_chunks += branch_chunk  # the parent's spin-up counts as this trajectory's
    store.mkdir(parents=True, exist_ok=True)
    settings = {"years": years, "spinup_days": spinup_chunks * chunk_days, "trajectories": trajectories,
                "levels_hPa": plev_hpa, "seed": seed, "save_interval_hours": save_interval_hours,
                "chunk_days": chunk_days, "data_start": data_start, "perturbation_K": perturbation_k,
                "days_per_trajectory": data_chunks * chunk_days}
    if branch_from is not None:
        settings["branch_from"] = {"corpus": str(Path(branch_from).resolve()), "parent_settings": parent,
                                   "days_after_branch_not_stored": (spinup_chunks - branch_chunk) * chunk_days}
    attrs = {
        "Conventions": "CF-1.8",
        "title": "xphyda training corpus: jcm SPEEDY T31 on pressure levels",
        "source": "jcm SPEEDY T31 (SPEEDY physics on the dinosaur spectral core, 96x48 Gaussian grid, "
                  "8 sigma levels, climatological SST / boundary data shipped with jcm)",
        "model": "jcm SPEEDY T31",
        "jcm_version": getattr(jcm, "__version__", "unknown"),
        "settings": json.dumps(settings),
        "seed": int(seed),
        "spinup_days": float(spinup_chunks * chunk_days),
        "creation_command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "vertical_treatment": (
            "sigma 0.025 dropped; u v t q linear in log p between kept sigma levels (p = sigma*ps), z as the "
            "hydrostatic integral of the log-p-linear Tv pinned to the model z at both layer ends; log-p "
            "extrapolation above sigma 0.095; below sigma 0.95: T with 6.5 K/km lapse rate, z hypsometric "
            "with lowest-level Tv, u v q held at lowest-level values"),
        "omega_method": "w from the continuity equation on pressure levels "
                        "(xphyda.physics.operators.omega_from_continuity)",
        "history": f"created by xphyda.data.simulate on {np.datetime64('now', 's')}",
    }
    _save_json(store / "corpus.json", {"settings": settings, "attrs": attrs})
    cache: dict = {}
    paths = []
    for k in ks:
        paths.append(_run_trajectory(
            store, k, seed=seed, spinup_chunks=spinup_chunks, data_chunks=data_chunks,
            chunk_days=chunk_days, save_interval_hours=save_interval_hours, plev_hpa=plev_hpa,
            data_start=data_start, spinup_days=spinup_chunks * chunk_days,
            perturbation_k=perturbation_k, attrs=attrs, progress=progress, model_cache=cache,
            branch=(starts[k], branch_chunk) if k in starts else None))
    return paths


def _branch_points(parent: Path, ks, chunk_days: float, save_interval_hours: float,
                   seed: int) -> tuple[dict, int, dict[int, Path]]:
    """The parent corpus's settings, its last spin-up chunk, and per trajectory ``k`` the parent's checkpoint of it."""
    need = ("chunk_days", "save_interval_hours", "spinup_days", "trajectories", "data_start")
    try:
        settings = json.loads((parent / "corpus.json").read_text())["settings"]
        problem = [key for key in need if key not in settings]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problem = exc
    if problem:
        raise DataError(f"branch_from={str(parent)!r}: no readable corpus.json with complete 'settings' there "
                        f"(missing or unreadable: {problem}); pass the folder of a corpus made by "
                        "xphyda.data.simulate.")
    for name, ours in (("chunk_days", chunk_days), ("save_interval_hours", save_interval_hours)):
        if float(settings[name]) != float(ours):
            raise DataError(f"branch_from: the parent corpus has {name}={settings[name]}, this run {ours}; "
                            f"pass --{name.replace('_', '-')} {settings[name]}.")
    chunk = math.ceil(float(settings["spinup_days"]) / float(settings["chunk_days"]) - 1e-9)
    n = int(settings["trajectories"])
    replays = [k for k in ks if k < n and int(settings.get("seed", -1)) == seed]
    if replays:  # the parent's checkpoint precedes its own noise, seeded (seed, k): the same noise, the same run
        raise DataError(f"branch_from: trajectories {replays} with seed {seed} would replay the parent's "
                        f"trajectories {replays} exactly (same state, same noise); pass another --seed or "
                        f"trajectory indices from {n} up.")
    points = {k: _ckpt_path(parent / "state" / f"traj{k % n}", chunk) for k in ks}
    missing = sorted({str(p) for p in points.values() if not p.exists()})
    if missing:
        raise DataError(f"branch_from: the parent's spun-up state {missing} is missing (simulate keeps the "
                        "checkpoint of the last spin-up chunk); branch from a corpus whose state/ folder is intact.")
    return settings, chunk, points


class _CallableModule(types.ModuleType):
    """This module, made callable: ``xphyda.data.simulate(store, ...)`` runs :func:`simulate`.

    The module stays a module, so ``xphyda.data.simulate.corpus_summary``,
    ``mock.patch("xphyda.data.simulate.<name>")`` and ``python -m xphyda.data.simulate``
    keep working; the call looks :func:`simulate` up when it is made, so patching it works too.
    """

    def __call__(self, store, **kwargs) -> list[Path]:
        return self.simulate(store, **kwargs)


if __name__ != "__main__":  # run as a script, the module is __main__ and needs no call
    sys.modules[__name__].__class__ = _CallableModule


def _area_weights(lat_deg) -> np.ndarray:
    w = np.cos(np.deg2rad(np.asarray(lat_deg, dtype=np.float64)))
    return w / w.sum()


def corpus_summary(path, *, batch: int = 120) -> dict:
    """Climatology and physics residuals of one corpus store (reads it batch by batch).

    Parameters
    ----------
    path : str or path-like
        A ``traj{k}.zarr`` store written by :func:`simulate`.
    batch : int
        States read at a time.

    Returns
    -------
    dict
        ``n_states``, ``time_range``; time means of the global mean ``t850_K``,
        ``z500_m``, ``sp_hPa``, ``msl_hPa``; the maximum of the zonal-mean ``u`` at
        250 hPa per hemisphere and season (``u250_max_ms``, DJF / JJA / all);
        ``hypsometric_rms_m`` per layer (all points and ``..._above_ground``);
        ``continuity_rms_rel`` (continuity residual RMS over divergence RMS).
    """
    import xarray as xr

    from xphyda.physics.operators import SphereGrid, divergence

    from xphyda.errors import DataError

    ds = xr.open_zarr(str(path))
    missing = [v for v in ("z", "t", "u", "v", "w", "q", "sp", "level", "latitude", "longitude") if v not in ds]
    if missing:
        raise DataError(
            f"{str(path)!r} is not a corpus store written by `phyda simulate`: it lacks {missing}. "
            "The summary needs the corpus layout (docs/corpus.md); for other stores use `phyda residual`"
        )
    plev = ds["level"].values.astype(np.float64) * 100.0
    lat = ds["latitude"].values
    wlat = _area_weights(lat)
    grid = SphereGrid(lat, ds["longitude"].values)
    i500, i850, i250 = (int(np.argmin(np.abs(plev - p))) for p in (50000.0, 85000.0, 25000.0))
    n = ds.sizes["time"]
    acc = {k: 0.0 for k in ("t850", "z500", "sp", "msl", "c2", "d2")}
    hyd2 = np.zeros(plev.size - 1)
    hyd2_ag = np.zeros(plev.size - 1)
    n_ag = np.zeros(plev.size - 1)
    seasons = {"DJF": (12, 1, 2), "JJA": (6, 7, 8), "all": tuple(range(1, 13))}
    u250_sum = {k: np.zeros(lat.size) for k in seasons}
    u250_n = {k: 0 for k in seasons}
    for s in range(0, n, batch):
        x = ds.isel(time=slice(s, s + batch)).load()
        m = x.sizes["time"]

        def gmean(a, m=m):
            return float((np.asarray(a, dtype=np.float64).mean(axis=(0, -1)) * wlat).sum()) * m

        acc["t850"] += gmean(x["t"].values[:, i850])
        acc["z500"] += gmean(x["z"].values[:, i500]) / G
        acc["sp"] += gmean(x["sp"].values) / 100.0
        if "msl" in x:  # optional: corpora written before msl was added lack it
            acc["msl"] += gmean(x["msl"].values) / 100.0
        res = hypsometric_residual(x["z"].values, x["t"].values, x["q"].values, plev)
        hyd2 += (res ** 2).mean(axis=(0, 2, 3)) * m
        below = plev[None, :, None, None] > 0.95 * x["sp"].values[:, None].astype(np.float64)
        ag = ~below[:, 1:] & ~below[:, :-1]
        hyd2_ag += np.where(ag, res ** 2, 0.0).sum(axis=(0, 2, 3))
        n_ag += ag.sum(axis=(0, 2, 3))
        u = x["u"].values.astype(np.float64)
        v = x["v"].values.astype(np.float64)
        d = divergence(u, v, grid)
        w = x["w"].values.astype(np.float64)
        cont = np.diff(w, axis=1) / np.diff(plev)[None, :, None, None] + 0.5 * (d[:, 1:] + d[:, :-1])
        acc["c2"] += float((cont ** 2).mean()) * m
        acc["d2"] += float((d ** 2).mean()) * m
        months = x["time"].dt.month.values
        zm = u[:, i250].mean(axis=-1)  # (time, lat)
        for season, sel in seasons.items():
            mask = np.isin(months, sel)
            u250_sum[season] += zm[mask].sum(axis=0)
            u250_n[season] += int(mask.sum())
    jets = {}
    for season, total in u250_sum.items():
        if u250_n[season]:
            zm = total / u250_n[season]
            jets[season] = {"NH": round(float(zm[lat > 0].max()), 2),
                            "SH": round(float(zm[lat < 0].max()), 2)}
    return {
        "store": str(path),
        "n_states": int(n),
        "time_range": [str(ds["time"].values[0])[:19], str(ds["time"].values[-1])[:19]],
        "t850_K": round(acc["t850"] / n, 3),
        "z500_m": round(acc["z500"] / n, 2),
        "sp_hPa": round(acc["sp"] / n, 2),
        "msl_hPa": round(acc["msl"] / n, 2) if "msl" in ds else None,
        "u250_max_ms": jets,
        "hypsometric_rms_m": [round(float(x), 2) for x in np.sqrt(hyd2 / n)],
        "hypsometric_rms_m_above_ground": [round(float(x), 2) for x in np.sqrt(hyd2_ag / np.maximum(n_ag, 1))],
        "continuity_rms_rel": float(np.sqrt(acc["c2"] / acc["d2"])),
    }


def _corpus_stores(store) -> list[Path]:
    """The trajectory stores ``STORE/traj*.zarr`` that ``--summary`` reads, in trajectory order.

    Parameters
    ----------
    store : str or path-like
        A corpus folder written by :func:`simulate`.

    Returns
    -------
    list of pathlib.Path
        At least one store.

    Raises
    ------
    DataError
        If ``store`` does not exist, is not a folder, or holds no ``traj*.zarr`` store.
    """
    path = Path(store)
    expected = "expected a corpus folder written by `phyda simulate`, holding traj0.zarr, traj1.zarr ..."
    if not path.exists():
        raise DataError(f"{str(path)!r} does not exist; {expected}. Fix: check the path, or make a corpus "
                        f"first with `phyda simulate {path}`")
    if not path.is_dir():
        raise DataError(f"{str(path)!r} is a file, not a folder; {expected}. Fix: pass the corpus folder")
    stores = sorted(path.glob("traj*.zarr"), key=lambda p: (len(p.name), p.name))
    if not stores:
        if path.name.startswith("traj") and path.suffix == ".zarr":
            hint = f"pass the folder that holds it: `phyda simulate {path.parent} --summary`"
        else:
            hint = "pass the corpus folder itself (not its parent or a sub-folder)"
        found = sorted(p.name for p in path.iterdir())[:10]
        raise DataError(f"{str(path)!r} holds no traj*.zarr store (it has {found}); {expected}. Fix: {hint}")
    return stores


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m xphyda.data.simulate STORE [options]``.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    DataError
        With ``--summary``, if ``STORE`` is not a corpus folder holding ``traj*.zarr``
        stores (the ``phyda`` command prints it on one line and exits with 1).
    """
    p = argparse.ArgumentParser(prog="phyda simulate", description=simulate.__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--years", type=float, default=5.0, help="total stored years over all trajectories")
    p.add_argument("--spinup-days", type=float, default=360.0)
    p.add_argument("--trajectories", type=int, default=2)
    p.add_argument("--trajectory", type=int, nargs="*", default=None,
                   help="run only these trajectory indices (for parallel processes)")
    p.add_argument("--levels", type=float, nargs="+", default=list(DEFAULT_LEVELS_HPA))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-interval-hours", type=float, default=6.0)
    p.add_argument("--chunk-days", type=float, default=30.0)
    p.add_argument("--perturbation-k", type=float, default=0.1)
    p.add_argument("--data-start", default="2000-01-01")
    p.add_argument("--branch-from", default=None, metavar="CORPUS",
                   help="start from the spun-up states of this corpus instead of rest; --spinup-days is then the "
                        "time run on after the branch point before storing (e.g. 60)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--summary", action="store_true",
                   help="do not simulate: print corpus_summary() of every STORE/traj*.zarr as JSON")
    args = p.parse_args(argv)
    if args.summary:
        stores = _corpus_stores(args.store)
        print(json.dumps([corpus_summary(s) for s in stores], indent=1))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    command = "python -m xphyda.data.simulate " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    simulate(args.store, years=args.years, spinup_days=args.spinup_days, trajectories=args.trajectories,
             trajectory=args.trajectory or None, levels=args.levels, seed=args.seed,
             save_interval_hours=args.save_interval_hours, chunk_days=args.chunk_days,
             perturbation_k=args.perturbation_k, data_start=args.data_start,
             progress=not args.no_progress, command=command, branch_from=args.branch_from)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from xphyda.cli import main as _phyda  # one-line errors and the exit codes of `phyda`

    sys.exit(_phyda(["simulate", *sys.argv[1:]]))
