"""Tests of xphyda.metrics (xarray front) and xphyda._metrics_kernels (numpy kernels).

Expected values are written by hand or computed with plain loops, never with
the code under test.  Fixtures compose: coords -> truth -> forecast / ensemble,
with dask and NaN variants.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import xarray as xr

from xphyda import _metrics_kernels as K
from xphyda import metrics as M
from xphyda.errors import CoordinateError, DataError, GridError, PhydaError, UnitsError, VariableError

dask = pytest.importorskip("dask")
import dask.array as dsa  # noqa: E402

LAT = np.array([75.0, 30.0, -15.0, -60.0])
LON = np.arange(0.0, 360.0, 72.0)  # 5 longitudes, periodic


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def coords():
    return {
        "time": np.array(["2020-01-01T00", "2020-01-01T06", "2020-01-01T12"], dtype="datetime64[ns]"),
        "level": ("level", [500, 850], {"units": "hPa"}),
        "latitude": ("latitude", LAT, {"units": "degrees_north"}),
        "longitude": ("longitude", LON, {"units": "degrees_east"}),
    }


@pytest.fixture
def truth(coords):
    rng = np.random.default_rng(1)
    values = 250.0 + 10.0 * rng.standard_normal((3, 2, LAT.size, LON.size))
    return xr.DataArray(
        values, coords, ("time", "level", "latitude", "longitude"), name="t",
        attrs={"units": "K", "long_name": "temperature"},
    )


@pytest.fixture
def forecast(truth):
    rng = np.random.default_rng(2)
    return (truth + 0.5 + rng.standard_normal(truth.shape)).assign_attrs(truth.attrs)


@pytest.fixture
def ensemble(truth):
    rng = np.random.default_rng(3)
    noise = xr.DataArray(rng.standard_normal((6,) + truth.shape), dims=("member",) + truth.dims)
    return (truth + noise).assign_coords(member=np.arange(6)).assign_attrs(truth.attrs)


@pytest.fixture
def climatology(truth):
    return truth.mean("time").assign_attrs(truth.attrs)


@pytest.fixture
def truth_ds(truth):
    z = (truth * 20.0).rename("z").assign_attrs(units="m2 s-2")
    return xr.Dataset({"t": truth, "z": z})


@pytest.fixture
def forecast_ds(forecast):
    z = (forecast * 20.0 + 3.0).rename("z").assign_attrs(units="m2 s-2")
    return xr.Dataset({"t": forecast, "z": z})


def _chunk(x):
    return x.chunk({d: n for d, n in (("time", 1), ("latitude", 2)) if d in x.dims})


def _cos_weights():
    return np.cos(np.deg2rad(LAT))


# --------------------------------------------------------------------------- kernels by hand
def test_kernels_deterministic_by_hand():
    f = np.array([1.0, 2.0, 4.0, 0.0])
    t = np.array([0.0, 2.0, 1.0, 2.0])
    # errors 1, 0, 3, -2
    assert K.bias(f, t) == pytest.approx(2.0 / 4)
    assert K.mae(f, t) == pytest.approx(6.0 / 4)
    assert K.mse(f, t) == pytest.approx(14.0 / 4)
    assert K.rmse(f, t) == pytest.approx(math.sqrt(14.0 / 4))
    w = np.array([1.0, 1.0, 2.0, 0.0])
    assert K.rmse(f, t, w) == pytest.approx(math.sqrt((1 + 0 + 2 * 9) / 4.0))
    assert K.bias(f, t, w) == pytest.approx((1 + 0 + 2 * 3) / 4.0)


def test_kernel_axis_keeps_other_axes():
    x = np.arange(6.0).reshape(2, 3)
    assert np.allclose(K.weighted_mean(x, axis=-1), [1.0, 4.0])
    assert np.allclose(K.weighted_mean(x, np.array([1.0, 0.0, 1.0]), axis=1), [1.0, 4.0])
    assert K.weighted_mean(x, axis=(0, 1)) == pytest.approx(2.5)


def _pearson_loop(x, y, w):
    sw = sum(w)
    mx = sum(wi * xi for wi, xi in zip(w, x)) / sw
    my = sum(wi * yi for wi, yi in zip(w, y)) / sw
    cov = sum(wi * (xi - mx) * (yi - my) for wi, xi, yi in zip(w, x, y))
    vx = sum(wi * (xi - mx) ** 2 for wi, xi in zip(w, x))
    vy = sum(wi * (yi - my) ** 2 for wi, yi in zip(w, y))
    return cov / math.sqrt(vx * vy)


def test_acc_kernel_by_hand():
    f, t, c = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0]), np.zeros(3)
    # uncentred: 19 / sqrt(21 * 19)
    assert K.acc(f, t, c, centered=False) == pytest.approx(19.0 / math.sqrt(21.0 * 19.0))
    # centred: anomalies minus their means: f' = (-4/3, -1/3, 5/3), t' = (-4/3, 2/3, 2/3)
    cov = (16 - 2 + 10) / 9.0
    vf, vt = (16 + 1 + 25) / 9.0, (16 + 4 + 4) / 9.0
    assert K.acc(f, t, c) == pytest.approx(cov / math.sqrt(vf * vt))
    rng = np.random.default_rng(0)
    f, t, c, w = rng.normal(size=(4, 7))
    w = np.abs(w)
    assert K.acc(f, t, c, w) == pytest.approx(_pearson_loop(f - c, t - c, w))
    # a constant anomaly has no correlation: NaN, not a division warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(K.acc(np.ones(3), t[:3], np.zeros(3)))


def _crps_integral(members, y):
    """CRPS as the integral of (F(x) - H(x - y))^2 for the empirical CDF, exactly (piecewise constant)."""
    pts = sorted(list(members) + [y])
    total = 0.0
    for a, b in zip(pts[:-1], pts[1:]):
        cdf = sum(m <= a for m in members) / len(members)
        step = 1.0 if a >= y else 0.0
        total += (cdf - step) ** 2 * (b - a)
    return total


def _crps_pairs(members, y, fair):
    m = len(members)
    skill = sum(abs(x - y) for x in members) / m
    pairs = sum(abs(a - b) for a, b in itertools.product(members, members))
    return skill - pairs / (2 * m * (m - 1) if fair else 2 * m * m)


def test_crps_kernel_by_hand():
    x = np.array([1.0, 2.0, 4.0])
    # skill 4/3; sum |xi - xj| = 12: standard 4/3 - 12/18, fair 4/3 - 12/12
    assert K.crps_ensemble(x, np.array(3.0), fair=False) == pytest.approx(2.0 / 3.0)
    assert K.crps_ensemble(x, np.array(3.0), fair=True) == pytest.approx(1.0 / 3.0)
    rng = np.random.default_rng(5)
    for _ in range(5):
        mem, y = rng.normal(size=5), float(rng.normal())
        assert K.crps_ensemble(mem, np.array(y), fair=False) == pytest.approx(_crps_integral(mem, y))
        assert K.crps_ensemble(mem, np.array(y), fair=False) == pytest.approx(_crps_pairs(mem, y, False))
        assert K.crps_ensemble(mem, np.array(y), fair=True) == pytest.approx(_crps_pairs(mem, y, True))
    # member axis anywhere
    ens = rng.normal(size=(4, 3, 2))
    y = rng.normal(size=(3, 2))
    a = K.crps_ensemble(ens, y, member_axis=0)
    b = K.crps_ensemble(np.moveaxis(ens, 0, -1), y)
    assert np.allclose(a, b)
    with pytest.raises(DataError, match="at least 2 members"):
        K.crps_ensemble(np.ones((3, 1)), np.ones(3), fair=True)


def _gaussian_crps(mu, sigma, y):
    from scipy.stats import norm

    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_crps_gaussian_closed_form():
    from scipy.stats import norm

    mu, sigma, y = 0.2, 1.5, 0.7
    exact = _gaussian_crps(mu, sigma, y)
    # a large ensemble of Gaussian quantiles: the standard estimator tends to the closed form
    m = 2000
    quantiles = mu + sigma * norm.ppf((np.arange(m) + 0.5) / m)
    assert K.crps_ensemble(quantiles, np.array(y), fair=False) == pytest.approx(exact, abs=2e-3)
    # small random ensembles: the fair estimator is unbiased, the standard one is biased upwards
    # by E|X - X'| / (2 M) = sigma / (M sqrt(pi))
    m, n = 8, 6000
    ens = mu + sigma * np.random.default_rng(7).standard_normal((n, m))
    fair = K.crps_ensemble(ens, np.full(n, y), fair=True)
    standard = K.crps_ensemble(ens, np.full(n, y), fair=False)
    se = 4 * fair.std() / math.sqrt(n)
    assert fair.mean() == pytest.approx(exact, abs=se)
    assert standard.mean() == pytest.approx(exact + sigma / (m * math.sqrt(math.pi)), abs=se)
    assert abs(standard.mean() - exact) > 3 * se


def test_spread_skill_kernel_by_hand_and_perfect_ensemble():
    ens = np.array([[0.0, 2.0], [1.0, 3.0]])  # means 1, 2; variances (ddof 1) 2, 2
    y = np.array([0.0, 3.0])  # squared errors of the mean 1, 1
    assert K.spread_skill_ratio(ens, y, corrected=False) == pytest.approx(math.sqrt(2.0))
    assert K.spread_skill_ratio(ens, y) == pytest.approx(math.sqrt(2.0) * math.sqrt(3.0 / 2.0))
    # members and truth drawn from the same distribution: corrected ratio 1 for any M
    rng = np.random.default_rng(11)
    for m in (3, 10):
        draws = rng.standard_normal((20000, m + 1))
        r = K.spread_skill_ratio(draws[:, :m], draws[:, m])
        assert r == pytest.approx(1.0, abs=0.03)
        assert K.spread_skill_ratio(draws[:, :m], draws[:, m], corrected=False) == pytest.approx(
            math.sqrt(m / (m + 1.0)), abs=0.03
        )


def test_rank_kernel_ties_and_seed():
    ens = np.array([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0], [5.0, 6.0, 7.0]])
    y = np.array([3.0, 1.0, 9.0])
    r = K.ensemble_rank(ens, y, seed=0)
    assert r[0] == 2 and r[2] == 3 and 0 <= r[1] <= 3
    # all tied: the rank is uniform on 0..M
    n = 40000
    ranks = K.ensemble_rank(np.ones((n, 3)), np.ones(n), seed=1)
    freq = np.bincount(ranks.astype(int), minlength=4) / n
    assert np.allclose(freq, 0.25, atol=0.01)
    assert np.array_equal(K.ensemble_rank(np.ones((50, 3)), np.ones(50), seed=4),
                          K.ensemble_rank(np.ones((50, 3)), np.ones(50), seed=4))
    # explicit uniforms: u in [0, 1/4) -> rank 0, [3/4, 1) -> rank 3
    assert K.ensemble_rank(np.ones((2, 3)), np.ones(2), tiebreak=np.array([0.1, 0.9])).tolist() == [0.0, 3.0]


def test_rank_histogram_kernel_by_hand():
    ens = np.array([[1.0, 2.0]] * 4)
    y = np.array([0.0, 1.5, 1.7, 3.0])
    assert K.rank_histogram(ens, y, normalize=False).tolist() == [1.0, 2.0, 1.0]
    assert K.rank_histogram(ens, y).tolist() == [0.25, 0.5, 0.25]
    w = np.array([2.0, 1.0, 1.0, 0.0])
    assert K.rank_histogram(ens, y, w).tolist() == [0.5, 0.5, 0.0]


def test_kernel_nan_handling():
    f = np.array([1.0, np.nan, 3.0])
    t = np.array([0.0, 5.0, np.nan])
    assert np.isnan(K.rmse(f, t))
    assert K.rmse(f, t, skipna=True) == pytest.approx(1.0)  # only the first point is valid in both
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" or division warnings
        assert np.isnan(K.rmse(np.full(3, np.nan), t, skipna=True))
        assert np.isnan(K.acc(np.full(3, np.nan), t, t, skipna=True))
        assert np.isnan(K.crps(np.full((3, 2), np.nan), t, skipna=True))
        assert np.isnan(K.rank_histogram(np.full((3, 2), np.nan), t, skipna=True)).all()
    ens = np.array([[1.0, 2.0], [np.nan, 1.0], [0.0, 1.0]])
    obs = np.array([1.5, 1.0, np.nan])
    assert np.isnan(K.crps(ens, obs))
    assert K.crps(ens, obs, skipna=True, fair=False) == pytest.approx(_crps_pairs([1.0, 2.0], 1.5, False))
    assert K.rank_histogram(ens, obs, skipna=True).tolist() == [0.0, 1.0, 0.0]
    assert np.isnan(K.rank_histogram(ens, obs)).all()


def test_kernel_rejects_bad_weights():
    with pytest.raises(DataError, match="non-negative"):
        K.rmse(np.ones(2), np.zeros(2), np.array([1.0, -1.0]))
    with pytest.raises(DataError, match="1 NaN"):
        K.rmse(np.ones(2), np.zeros(2), np.array([1.0, np.nan]))


# --------------------------------------------------------------------------- weights
def _two_row(values_by_row, weighting_units="K"):
    coords = {"latitude": [0.0, 60.0], "longitude": [0.0, 120.0, 240.0]}
    t = xr.DataArray(np.zeros((2, 3)), coords, ("latitude", "longitude"), name="x", attrs={"units": weighting_units})
    f = t + xr.DataArray(values_by_row, {"latitude": [0.0, 60.0]}, "latitude")
    return f.assign_attrs(t.attrs), t


def test_latitude_weights_two_rows_by_hand():
    f, t = _two_row([1.0, 4.0])
    # cos 0 = 1, cos 60 = 1/2: bias (1 + 2) / 1.5 = 2, mse (1 + 8) / 1.5 = 6
    assert float(M.bias(f, t, weighting="cos")) == pytest.approx(2.0)
    assert float(M.rmse(f, t, weighting="cos")) == pytest.approx(math.sqrt(6.0))
    assert float(M.bias(f, t, weighting=None)) == pytest.approx(2.5)
    with pytest.raises(GridError, match="weighting='cos'"):
        M.bias(f, t)  # finite-volume areas need 3 rows


def test_area_weights_by_hand():
    da = xr.DataArray(np.zeros((3, 4)), {"lat": [60.0, 0.0, -60.0], "lon": [0.0, 90.0, 180.0, 270.0]}, ("lat", "lon"))
    # global grid: cells 90N-30N, 30N-30S, 30S-90S: sin differences 1/2, 1, 1/2
    w = M.area_weights(da)
    assert np.allclose(w.transpose("lat", "lon").values, np.array([0.5, 1.0, 0.5])[:, None] / (2 / 3))
    f = da + xr.DataArray([1.0, 2.0, 4.0], {"lat": da.lat}, "lat")
    assert float(M.bias(f, da)) == pytest.approx((0.5 * 1 + 1.0 * 2 + 0.5 * 4) / 2.0)
    # an irregular longitude spacing weights the wider cells more
    lon = [0.0, 30.0, 180.0, 270.0]  # periodic widths: (30+90)/2, (150+30)/2... = 60, 90, 120, 90
    da2 = da.assign_coords(lon=lon)
    assert np.allclose(M.area_weights(da2, dim="lon").values, np.array([60.0, 90.0, 120.0, 90.0]) / 90.0)


def test_equal_weights_reproduce_plain_mean(forecast, truth):
    plain = np.sqrt(((forecast - truth) ** 2).mean(["latitude", "longitude"]))
    ones = xr.ones_like(truth.isel(time=0, level=0, drop=True))
    assert np.allclose(M.rmse(forecast, truth, weights=ones), plain)
    assert np.allclose(M.rmse(forecast, truth, weighting=None), plain)


def test_user_weights_checked(forecast, truth):
    bad = xr.DataArray(-np.ones(LAT.size), {"latitude": LAT}, "latitude")
    with pytest.raises(DataError, match="non-negative"):
        M.rmse(forecast, truth, weights=bad)
    other = xr.DataArray(np.ones(3), dims="station")
    with pytest.raises(CoordinateError, match="station"):
        M.rmse(forecast, truth, weights=other)
    with pytest.raises(DataError, match="weighting must be"):
        M.rmse(forecast, truth, weighting="sin")


# --------------------------------------------------------------------------- xarray front
def test_default_dims_keep_time_and_level(forecast, truth):
    out = M.rmse(forecast, truth)
    assert out.dims == ("time", "level")
    assert out.name == "t" and out.attrs["units"] == "K"
    assert out.attrs["reduced_dims"] == "latitude longitude"
    assert "xphyda.metrics.rmse" in out.attrs["history"]
    by_time = M.rmse(forecast, truth, dim="time")
    assert by_time.dims == ("level", "latitude", "longitude")
    everything = M.rmse(forecast, truth, dim=["time", "latitude", "longitude"], weighting="cos")
    w = _cos_weights()[None, :, None]
    err2 = ((forecast - truth) ** 2).transpose("level", "time", "latitude", "longitude").values
    expected = [math.sqrt((err2[k] * w).sum() / (np.broadcast_to(w, err2[k].shape)).sum()) for k in range(2)]
    assert np.allclose(everything.values, expected)


@pytest.mark.parametrize("weighting", ["cos", "area", None])
def test_wrappers_agree_with_kernels(forecast, truth, ensemble, climatology, weighting):
    core = ("latitude", "longitude")
    f, t = (x.transpose("time", "level", *core).values for x in (forecast, truth))
    e = ensemble.transpose("time", "level", *core, "member").values
    c = climatology.transpose("level", *core).values[None]
    w = M.area_weights(truth, weighting=weighting).broadcast_like(truth.isel(time=0, level=0)).transpose(*core).values
    ax = (-2, -1)
    checks = [
        (M.rmse(forecast, truth, weighting=weighting), K.rmse(f, t, w, axis=ax)),
        (M.bias(forecast, truth, weighting=weighting), K.bias(f, t, w, axis=ax)),
        (M.mae(forecast, truth, weighting=weighting), K.mae(f, t, w, axis=ax)),
        (M.acc(forecast, truth, climatology, weighting=weighting), K.acc(f, t, c, w, axis=ax)),
        (M.crps(ensemble, truth, weighting=weighting), K.crps(e, t, w, axis=ax)),
        (M.spread_skill_ratio(ensemble, truth, weighting=weighting), K.spread_skill_ratio(e, t, w, axis=ax)),
    ]
    for wrapped, direct in checks:
        assert np.allclose(wrapped.transpose("time", "level").values, direct, rtol=1e-12)
    hist = M.rank_histogram(ensemble, truth, weighting=weighting, seed=3)
    assert np.allclose(hist.transpose("time", "level", "rank").values, K.rank_histogram(e, t, w, axis=ax, seed=3))


def test_area_weighting_default_is_finite_volume(forecast, truth):
    sphere_w = M.area_weights(truth)
    assert set(sphere_w.dims) == {"latitude", "longitude"}
    from xphyda.physics.operators import SphereGrid

    area = SphereGrid(LAT, LON).cell_area
    err2 = ((forecast - truth) ** 2).isel(time=0, level=0).values
    assert float(M.rmse(forecast, truth).isel(time=0, level=0)) == pytest.approx(
        math.sqrt((area * err2).sum() / area.sum())
    )


def test_dataset_and_dataarray_agree(forecast_ds, truth_ds, climatology):
    clim_ds = truth_ds.mean("time")
    for fn, extra in [(M.rmse, ()), (M.bias, ()), (M.mae, ()), (M.acc, (clim_ds,))]:
        out = fn(forecast_ds, truth_ds, *extra)
        assert isinstance(out, xr.Dataset) and set(out.data_vars) == {"t", "z"}
        for v in ("t", "z"):
            single = fn(forecast_ds[v], truth_ds[v], *[e[v] for e in extra])
            xr.testing.assert_allclose(out[v], single)
            assert out[v].attrs["units"] == single.attrs["units"]
    assert M.rmse(forecast_ds, truth_ds)["z"].attrs["units"] == "m2 s-2"
    ens_ds = xr.concat([forecast_ds, truth_ds + 1.0, truth_ds - 2.0], dim="member")
    for fn in (M.crps, M.spread_skill_ratio, M.rank_histogram):
        out = fn(ens_ds, truth_ds)
        for v in ("t", "z"):
            xr.testing.assert_allclose(out[v], fn(ens_ds[v], truth_ds[v]))
    assert M.acc(forecast_ds, truth_ds, clim_ds)["z"].attrs["units"] == "1"


def test_dask_gives_same_numbers_and_stays_lazy(forecast, truth, ensemble, climatology):
    pairs = [
        (M.rmse, (forecast, truth), {}),
        (M.bias, (forecast, truth), {"skipna": True}),
        (M.acc, (forecast, truth, climatology), {}),
        (M.crps, (ensemble, truth), {}),
        (M.spread_skill_ratio, (ensemble, truth), {}),
        (M.rank_histogram, (ensemble.round(0), truth.round(0)), {"seed": 5}),  # rounding makes ties
    ]
    for fn, args, kw in pairs:
        eager = fn(*args, **kw)
        lazy = fn(*[_chunk(a) for a in args], **kw)
        assert isinstance(lazy.data, dsa.Array), fn.__name__
        xr.testing.assert_allclose(eager, lazy.compute(), rtol=1e-12)


def test_skipna_and_all_nan(forecast, truth):
    f = forecast.copy()
    f[0, 0, 0, 0] = np.nan
    out = M.rmse(f, truth, weighting=None)
    assert np.isnan(out[0, 0]) and np.isfinite(out[1, 0])
    kept = M.rmse(f, truth, weighting=None, skipna=True)
    err2 = ((forecast - truth) ** 2)[0, 0].values.ravel()[1:]
    assert float(kept[0, 0]) == pytest.approx(math.sqrt(err2.mean()))
    empty = f.where(f.time != f.time[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = M.rmse(empty, truth, skipna=True)
        assert np.isnan(res[1]).all() and np.isfinite(res[0, 1])
        assert np.isnan(M.crps(xr.full_like(truth, np.nan).expand_dims(member=2), truth, skipna=True)).all()


def test_ensemble_nan_and_dask_nan(ensemble, truth):
    e = ensemble.copy()
    e[0, 0, 0, 0, 0] = np.nan
    assert np.isnan(M.crps(e, truth)[0, 0])
    xr.testing.assert_allclose(M.crps(e, truth, skipna=True), M.crps(_chunk(e), truth, skipna=True).compute())


def test_crps_wrapper_by_hand_and_member_discovery():
    ens = xr.DataArray([1.0, 2.0, 4.0], dims="member", attrs={"units": "K"})
    assert float(M.crps(ens, xr.DataArray(3.0), dim=[], fair=False)) == pytest.approx(2 / 3)
    assert float(M.crps(ens, xr.DataArray(3.0), dim=[])) == pytest.approx(1 / 3)
    # ERA5 / cfgrib name "number" as a coordinate, CF standard_name realization, or member_dim=
    numbered = ens.rename(member="number").assign_coords(number=[0, 1, 2])
    assert float(M.crps(numbered, xr.DataArray(3.0), dim=[], fair=False)) == pytest.approx(2 / 3)
    cf = ens.rename(member="ens").assign_coords(ens=("ens", [0, 1, 2], {"standard_name": "realization"}))
    assert float(M.crps(cf, xr.DataArray(3.0), dim=[], fair=False)) == pytest.approx(2 / 3)
    odd = ens.rename(member="draw")
    with pytest.raises(CoordinateError, match="member_dim="):
        M.crps(odd, xr.DataArray(3.0), dim=[])
    assert float(M.crps(odd, xr.DataArray(3.0), dim=[], member_dim="draw", fair=False)) == pytest.approx(2 / 3)
    assert M.crps(ens, xr.DataArray(3.0), dim=[]).attrs["units"] == "K"


def test_agrees_with_xskillscore(ensemble, truth):
    xs = pytest.importorskip("xskillscore")
    ours = M.crps(ensemble, truth, dim=[], fair=False)
    theirs = xs.crps_ensemble(truth, ensemble, dim=[])
    xr.testing.assert_allclose(ours.transpose(*theirs.dims), theirs, rtol=1e-10)
    cos = xr.DataArray(_cos_weights(), {"latitude": LAT}, "latitude")
    cos = cos.broadcast_like(truth.isel(time=0, level=0, drop=True))
    xr.testing.assert_allclose(
        M.rmse(ensemble.mean("member"), truth, weighting="cos"),
        xs.rmse(ensemble.mean("member"), truth, dim=["latitude", "longitude"], weights=cos),
        rtol=1e-10,
    )
    counts = M.rank_histogram(ensemble, truth, dim=list(truth.dims), weighting=None, normalize=False)
    assert counts.values.tolist() == xs.rank_histogram(truth, ensemble, dim=list(truth.dims)).values.tolist()
    # the centred ACC is the weighted Pearson correlation of the anomalies
    clim = truth.mean("time")
    f = ensemble.isel(member=0, drop=True)
    xr.testing.assert_allclose(
        M.acc(f, truth, clim, weighting="cos"),
        xs.pearson_r(f - clim, truth - clim, dim=["latitude", "longitude"], weights=cos),
        rtol=1e-10,
    )


def test_spread_skill_ratio_wrapper(ensemble, truth):
    out = M.spread_skill_ratio(ensemble, truth, dim=["time", "latitude", "longitude"], weighting=None)
    e = ensemble.transpose("level", "member", "time", "latitude", "longitude").values
    t = truth.transpose("level", "time", "latitude", "longitude").values
    m = e.shape[1]
    for k in range(2):
        var = e[k].var(axis=0, ddof=1).mean()
        mse = ((e[k].mean(axis=0) - t[k]) ** 2).mean()
        assert float(out.sel(level=[500, 850][k])) == pytest.approx(math.sqrt((m + 1) / m * var / mse))
    assert out.attrs["units"] == "1" and out.attrs["ensemble_size"] == 6


def test_rank_histogram_wrapper(ensemble, truth):
    h = M.rank_histogram(ensemble, truth)
    assert h.dims == ("time", "level", "rank") and h["rank"].values.tolist() == list(range(7))
    assert np.allclose(h.sum("rank"), 1.0)
    counts = M.rank_histogram(ensemble, truth, weighting=None, normalize=False, dim=["time", "latitude", "longitude"])
    assert counts.attrs["units"] == "count"
    # hand count with a loop
    e = ensemble.transpose("level", "time", "latitude", "longitude", "member").values
    t = truth.transpose("level", "time", "latitude", "longitude").values
    for k in range(2):
        expected = np.zeros(7)
        for idx in np.ndindex(t[k].shape):
            expected[sum(x < t[k][idx] for x in e[k][idx])] += 1
        assert counts.isel(level=k).values.tolist() == expected.tolist()
    tied = ensemble.round(0)
    a = M.rank_histogram(tied, truth.round(0), seed=1)
    assert a.identical(M.rank_histogram(tied, truth.round(0), seed=1).assign_attrs(history=a.attrs["history"]))
    assert not np.allclose(a, M.rank_histogram(tied, truth.round(0), seed=2))


def test_inputs_not_modified(forecast_ds, truth_ds):
    before_f, before_t = forecast_ds.copy(deep=True), truth_ds.copy(deep=True)
    M.rmse(forecast_ds, truth_ds)
    xr.testing.assert_identical(forecast_ds, before_f)
    xr.testing.assert_identical(truth_ds, before_t)


# --------------------------------------------------------------------------- errors
def test_mismatched_grids(forecast, truth):
    shifted = truth.assign_coords(latitude=truth.latitude + 1.0)
    with pytest.raises(GridError, match="latitude mismatch.*actual=.*desired="):
        M.rmse(forecast, shifted)
    with pytest.raises(GridError, match="latitude mismatch"):
        M.rmse(forecast, truth.isel(latitude=slice(0, 3)))
    wrapped = truth.assign_coords(longitude=np.where(LON >= 180, LON - 360, LON))
    with pytest.raises(GridError, match="% 360"):
        M.rmse(forecast, wrapped)
    # float noise below the tolerance is accepted
    tiny = truth.assign_coords(latitude=truth.latitude + 1e-9)
    xr.testing.assert_allclose(M.rmse(forecast, tiny), M.rmse(forecast, truth))
    with pytest.raises(CoordinateError, match="xr.align"):
        M.rmse(forecast, truth.assign_coords(level=[300, 850]))


def test_clear_errors(forecast, truth, ensemble, forecast_ds, truth_ds):
    with pytest.raises(CoordinateError, match="no ensemble member dimension.*member_dim="):
        M.crps(forecast, truth)
    with pytest.raises(DataError, match="member dimension 'member'"):
        M.crps(ensemble, ensemble)
    with pytest.raises(VariableError, match=r"lacks \['z'\]"):
        M.rmse(forecast_ds, truth_ds[["t"]])
    with pytest.raises(DataError, match="both as DataArrays"):
        M.rmse(forecast, truth_ds)
    with pytest.raises(UnitsError, match="'K' but the truth has 'degC'"):
        M.rmse(forecast, truth.assign_attrs(units="degC"))
    M.rmse(forecast, truth.assign_attrs(units="kelvin"))  # the same unit, spelled differently
    with pytest.raises(CoordinateError, match="not a dimension"):
        M.rmse(forecast, truth, dim="height")
    with pytest.raises(CoordinateError, match="must have latitude"):
        M.rmse(forecast.isel(longitude=0), truth.isel(longitude=0))
    # every error is a PhydaError and the matching builtin
    with pytest.raises(KeyError):
        M.crps(forecast, truth)
    assert issubclass(GridError, (PhydaError, ValueError))


# --------------------------------------------------------------------------- physics and tables
@pytest.fixture(scope="module")
def era5():
    import xphyda

    return xphyda.tutorial.open_dataset("era5-z-t").isel(latitude=slice(20, 60), longitude=slice(0, 90))


def test_residual_ratio(era5):
    same = M.residual_ratio(era5, era5, "hydrostatic")
    assert same.dims == ("time", "layer") and np.allclose(same, 1.0)
    assert same.attrs["units"] == "1" and same.name == "hydrostatic_residual_ratio"
    noise = np.random.default_rng(0).normal(0.0, 500.0, era5["z"].shape)
    noisy = era5.assign(z=era5["z"] + noise)
    ratio = M.residual_ratio(noisy, era5, "hydrostatic")
    assert float(ratio.squeeze()) > 1.0
    # by hand: area-weighted RMS of each residual, then their ratio
    from xphyda.physics import physics_residual

    ra = physics_residual(noisy, "hydrostatic").squeeze().values
    rt = physics_residual(era5, "hydrostatic").squeeze().values
    w = M.area_weights(era5).transpose("latitude", "longitude").values
    assert float(ratio.squeeze()) == pytest.approx(math.sqrt((w * ra**2).sum() / (w * rt**2).sum()))
    lazy = M.residual_ratio(noisy.chunk({"latitude": 20}), era5, "hydrostatic")
    xr.testing.assert_allclose(lazy.compute(), ratio)


def test_score_table(era5):
    truth = era5
    rng = np.random.default_rng(4)
    oi = truth + xr.DataArray(rng.normal(0, 1.0, truth["t"].shape), dims=truth["t"].dims)
    oi = oi.assign(t=oi["t"].assign_attrs(truth["t"].attrs), z=oi["z"].assign_attrs(truth["z"].attrs))
    members = xr.concat([truth + rng.normal(0, 1.0) for _ in range(4)], dim="member")
    members = members.assign_coords(member=np.arange(4))
    clim = truth.mean(["time", "longitude"])
    table = M.score_table({"oi": oi, "ens": members}, truth, climatology=clim, residuals=["hydrostatic"])
    assert list(table.columns) == ["method", "variable", "level", "layer", "metric", "value", "units"]
    assert set(table.metric) == {"rmse", "bias", "mae", "acc", "crps", "spread_skill_ratio", "residual_ratio",
                                 "residual_ratio_mean"}
    assert not ((table.method == "oi") & table.metric.isin(["crps", "spread_skill_ratio", "residual_ratio_mean"])).any()
    ens_mean = M.residual_ratio(members.mean("member"), truth, "hydrostatic", dim=["time", "latitude", "longitude"])
    row = table.query("method == 'ens' and metric == 'residual_ratio_mean'")
    assert float(row.value.iloc[0]) == pytest.approx(float(ens_mean.squeeze()))
    row = table.query("method == 'oi' and variable == 't' and metric == 'rmse' and level == 850")
    assert len(row) == 1
    direct = M.rmse(oi["t"], truth["t"], dim=["time", "latitude", "longitude"]).sel(level=850)
    assert float(row.value.iloc[0]) == pytest.approx(float(direct))
    assert row.units.iloc[0] == "K"
    res = table.query("metric == 'residual_ratio'")
    assert set(res.layer) == {"500-850 hPa"} and len(res) == 2
    # members carry independent noise, their mean is smoother: the pooled member ratio is the larger
    assert float(res.query("method == 'ens'").value.iloc[0]) > float(row.value.iloc[0])
    ds = M.score_table({"oi": oi}, truth, metrics=["rmse"], output="dataset")
    assert ds.sizes["row"] == 4 and "history" in ds.attrs
    with pytest.raises(DataError, match="climatology"):
        M.score_table({"oi": oi}, truth, metrics=["acc"])
    with pytest.raises(DataError, match="unknown metrics"):
        M.score_table({"oi": oi}, truth, metrics=["rsme"])
