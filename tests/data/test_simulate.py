"""Tests of the training-corpus generator (xphyda.data.simulate)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import xphyda.data.simulate as sim
from xphyda.errors import DataError, GridError, PhydaError

SIGMA = np.array([0.095, 0.2, 0.34, 0.51, 0.685, 0.835, 0.95])  # jcm's kept levels, top first
PLEV = np.array(sim.DEFAULT_LEVELS_HPA, dtype=float) * 100.0
LAT = np.linspace(87.5, -87.5, 8)
LON = np.arange(16) * 22.5


def _columns(ps, f):
    """A field ``f(p)`` on the sigma levels of surface pressures ``ps`` (shape (..., lat, lon))."""
    p = ps[..., None, :, :] * SIGMA[:, None, None]
    return p, f(p)


def test_interp_exact_for_linear_in_log_p():
    rng = np.random.default_rng(0)
    ps = rng.uniform(60000, 104000, size=(2, 3, 4))
    _, field = _columns(ps, lambda p: 3.0 - 7.5 * np.log(p))
    p_src = ps[..., None, :, :] * SIGMA[:, None, None]
    out = sim.interp_log_p(field, p_src, PLEV)
    assert out.shape == (2, 12, 3, 4)
    expect = 3.0 - 7.5 * np.log(PLEV)[None, :, None, None]
    np.testing.assert_allclose(out, np.broadcast_to(expect, out.shape), rtol=0, atol=1e-9)


def test_interp_between_levels_is_piecewise_linear():
    p_src = np.array([10000.0, 50000.0, 100000.0])[:, None, None]
    field = np.array([0.0, 1.0, 5.0])[:, None, None]
    x = np.exp(0.5 * (np.log(50000.0) + np.log(100000.0)))
    out = sim.interp_log_p(field, p_src, [50000.0, x])
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 3.0])


def test_interp_geopotential_exact_for_hydrostatic_column():
    rng = np.random.default_rng(3)
    ps = rng.uniform(60000, 104000, size=(3, 4))
    p_src = ps[None] * SIGMA[:, None, None]
    s = np.log(p_src)
    a, b = 520.0, -22.0  # Tv linear in ln p
    tv = a + b * s
    z = 1e5 - sim.RD * (a * s + 0.5 * b * s ** 2)  # dz / dln p = -Rd Tv
    inside = PLEV[PLEV >= 10000.0]
    out = sim.interp_geopotential_log_p(z, tv, p_src, inside, axis=0)
    st = np.log(inside)[:, None, None]
    np.testing.assert_allclose(out, 1e5 - sim.RD * (a * st + 0.5 * b * st ** 2) + 0 * ps, rtol=1e-12)
    # hence the hypsometric residual of interpolated z and T vanishes
    t_out = sim.interp_log_p(tv, p_src, inside, axis=0)
    res = sim.hypsometric_residual(out, t_out, np.zeros_like(t_out), inside, axis=0)
    assert np.abs(res).max() < 1e-6


def test_interp_rejects_unsorted_levels():
    with pytest.raises(GridError):
        sim.interp_log_p(np.zeros((3, 1, 1)), np.array([3.0, 2.0, 1.0])[:, None, None], [2.0])


def test_extrapolate_below_lapse_rate_and_hypsometric():
    p_low, t_low, z_low, q_low = 95000.0, 280.0, 5000.0, 0.01
    p = np.array([96000.0, 98000.0, 100000.0, 102000.0])
    t, _ = sim.extrapolate_below(p, p_low, t_low, z_low, q_low)
    # virtual temperature lapses at 6.5 K/km in (geopotential) height
    _, z_all = sim.extrapolate_below(np.r_[p_low, p], p_low, t_low, z_low, q_low)
    t_all = np.r_[t_low, t]
    dz_m = np.diff(z_all) / sim.G
    tv_all = t_all * (1 + sim.VIRTUAL_FACTOR * q_low)
    np.testing.assert_allclose(np.diff(tv_all) / dz_m, -sim.LAPSE_RATE, rtol=2e-3)
    assert np.all(np.diff(z_all) < 0) and np.all(np.diff(t_all) > 0)
    # the hypsometric residual of the extrapolated column is tiny (trapezoid error only)
    res = sim.hypsometric_residual(z_all[:, None, None], t_all[:, None, None],
                                   np.full((5, 1, 1), q_low), np.r_[p_low, p])
    assert np.abs(res).max() < 0.01


def test_sigma_to_pressure_levels_below_ground_and_nan_free():
    rng = np.random.default_rng(1)
    ps = np.stack([np.full((3, 4), 101000.0), rng.uniform(55000, 104000, (3, 4))])
    p = ps[:, None] * SIGMA[:, None, None]
    fields = {
        "u": 10.0 + 0.0 * p + np.arange(7)[:, None, None],
        "v": -2.0 + 0.0 * p,
        "t": 200.0 + 0.0009 * p,
        "q": 1e-7 * p * 0.1,
        "z": sim.RD * 250.0 * np.log(1e5 / p),
    }
    out = sim.sigma_to_pressure_levels(fields, SIGMA, ps, PLEV)
    for k, v in out.items():
        assert v.shape == (2, 12, 3, 4) and np.isfinite(v).all(), k
    assert (out["q"] >= 0).all()
    below = PLEV[None, :, None, None] > (0.95 * ps)[:, None]
    assert below.any() and (~below).any()
    low = {k: np.broadcast_to(fields[k][:, -1:], out[k].shape) for k in fields}
    for k in ("u", "v", "q"):
        np.testing.assert_array_equal(out[k][below], low[k][below])
    t_b, z_b = sim.extrapolate_below(PLEV[None, :, None, None], (0.95 * ps)[:, None], low["t"],
                                     low["z"], low["q"])
    np.testing.assert_allclose(out["t"][below], t_b[below])
    np.testing.assert_allclose(out["z"][below], z_b[below])
    # above the lowest level: interpolation of the exact (linear-in-p) temperature
    t_exact = 200.0 + 0.0009 * PLEV[None, :, None, None]
    inside = (~below) & (PLEV[None, :, None, None] >= (0.095 * ps)[:, None])
    assert np.abs(out["t"] - t_exact)[inside].max() < 3.0


def test_omega_zero_for_nondivergent_flow():
    u = np.broadcast_to(20.0 * np.cos(np.deg2rad(LAT))[:, None], (12, 8, 16)).copy()
    v = np.zeros_like(u)
    w = sim.omega_on_pressure_levels(u, v, LAT, LON, PLEV)
    np.testing.assert_allclose(w, 0.0, atol=1e-12)


def test_omega_satisfies_continuity():
    from xphyda.physics.operators import SphereGrid, divergence

    rng = np.random.default_rng(2)
    u, v = rng.normal(0, 10, (2, 2, 12, 8, 16))
    w = sim.omega_on_pressure_levels(u, v, LAT, LON, PLEV)
    d = divergence(u, v, SphereGrid(LAT, LON))
    np.testing.assert_allclose(w[:, 0], -PLEV[0] * d[:, 0], rtol=1e-12)
    resid = np.diff(w, axis=1) / np.diff(PLEV)[None, :, None, None] + 0.5 * (d[:, 1:] + d[:, :-1])
    assert np.abs(resid).max() < 1e-12 * np.abs(d).max() + 1e-18


def test_hypsometric_residual_zero_for_isothermal_column():
    t = np.full((12, 2, 2), 250.0)
    q = np.full_like(t, 0.002)
    tv = 250.0 * (1 + sim.VIRTUAL_FACTOR * 0.002)
    z = (sim.RD * tv * np.log(1e5 / PLEV))[:, None, None] * np.ones((1, 2, 2))
    res = sim.hypsometric_residual(z, t, q, PLEV)
    assert res.shape == (11, 2, 2)
    np.testing.assert_allclose(res, 0.0, atol=1e-9)


def test_mean_sea_level_pressure():
    ps = np.array([101000.0, 85000.0])
    msl = sim.mean_sea_level_pressure(ps, np.array([0.0, 1500.0 * sim.G]), 280.0, 0.95 * ps)
    assert msl[0] == pytest.approx(101000.0)
    assert 100000.0 < msl[1] < 104000.0


def test_missing_jcm_raises_phyda_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "jcm", None)
    with pytest.raises(PhydaError, match=r'pip install "xphyda\[gcm\]"') as info:
        sim.simulate(tmp_path / "x", years=0.01)
    assert isinstance(info.value, ImportError)


def _parent_corpus(root, *, chunk_days=30.0, trajectories=2, spinup_days=360.0, states=(0, 1), seed=0):
    """A corpus folder as simulate leaves it, without the stores: corpus.json and spun-up checkpoints."""
    root.mkdir()
    settings = {"chunk_days": chunk_days, "save_interval_hours": 6.0, "spinup_days": spinup_days,
                "trajectories": trajectories, "data_start": "2000-01-01", "seed": seed}
    (root / "corpus.json").write_text(json.dumps({"settings": settings}))
    for k in states:
        (root / "state" / f"traj{k}").mkdir(parents=True)
        (root / "state" / f"traj{k}" / "chunk00012.msgpack").write_bytes(b"state")
    return root


def test_branch_points_pair_each_trajectory_with_its_parents_spun_up_state(tmp_path):
    parent = _parent_corpus(tmp_path / "p")
    settings, chunk, points = sim._branch_points(parent, [2, 3, 4], 30.0, 6.0, seed=0)
    assert settings["data_start"] == "2000-01-01"
    assert chunk == 12
    assert {k: (p.parent.name, p.name) for k, p in points.items()} == {
        2: ("traj0", "chunk00012.msgpack"), 3: ("traj1", "chunk00012.msgpack"),
        4: ("traj0", "chunk00012.msgpack")}


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: d.mkdir(), "no readable corpus.json"),
        (lambda d: d.mkdir() or (d / "corpus.json").write_text('{"settings": {"chunk_days": 30}}'),
         "no readable corpus.json with complete 'settings'.*save_interval_hours"),
        (lambda d: _parent_corpus(d, chunk_days=10.0), r"chunk_days=10.0, this run 30.0; pass --chunk-days 10.0"),
        (lambda d: _parent_corpus(d, states=(0,)), r"traj1/chunk00012.msgpack'\] is missing"),
        (lambda d: _parent_corpus(d, seed=1), r"trajectories \[0, 1\] with seed 1 would replay"),
    ],
)
def test_branch_from_an_unusable_corpus_says_why_before_running(monkeypatch, tmp_path, make, says):
    monkeypatch.setattr(sim, "_require_jcm", lambda: sim)  # never reached the model
    monkeypatch.setattr(sim, "_run_trajectory", lambda *a, **k: pytest.fail("ran the model"))
    make(tmp_path / "p")
    with pytest.raises(DataError, match=says):
        sim.simulate(tmp_path / "new", years=1, trajectories=2, spinup_days=60, branch_from=tmp_path / "p",
                     seed=1)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("kind", "says"),
    [("missing", "does not exist"), ("file", "is a file, not a folder"), ("empty", "holds no traj*.zarr store")],
)
def test_summary_of_a_path_that_is_not_a_corpus_is_an_error(tmp_path, capsys, kind, says):
    """`phyda simulate PATH --summary` on a wrong path: a DataError (exit code 1), never ``[]`` and 0."""
    from xphyda.cli import EXIT_ERROR
    from xphyda.cli import main as phyda
    from xphyda.errors import DataError

    path = {"missing": tmp_path / "MISSING", "file": tmp_path / "corpus.nc", "empty": tmp_path}[kind]
    if kind == "file":
        path.write_text("not a corpus")
    with pytest.raises(DataError, match="expected a corpus folder written by `phyda simulate`") as info:
        sim.main([str(path), "--summary"])
    assert says in str(info.value) and str(path) in str(info.value) and "Fix:" in str(info.value)
    capsys.readouterr()
    assert phyda(["simulate", str(path), "--summary"]) == EXIT_ERROR
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("phyda: error: ") and says in err and "Traceback" not in err


def test_summary_of_a_trajectory_store_points_at_its_folder(tmp_path):
    store = tmp_path / "corpus" / "traj0.zarr"
    store.mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    with pytest.raises(PhydaError, match=r"pass the folder that holds it: `phyda simulate .*corpus --summary`"):
        sim.main([str(store), "--summary"])


def test_summary_module_entry_exits_with_the_phyda_error_code(tmp_path):
    """`python -m xphyda.data.simulate MISSING --summary`: one error line and exit code 1, as `phyda`."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "xphyda.data.simulate", "MISSING", "--summary"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout == "" and "phyda: error: 'MISSING' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_xphyda_data_simulate_is_callable(monkeypatch, tmp_path):
    """``xphyda.data.simulate(store, ...)`` runs the generator; the module's names stay reachable."""
    import xphyda.data

    assert xphyda.data.simulate is sim and callable(sim)
    monkeypatch.setitem(sys.modules, "jcm", None)
    with pytest.raises(sim.MissingDependencyError, match=r'pip install "xphyda\[gcm\]"'):
        xphyda.data.simulate(tmp_path / "x", years=0.01)
    calls = []
    monkeypatch.setattr(sim, "simulate", lambda store, **kw: calls.append((store, kw)) or ["done"])
    assert xphyda.data.simulate("corpus", years=2, trajectories=3) == ["done"]
    assert calls == [("corpus", {"years": 2, "trajectories": 3})]


def _chunk(start: int, n: int = 2):
    """``n`` 6-hourly states from state ``start`` on, in the corpus layout (small), with a static field."""
    import xarray as xr

    times = np.datetime64("2000-01-01T06", "ns") + (start + np.arange(n)) * np.timedelta64(6, "h")
    values = (start + np.arange(n, dtype=np.float32))[:, None, None, None] * np.ones((1, 2, 3, 4), np.float32)
    return xr.Dataset(
        {
            "t": (("time", "level", "latitude", "longitude"), values, {"units": "K"}),
            "sp": (("time", "latitude", "longitude"), values[:, 0] + 1e5, {"units": "Pa"}),
            "lsm": (("latitude", "longitude"), np.zeros((3, 4), np.float32), {"units": "1"}),
        },
        coords={"time": times, "level": [500.0, 850.0], "latitude": [60.0, 0.0, -60.0],
                "longitude": [0.0, 90.0, 180.0, 270.0]},
    )


def test_a_killed_run_resumes_from_its_last_complete_chunk(tmp_path):
    """A run killed while appending leaves arrays of different lengths; the resume truncates them to the
    last complete chunk, and the next append continues the time axis without a gap or a duplicate."""
    import xarray as xr
    import zarr

    path = tmp_path / "traj0.zarr"
    assert sim._complete_chunks(path, 2) == 0  # nothing written yet: start from scratch
    sim._write_chunk(path, _chunk(0), 2, {"seed": 0}, first=True)
    sim._write_chunk(path, _chunk(2), 2, {"seed": 0}, first=False)
    assert sim._complete_chunks(path, 2) == 2
    # killed in the middle of the third append: time and t got one more state, sp did not
    # (the arrays' own metadata, not the consolidated copy, which still says 4)
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    for name in ("time", "t"):
        group[name].resize((5,) + group[name].shape[1:])
        group[name][4] = -99  # the states written before the kill
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    assert sorted(group[n].shape[0] for n in ("time", "t", "sp")) == [4, 5, 5]
    assert sim._complete_chunks(path, 2) == 2
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    assert [group[n].shape[0] for n in ("time", "t", "sp")] == [4, 4, 4]
    sim._write_chunk(path, _chunk(4), 2, {"seed": 0}, first=False)
    ds = xr.open_zarr(path)
    assert ds.sizes["time"] == 6 and (np.diff(ds.time.values) == np.timedelta64(6, "h")).all()
    np.testing.assert_array_equal(ds.t.values[:, 0, 0, 0], np.arange(6))
    np.testing.assert_array_equal(ds.sp.values[:, 0, 0], np.arange(6) + 1e5)
    assert ds.attrs["seed"] == 0 and "lsm" in ds and "time" not in ds.lsm.dims
    # killed after a complete append but before its consolidation: the chunk counts, and readers see it
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    hours = group["time"][:]  # stored as hours since 2000-01-01
    for name, value in (("time", hours[-1] + np.array([6, 12])), ("t", 6), ("sp", 6)):
        group[name].resize((8,) + group[name].shape[1:])
        group[name][6:] = value
    assert xr.open_zarr(path).sizes["time"] == 6  # the stale consolidated metadata
    assert sim._complete_chunks(path, 2) == 4
    again = xr.open_zarr(path)
    assert again.sizes["time"] == 8 and (np.diff(again.time.values) == np.timedelta64(6, "h")).all()


def _check_residuals_with_xphyda(x, divergence_values):
    """The store's continuity and hydrostatic residuals through xphyda's own physics residuals, the
    checks a user runs on any data (measured on 40 states of the full corpus: continuity 5.7e-7 of the
    RMS divergence at most per layer, hydrostatic 0.3 to 5.2 m RMS per layer)."""
    from xphyda.physics import physics_residual

    continuity = physics_residual(x, "continuity")
    assert continuity.attrs["units"] == "s-1" and continuity.sizes["layer"] == x.sizes["level"] - 1
    ratio = float(np.sqrt((continuity**2).mean())) / np.sqrt(np.mean(divergence_values**2))
    assert ratio < 1e-3, ratio
    hydrostatic = physics_residual(x, "hydrostatic")  # virtual temperature from q
    assert hydrostatic.attrs["units"] == "m" and "'q'" in hydrostatic.attrs["history"]
    layer_rms = np.sqrt((hydrostatic**2).mean(["time", "latitude", "longitude"]))
    assert float(layer_rms.max()) < 30.0, layer_rms.values


@pytest.mark.slow
@pytest.mark.gcm
def test_simulate_few_days(tmp_path):
    pytest.importorskip("jcm")
    import xarray as xr

    from xphyda.physics.operators import SphereGrid, divergence

    days = 2
    paths = sim.simulate(tmp_path / "c", years=days / 365.25, trajectories=1, spinup_days=1,
                         chunk_days=1, progress=False)
    assert [p.name for p in paths] == ["traj0.zarr"]
    ds = xr.open_zarr(paths[0])
    assert ds.sizes == {"time": 4 * days, "level": 12, "latitude": 48, "longitude": 96}
    assert list(ds.level.values) == list(sim.DEFAULT_LEVELS_HPA)
    assert ds.level.attrs["units"] == "hPa" and ds.level.attrs["standard_name"] == "air_pressure"
    assert (np.diff(ds.latitude.values) < 0).all() and ds.longitude.values[-1] == 356.25
    assert (np.diff(ds.time.values) == np.timedelta64(6, "h")).all()
    units = {"z": "m2 s-2", "t": "K", "u": "m s-1", "v": "m s-1", "q": "kg kg-1", "w": "Pa s-1",
             "sp": "Pa", "z_surface": "m2 s-2"}
    for name, unit in units.items():
        assert ds[name].attrs["units"] == unit and ds[name].dtype == np.float32, name
        assert np.isfinite(ds[name].values).all(), name
    assert ds.attrs["Conventions"] == "CF-1.8" and "jcm" in ds.attrs["model"]
    x = ds.load()
    assert 200 < float(x.t.mean()) < 300 and 5e4 < float(x.sp.mean()) < 1.1e5
    # continuity holds to float32 rounding on the stored fields
    plev = x.level.values * 100.0
    d = divergence(x.u.values.astype(np.float64), x.v.values.astype(np.float64),
                   SphereGrid(x.latitude.values, x.longitude.values))
    w = x.w.values.astype(np.float64)
    cont = np.diff(w, axis=1) / np.diff(plev)[None, :, None, None] + 0.5 * (d[:, 1:] + d[:, :-1])
    assert np.sqrt(np.mean(cont ** 2)) < 1e-3 * np.sqrt(np.mean(d ** 2))
    # hydrostatic: layer RMS of the hypsometric residual stays within tens of metres
    res = sim.hypsometric_residual(x.z.values, x.t.values, x.q.values, plev)
    rms = np.sqrt(np.mean(res ** 2, axis=(0, 2, 3)))
    assert rms.max() < 30.0, rms
    _check_residuals_with_xphyda(x, d)
    summary = sim.corpus_summary(paths[0], batch=3)
    assert summary["n_states"] == 4 * days and summary["continuity_rms_rel"] < 1e-3
    assert 240 < summary["t850_K"] < 300 and 4800 < summary["z500_m"] < 6200
    # resume: asking for more days appends continuous states
    sim.simulate(tmp_path / "c", years=2 * days / 365.25, trajectories=1, spinup_days=1,
                 chunk_days=1, progress=False)
    ds2 = xr.open_zarr(paths[0])
    assert ds2.sizes["time"] == 8 * days
    assert (np.diff(ds2.time.values) == np.timedelta64(6, "h")).all()
    np.testing.assert_array_equal(ds2.t.values[: 4 * days], x.t.values)
    # two branches of the one-trajectory corpus: 1 day run on after the branch point, not stored
    # (seed 1: with the parent's seed 0, branch 0 would replay the parent, and says so)
    with pytest.raises(DataError, match="would replay"):
        sim.simulate(tmp_path / "b", years=days / 365.25, trajectories=2, spinup_days=1, chunk_days=1,
                     progress=False, branch_from=tmp_path / "c")
    branches = sim.simulate(tmp_path / "b", years=2 * days / 365.25, trajectories=2, spinup_days=1, seed=1,
                            chunk_days=1, progress=False, branch_from=tmp_path / "c")
    b0, b1 = (xr.open_zarr(p_).load() for p_ in branches)
    np.testing.assert_array_equal(b0.time.values, ds2.time.values[4:4 + 4 * days])  # parent's start + 1 day
    assert json.loads(b0.attrs["settings"])["branch_from"]["days_after_branch_not_stored"] == 1.0
    rms = {name: float(np.sqrt(((a.z.sel(level=500) - b.z.sel(level=500)) ** 2).mean()))
           for name, (a, b) in {"b0-parent": (b0, ds2.isel(time=slice(4, 4 + 4 * days))),
                                "b0-b1": (b0, b1)}.items()}
    assert 0 < rms["b0-parent"] < 50 and 0 < rms["b0-b1"] < 50, rms  # m2 s-2: new noise, still close


def _write_json_often(path, n):
    for i in range(n):
        sim._save_json(path, {"writer": os.getpid(), "i": i})


def test_parallel_trajectory_processes_can_write_corpus_json_at_once(tmp_path):
    # `--trajectory` runs trajectories as parallel processes; all of them write corpus.json
    import multiprocessing as mp

    path = tmp_path / "corpus.json"
    procs = [mp.get_context("fork").Process(target=_write_json_often, args=(path, 300)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert json.loads(path.read_text())["i"] == 299
    assert not list(tmp_path.glob("*.tmp"))
