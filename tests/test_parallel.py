"""Many analysis times (xphyda.parallel): time by time, the same answer serially, with dask and on a cluster.

The data are the real ERA5 extract coarsened to 16 x 32 and made into four
6-hourly "times" by rotating it in longitude (each time a different real field).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xphyda
from xphyda.assimilate import assimilate
from xphyda.errors import ObservationError, PhydaError
from xphyda.obs import FLAGS, simulate
from xphyda.parallel import assimilate_times, needs_time_split, time_seed

NT = 4


@pytest.fixture(scope="module")
def _case():
    era5 = xphyda.tutorial.open_dataset("era5-z-t")
    day = era5.coarsen(latitude=11, longitude=11, boundary="trim").mean(keep_attrs=True)  # 16 x 32
    times = day.time.values[0] + np.arange(NT) * np.timedelta64(6, "h")
    truth = xr.concat(
        [day.roll(longitude=5 * k, roll_coords=False).assign_coords(time=[t]) for k, t in enumerate(times)],
        "time",
    )
    background = truth.roll(
        longitude=1, roll_coords=False
    )  # a displaced state: errors of realistic structure
    for v in truth.data_vars:
        background[v].attrs = dict(truth[v].attrs)
    obs = simulate(truth, fraction=0.3, seed=2)
    return truth, background, obs


@pytest.fixture
def case(_case):
    return tuple(x.copy(deep=True) for x in _case)


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def assert_same(a, b, *, state_rtol=1e-6):
    """Equal up to round-off: float32 state to an ulp or so, float64 diagnostics to 1e-10.

    Multithreaded BLAS may sum in another order when several analyses run at once
    (differences of 1e-14 relative have been seen); the inputs and seeds are the same.
    """
    assert list(a.data_vars) == list(b.data_vars) and a.attrs.keys() == b.attrs.keys()
    for v in a.data_vars:
        rtol = state_rtol if a[v].dtype == np.float32 else 1e-10
        xr.testing.assert_allclose(a[v], b[v], rtol=rtol, atol=0)
        xr.testing.assert_identical(a[v].copy(data=b[v].values), b[v])  # attrs, coords, dtype


def _state(ds):
    """The analysed state without the Dataset's attributes (history lines differ by design)."""
    return ds[["t", "z"]].drop_attrs(deep=False)


def test_each_time_is_the_one_time_analysis(case):
    truth, background, obs = case
    out = assimilate_times(background, obs, method="oi", progress=False)
    assert out["t"].dims == background["t"].dims and out.sizes["time"] == NT
    assert out["t_flag"].dims == obs["t"].dims
    for i in (0, 2):
        one = assimilate(background.isel(time=[i]), obs.isel(time=[i]), method="oi")
        xr.testing.assert_identical(_state(out.isel(time=[i])), _state(one))
        xr.testing.assert_identical(out["t_residual"].isel(time=[i]), one["t_residual"])
    assert "4 analysis times" in out.attrs["history"].splitlines()[0]
    err_b = float(np.sqrt(((background.t - truth.t) ** 2).mean()))
    assert float(np.sqrt(((out.t - truth.t) ** 2).mean())) < 0.9 * err_b  # the analysis helps


def test_dask_threads_and_processes_equal_serial(case):
    _, background, obs = case
    serial = assimilate_times(background, obs, method="oi", progress=False)
    lazy = assimilate_times(background.chunk(time=1), obs.chunk(time=1), method="oi", progress=False)
    assert_same(lazy, serial)
    assert "through dask (threads)" in lazy.attrs["history"]
    procs = assimilate_times(background, obs, method="oi", scheduler="processes", progress=False)
    assert_same(procs, serial)
    assert "through dask (processes)" in procs.attrs["history"]


def test_local_cluster_equals_serial_for_oi_and_phyda(case, cluster_client, tiny_model):
    _, background, obs = case
    lazy_bg, lazy_obs = background.chunk(time=1), obs.chunk(time=1)
    oi_serial = assimilate_times(background, obs, method="oi", scheduler="serial", progress=False)
    oi_cluster = assimilate_times(lazy_bg, lazy_obs, method="oi", progress=False)  # the active client
    assert "distributed, 2 workers" in oi_cluster.attrs["history"]
    assert_same(oi_cluster, oi_serial)
    opts = {
        "method": "phyda",
        "model": str(tiny_model),
        "members": 2,
        "steps": 2,
        "guidance": "diag",  # the cheapest guidance: the test is about scheduling, not accuracy
        "seed": 3,
        "progress": False,
    }
    ph_serial = assimilate_times(
        background.isel(time=[0, 1]), obs.isel(time=[0, 1]), scheduler="serial", **opts
    )
    ph_cluster = assimilate_times(lazy_bg.isel(time=[0, 1]), lazy_obs.isel(time=[0, 1]), **opts)
    assert ph_cluster["t"].dims == ("member",) + background["t"].dims
    assert_same(ph_cluster, ph_serial, state_rtol=1e-5)  # torch convolutions: float32 round-off
    assert not np.allclose(ph_serial["t"].isel(member=0), ph_serial["t"].isel(member=1))


def test_phyda_time_seed_is_seed_and_time_index(case, tiny_model):
    _, background, obs = case
    opts = {"method": "phyda", "model": tiny_model, "members": 2, "steps": 2, "guidance": "diag"}
    import warnings

    from xphyda.errors import PoorFitWarning

    with warnings.catch_warnings(record=True) as caught:  # the untrained model: one warning for both times
        warnings.simplefilter("always")
        out = assimilate_times(
            background.isel(time=[0, 1]), obs.isel(time=[0, 1]), seed=7, progress=False, **opts
        )
    poor = [w for w in caught if issubclass(w.category, PoorFitWarning)]
    assert len(poor) == 1 and "'t': O - A" in str(poor[0].message) and "model 'tiny'" in str(poor[0].message)
    one = assimilate(background.isel(time=[1]), obs.isel(time=[1]), seed=time_seed(7, 1), **opts)
    np.testing.assert_allclose(out["t"].isel(time=[1]), one["t"], rtol=0, atol=1e-4)
    assert not np.allclose(out["t"].isel(time=0), one["t"].isel(time=0))
    assert time_seed(7, 1) != time_seed(7, 0) and 0 <= time_seed(2**40, 10**6) < 2**63


def test_station_times_along_the_station_dimension(case):
    """Observations with one time each (no time dimension): each goes to its nearest time; order kept."""
    truth, background, _ = case
    pts = simulate(truth, n_stations=30, seed=4)
    flat = pts.stack(obs=("time", "station")).reset_index("obs")  # one observation per (time, station)
    flat = flat.assign_coords(time=("obs", flat["time"].values + np.timedelta64(1, "h")))  # off-synoptic
    late = flat["time"].values.copy()
    late[5] = late[5] + np.timedelta64(2, "D")  # outside every window
    flat = flat.assign_coords(time=("obs", late)).rename(obs="report")
    out = assimilate_times(background, flat, method="oi", progress=False)
    assert out["t_flag"].dims == ("level", "report") and out.sizes["report"] == flat.sizes["report"]
    assert int(out["t_flag"].isel(report=5, level=0)) == FLAGS["outside_time_window"]
    np.testing.assert_array_equal(out["lat"].values, flat["lat"].values)
    assert np.isnan(out["t_innovation"].isel(report=5)).all()
    whole = assimilate(background, flat, method="oi")  # the one-call analysis flags the same observations
    np.testing.assert_array_equal(out["t_flag"].values, whole["t_flag"].values)
    used = (out["t_flag"] == FLAGS["used"]).values
    np.testing.assert_allclose(
        out["t_innovation"].values[used], whole["t_innovation"].values[used], rtol=1e-12
    )


def test_needs_time_split(case):
    _, background, _ = case
    assert needs_time_split(background) and not needs_time_split(background.isel(time=[0]))
    assert not needs_time_split(background.isel(time=0)) and not needs_time_split(background["t"])


def test_errors_teach(case):
    _, background, obs = case
    with pytest.raises(ObservationError, match="carry no time"):
        assimilate_times(background, obs.isel(time=0, drop=True), method="oi", progress=False)
    with pytest.raises(
        ObservationError, match=r"1 of 4 background times have no observation.*widen time_window"
    ):
        assimilate_times(background, obs.isel(time=[0, 1, 3]), method="oi", progress=False)
    with pytest.raises(PhydaError, match="unknown scheduler 'gpu'"):
        assimilate_times(background, obs, scheduler="gpu", method="oi", progress=False)
    with pytest.raises(PhydaError, match="not used by method 'oi'"):
        assimilate_times(background, obs, method="oi", seed=1, progress=False)
    bad = obs.copy()
    bad["t"] = bad["t"].where(bad["time"] != bad["time"][2])  # time 2 has only missing t values
    bad["z"] = bad["z"].where(bad["time"] != bad["time"][2])
    with pytest.raises(
        ObservationError,
        match=r"analysis time 2007-01-02T00:00:00 \(index 2\): observation variable .t. is all NaN",
    ):
        assimilate_times(background, bad, method="oi", progress=False)
    with pytest.raises(PhydaError, match="no time dimension"):
        assimilate_times(background.isel(time=0), obs, method="oi", progress=False)


def test_assimilate_hands_many_times_to_assimilate_times(case):
    """The hook in ``assimilate``: a background with several times is analysed time by time."""
    import inspect

    if "scheduler" not in inspect.signature(assimilate).parameters:
        pytest.skip("assimilate has no many-times hook yet (see xphyda.parallel)")
    _, background, obs = case
    direct = assimilate_times(background, obs, method="oi", progress=False)
    hooked = assimilate(background, obs, method="oi", progress=False)
    assert_same(hooked, direct)
    lazy = assimilate(
        background.chunk(time=1), obs.chunk(time=1), method="oi", scheduler="threads", progress=False
    )
    assert_same(lazy, direct)
    with pytest.raises(PhydaError, match="not used by method 'oi'"):
        assimilate(background, obs, method="oi", seed=1, progress=False)


def test_a_time_without_observations_is_named_with_a_readable_window(case):
    _, background, obs = case
    first = obs.isel(time=[0])
    with pytest.raises(ObservationError, match=r"3 of 4 background times .*time window 0 days 03:00:00 .*Fix"):
        assimilate_times(background, first, method="oi", progress=False)
