"""Quality-control flags and synthetic observations."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xphyda.errors import ObservationError, VariableError
from xphyda.obs import FLAGS, build_operator, build_problem, simulate
from xphyda.obs.qc import background_check, duplicates, flag_attributes, match_times


def test_flags_are_cf():
    attrs = flag_attributes("t", "air_temperature")
    assert attrs["flag_values"].tolist() == list(range(8))
    assert attrs["flag_meanings"].split() == list(FLAGS)
    assert attrs["standard_name"] == "air_temperature status_flag"


def test_background_check_formula():
    d = np.array([4.9, 5.1, -5.1, 0.0])
    assert background_check(d, 0.6, 0.8, k=5.0).tolist() == [False, True, True, False]


def test_duplicates_keep_the_first():
    lat = [10.0, 10.0, 10.0, 90.0, 90.0, 10.0]
    lon = [20.0, -340.0, 20.0, 0.0, 123.0, 20.0]
    p = [500e2, 500e2, 500e2, 500e2, 500e2, 850e2]
    assert duplicates(lat, lon, p, None, [True] * 6).tolist() == [False, True, True, False, True, False]
    assert duplicates(lat, lon, p, [0, 0, 1, 0, 0, 0], [True] * 6).tolist() == [
        False,
        True,
        False,
        False,
        True,
        False,
    ]
    assert duplicates(lat, lon, p, None, [False, True, True, True, True, True]).tolist() == [
        False,
        False,
        True,
        False,
        True,
        False,
    ]


def test_match_times_without_window():
    bt = np.array(["2020-01-01"], dtype="datetime64[ns]")
    index, ok = match_times(np.array(["2020-03-01", "NaT"], dtype="datetime64[ns]"), bt, window=None)
    assert index.tolist() == [0, 0] and ok.tolist() == [True, False]


def test_every_observation_gets_a_flag(era5):
    obs = xr.Dataset(
        {"t": ("station", [250.0, np.nan, 250.0, 255.0, 255.0, 400.0], {"units": "K"})},
        coords={
            "lat": ("station", [45.0, 45.0, 45.0, 10.0, 10.0, -20.0]),
            "lon": ("station", [7.0, 8.0, 9.0, 20.0, 20.0, 30.0]),
            "pressure": ("station", [500.0, 500.0, 100.0, 850.0, 850.0, 850.0], {"units": "hPa"}),
        },
    )
    problem = build_problem(era5, obs)
    assert problem.targets["t"].flags.tolist() == [0, 1, 2, 0, 4, 0]  # the gross error waits for the method


def test_simulate_fraction_is_exact_and_seeded(coarse_era5):
    a = simulate(coarse_era5, fraction=0.1, seed=3)
    b = simulate(coarse_era5, fraction=0.1, seed=3)
    c = simulate(coarse_era5, fraction=0.1, seed=4)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert not a.t.equals(c.t)
    seen = a.t.notnull()
    assert int(seen.isel(level=0).sum()) == round(0.1 * 64 * 128)
    xr.testing.assert_equal(
        seen.isel(level=0), a.z.notnull().isel(level=0)
    )  # columns: all variables and levels
    noise = (a.t - coarse_era5.t).where(seen)
    assert float(noise.std()) == pytest.approx(1.0, rel=0.1)
    assert a.t.attrs["units"] == "K" and a.t_error.attrs["standard_name"] == "air_temperature standard_error"


def test_simulated_humidity_noise_is_per_level(coarse_era5):
    from xphyda.obs.uncertainty import default_obs_error

    truth = coarse_era5.assign(q=coarse_era5.t * 0 + 2e-3)
    truth["q"].attrs = {"units": "g kg-1", "standard_name": "specific_humidity"}
    truth["q"] = truth.q * 1e3  # in g/kg: the noise is drawn in the variable's own units
    truth["q"].attrs = {"units": "g kg-1", "standard_name": "specific_humidity"}
    obs = simulate(truth, fraction=1.0, seed=0)
    expected = default_obs_error("specific_humidity", truth.level.values * 100.0) * 1e3
    np.testing.assert_allclose(obs.q_error.values, expected)
    assert obs.q_error.dims == ("level",) and obs.q_error.attrs["units"] == "g kg-1"
    measured = (obs.q - truth.q).std(("time", "latitude", "longitude")).values
    np.testing.assert_allclose(measured, expected, rtol=0.05)
    assert obs.t_error.ndim == 0  # other kinds keep one value
    points = simulate(truth, n_stations=2000, seed=1)
    inside = points.q.notnull()
    spread = (points.q - points.q.mean("station")).where(inside).std(("time", "station")).values
    np.testing.assert_allclose(spread, expected, rtol=0.1)  # a constant field: the noise alone
    problem = build_problem(truth.isel(time=[0]), obs.isel(time=[0])[["q", "q_error"]])
    np.testing.assert_allclose(np.unique(problem.targets["q"].sigma_o), np.unique(expected * 1e-3))


def test_simulate_stations(coarse_era5):
    obs = simulate(coarse_era5, n_stations=4000, noise=0.0, seed=0)
    assert obs.t.dims == ("time", "level", "station") and "t_error" not in obs
    assert abs(float(np.sin(np.deg2rad(obs.lat)).mean())) < 0.03  # uniform on the sphere
    op = build_operator(
        obs.lat.values, obs.lon.values, coarse_era5.latitude.values, coarse_era5.longitude.values
    )
    expected = op.matrix @ coarse_era5.t.isel(time=0, level=1).values.astype(float).ravel()
    np.testing.assert_allclose(obs.t.isel(time=0, level=1).values, expected, rtol=1e-6)


def test_simulate_given_stations_keep_their_ids(coarse_era5):
    net = xr.Dataset(
        coords={
            "lat": ("site", [51.5, -33.9]),
            "lon": ("site", [-0.1, 151.2]),
            "wmo": ("site", [3772, 94767]),
        }
    )
    obs = simulate(
        coarse_era5, stations=net, noise={"t": 0.5, "z": "5 m"}, variables=["t", "z"], obs_dim="site"
    )
    assert obs.wmo.values.tolist() == [3772, 94767]
    assert float(obs.z_error) == pytest.approx(5 * 9.80665)
    pairs = simulate(coarse_era5, stations=[(51.5, -0.1), (-33.9, 151.2)], noise=0.0)
    assert pairs.sizes["station"] == 2


def test_simulate_bad_input(coarse_era5):
    with pytest.raises(ObservationError, match="exactly one"):
        simulate(coarse_era5, fraction=0.1, n_stations=10)
    with pytest.raises(ObservationError, match="fraction"):
        simulate(coarse_era5, fraction=1.5)
    with pytest.raises(VariableError, match="q"):
        simulate(coarse_era5, n_stations=5, variables=["q"])
    with pytest.raises(ObservationError, match="non-negative"):
        simulate(coarse_era5, n_stations=5, noise=-1.0)
    before = coarse_era5.copy(deep=True)
    simulate(coarse_era5, fraction=0.2)
    xr.testing.assert_identical(coarse_era5, before)
