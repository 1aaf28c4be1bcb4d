"""The units boundary: parse (UDUNITS, pint, GRIB), check dimensionality, convert to SI."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from xphyda.errors import UnitsError
from xphyda.units import QUANTITIES, check_units, from_si, magnitude_si, parse_units, registry, to_si


@pytest.mark.parametrize(
    "text, expected",
    [
        ("m**2 s**-2", "meter ** 2 / second ** 2"),
        ("m2 s-2", "meter ** 2 / second ** 2"),
        ("m^2/s^2", "meter ** 2 / second ** 2"),
        ("Pa s**-1", "pascal / second"),
        ("Pa s-1", "pascal / second"),
        ("hPa", "hectopascal"),
        ("millibars", "millibar"),
        ("degC", "degree_Celsius"),
        ("K", "kelvin"),
        ("gpm", "meter"),
        ("m s**-1", "meter / second"),
        ("%", "percent"),
        ("(0 - 1)", "dimensionless"),
        ("kg kg**-1", "dimensionless"),
    ],
)
def test_parse(text, expected):
    assert str(parse_units(text)) == expected


def test_one_registry_is_metpys():
    from metpy.units import units

    assert registry() is units


@pytest.mark.parametrize("text", [None, "", "  "])
def test_missing(text):
    with pytest.raises(UnitsError, match="'z' has no 'units'"):
        parse_units(text, name="z")


@pytest.mark.parametrize(
    "units, kind, value, expected",
    [
        ("degC", "temperature", 0.0, 273.15),
        ("degF", "temperature", 32.0, 273.15),
        ("K", "temperature", 250.0, 250.0),
        ("hPa", "pressure", 850.0, 85000.0),
        ("millibars", "pressure", 500.0, 50000.0),
        ("knots", "speed", 1.0, 1852 / 3600),
        ("hPa s-1", "omega", 1.0, 100.0),
        ("gpm", "geopotential", 100.0, 980.665),
        ("m", "geopotential", 100.0, 980.665),
        ("dam", "geopotential", 10.0, 980.665),
        ("m2 s-2", "geopotential", 5.0, 5.0),
        ("%", "relative_humidity", 50.0, 0.5),
        ("g kg-1", "specific_humidity", 5.0, 0.005),
    ],
)
def test_to_si(units, kind, value, expected):
    da = xr.DataArray([value], dims="x", attrs={"units": units, "long_name": "kept"}, name="var")
    out = to_si(da, kind)
    np.testing.assert_allclose(out.values, [expected], rtol=1e-12)
    assert out.dtype == np.float64
    assert out.attrs["units"] == QUANTITIES[kind][1]
    assert da.attrs["units"] == units and da.values[0] == value  # input untouched
    back = from_si(out.values, units, kind)
    np.testing.assert_allclose(back, [value], rtol=1e-12, atol=1e-12)


def test_geopotential_height_uses_metpy_gravity():
    from metpy.constants import earth_gravity

    da = xr.DataArray([1.0], dims="x", attrs={"units": "m"})
    assert magnitude_si(da, "geopotential")[0] == float(earth_gravity.m_as("m s**-2"))


@pytest.mark.parametrize(
    "units, kind",
    [("m s-1", "temperature"), ("K", "speed"), ("m s-1", "omega"), ("K", "geopotential"), ("Pa", "speed")],
)
def test_wrong_dimensionality(units, kind):
    with pytest.raises(UnitsError) as info:
        check_units(parse_units(units), kind, name="myvar")
    msg = str(info.value)
    assert "'myvar'" in msg and kind.replace("_", " ") in msg and "attrs['units']" in msg


def test_lazy_for_dask():
    da = xr.DataArray(dsa.ones((4, 4), chunks=2), dims=("y", "x"), attrs={"units": "degC"})
    out = to_si(da, "temperature")
    assert out.chunks is not None
    np.testing.assert_allclose(out.values, 274.15)
