"""Tests of the training-corpus generator (xphyda.data.simulate)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import xphyda.data.simulate as sim
from xphyda.errors import GridError, PhydaError

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
