"""``assimilate(background, obs, method="oi")``: the xarray front on real backgrounds."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
import xarray as xr

from xphyda.assimilate import METHODS
from xphyda.assimilate import assimilate as _assimilate
from xphyda.baselines.oi import correlation, unit_vectors
from xphyda.errors import ObservationError, PhydaError
from xphyda.obs import FLAGS, simulate
from xphyda.physics.constants import EARTH_RADIUS

assimilate = functools.partial(_assimilate, method="oi")  # this file tests the OI front (the default is PhyDA)


def displaced(ds: xr.Dataset, cells: int = 2) -> xr.Dataset:
    """A background with a displacement error: every field shifted east by ``cells`` columns."""
    out = ds.copy(deep=True)
    for v in out.data_vars:
        out[v] = ds[v].roll(longitude=cells, roll_coords=False)
    return out


def test_single_observation_known_answer_through_the_front(coarse_era5):
    bg = coarse_era5
    i, j = 20, 37
    lat, lon = float(bg.latitude[i]), float(bg.longitude[j])
    b = float(bg.t.isel(time=0, level=0, latitude=i, longitude=j))
    obs = xr.Dataset(
        {"t": ("station", [b + 2.0], {"units": "K"})},
        coords={
            "lat": ("station", [lat]),
            "lon": ("station", [lon - 360.0]),
            "pressure": ("station", [500.0], {"units": "hPa"}),
        },
    )
    sb, so, L = 1.2, 0.9, 700e3
    out = assimilate(bg, obs, background_error={"t": sb}, obs_error={"t": so}, length_scale="700 km")
    inc = (out.t - bg.t).isel(time=0).astype(float)
    la, lo = np.meshgrid(bg.latitude.values, bg.longitude.values, indexing="ij")
    dist = EARTH_RADIUS * np.linalg.norm(unit_vectors(la, lo) - unit_vectors(lat, lon), axis=-1)
    expected = correlation(dist, L) * sb**2 / (sb**2 + so**2) * 2.0
    np.testing.assert_allclose(inc.isel(level=0).values, expected, atol=2e-5)  # float32 output
    assert float(abs(inc.isel(level=1)).max()) == 0.0  # levels independent by default
    xr.testing.assert_identical(out.z, bg.z)  # unobserved variables untouched
    assert out.t_innovation.item() == pytest.approx(2.0, abs=1e-4)
    assert out.t_residual.item() == pytest.approx(2.0 * so**2 / (sb**2 + so**2), abs=1e-4)


def test_osse_point_observations_beat_the_background(coarse_era5, rmse):
    truth = coarse_era5
    bg = displaced(truth)
    obs = simulate(truth, n_stations=600, seed=0)
    out = assimilate(bg, obs, method="oi")
    for v in ("t", "z"):
        assert rmse(out[v], truth[v]) < 0.85 * rmse(bg[v], truth[v])
    used = out.t_flag == FLAGS["used"]
    assert float(abs(out.t_residual.where(used)).mean()) < float(abs(out.t_innovation.where(used)).mean())


def test_osse_masked_grid_and_time_shifted_surface(coarse_surface, rmse):
    truth = coarse_surface.isel(time=[1, 2])
    bg = coarse_surface.isel(time=[0, 1]).assign_coords(time=truth.time)  # the state 1.8 days earlier
    obs = simulate(truth, fraction=0.05, seed=2)
    out = assimilate(bg, obs)
    assert obs.t2m.dims == out.t2m_flag.dims == ("time", "latitude", "longitude")
    for v in ("t2m", "u10", "v10", "msl"):
        for t in range(2):
            assert rmse(out[v].isel(time=t), truth[v].isel(time=t)) < 0.9 * rmse(
                bg[v].isel(time=t), truth[v].isel(time=t)
            )
    assert int((out.t2m_flag == FLAGS["missing_value"]).sum()) == int(obs.t2m.isnull().sum())


def test_gridded_observations_finer_and_coarser(era5, coarse_era5, rmse):
    truth = coarse_era5
    bg = displaced(truth)
    product = era5[["t"]].where(abs(era5.latitude) <= 50)  # a 1-degree tropical product, NaN elsewhere
    tropics = {"latitude": slice(40, -40)}
    before = rmse(bg.t.sel(**tropics), truth.t.sel(**tropics))
    # finer than the analysis grid: superobservations, diagnostics on the analysis grid
    fine = assimilate(bg, product, obs_error={"t": 0.5})
    assert fine.t_flag.dims == ("time", "level", "latitude", "longitude")
    assert rmse(fine.t.sel(**tropics), truth.t.sel(**tropics)) < 0.5 * before
    assert bool((fine.t_flag.sel(latitude=slice(60, 90)) == FLAGS["missing_value"]).all())
    # coarser (5 degrees): observed at its own points, diagnostics on its own grid
    coarse = product.isel(latitude=slice(None, None, 5), longitude=slice(None, None, 5))
    out = assimilate(bg, coarse, obs_error={"t": 0.5})
    assert out.t_flag.dims == ("time", "level", "obs_latitude", "obs_longitude")
    assert out.t_flag.shape == (1, 2, 37, 72)
    assert rmse(out.t.sel(**tropics), truth.t.sel(**tropics)) < 0.8 * before
    # or regridded on request
    forced = assimilate(bg, coarse, obs_error={"t": 0.5}, regrid="bilinear")
    assert forced.t_flag.dims == ("time", "level", "latitude", "longitude")


def test_multivariable_multilevel_ecmwf(ecmwf):
    truth = ecmwf.isel(time=[1])
    bg = ecmwf.isel(time=[0]).assign_coords(time=truth.time, valid_time=truth.valid_time)
    obs = simulate(truth, n_stations=150, seed=5)
    rng = np.random.default_rng(0)
    p = rng.uniform(
        300.0, 1000.0, obs.sizes["station"]
    )  # each station at its own pressure: log-p interpolation
    single = obs.isel(isobaricInhPa=0, drop=True).assign_coords(pressure=("station", p, {"units": "hPa"}))
    for v in ("t", "u", "v", "z", "r"):
        single[v] = obs[v].isel(isobaricInhPa=0, drop=True)
    out = assimilate(bg, single, vertical_length_scale=0.5)
    for v in ("t", "u", "v", "z", "r"):
        assert out[v].dtype == bg[v].dtype and out[v].attrs == bg[v].attrs
        used = out[f"{v}_flag"] == 0
        assert float((out[f"{v}_residual"] ** 2).where(used).mean()) < float(
            (out[f"{v}_innovation"] ** 2).where(used).mean()
        )
    assert out.r_innovation.attrs["units"] == "%"


def test_output_is_cf_and_complete(coarse_era5):
    bg = coarse_era5
    obs = simulate(bg, n_stations=50, seed=1, variables=["t"])
    obs["t"] = obs.t.where(obs.lat < 80)
    obs["t"][0, 0, 0] = obs.t[0, 0, 0] + 50.0  # a gross error
    out = assimilate(bg, obs, qc=5.0)
    assert set(out.data_vars) == {"t", "z", "t_flag", "t_innovation", "t_residual", "t_obs_error"}
    for v in ("t", "z"):
        assert out[v].dims == bg[v].dims and out[v].dtype == bg[v].dtype and out[v].attrs == bg[v].attrs
    assert out.t_flag.dtype == np.int8 and "flag_meanings" in out.t_flag.attrs
    assert int(out.t_flag[0, 0, 0]) == FLAGS["rejected_by_background_check"]
    assert float(out.t_innovation[0, 0, 0]) > 40
    missing = obs.t.isnull()
    assert bool((out.t_flag.where(missing) == FLAGS["missing_value"]).sum() == missing.sum())
    assert out.t_innovation.attrs["units"] == "K" and "O - B" in out.t_innovation.attrs["long_name"]
    first = out.attrs["history"].splitlines()[0]
    assert "assimilate(method='oi')" in first and "rejected by background check" in first
    assert out.attrs["history"].splitlines()[1:] == bg.attrs.get("history", "").splitlines()
    assert out.attrs["title"] == bg.attrs["title"]


def test_obs_coordinates_that_clash_are_renamed(coarse_era5):
    bg = coarse_era5
    obs = simulate(bg, n_stations=20, seed=1, variables=["t"]).rename(lat="latitude", lon="longitude")
    obs = obs.assign_coords(time=("time", bg.time.values + np.timedelta64(1, "h")))
    out = assimilate(bg, obs)
    assert out.obs_latitude.dims == ("station",) and out.latitude.dims == ("latitude",)
    assert out.t_flag.dims == ("obs_time", "level", "station")


def test_inputs_are_never_modified(coarse_era5):
    bg = coarse_era5
    obs = simulate(bg, n_stations=30, seed=1)
    obs["t"] = obs.t - 273.15
    obs["t"].attrs["units"] = "degC"
    b0, o0 = bg.copy(deep=True), obs.copy(deep=True)
    assimilate(bg, obs, obs_error={"t": 0.5})
    xr.testing.assert_identical(bg, b0)
    xr.testing.assert_identical(obs, o0)


def test_methods_and_options():
    assert "oi" in METHODS


def test_bad_method_and_options(coarse_era5):
    obs = simulate(coarse_era5, n_stations=5)
    with pytest.raises(PhydaError, match="unknown assimilation method 'kalman'"):
        assimilate(coarse_era5, obs, method="kalman")
    with pytest.raises(PhydaError, match="length_scale"):
        assimilate(coarse_era5, obs, length_scale="far")
    with pytest.raises(ObservationError, match="qc"):
        assimilate(coarse_era5, obs, qc=-1)
    with pytest.raises(ObservationError, match="one per level"):
        assimilate(coarse_era5, obs, background_error={"t": [1.0, 2.0, 3.0]})
    with pytest.raises(PhydaError, match="member"):
        assimilate(coarse_era5.expand_dims(number=[0, 1]), obs)


def test_solvers_agree_through_the_front(coarse_era5):
    obs = simulate(coarse_era5, fraction=0.05, seed=0, variables=["t"])
    bg = displaced(coarse_era5)
    a = assimilate(bg, obs, solver="cholesky", background_error={"t": 1.5})
    b = assimilate(bg, obs, solver="cg", background_error={"t": 1.5})
    np.testing.assert_allclose(a.t.values, b.t.values, atol=1e-4)


def test_dask_inputs_give_the_same_analysis(coarse_era5):
    pytest.importorskip("dask")
    bg = displaced(coarse_era5)
    obs = simulate(coarse_era5, n_stations=80, seed=3)
    eager = assimilate(bg, obs)
    lazy = assimilate(bg.chunk({"latitude": 32}), obs.chunk({"station": 40}))
    xr.testing.assert_allclose(eager.compute(), lazy.compute())


@pytest.mark.parametrize("grid", ["era5", "coarse_era5", "ecmwf"])
def test_edge_stations_on_real_backgrounds(grid, request):
    """Longitude 359.9 and -0.1, latitude +-89.9 (with and without pole rows), exactly on grid lines."""
    bg = request.getfixturevalue(grid)
    lat = [89.9, -89.9, 89.9, float(bg.latitude[10]), float(bg.latitude[bg.sizes["latitude"] // 3]), 0.0]
    lon = [359.9, -0.1, 180.0, float(bg.longitude[5]), -179.0, 360.0 - 1e-9]
    truth = bg.copy(deep=True)
    truth["t"] = bg.t + 1.0
    obs = simulate(truth, stations=list(zip(lat, lon)), noise=0.0, variables=["t"])
    out = assimilate(bg, obs, background_error={"t": 1.0}, obs_error={"t": 0.5})
    assert bool((out.t_flag == FLAGS["used"]).all())
    np.testing.assert_allclose(out.t_innovation.values, 1.0, atol=1e-4)  # H(x + 1) = H x + 1 everywhere
    assert bool((out.t_residual < out.t_innovation).all())


def test_oi_ensemble_through_the_front(coarse_era5):
    """``members=N``: a ``member`` dimension first (as PhyDA's), diagnostics of the mean, reproducible."""
    truth = coarse_era5.isel(latitude=slice(None, None, 4), longitude=slice(None, None, 4))  # 16 x 32
    bg = displaced(truth, 1)
    obs = simulate(truth, n_stations=60, seed=0, variables=["t"])  # z is not observed
    b0, o0 = bg.copy(deep=True), obs.copy(deep=True)
    det = assimilate(bg, obs)
    one = assimilate(bg, obs, members=1)
    xr.testing.assert_identical(one.drop_attrs(deep=False), det.drop_attrs(deep=False))
    assert "member" not in one.dims
    ens = assimilate(bg, obs, members=4, seed=3)
    xr.testing.assert_identical(bg, b0)
    xr.testing.assert_identical(obs, o0)
    assert ens.t.dims == ("member", *bg.t.dims) and ens.z.dims == ("member", *bg.z.dims)
    assert list(ens.member.values) == [0, 1, 2, 3] and ens.member.attrs["long_name"] == "ensemble member"
    assert ens.t.dtype == bg.t.dtype and ens.t.attrs == bg.t.attrs
    xr.testing.assert_equal(ens.z.isel(member=2, drop=True), bg.z)  # not observed: the background
    assert float(ens.t.std("member").mean()) > 0.1
    xr.testing.assert_identical(ens.t_flag, det.t_flag)
    xr.testing.assert_allclose(ens.t_innovation, det.t_innovation)
    assert float(abs(ens.t_residual).mean()) < float(abs(ens.t_innovation).mean())  # of the ensemble mean
    assert "perturbed-observation ensemble of 4 members, seed 3" in ens.attrs["history"]
    xr.testing.assert_identical(assimilate(bg, obs, members=4, seed=3).t, ens.t)
    six = bg.phyda.assimilate(obs, method="oi", members=6, seed=3)
    xr.testing.assert_allclose(six.t.isel(member=slice(0, 4)), ens.t, atol=1e-4)
    assert float(abs(assimilate(bg, obs, members=4, seed=4).t - ens.t).max()) > 0.1
    with pytest.raises(PhydaError, match="seed is not used by method 'oi' without an ensemble.*members=N"):
        assimilate(bg, obs, seed=3)
    with pytest.raises(PhydaError, match="members must be a positive integer"):
        assimilate(bg, obs, members=0)


def test_oi_ensemble_of_many_times(coarse_surface):
    """Time ``i`` of a many-times OI ensemble is the one-time ensemble seeded with ``time_seed(seed, i)``."""
    from xphyda.parallel import time_seed

    sfc = coarse_surface.isel(latitude=slice(None, None, 4), longitude=slice(None, None, 4))
    obs = simulate(sfc, n_stations=40, seed=1)
    out = assimilate(sfc + 0.5, obs, members=3, seed=1, progress=False)
    assert out.t2m.dims == ("member", *sfc.t2m.dims) and out.t2m_flag.dims == ("time", "station")
    one = assimilate((sfc + 0.5).isel(time=[2]), obs.isel(time=[2]), members=3, seed=time_seed(1, 2))
    xr.testing.assert_allclose(one.t2m, out.t2m.isel(time=[2]))


def test_background_error_that_innovations_cannot_resolve_is_reported(coarse_era5):
    """Observation errors 25x the background error: OI warns that the innovations cannot resolve sigma_b, says so in the
    history, and with the background error given it is silent and closer to the truth than the floored run."""
    truth = coarse_era5[["t"]]
    bg = truth.copy(deep=True)
    bg["t"] = truth.t + 0.2 * np.random.default_rng(0).standard_normal(truth.t.shape)
    obs = simulate(truth, n_stations=800, noise={"t": 5.0}, seed=1)
    with pytest.warns(UserWarning, match=r"background error of 't' cannot be estimated from the innovations") as rec:
        floored = bg.phyda.assimilate(obs, method="oi", length_scale="300 km")
    message = str(rec[0].message)
    assert re.search(r"in K: at \d+ hPa: estimate [\d.]+, innovation spread [\d.]+, observation error 5 \(\d+ obs", message)
    assert "; ," not in message and ";  " not in message
    assert "Fix: pass background_error" in message and "--background-error t=VALUE" in message
    assert rec[0].filename == __file__  # points at the user's call, through the accessor
    assert "unresolved by the innovations" in floored.attrs["history"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = assimilate(bg, obs, method="oi", length_scale="300 km", background_error={"t": 0.2})

    def err(a):
        return float(np.sqrt(((a.t - truth.t) ** 2).mean()))

    assert err(given) < err(floored)


def test_humidity_is_never_analysed_below_zero(coarse_era5):
    """A dry observation under a dry background would pull q below 0 near it: those values are set to 0, counted
    in ``history``, and the O - A residual is that of the floored analysis."""
    bg = coarse_era5[["t"]].copy(deep=True)
    bg["q"] = (bg.t * 0 + 1e-5).astype("float32")
    bg["q"].attrs = {"units": "kg kg-1", "standard_name": "specific_humidity"}
    i, j = 20, 37
    obs = xr.Dataset(
        {"q": ("station", [-4e-5], {"units": "kg kg-1"})},  # a noisy observation of nearly dry air
        coords={"lat": ("station", [float(bg.latitude[i])]), "lon": ("station", [float(bg.longitude[j])]),
                "pressure": ("station", [500.0], {"units": "hPa"})},
    )
    kw = dict(background_error={"q": 3e-5}, obs_error={"q": 1e-5}, length_scale="700 km", qc=None)
    out = assimilate(bg, obs, **kw)
    q = out.q.isel(time=0, level=0)
    assert float(q.min()) == 0.0 and float(q.isel(latitude=i, longitude=j)) == 0.0
    assert 0 < float((q == 0).mean()) < 0.5
    assert float(out.q.isel(time=0, level=1).min()) == pytest.approx(1e-5)  # the other level is untouched
    assert re.search(r"values below 0 set to 0 \(a quantity that is never negative\): q [0-9.]+ % of values",
                     out.attrs["history"])
    assert out.q_residual.item() == pytest.approx(-4e-5, rel=1e-5)  # O - A of the floored analysis (A = 0 there)
    assert float((out.q - bg.q).isel(time=0, level=0).max()) <= 0.0  # a dry observation only dries
    plain = assimilate(bg, obs.assign(q=obs.q * 0 + 2e-5), **kw)  # a moist observation: nothing to floor
    assert "below 0" not in plain.attrs["history"]
