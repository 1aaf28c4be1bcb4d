"""Grid and variable discovery by CF attributes and by the names ERA5, WeatherBench2 and cfgrib use."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xphyda.errors import CoordinateError, GridError, VariableError
from xphyda.grid import VARIABLES, discover_grid, find_coord, find_variable


def _ds(lat="latitude", lon="longitude", level="level", lat_values=None, attrs=True, **extra_coords):
    lat_values = np.linspace(90, -90, 19) if lat_values is None else lat_values
    coords = {
        lat: (lat, lat_values, {"units": "degrees_north"} if attrs else {}),
        lon: (lon, np.arange(36) * 10.0, {"units": "degrees_east"} if attrs else {}),
    }
    if level:
        coords[level] = (level, [1000.0, 850.0, 500.0], {"units": "hPa"})
    coords.update(extra_coords)
    dims = [d for d in (level, lat, lon) if d]
    shape = tuple(len(coords[d][1]) for d in dims)
    return xr.Dataset({"t": (dims, np.full(shape, 250.0), {"units": "K"})}, coords=coords)


def test_era5_sample(era5):
    g = discover_grid(era5)
    assert (g.lat, g.lon, g.level, g.time, g.member) == ("latitude", "longitude", "level", "time", None)
    assert g.lat_descending and g.lon_convention == "0..360" and g.periodic
    np.testing.assert_array_equal(g.level_pa, [50000.0, 85000.0])
    assert g.shape == (181, 360)
    assert g.sphere().global_lat


def test_cfgrib_names(ecmwf):
    g = discover_grid(ecmwf)
    assert (g.lat, g.lon, g.level, g.time, g.member) == ("latitude", "longitude", "isobaricInhPa", "time", "number")
    # one time: cfgrib's 'time' (reference time) and 'valid_time' are both scalars; the CF time wins
    g1 = discover_grid(ecmwf.isel(time=0))
    assert g1.time == "valid_time"


@pytest.mark.parametrize(
    "lat, lon, level",
    [
        ("latitude", "longitude", "level"),  # ERA5 (old CDS)
        ("latitude", "longitude", "pressure_level"),  # ERA5 (new CDS)
        ("lat", "lon", "level"),  # WeatherBench2
        ("latitude", "longitude", "isobaricInhPa"),  # cfgrib
        ("lat", "lon", "plev"),  # CMIP
        ("lat", "lon", "lev"),
    ],
)
def test_names_without_attributes(lat, lon, level):
    ds = _ds(lat, lon, level, attrs=False)
    g = discover_grid(ds)
    assert (g.lat, g.lon, g.level) == (lat, lon, level)


def test_level_without_units_defaults_to_hpa_for_era5_names():
    ds = _ds()
    del ds["level"].attrs["units"]
    np.testing.assert_array_equal(discover_grid(ds).level_pa, [1e5, 85000.0, 50000.0])


@pytest.mark.parametrize("units, pa", [("hPa", 85000.0), ("millibars", 85000.0), ("mbar", 85000.0), ("Pa", 850.0)])
def test_level_units(units, pa):
    ds = _ds()
    ds["level"].attrs["units"] = units
    assert discover_grid(ds).level_pa[1] == pa


def test_cf_attributes():
    ds = _ds("y", "x", "p")
    ds["y"].attrs = {"standard_name": "latitude"}
    ds["x"].attrs = {"axis": "X", "units": "degrees_east"}
    ds["p"].attrs = {"standard_name": "air_pressure", "units": "hPa"}
    g = discover_grid(ds)
    assert (g.lat, g.lon, g.level) == ("y", "x", "p")


def test_time_and_member():
    ds = _ds().expand_dims(valid_time=[np.datetime64("2024-01-01")], number=[0, 1])
    g = discover_grid(ds)
    assert (g.time, g.member) == ("valid_time", "number")


def test_scalar_height_coordinate_is_not_a_pressure_level():
    ds = _ds(level=None).assign_coords(height=((), 2.0, {"units": "m", "standard_name": "height"}))
    assert discover_grid(ds).level is None


@pytest.mark.parametrize(
    "lat, global_lat",
    [
        (np.linspace(90, -90, 181), True),  # with pole rows
        (np.linspace(-89.5, 89.5, 180), True),  # offset by half a spacing
        (np.rad2deg(np.arcsin(np.polynomial.legendre.leggauss(48)[0])), True),  # Gaussian
        (np.linspace(20, 70, 51), False),  # regional
    ],
)
def test_latitude_kinds(lat, global_lat):
    ds = _ds(lat_values=lat, level=None)
    assert discover_grid(ds).sphere().global_lat is global_lat


def test_longitude_conventions():
    ds = _ds(level=None)
    assert discover_grid(ds).lon_convention == "0..360"
    west = ds.assign_coords(longitude=ds.longitude - 180)
    g = discover_grid(west)
    assert g.lon_convention == "-180..180" and g.periodic


def test_overrides():
    ds = _ds().rename(latitude="a", longitude="b", level="c")
    for k in ("a", "b", "c"):
        ds[k].attrs = {"units": "hPa"} if k == "c" else {}
    with pytest.raises(CoordinateError):
        discover_grid(ds)
    g = discover_grid(ds, lat="a", lon="b", level="c")
    assert (g.lat, g.lon, g.level) == ("a", "b", "c")


def test_find_coord_required():
    ds = _ds(level=None)
    assert find_coord(ds, "level", required=False) is None
    with pytest.raises(CoordinateError, match="no level coordinate"):
        find_coord(ds, "level")
    with pytest.raises(GridError, match="pressure"):
        discover_grid(ds.assign_coords(sigma=("sigma", [0.5, 0.9])), need_levels=True)


def test_grid_is_frozen_and_holds_copies():
    ds = _ds()
    g = discover_grid(ds)
    with pytest.raises(AttributeError):
        g.lat = "x"
    with pytest.raises(ValueError):  # read-only copies
        g.lat_values[0] = 0.0
    assert not np.shares_memory(g.lat_values, ds.latitude.values)


# ----------------------------------------------------------------------------- variables
@pytest.mark.parametrize(
    "key, name",
    [("z", "z"), ("z", "gh"), ("z", "hgt"), ("t", "ta"), ("t", "air"), ("u", "uwnd"), ("u", "u_component_of_wind"),
     ("v", "vwnd"), ("w", "omega"), ("w", "wap"), ("q", "hus"), ("r", "rh"), ("msl", "prmsl"), ("sp", "ps"),
     ("t2m", "2t"), ("u10", "10u"), ("v10", "10m_v_component_of_wind")],
)
def test_find_variable_by_name(key, name):
    ds = xr.Dataset({name: ("x", [1.0])})
    assert find_variable(ds, key) == name


def test_find_variable_by_standard_name():
    ds = xr.Dataset({"my_t": ("x", [1.0], {"standard_name": "air_temperature"})})
    assert find_variable(ds, "t") == "my_t"
    # t and t2m share a standard name: the name settles it
    ds = xr.Dataset({k: ("x", [1.0], {"standard_name": "air_temperature"}) for k in ("t", "t2m")})
    assert find_variable(ds, "t") == "t"


def test_geopotential_preferred_over_height():
    ds = xr.Dataset({"gh": ("x", [1.0]), "z": ("x", [9.8])})
    assert find_variable(ds, "z") == "z"


def test_find_variable_missing_and_override():
    ds = xr.Dataset({"foo": ("x", [1.0])})
    assert find_variable(ds, "u", required=False) is None
    assert find_variable(ds, "u", "foo") == "foo"
    with pytest.raises(VariableError, match="'u'"):
        find_variable(ds, "u")


def test_alias_table_is_consistent():
    from xphyda.units import QUANTITIES

    for key, alias in VARIABLES.items():
        assert alias.kind in QUANTITIES, key
        assert key in alias.names or key in ("gh",) or alias.names, key
