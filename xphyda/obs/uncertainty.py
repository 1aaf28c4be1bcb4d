"""Observation and background error standard deviations: arguments, CF ancillary variables, defaults.

Where an observation error comes from, in order:

1. the ``obs_error`` argument, per variable (``{"t": 0.5, "z": 20.0}``) or one
   value for all, as numbers in each observation variable's own units, or as
   strings / pint quantities with units (``"0.5 K"``);
2. a CF ancillary variable: a variable listed in the observation's
   ``ancillary_variables`` attribute whose ``standard_name`` carries the
   ``standard_error`` modifier (``"air_temperature standard_error"``); its
   ``units`` default to the observation's;
3. :data:`DEFAULT_OBS_ERROR` for the variable's kind of quantity.

Errors are standard deviations of a difference, so unit conversion uses the
scale only (0.5 degC is 0.5 K); geopotential height errors in metres are
converted to geopotential through g.

Examples
--------
>>> DEFAULT_OBS_ERROR["temperature"], DEFAULT_OBS_ERROR["geopotential"]
(1.0, 100.0)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..errors import ObservationError, UnitsError
from ..units import QUANTITIES, check_units, parse_units, registry, si_scale

__all__ = ["DEFAULT_BACKGROUND_ERROR", "DEFAULT_OBS_ERROR", "error_to_si", "observation_error", "scale_to_si"]

DEFAULT_OBS_ERROR: dict[str, float] = {
    "temperature": 1.0,  # K: radiosonde and surface thermometers, including representativeness
    "speed": 2.0,  # m s-1: radiosonde / aircraft / 10-m winds
    "geopotential": 100.0,  # m2 s-2: about 10 m of height
    "pressure": 100.0,  # Pa: 1 hPa for station pressure
    "specific_humidity": 1.0e-3,  # kg kg-1
    "relative_humidity": 0.1,  # fraction
    "omega": 0.1,  # Pa s-1
    "rate": 1.0e-5,  # s-1
    "length": 10.0,  # m
}
"""Default observation-error standard deviations per kind of quantity, in SI units.

Typical of in-situ observations (radiosondes, surface stations, aircraft) with
representativeness error on a grid of about 100 km, as used by operational
centres' first-guess checks.
"""

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
    da: xr.DataArray, obs: xr.Dataset, *, name: str, target: str, kind: str | None, obs_error=None
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
    return np.full(da.shape, DEFAULT_OBS_ERROR[kind]), "default"
