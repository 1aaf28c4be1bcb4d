"""Bad input: every error is a PhydaError subclass that is also the matching builtin, and its
message names the variable or coordinate at fault (and, where there is one, the fix)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xphyda  # noqa: F401
from xphyda.errors import (
    CoordinateError,
    DataError,
    GridError,
    ModelError,
    ObservationError,
    PhydaError,
    ResidualNameError,
    UnitsError,
    VariableError,
)
from xphyda.physics import physics_residual, residual_summary


def state(nlat=19, nlon=36, levels=(850.0, 700.0, 500.0)):
    """A small valid ERA5-like state (u v w z t on pressure levels)."""
    lat = np.linspace(90, -90, nlat)
    lon = np.arange(nlon) * 360.0 / nlon
    rng = np.random.default_rng(0)
    shape = (len(levels), nlat, nlon)
    units = {"u": "m s-1", "v": "m s-1", "w": "Pa s-1", "z": "m2 s-2", "t": "K"}
    offset = {"u": 0.0, "v": 0.0, "w": 0.0, "z": 3e4, "t": 250.0}
    data = {k: (("level", "latitude", "longitude"), offset[k] + rng.standard_normal(shape), {"units": u})
            for k, u in units.items()}
    return xr.Dataset(
        data,
        coords={
            "level": ("level", list(levels), {"units": "hPa"}),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )


def check(exc, builtin, names, func, *args, **kwargs):
    """``func`` raises ``exc`` (a PhydaError and a ``builtin``) whose message contains every name."""
    with pytest.raises(exc) as info:
        func(*args, **kwargs)
    assert isinstance(info.value, PhydaError) and isinstance(info.value, builtin)
    message = str(info.value)
    for name in names:
        assert name in message, f"{name!r} not in message: {message}"
    return message


def test_hierarchy():
    for cls, builtin in [
        (CoordinateError, KeyError), (VariableError, KeyError), (ResidualNameError, KeyError),
        (UnitsError, ValueError), (GridError, ValueError), (ObservationError, ValueError),
        (DataError, ValueError), (ModelError, LookupError),
    ]:
        assert issubclass(cls, PhydaError) and issubclass(cls, builtin)
    # KeyError would quote its message; ours reads as written
    assert str(CoordinateError("no latitude")) == "no latitude"
    assert str(PhydaError()) == "PhydaError"


def test_valid_state_works():
    for name in ("continuity", "hydrostatic", "geostrophic"):
        physics_residual(state(), name)


# 1
def test_no_latitude():
    ds = state().rename(latitude="row")
    ds["row"].attrs = {}
    check(CoordinateError, KeyError, ["latitude", "row", "standard_name"], physics_residual, ds, "geostrophic")


# 2
def test_two_candidate_latitudes():
    ds = state()  # a second grid in the same dataset: both are latitude dimensions
    ds["orography"] = ("lat_fine", np.zeros(37))
    ds = ds.assign_coords(lat_fine=("lat_fine", np.linspace(90, -90, 37), {"units": "degrees_north"}))
    msg = check(CoordinateError, KeyError, ["'lat_fine'", "'latitude'", "2 candidate"], physics_residual, ds,
                "geostrophic")
    assert "lat='lat_fine'" in msg  # the fix
    physics_residual(ds, "geostrophic", lat="latitude")


# 3
def test_unsorted_latitude():
    ds = state().isel(latitude=[0, 2, 1] + list(range(3, 19)))
    check(GridError, ValueError, ["latitude", "sortby"], physics_residual, ds, "geostrophic")


# 4
def test_duplicated_latitude():
    ds = state()
    ds = ds.assign_coords(latitude=np.r_[ds.latitude.values[:5], ds.latitude.values[4:18]])
    check(GridError, ValueError, ["latitude", "duplicated"], physics_residual, ds, "geostrophic")


# 5
def test_duplicated_longitude():
    ds = state().isel(longitude=[0, 0] + list(range(1, 36)))
    check(GridError, ValueError, ["longitude", "duplicated"], physics_residual, ds, "geostrophic")


# 6
def test_unsorted_pressure_levels():
    ds = state(levels=(850.0, 500.0, 700.0))
    check(GridError, ValueError, ["level", "monotonic", "sortby"], physics_residual, ds, "continuity")


# 7
def test_duplicated_pressure_levels():
    ds = state(levels=(850.0, 700.0, 700.0))
    check(GridError, ValueError, ["level", "duplicates"], physics_residual, ds, "hydrostatic")


# 8
def test_model_levels_instead_of_pressure():
    ds = state().rename(level="lev")
    ds["lev"] = ("lev", [1, 2, 3], {"standard_name": "atmosphere_hybrid_sigma_pressure_coordinate", "units": "1"})
    msg = check(GridError, ValueError, ["lev", "pressure"], physics_residual, ds, "hydrostatic")
    assert "interpolate" in msg


# 9
def test_height_levels_instead_of_pressure():
    ds = state().rename(level="height")
    ds["height"] = ("height", [1000.0, 3000.0, 5500.0], {"units": "m", "positive": "up"})
    check(GridError, ValueError, ["height", "pressure"], physics_residual, ds, "continuity")


# 10
def test_one_level_where_two_are_needed():
    ds = state().isel(level=[1])
    check(GridError, ValueError, ["hydrostatic", "two", "level"], physics_residual, ds, "hydrostatic")
    check(GridError, ValueError, ["continuity", "level"], physics_residual, state().sel(level=700.0), "continuity")


# 11
def test_missing_units():
    ds = state()
    del ds["t"].attrs["units"]
    msg = check(UnitsError, ValueError, ["'t'", "units"], physics_residual, ds, "hydrostatic")
    assert "attrs['units']" in msg


# 12
def test_wrong_units():
    ds = state()
    ds["t"].attrs["units"] = "m s-1"
    msg = check(UnitsError, ValueError, ["'t'", "temperature", "[temperature]", "meter / second"],
                physics_residual, ds, "hydrostatic")
    assert "attrs['units'] = 'K'" in msg


# 13
def test_unparseable_units():
    ds = state()
    ds["u"].attrs["units"] = "furlongs/wibble"
    check(UnitsError, ValueError, ["'u'", "furlongs/wibble", "UDUNITS"], physics_residual, ds, "continuity")


# 14
def test_wrong_units_for_omega():
    ds = state()
    ds["w"].attrs["units"] = "m s-1"  # vertical velocity in height coordinates, not omega
    check(UnitsError, ValueError, ["'w'", "omega"], physics_residual, ds, "continuity")


# 15
def test_all_nan_variable():
    ds = state()
    ds["v"][:] = np.nan
    check(VariableError, KeyError, ["'v'", "NaN"], physics_residual, ds, "geostrophic")


# 16
def test_mixed_longitude_conventions():
    ds = state().assign_coords(longitude=np.arange(36) * 10.0 - 10.0)  # -10 .. 340
    check(GridError, ValueError, ["longitude", "conventions"], physics_residual, ds, "geostrophic")


# 17
def test_unknown_residual_suggests_the_closest():
    msg = check(ResidualNameError, KeyError, ["hydrostatik", "'hydrostatic'"], physics_residual, state(), "hydrostatik")
    assert "Did you mean" in msg
    check(ResidualNameError, KeyError, ["vorticity", "continuity"], state().phyda.physics_residual, "vorticity")


# 18
def test_unknown_override():
    check(VariableError, KeyError, ["uwind", "continuity"], physics_residual, state(), "continuity", uwind="u")


# 19
def test_override_names_a_missing_variable():
    check(VariableError, KeyError, ["uwnd", "'u'"], physics_residual, state(), "continuity", u="uwnd")


# 20
def test_override_is_not_a_name():
    ds = state()
    check(VariableError, KeyError, ["u=", "str"], physics_residual, ds, "continuity", u=ds.u)


# 21
def test_two_dimensional_latitude():
    ds = state()
    lat2d, lon2d = np.meshgrid(ds.latitude.values, ds.longitude.values, indexing="ij")
    ds = ds.rename(latitude="y", longitude="x").drop_vars(["y", "x"]).assign_coords(
        lat=(("y", "x"), lat2d, {"units": "degrees_north"}), lon=(("y", "x"), lon2d, {"units": "degrees_east"})
    )
    msg = check(GridError, ValueError, ["'lat'", "2-D"], physics_residual, ds, "geostrophic")
    assert "regrid" in msg


# 22
def test_missing_variable():
    msg = check(VariableError, KeyError, ["'w'", "omega", "w='my_name'"], physics_residual,
                state().drop_vars("w"), "continuity")
    assert "lagrangian_tendency_of_air_pressure" in msg


# 23
def test_two_variables_with_one_standard_name():
    ds = state().rename(u="wind_east", v="wind_north")
    ds["wind_east"].attrs["standard_name"] = "eastward_wind"
    ds["wind_east_2"] = ds["wind_east"].copy()
    ds["wind_north"].attrs["standard_name"] = "northward_wind"
    msg = check(VariableError, KeyError, ["'wind_east'", "'wind_east_2'", "eastward_wind"], physics_residual, ds,
                "geostrophic")
    assert "u='wind_east'" in msg  # the fix
    physics_residual(ds, "geostrophic", u="wind_east_2")


# 24
def test_latitude_out_of_range():
    ds = state().assign_coords(latitude=np.linspace(95, -95, 19))
    check(GridError, ValueError, ["latitude", "[-90, 90]", "Fix:", "lat="], physics_residual, ds, "geostrophic")


# 25
def test_descending_longitude():
    ds = state().isel(longitude=slice(None, None, -1))
    check(GridError, ValueError, ["longitude", "descending"], physics_residual, ds, "geostrophic")


# 26
def test_repeated_seam_column():
    ds = state()
    ds = xr.concat([ds, ds.isel(longitude=[0]).assign_coords(longitude=[360.0])], dim="longitude")
    msg = check(GridError, ValueError, ["longitude", "seam"], physics_residual, ds, "geostrophic")
    assert "isel(longitude=slice(None, -1))" in msg


# 27
def test_variable_without_the_horizontal_grid():
    ds = state()
    ds["t"] = ds["t"].isel(longitude=0, drop=True)
    check(VariableError, KeyError, ["'t'", "longitude"], physics_residual, ds, "hydrostatic")


# 28
def test_coordinate_override_that_is_not_a_coordinate():
    check(CoordinateError, KeyError, ["'latitud'", "latitude"], physics_residual, state(), "geostrophic",
          lat="latitud")
    ds = state().drop_vars("level")
    check(CoordinateError, KeyError, ["'level'", "assign_coords"], physics_residual, ds, "hydrostatic", level="level")


# 29
def test_grid_too_small():
    ds = state().isel(latitude=[8, 9])
    check(GridError, ValueError, ["2 latitudes", "at least 3"], physics_residual, ds, "geostrophic")


# 30
def test_level_units_not_pressure():
    ds = state()
    ds["level"].attrs["units"] = "K"  # isentropic levels
    check(GridError, ValueError, ["'level'", "pressure", "'K'"], physics_residual, ds, "hydrostatic")


# 31
def test_non_positive_pressure():
    ds = state(levels=(850.0, 500.0, 0.0))
    check(GridError, ValueError, ["level", "non-positive", "Fix:", "attrs['units']"], physics_residual, ds,
          "continuity")


# 32
def test_no_level_coordinate():
    ds = state().drop_vars("level")
    check(CoordinateError, KeyError, ["level", "air_pressure"], physics_residual, ds, "continuity")


# 33
def test_summary_with_nothing_to_compute():
    ds = state()[["t"]]
    check(VariableError, KeyError, ["no residual", "'t'"], residual_summary, ds)
    check(VariableError, KeyError, ["uwind"], residual_summary, state(), uwind="u")


# 34
def test_variable_without_level_dimension():
    ds = state()
    ds["w"] = ds["w"].isel(level=0, drop=True)
    check(VariableError, KeyError, ["'w'", "level"], physics_residual, ds, "continuity")


# 35
def test_latitude_that_is_not_a_dimension():
    ds = state().rename(latitude="y").assign_coords(latitude=("y", np.linspace(90, -90, 19)))
    ds = ds.drop_vars("y")
    check(CoordinateError, KeyError, ["'latitude'", "'y'", "swap_dims"], physics_residual, ds, "geostrophic")


# 36
def test_nan_in_a_coordinate():
    ds = state()
    lat = ds.latitude.values.copy()
    lat[3] = np.nan
    ds = ds.assign_coords(latitude=lat)
    msg = check(GridError, ValueError, ["'latitude'", "NaN", "1 not finite", "Fix:"], physics_residual, ds,
                "geostrophic")
    # the fix the message gives works
    fixed = ds.isel(latitude=np.isfinite(ds["latitude"].values))
    assert "ds.isel(latitude=np.isfinite(ds['latitude'].values))" in msg
    physics_residual(fixed, "geostrophic")


# 37
def test_longitude_out_of_range():
    ds = state().assign_coords(longitude=np.arange(36) * 10.0 + 200.0)  # 200 .. 550
    msg = check(GridError, ValueError, ["'longitude'", "[-180, 360]", "Fix:"], physics_residual, ds, "geostrophic")
    assert "% 360" in msg
    fixed = ds.assign_coords(longitude=ds["longitude"] % 360).sortby("longitude")
    physics_residual(fixed, "geostrophic")


def test_option_errors_of_assimilate_say_how_to_fix_them(era5):
    """Every refusal of an option value names a fix (several did not: review of 6 December 2026)."""
    import xphyda
    from xphyda.errors import PhydaError

    obs = xphyda.obs.simulate(era5, n_stations=30, seed=0)
    for kw in (dict(method="kalman"), dict(method="oi", qc=-1), dict(method="oi", length_scale="5 kg"),
               dict(method="oi", length_scale=-3.0), dict(method="oi", background_error={"t": -1.0}),
               dict(method="oi", background_error={"t": [1.0, 2.0, 3.0]})):
        with pytest.raises(PhydaError, match="Fix: ") as info:
            era5.phyda.assimilate(obs, **kw)
        assert "Traceback" not in str(info.value), kw
