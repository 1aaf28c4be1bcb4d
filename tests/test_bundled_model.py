"""The bundled model: listed, loadable from safetensors with a verified card, and usable end to end on CPU."""

import json
import re

import numpy as np
import xarray as xr
import pytest

import xphyda
from xphyda.models import DEFAULT_MODEL, available, find, read_card


def test_bundled_model_is_listed_and_small():
    assert DEFAULT_MODEL in available()
    folder = find(None)
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 25 * 2**20
    card = read_card()
    for key in ("channels", "grid", "normalisation", "training", "architecture", "sha256", "xphyda_version"):
        assert key in card, key
    assert card["channels"]["level_variables"] == ["z", "t", "u", "v", "q", "w"]
    assert card["training"]["steps_done"] > 0
    json.dumps(card)  # plain JSON


def test_bundled_model_assimilates_the_real_era5_extract_on_cpu(era5):
    truth = era5
    background = truth.copy(deep=True)
    background["t"] = background["t"] + 0.5
    obs = xphyda.obs.simulate(truth, n_stations=200, seed=0)
    out = background.phyda.assimilate(obs, method="phyda", members=2, steps=4, device="cpu", guidance="diag-fwd")
    assert out["t"].dims[0] == "member" and out.sizes["member"] == 2
    assert np.isfinite(out["t"]).all() and np.isfinite(out["z"]).all()
    assert DEFAULT_MODEL in out.attrs["history"].splitlines()[0]


def test_bundled_model_carries_its_balance_statistics_and_spread_factors():
    import torch

    from xphyda.diffusion import load

    lm = load(device="cpu")
    for factor in (lm.spread_factor.numpy(), lm.spread_factor_antithetic.numpy()):
        assert factor.shape == (lm.channels,) and 0.2 < factor.min() and factor.max() < 2.0
    bal = lm.balance(("hydrostatic",))
    x = 0.3 * torch.randn(2, lm.channels, lm.lat.size, lm.lon.size, generator=torch.Generator().manual_seed(0))
    before, after = bal.rms(x)["hydrostatic"], bal.rms(bal(x))["hydrostatic"]
    target = lm.balance_stats["hydrostatic.target"].double()
    area = bal.physics.area.double()
    truth_level = ((target**2 * area).sum((-2, -1)) / area.sum()).sqrt() + lm.balance_stats["hydrostatic.tolerance"]
    assert bool((after < 0.2 * before).all()), (before, after)
    assert bool((after < 2 * truth_level).all()), (after, truth_level)


def test_the_front_end_balances_and_calibrates_by_default(era5):
    truth = era5
    background = truth.copy(deep=True)
    obs = xphyda.obs.simulate(truth, n_stations=100, seed=0)
    out = background.phyda.assimilate(obs, method="phyda", members=2, steps=3, device="cpu")
    raw = background.phyda.assimilate(obs, method="phyda", members=2, steps=3, device="cpu", balance=(),
                                      calibrate=False)
    assert "balance ['hydrostatic', 'continuity']" in out.attrs["history"] and "spread calibration on" in out.attrs["history"]
    assert "balance none" in raw.attrs["history"] and "spread calibration off" in raw.attrs["history"]
    # calibration alone: the same members (same seed), each departure from the mean scaled by the channel's factor
    cal = background.phyda.assimilate(obs, method="phyda", members=2, steps=3, device="cpu", balance=(),
                                      calibrate=True)
    from xphyda.diffusion import load

    lm = load(device="cpu")
    for level in (500, 850):
        factor = float(lm.factor(antithetic=True)[lm.names.index(f"t{level}")])  # members come in mirror pairs
        a, b = cal["t"].sel(level=level), raw["t"].sel(level=level)
        np.testing.assert_allclose(a.mean("member"), b.mean("member"), atol=1e-3)
        dev_a, dev_b = (a - a.mean("member")).values, (b - b.mean("member")).values
        assert abs(float((dev_a * dev_b).sum() / (dev_b * dev_b).sum()) - factor) < 1e-3 * factor  # float32 output
        big = np.abs(dev_b) > 0.1
        np.testing.assert_allclose(dev_a[big] / dev_b[big], factor, rtol=1e-2)


def test_a_model_without_the_mirror_pair_factor_says_so(era5, monkeypatch):
    """Calibration factors are fitted per kind of ensemble: a checkpoint with only the independent-member
    factor calibrates independent members, skips mirror pairs under "auto", and refuses calibrate=True."""
    import dataclasses

    from xphyda import diffusion
    from xphyda.errors import ModelError

    old = dataclasses.replace(diffusion.load(device="cpu"), spread_factor_antithetic=None)
    monkeypatch.setattr(diffusion, "load", lambda model=None, device="auto": old)
    obs = xphyda.obs.simulate(era5, n_stations=50, seed=0)
    kw = dict(method="phyda", members=2, steps=2, device="cpu", balance=())
    assert "spread calibration off" in era5.phyda.assimilate(obs, **kw).attrs["history"]
    assert "spread calibration on" in era5.phyda.assimilate(obs, antithetic=False, **kw).attrs["history"]
    with pytest.raises(ModelError, match="for mirror-pair .* or antithetic=False"):
        era5.phyda.assimilate(obs, calibrate=True, **kw)


def test_humidity_observations_guide_the_analysis_beside_geopotential(era5):
    """Observations in units 1e8 apart (q in kg kg-1, z in m2 s-2) each move the analysis as their errors say:
    the guidance solves a whitened system.  (Unwhitened, the humidity observations were left unused.)  The same
    stations and noise observe the background and a truth 2 observation errors moister and 1 K warmer; the
    difference of the two analyses at the stations is what the observations did."""
    from xphyda.obs.uncertainty import default_obs_error

    background = era5.copy(deep=True)
    sigma_q = xr.DataArray(default_obs_error("specific_humidity", background.level.values * 100.0), dims="level")
    background["q"] = (background.t * 0 + 5 * sigma_q).astype("float32")  # half the standard saturation value
    background["q"].attrs = {"units": "kg kg-1", "standard_name": "specific_humidity"}
    truth = background.copy(deep=True)
    truth["q"] = (truth.q + 2 * sigma_q).astype("float32")
    truth["t"] = truth.t + 1.0
    kw = dict(members=2, steps=8, device="cpu", seed=0, balance=False, calibrate=False)
    obs = {name: xphyda.obs.simulate(state, n_stations=300, seed=2) for name, state in (("b", background), ("t", truth))}
    np.testing.assert_allclose(obs["t"].q_error, sigma_q)  # one error per level
    ana = {name: background.phyda.assimilate(o, **kw).mean("member") for name, o in obs.items()}
    op = xphyda.obs.build_operator(obs["b"].lat.values, obs["b"].lon.values, era5.latitude.values, era5.longitude.values)
    for name, k in (("q", 0), ("q", 1), ("t", 0), ("t", 1)):
        moved = op.matrix @ (ana["t"][name] - ana["b"][name]).isel(time=0, level=k).values.ravel()
        wanted = float((truth[name] - background[name]).isel(time=0, level=k).mean())
        assert np.median(moved[op.inside]) > 0.3 * wanted, (name, k, np.median(moved[op.inside]), wanted)


def test_humidity_members_and_reconstruction_are_never_negative(era5):
    """Under a nearly dry background the prior's humidity increments dip below 0 in places: every member and the
    VRE's reconstruction are floored at 0 on the user's grid, and the share is reported."""
    background = era5.copy(deep=True)
    background["q"] = (background.t * 0 + 1e-7).astype("float32")
    background["q"].attrs = {"units": "kg kg-1", "standard_name": "specific_humidity"}
    obs = xphyda.obs.simulate(era5, n_stations=100, seed=2)
    out = background.phyda.assimilate(obs, members=2, steps=3, device="cpu", seed=0)
    assert float(out.q.min()) == 0.0 and float(out.q.max()) > 1e-7
    match = re.search(r"values below 0 set to 0 \(a quantity that is never negative\): q ([0-9.]+) % of values",
                      out.attrs["history"])
    assert match and 0 < float(match.group(1)) < 100
    # the same in g kg-1: exactly 0 in the user's units too (a floor in SI alone leaves -1e-19 after rescaling)
    grams = background.assign(q=(background.q * 1000).assign_attrs(units="g kg-1", standard_name="specific_humidity"))
    rng = np.random.default_rng(0)  # a background that varies, as real ones do
    grams["q"] = (grams.q * rng.uniform(0.5, 2.0, grams.q.shape).astype("float32")).assign_attrs(grams.q.attrs)
    out_g = grams.phyda.assimilate(obs, members=2, steps=3, device="cpu", seed=0)
    assert float(out_g.q.min()) == 0.0 and out_g.q.attrs["units"] == "g kg-1"
    rec = background.phyda.encode(obs)
    assert min(float(rec[f"q{lev}"].min()) for lev in (200, 300, 500, 700, 850)) >= 0.0
    assert "values below 0 set to 0" in rec.attrs["history"]
