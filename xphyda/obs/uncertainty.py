"""Observation and background error standard deviations: arguments, CF ancillary variables, defaults.

Where an observation error comes from, in order:

1. the ``obs_error`` argument, per variable (``{"t": 0.5, "z": 20.0}``) or one
   value for all, as numbers in each observation variable's own units, or as
   strings / pint quantities with units (``"0.5 K"``);
2. a CF ancillary variable: a variable listed in the observation's
   ``ancillary_variables`` attribute whose ``standard_name`` carries the
   ``standard_error`` modifier (``"air_temperature standard_error"``); its
   ``units`` default to the observation's;
3. :data:`DEFAULT_OBS_ERROR` for the variable's kind of quantity; for specific
   humidity on pressure levels, :func:`default_obs_error` instead: 10 % of the
   saturation specific humidity of the standard atmosphere at the observation's
   pressure (about 10 % relative humidity), which falls from 1 g/kg near the
   surface to 0.008 g/kg at 200 hPa, as humidity itself does.

Errors are standard deviations of a difference, so unit conversion uses the
scale only (0.5 degC is 0.5 K); geopotential height errors in metres are
converted to geopotential through g.

Examples
--------
>>> DEFAULT_OBS_ERROR["temperature"], DEFAULT_OBS_ERROR["geopotential"]
(1.0, 100.0)
>>> [f"{e:.1e}" for e in default_obs_error("specific_humidity", [20000.0, 85000.0])]
['8.1e-06', '6.6e-04']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..errors import ObservationError, UnitsError
from ..units import QUANTITIES, check_units, parse_units, registry, si_scale

__all__ = [
    "DEFAULT_BACKGROUND_ERROR",
    "DEFAULT_OBS_ERROR",
    "HUMIDITY_RELATIVE_ERROR",
    "default_obs_error",
    "error_to_si",
    "observation_error",
    "scale_to_si",
    "standard_saturation_humidity",
]

DEFAULT_OBS_ERROR: dict[str, float] = {
    "temperature": 1.0,  # K: radiosonde and surface thermometers, including representativeness
    "speed": 2.0,  # m s-1: radiosonde / aircraft / 10-m winds
    "geopotential": 100.0,  # m2 s-2: about 10 m of height
    "pressure": 100.0,  # Pa: 1 hPa for station pressure
    "specific_humidity": 1.0e-3,  # kg kg-1: near the surface; see default_obs_error for pressure levels
    "relative_humidity": 0.1,  # fraction
    "omega": 0.1,  # Pa s-1
    "rate": 1.0e-5,  # s-1
    "length": 10.0,  # m
}
"""Default observation-error standard deviations per kind of quantity, in SI units.

Typical of in-situ observations (radiosondes, surface stations, aircraft) with
representativeness error on a grid of about 100 km, as used by operational
centres' first-guess checks.  Specific humidity observed at a known pressure
uses :func:`default_obs_error` (its error shrinks with height as humidity does);
the value here is for observations without a pressure (2-m humidity).
"""

HUMIDITY_RELATIVE_ERROR = 0.1
"""Default specific-humidity error as a fraction of the standard atmosphere's saturation value."""

DEFAULT_BACKGROUND_ERROR: dict[str, float] = {
    "temperature": 1.5,
    "speed": 3.0,
    "geopotential": 200.0,
    "pressure": 200.0,
    "specific_humidity": 1.5e-3,
    "relative_humidity": 0.15,
    "omega": 0.2,
    "rate": 2.0e-5,
    "length": 20.0,
}
"""Fallback background-error standard deviations per kind (SI), used when they cannot be estimated."""


def standard_saturation_humidity(pressure) -> np.ndarray:
    """Saturation specific humidity (kg kg-1) of the ICAO standard atmosphere at ``pressure`` (Pa).

    The temperature is the standard atmosphere's (288.15 K at 1013.25 hPa, lapse
    rate 6.5 K/km up to 216.65 K at the tropopause, 226.3 hPa); the saturation
    vapour pressure over liquid water is Bolton's (1980)
    ``611.2 exp(17.67 (T - 273.15) / (T - 29.65))`` Pa, the convention of
    radiosonde relative humidity.  Above the tropopause the value is the
    tropopause's: air enters the stratosphere freeze-dried at the cold point
    and keeps that specific humidity.

    Parameters
    ----------
    pressure : array_like
        Pressure in Pa, positive.

    Returns
    -------
    numpy.ndarray
        ``epsilon e_s / (p - (1 - epsilon) e_s)``, same shape as ``pressure``.

    Examples
    --------
    >>> round(float(standard_saturation_humidity(101325.0)) * 1e3, 2)   # g/kg at sea level, 15 degC
    10.53
    """
    from ..physics.constants import constants

    c = constants()
    p = np.asarray(pressure, dtype=np.float64)
    lapse, t0, p0, t_tropopause = 0.0065, 288.15, 101325.0, 216.65
    exponent = lapse * c.Rd / c.g
    p = np.maximum(p, p0 * (t_tropopause / t0) ** (1.0 / exponent))  # the tropopause, 226.3 hPa
    t = t0 * (p / p0) ** exponent
    e_s = 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
    return c.epsilon * e_s / (p - (1.0 - c.epsilon) * e_s)


def default_obs_error(kind: str, pressure=None) -> np.ndarray:
    """Default observation-error standard deviation (SI) of a ``kind`` of quantity.

    :data:`DEFAULT_OBS_ERROR` ``[kind]``, except for specific humidity at a known
    pressure: :data:`HUMIDITY_RELATIVE_ERROR` times the standard atmosphere's
    saturation specific humidity (:func:`standard_saturation_humidity`), about
    10 % relative humidity: 1.0 g/kg at 1000 hPa, 0.66 at 850, 0.14 at 500 and
    0.008 at 200 hPa and above.  (One value at every level would make upper-air humidity
    observations useless: 1 g/kg is 20 times the humidity at 200 hPa.)

    Parameters
    ----------
    kind : str
        A key of :data:`DEFAULT_OBS_ERROR`.
    pressure : array_like, optional
        Pressure of each observation in Pa (NaN where unknown).

    Returns
    -------
    numpy.ndarray
        Shape of ``pressure`` (a 0-d array without it).

    Examples
    --------
    >>> [f"{e:.2g}" for e in default_obs_error("specific_humidity", [100000.0, 50000.0, 20000.0])]
    ['0.001', '0.00014', '8.1e-06']
    >>> float(default_obs_error("temperature", [50000.0])[0]), float(default_obs_error("temperature"))
    (1.0, 1.0)
    """
    value = DEFAULT_OBS_ERROR[kind]
    if pressure is None:
        return np.asarray(value, dtype=np.float64)
    p = np.asarray(pressure, dtype=np.float64)
    out = np.full(p.shape, value)
    if kind == "specific_humidity":
        known = np.isfinite(p) & (p > 0)
        out[known] = HUMIDITY_RELATIVE_ERROR * standard_saturation_humidity(p[known])
    return out


def scale_to_si(units_text, kind: str | None, *, name: str) -> tuple[float, float]:
    """``(scale, offset)`` from ``units_text`` to SI for a quantity of ``kind`` (any kind when ``None``)."""
    unit = parse_units(units_text, name=name)
    if kind is not None:
        check_units(unit, kind, name=name)
        return si_scale(unit, kind)
    ureg = registry()
    base = ureg.Quantity(1.0, unit).to_base_units()
    zero = ureg.Quantity(0.0, unit).to_base_units().m
    return float(base.m - zero), float(zero)


def _same_dimensionality(a, b) -> bool:
    ureg = registry()
    return ureg.Quantity(1, a).dimensionality == ureg.Quantity(1, b).dimensionality


def error_to_si(value, units_text, kind: str | None, *, name: str) -> float:
    """One error given as a number (in ``units_text``), a string with units or a pint quantity, in SI."""
    ureg = registry()
    if isinstance(value, str) or hasattr(value, "magnitude"):
        try:
            q = ureg.Quantity(value) if isinstance(value, str) else value
        except Exception:  # noqa: BLE001 - pint raises several types for bad strings
            raise UnitsError(
                f"observation error {value!r} for {name!r} cannot be parsed; give a number in the "
                "variable's units "
                "or a string such as '0.5 K'"
            ) from None
        units_text, value = str(q.units), float(q.magnitude)
        if (
            kind is not None
            and kind != "geopotential"
            and not _same_dimensionality(q.units, QUANTITIES[kind][0])
        ):
            raise UnitsError(
                f"observation error {q} for {name!r} has the wrong dimensionality for a "
                f"{kind.replace('_', ' ')}; "
                f"give it in units such as {QUANTITIES[kind][0]!r}"
            )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ObservationError(
            f"observation error for {name!r} must be a number or a quantity; got {value!r}"
        ) from None
    return number * scale_to_si(units_text, kind, name=name)[0]


def _positive(values: np.ndarray, observed: np.ndarray, name: str, source: str) -> np.ndarray:
    bad = observed & ~(np.isfinite(values) & (values > 0))
    if bad.any():
        found = np.unique(values[bad])[:5]
        raise ObservationError(
            f"observation errors of {name!r} from {source} must be positive and finite where "
            f"{name!r} is observed; "
            f"found {found.tolist()} at {int(bad.sum())} observations. Fix: give positive standard deviations"
        )
    return values


def _ancillary(da: xr.DataArray, obs: xr.Dataset, name: str) -> xr.DataArray | None:
    for anc in str(da.attrs.get("ancillary_variables", "")).split():
        if anc in obs.variables and str(obs[anc].attrs.get("standard_name", "")).endswith("standard_error"):
            return obs[anc]
    return None


def observation_error(
    da: xr.DataArray,
    obs: xr.Dataset,
    *,
    name: str,
    target: str,
    kind: str | None,
    obs_error=None,
    pressure=None,
) -> tuple[np.ndarray, str]:
    """Observation-error standard deviations of ``da`` in SI (broadcast to its shape) and their source.

    Parameters
    ----------
    da : xarray.DataArray
        The observations (with ``units``).
    obs : xarray.Dataset
        The dataset holding ``da`` and its ancillary variables.
    name, target : str
        The observation's name and the background variable it observes.
    kind : str or None
        Kind of quantity (:data:`xphyda.units.QUANTITIES`).
    obs_error : number, str, pint.Quantity or mapping, optional
        See the module notes.
    pressure : numpy.ndarray, optional
        Pressure of each observation in Pa, flattened in ``da``'s order (for the
        default of specific humidity; see :func:`default_obs_error`).

    Returns
    -------
    sigma : numpy.ndarray
        Same shape as ``da``.
    source : str
        ``"argument"``, ``"ancillary variable NAME"`` or ``"default"``.
    """
    units = da.attrs.get("units")
    observed = np.isfinite(np.asarray(da.values, dtype=np.float64))
    given = obs_error
    if isinstance(obs_error, Mapping):
        given = obs_error.get(name, obs_error.get(target))
    if given is not None:
        value = error_to_si(given, units, kind, name=name)
        return _positive(np.full(da.shape, value), observed, name, "the obs_error argument"), "argument"
    anc = _ancillary(da, obs, name)
    if anc is not None:
        scale = scale_to_si(anc.attrs.get("units", units), kind, name=str(anc.name))[0]
        values = np.asarray(anc.broadcast_like(da).transpose(*da.dims).values, dtype=np.float64) * scale
        return _positive(
            values, observed, name, f"ancillary variable {anc.name!r}"
        ), f"ancillary variable {anc.name}"
    if kind is None:
        raise ObservationError(
            f"no observation error for {name!r}: it is not a known kind of quantity, has no CF ancillary "
            "standard_error variable, and so has no default. Fix: pass "
            f"obs_error={{{name!r}: value}} in its units"
        )
    if pressure is None:
        return np.full(da.shape, DEFAULT_OBS_ERROR[kind]), "default"
    return default_obs_error(kind, pressure).reshape(da.shape), "default"
