"""The units boundary: parse, check, convert to SI, and reattach.

MetPy's pint registry is the one registry (it reads UDUNITS strings such as
``m2 s-2``, ``Pa s**-1``, ``hPa``, ``degC``, ``millibars`` and GRIB's ``gpm``);
xphyda never changes it.  Computation happens on plain numpy arrays in SI; this
module is the only place that converts.

Examples
--------
>>> import xarray as xr
>>> t = xr.DataArray([0.0, 10.0], dims="x", attrs={"units": "degC"}, name="t")
>>> magnitude_si(t, "temperature").tolist()
[273.15, 283.15]
"""

from __future__ import annotations

from functools import cache

import numpy as np
import xarray as xr

from .errors import UnitsError

__all__ = ["QUANTITIES", "check_units", "from_si", "magnitude_si", "parse_units", "registry", "si_conversion", "to_si"]


@cache
def registry():
    """MetPy's unit registry (imported on first use)."""
    from metpy.units import units

    return units


# What each kind of quantity may be given in, and the SI unit it is converted to.
QUANTITIES: dict[str, tuple[str, str]] = {
    # kind: (dimensionality as a pint unit of that dimension, SI unit)
    "temperature": ("K", "K"),
    "speed": ("m s**-1", "m s**-1"),
    "pressure": ("Pa", "Pa"),
    "omega": ("Pa s**-1", "Pa s**-1"),
    "geopotential": ("m**2 s**-2", "m**2 s**-2"),  # also accepts metres (height), times g
    "specific_humidity": ("kg kg**-1", "kg kg**-1"),
    "relative_humidity": ("percent", "dimensionless"),
    "rate": ("s**-1", "s**-1"),
    "length": ("m", "m"),
}

_HINT = "set it with ds['{name}'].attrs['units'] = '{example}'"


def parse_units(text, *, name: str = "variable"):
    """Parse a units string with MetPy's registry.

    Parameters
    ----------
    text : str
        A UDUNITS-style or pint string (``"m2 s-2"``, ``"hPa"``, ``"gpm"``...).
    name : str
        Variable name used in error messages.

    Returns
    -------
    pint.Unit

    Raises
    ------
    UnitsError
        When ``text`` is missing, empty, or cannot be parsed.

    Examples
    --------
    >>> str(parse_units("m2 s-2"))
    'meter ** 2 / second ** 2'
    """
    ureg = registry()
    if text is None or (isinstance(text, str) and not text.strip()):
        raise UnitsError(
            f"variable {name!r} has no 'units' attribute; xphyda needs units to convert to SI. "
            f"Fix: ds[{name!r}].attrs['units'] = '...' (for example 'K', 'm s-1', 'm2 s-2')"
        )
    cleaned = str(text).strip()
    if cleaned in ("(0 - 1)", "0-1", "fraction"):
        cleaned = "dimensionless"
    try:
        return ureg.parse_units(cleaned)
    except Exception as exc:  # pint raises several types for bad strings
        raise UnitsError(
            f"variable {name!r} has units {text!r}, which cannot be parsed ({exc.__class__.__name__}). "
            f"Fix: ds[{name!r}].attrs['units'] = '...' with a UDUNITS string such as 'K' or 'm s-1'"
        ) from None


def check_units(unit, kind: str, *, name: str):
    """Raise :class:`UnitsError` unless ``unit`` has the dimensionality of ``kind``."""
    ureg = registry()
    expected = ureg.parse_units(QUANTITIES[kind][0])
    dims = ureg.Quantity(1, unit).dimensionality
    ok = dims == ureg.Quantity(1, expected).dimensionality
    if kind == "geopotential" and not ok:
        ok = dims == ureg.Quantity(1, "m").dimensionality
    if not ok:
        example = QUANTITIES[kind][0]
        expected_text = f"{ureg.Quantity(1, expected).dimensionality}"
        if kind == "geopotential":
            expected_text += " (geopotential) or [length] (geopotential height)"
        raise UnitsError(
            f"variable {name!r} is used as {kind.replace('_', ' ')} and must have dimensionality "
            f"{expected_text}, but its units {str(unit)!r} have {dims}. "
            f"If the units attribute is wrong, {_HINT.format(name=name, example=example)}; "
            "if the wrong variable was picked, pass the right one by keyword"
        )


def si_scale(unit, kind: str) -> tuple[float, float]:
    """``(scale, offset)`` such that ``value_si = value * scale + offset`` for ``unit`` of ``kind``.

    Geopotential height (a length) is scaled by MetPy's standard gravity.
    """
    ureg = registry()
    target = QUANTITIES[kind][1]
    factor = 1.0
    if kind == "geopotential" and ureg.Quantity(1, unit).dimensionality == ureg.Quantity(1, "m").dimensionality:
        from metpy.constants import earth_gravity

        factor = float(earth_gravity.m_as("m s**-2"))
        target = "m"
    zero = float(ureg.Quantity(0.0, unit).m_as(target))
    one = float(ureg.Quantity(1.0, unit).m_as(target))
    return (one - zero) * factor, zero * factor


def si_conversion(units, kind: str, *, name: str) -> tuple[float, float]:
    """Parse and check ``units`` (a units attribute) for ``kind``: ``(scale, offset)`` to SI.

    This is the whole units boundary in one call: it raises :class:`UnitsError`
    for missing, unparseable or wrongly dimensioned units, naming ``name``.

    Examples
    --------
    >>> si_conversion("hPa", "pressure", name="sp")
    (100.0, 0.0)
    """
    unit = parse_units(units, name=name)
    check_units(unit, kind, name=name)
    return si_scale(unit, kind)


def to_si(da: xr.DataArray, kind: str, *, name: str | None = None) -> xr.DataArray:
    """Return ``da`` converted to the SI unit of ``kind`` (lazily for dask arrays).

    Geopotential height (any length unit, such as ``m`` or ``gpm``) becomes
    geopotential (m2 s-2) through MetPy's standard gravity; relative humidity
    becomes a fraction.  ``da`` is not modified; the result carries the SI
    ``units`` attribute and float64 values.

    Parameters
    ----------
    da : xarray.DataArray
        Data with a ``units`` attribute.
    kind : str
        One of :data:`QUANTITIES`.
    name : str, optional
        Name used in messages (defaults to ``da.name``).

    Examples
    --------
    >>> import xarray as xr
    >>> gh = xr.DataArray([100.0], dims="x", attrs={"units": "gpm"})
    >>> round(float(to_si(gh, "geopotential")[0]), 3)
    980.665
    """
    name = name or str(da.name)
    scale, offset = si_conversion(da.attrs.get("units"), kind, name=name)
    out = da.astype(np.float64) * scale + offset if (scale, offset) != (1.0, 0.0) else da.astype(np.float64)
    return out.assign_attrs(units=QUANTITIES[kind][1])


def magnitude_si(da: xr.DataArray, kind: str, *, name: str | None = None) -> np.ndarray:
    """Like :func:`to_si` but returns a computed numpy array."""
    return np.asarray(to_si(da, kind, name=name).values)


def from_si(values: np.ndarray, unit_text: str, kind: str) -> np.ndarray:
    """Convert SI ``values`` of ``kind`` back to ``unit_text`` (the inverse of :func:`magnitude_si`)."""
    ureg = registry()
    unit = ureg.parse_units(unit_text)
    if kind == "geopotential" and ureg.Quantity(1, unit).dimensionality == ureg.Quantity(1, "m").dimensionality:
        from metpy.constants import earth_gravity

        return (ureg.Quantity(values, "m**2 s**-2") / earth_gravity).m_as(unit)
    return ureg.Quantity(values, QUANTITIES[kind][1]).m_as(unit)
