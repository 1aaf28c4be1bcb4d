"""Observation Datasets: kinds, variables, units, errors, and the errors that teach."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xphyda.errors import ObservationError, PhydaError, UnitsError, VariableError
from xphyda.obs import DEFAULT_OBS_ERROR, build_problem, observation_kind


def stations(
    values,
    *,
    name="t",
    units="K",
    dim="station",
    lat=(45.0, -30.0, 10.0),
    lon=(7.0, 300.0, -60.0),
    pressure=(500.0, 850.0, 700.0),
    **attrs,
):
    coords = {"lat": (dim, list(lat)), "lon": (dim, list(lon))}
    if pressure is not None:
        coords["pressure"] = (dim, list(pressure), {"units": "hPa"})
    return xr.Dataset(
        {name: (dim, np.asarray(values, dtype=float), {"units": units, **attrs})}, coords=coords
    )


# --------------------------------------------------------------------------- kinds
def test_kinds_are_read_from_the_structure(era5):
    assert observation_kind(stations([250.0, 270.0, 260.0], dim="index"), era5) == "points"
    single = xr.Dataset(
        {"t": ((), 250.0, {"units": "K"})},
        coords={"lat": 10.0, "lon": 20.0, "pressure": ((), 500.0, {"units": "hPa"})},
    )
    assert observation_kind(single, era5) == "points"
    assert observation_kind(era5, era5) == "grid"
    flipped = (
        era5.assign_coords(longitude=((era5.longitude + 180) % 360) - 180)
        .sortby("longitude")
        .sortby("latitude")
    )
    assert observation_kind(flipped, era5) == "grid"
    assert observation_kind(era5.isel(latitude=slice(None, None, 2)), era5) == "gridded"


def test_curvilinear_obs_are_explained(era5):
    ds = xr.Dataset(
        {"t": (("y", "x"), np.zeros((2, 2)), {"units": "K"})},
        coords={"lat": (("y", "x"), np.zeros((2, 2))), "lon": (("y", "x"), np.zeros((2, 2)))},
    )
    with pytest.raises((ObservationError, PhydaError), match="stack|1-D"):
        build_problem(era5, ds)


def test_single_station_and_any_dimension_name(era5):
    single = xr.Dataset(
        {"t": ((), 250.0, {"units": "K"})},
        coords={"lat": 10.0, "lon": 20.0, "pressure": ((), 500.0, {"units": "hPa"})},
    )
    problem = build_problem(era5, single)
    assert problem.targets["t"].H.shape == (1, 2 * 181 * 360)
    problem = build_problem(era5, stations([250.0, 270.0, 260.0], dim="obs_index"))
    assert problem.count("used") == 3


def test_soundings_with_a_level_dimension(era5):
    ds = xr.Dataset(
        {"t": (("station", "plev"), [[250.0, 270.0, 280.0]], {"units": "K"})},
        coords={
            "lat": ("station", [50.0]),
            "lon": ("station", [10.0]),
            "plev": ("plev", [50000.0, 85000.0, 100000.0], {"units": "Pa"}),
        },
    )
    t = build_problem(era5, ds).targets["t"]
    assert t.flags.tolist() == [0, 0, 2]  # 1000 hPa lies below the background's lowest level


# --------------------------------------------------------------------------- bad input
def test_obs_without_coordinates(era5):
    ds = xr.Dataset({"t": ("station", [250.0], {"units": "K"})})
    with pytest.raises(ObservationError, match="latitude and longitude"):
        build_problem(era5, ds)
    as_vars = xr.Dataset(
        {"t": ("station", [250.0], {"units": "K"}), "lat": ("station", [1.0]), "lon": ("station", [1.0])}
    )
    with pytest.raises(ObservationError, match=r"set_coords"):
        build_problem(era5, as_vars)


def test_unknown_variable_is_named(era5):
    with pytest.raises(VariableError, match="'foo'.*rename"):
        build_problem(era5, stations([1.0, 2.0, 3.0], name="foo", units="m s-1"))
    with pytest.raises(VariableError, match="t2m"):  # 2-m temperature is not upper-air temperature
        build_problem(era5, stations([1.0, 2.0, 3.0], name="t2m"))
    with pytest.raises(VariableError, match="not in the observations"):
        build_problem(era5, stations([250.0, 260.0, 270.0]), variables=["q"])


def test_aliases_and_standard_names_find_the_variable(era5):
    obs = stations([250.0, 260.0, 270.0], name="air_temp", standard_name="air_temperature")
    assert list(build_problem(era5, obs).targets) == ["t"]
    assert list(build_problem(era5, stations([250.0, 260.0, 270.0], name="ta")).targets) == ["t"]


def test_celsius_and_kelvin_give_the_same_problem(era5):
    k = build_problem(era5, stations([250.0, 270.0, 260.0])).targets["t"]
    c = build_problem(era5, stations([250.0 - 273.15, 270.0 - 273.15, 260.0 - 273.15], units="degC")).targets[
        "t"
    ]
    np.testing.assert_allclose(c.y, k.y)
    np.testing.assert_allclose(c.sigma_o, k.sigma_o)


def test_height_in_metres_becomes_geopotential(era5):
    g = 9.80665
    z = build_problem(era5, stations([5500 * g, 1500 * g, 3000 * g], name="z", units="m2 s-2")).targets["z"]
    gh = build_problem(era5, stations([5500.0, 1500.0, 3000.0], name="gh", units="m")).targets["z"]
    np.testing.assert_allclose(gh.y, z.y, rtol=1e-12)


def test_a_speed_is_not_a_temperature(era5):
    with pytest.raises(UnitsError, match="'t'.*temperature"):
        build_problem(era5, stations([1.0, 2.0, 3.0], units="m s-1"))
    with pytest.raises(UnitsError, match="units"):
        build_problem(
            era5, stations([1.0, 2.0, 3.0], units=None).pipe(lambda d: d.assign(t=d.t.assign_attrs(units="")))
        )


def test_all_nan_and_outside(era5):
    with pytest.raises(ObservationError, match="all NaN"):
        build_problem(era5, stations([np.nan] * 3))
    europe = era5.sel(latitude=slice(70, 30), longitude=slice(0, 40))
    far = stations([250.0, 260.0, 270.0], lat=(-40.0, -50.0, 0.0), lon=(100.0, 200.0, 300.0))
    with pytest.raises(ObservationError, match="none of the 3 observations.*outside_grid"):
        build_problem(europe, far)
    high = stations([250.0, 260.0, 270.0], pressure=(100.0, 200.0, 250.0))
    with pytest.raises(ObservationError, match="levels 500-850 hPa"):
        build_problem(era5, high)


def test_missing_pressure_on_a_multilevel_background(era5):
    with pytest.raises(ObservationError, match="no pressure.*assign_coords"):
        build_problem(era5, stations([250.0, 260.0, 270.0], pressure=None))
    one_level = era5.isel(level=[0])
    assert build_problem(one_level, stations([250.0, 260.0, 270.0], pressure=None)).count("used") == 3


def test_several_background_times_need_observation_times(surface):
    obs = stations([280.0, 281.0, 282.0], name="t2m", pressure=None)
    with pytest.raises(ObservationError, match="carry no time"):
        build_problem(surface, obs)
    timed = obs.assign_coords(time=("station", surface.time.values[[0, 2, 3]] + np.timedelta64(2, "h")))
    t = build_problem(surface, timed).targets["t2m"]
    assert t.time_index.tolist() == [0, 2, 3]
    late = obs.assign_coords(time=("station", np.array(["2026-04-20"] * 3, dtype="datetime64[ns]")))
    with pytest.raises(ObservationError, match="outside_time_window"):
        build_problem(surface, late)


# --------------------------------------------------------------------------- errors
def test_observation_errors_argument_ancillary_default(era5):
    obs = stations([250.0, 260.0, 270.0])
    assert build_problem(era5, obs).targets["t"].sigma_o.tolist() == [DEFAULT_OBS_ERROR["temperature"]] * 3
    assert build_problem(era5, obs, obs_error={"t": 0.5}).targets["t"].sigma_o.tolist() == [0.5] * 3
    assert build_problem(era5, obs, obs_error="0.7 K").targets["t"].sigma_o.tolist() == [0.7] * 3
    anc = obs.assign(
        t_err=("station", [0.3, 0.4, 0.5], {"standard_name": "air_temperature standard_error", "units": "K"})
    )
    anc["t"].attrs["ancillary_variables"] = "t_err"
    problem = build_problem(era5, anc)
    assert problem.targets["t"].sigma_o.tolist() == [0.3, 0.4, 0.5]
    assert problem.variables[0].error_source == "ancillary variable t_err"
    assert build_problem(era5, anc, obs_error={"t": 2.0}).targets["t"].sigma_o.tolist() == [2.0] * 3
    gh = build_problem(era5, stations([5500.0, 1500.0, 3000.0], name="gh", units="m"), obs_error={"gh": 10.0})
    assert gh.targets["z"].sigma_o[0] == pytest.approx(98.0665)


def test_humidity_default_error_follows_the_standard_atmosphere():
    import metpy.calc as mpcalc
    from metpy.units import units

    from xphyda.obs.uncertainty import default_obs_error, standard_saturation_humidity

    p = np.array([1000.0, 850.0, 700.0, 500.0, 300.0, 200.0, 100.0]) * 100.0
    err = default_obs_error("specific_humidity", p)
    assert np.all(np.diff(err[:5]) < 0) and np.all(np.diff(err) <= 0)  # shrink with height, as humidity does
    assert err[0] == pytest.approx(1.0e-3, rel=0.05) and 5e-6 < err[5] < 1.5e-5
    # cross-check: MetPy's saturation mixing ratio at the standard atmosphere's temperature (troposphere)
    trop = p > 23000.0
    height = mpcalc.pressure_to_height_std(p[trop] * units.Pa)
    temperature = mpcalc.height_to_pressure_std(height)  # round trip: same pressures
    np.testing.assert_allclose(temperature.m_as("Pa"), p[trop], rtol=1e-6)
    t_std = (288.15 - 6.5 * height.m_as("km")) * units.K
    mixing = mpcalc.saturation_mixing_ratio(p[trop] * units.Pa, t_std).m_as("")
    np.testing.assert_allclose(standard_saturation_humidity(p[trop]), mixing / (1 + mixing), rtol=0.02)
    assert default_obs_error("temperature", p).tolist() == [DEFAULT_OBS_ERROR["temperature"]] * p.size
    assert float(default_obs_error("specific_humidity")) == DEFAULT_OBS_ERROR["specific_humidity"]


def test_humidity_observations_get_the_default_of_their_pressure(era5):
    from xphyda.obs.uncertainty import default_obs_error

    bg = era5.assign(q=era5.t * 0 + 1e-3)
    bg["q"].attrs = {"units": "kg kg-1", "standard_name": "specific_humidity"}
    obs = stations([1e-3, 2e-4, 5e-4], name="q", units="kg kg-1", pressure=(850.0, 500.0, 700.0))
    sigma = build_problem(bg, obs).targets["q"].sigma_o
    np.testing.assert_allclose(sigma, default_obs_error("specific_humidity", [85000.0, 50000.0, 70000.0]))
    assert sigma[1] < sigma[2] < sigma[0]
    surface = stations([8e-3] * 3, name="q", units="g kg-1", pressure=None)
    one_level = bg.isel(level=[0])
    assert build_problem(one_level, surface).targets["q"].sigma_o.tolist() == [1e-3] * 3


def test_negative_or_zero_errors(era5):
    obs = stations([250.0, 260.0, 270.0])
    for bad in (0.0, -1.0):
        with pytest.raises(ObservationError, match="'t'.*positive"):
            build_problem(era5, obs, obs_error={"t": bad})
    anc = obs.assign(e=("station", [0.3, 0.0, 0.5], {"standard_name": "air_temperature standard_error"}))
    anc["t"].attrs["ancillary_variables"] = "e"
    with pytest.raises(ObservationError, match="ancillary variable 'e'"):
        build_problem(era5, anc)
    with pytest.raises(UnitsError, match="wrong dimensionality"):
        build_problem(era5, obs, obs_error={"t": "2 m/s"})


def test_relative_humidity_in_percent(ecmwf):
    bg = ecmwf.isel(time=[0])
    obs = stations([50.0, 60.0, 70.0], name="r", units="%")
    r = build_problem(bg, obs).targets["r"]
    np.testing.assert_allclose(r.y, [0.5, 0.6, 0.7])
    assert r.sigma_o.tolist() == [DEFAULT_OBS_ERROR["relative_humidity"]] * 3


def test_gridded_obs_are_regridded_and_gaps_stay_unobserved(era5):
    fine = era5.copy()
    fine["t"] = fine.t.where(fine.latitude < 60)
    bg = era5.isel(latitude=slice(1, None, 4), longitude=slice(0, None, 4))  # a coarser analysis grid
    problem = build_problem(bg, fine[["t"]], regrid="conservative")
    assert problem.kind == "gridded"
    t = problem.targets["t"]
    template = problem.variables[0].template
    assert template.dims == ("time", "level", "latitude", "longitude") and template.shape == (1, 2, 45, 90)
    north = (template.latitude > 62).broadcast_like(template).values.ravel()
    assert (t.flags[north] == 1).all() and (t.flags[~north & np.isfinite(t.y)] == 0).all()


def test_inputs_are_not_modified(era5):
    obs = stations([250.0 - 273.15, 270.0 - 273.15, 260.0 - 273.15], units="degC")
    before_bg, before_obs = era5.copy(deep=True), obs.copy(deep=True)
    build_problem(era5, obs, obs_error={"t": 0.5})
    xr.testing.assert_identical(era5, before_bg)
    xr.testing.assert_identical(obs, before_obs)


def test_observations_next_to_a_missing_background_are_flagged_and_the_gap_stays_local(era5):
    """A land-masked background (NaN in places): observations interpolated from a NaN point are flagged
    background_missing; before, their NaN innovations spread NaN over the OI analysis (180 NaN became 3600)."""
    from xphyda.assimilate import assimilate
    from xphyda.obs import FLAGS, simulate

    gap = era5.copy(deep=True)
    box = (gap.level == 850) & (gap.latitude > 25) & (gap.latitude < 40) & (gap.longitude > 75) & (gap.longitude < 105)
    gap["t"] = gap.t.where(~box)
    obs = simulate(era5, n_stations=400, seed=1)
    inside = ((obs.lat > 24) & (obs.lat < 41) & (obs.lon > 74) & (obs.lon < 106)).values
    problem = build_problem(gap, obs[["t"]])
    flags = problem.targets["t"].flags.reshape(2, -1)  # (level, station)
    assert set(np.flatnonzero(flags[1] == FLAGS["background_missing"])) <= set(np.flatnonzero(inside))
    assert (flags[1] == FLAGS["background_missing"]).sum() >= 1 and not (flags[0] == FLAGS["background_missing"]).any()
    out = assimilate(gap, obs[["t"]], method="oi")
    np.testing.assert_array_equal(out.t.isnull().values, gap.t.isnull().values)  # NaN exactly where they were
    assert float(abs(out.t - gap.t).max()) > 0


def test_a_scalar_level_compares_observations_at_it(era5):
    """``era5.sel(level=500)``: stations at 500 hPa are used, those at 850 hPa are outside the grid; before, the
    pressure was ignored and 850 hPa temperatures were compared with t500."""
    from xphyda.obs import FLAGS

    problem = build_problem(era5.sel(level=500), stations([250.0, 260.0, 270.0], pressure=(500.0, 850.0, 500.0)))
    np.testing.assert_array_equal(problem.targets["t"].flags, [0, FLAGS["outside_grid"], 0])
    # without pressures the observations are taken at the one level, as for a background without levels
    assert build_problem(era5.sel(level=500), stations([250.0, 260.0, 270.0], pressure=None)).count("used") == 3
    # a surface field has no level: its observations are used whatever pressure they carry (station pressure)
    b = era5.sel(level=500)
    b["sp"] = (b.t.dims, np.full(b.t.shape, 1.0e5, np.float32), {"units": "Pa", "standard_name": "surface_air_pressure"})
    sp = stations([99000.0, 98000.0, 97000.0], name="sp", units="Pa", pressure=(990.0, 980.0, 970.0))
    assert build_problem(b, sp).count("used") == 3


def test_platforms_on_different_dimensions_and_two_latitudes_are_explained(era5):
    a = stations([252.0, 270.0], lat=(48.2, 10.0), lon=(16.4, 20.0), pressure=(500.0, 850.0))
    b = xr.Dataset({"ta": ("flight", [253.0, 262.0], {"units": "K"})},
                   coords={"flat": ("flight", [50.0, 52.0]), "flon": ("flight", [10.0, 11.0]),
                           "fp": ("flight", [500.0, 700.0], {"units": "hPa"})})
    with pytest.raises(ObservationError, match=r"'ta' \(dimensions \('flight',\)\) has no coordinates.*Fix: put"):
        build_problem(era5, xr.merge([a, b]))
    named = b.rename(flat="latitude", flon="longitude")
    with pytest.raises(ObservationError, match=r"latitude is ambiguous.*\['lat', 'latitude'\].*Fix: drop"):
        build_problem(era5, xr.merge([a, named]))


def test_levels_in_pascals_without_units_are_explained(era5):
    pa = era5.assign_coords(level=era5.level * 100)  # keeps the attribute 'hPa'
    with pytest.raises(UnitsError, match=r"'level' has units 'hPa' and values up to 85000 hPa.*Fix: .*'Pa'"):
        build_problem(pa, stations([250.0, 260.0, 270.0]))
    bare = pa.assign_coords(level=("level", pa.level.values))
    with pytest.raises(UnitsError, match=r"'level' has no units and values up to 85000 hPa"):
        build_problem(bare, stations([250.0, 260.0, 270.0]))
    obs = stations([250.0, 260.0, 270.0], pressure=(50000.0, 85000.0, 70000.0))
    with pytest.raises(UnitsError, match=r"observation pressure 'pressure' has units 'hPa' and values up to 85000"):
        build_problem(era5, obs)
