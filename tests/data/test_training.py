"""phyda train end to end on a tiny corpus: the model folder loads and has a complete card."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from xphyda.models import PRESETS
from xphyda.training import channel_index, total_steps, train_prior


@pytest.fixture
def tiny_preset(monkeypatch):
    preset = {
        "description": "test preset",
        "grid": {"nlat": 8, "nlon": 16},
        "variables": ["z", "t", "u", "v", "w"],
        "levels_hpa": [500, 850],
        "surface": ["sp"],
        "background_lead_hours": 24,
        "train_command": "phyda train --preset tiny --data X",
    }
    monkeypatch.setitem(PRESETS, "tiny", preset)
    return "tiny"


def test_train_prior_writes_a_loadable_model(make_corpus, tmp_path, tiny_preset):
    from xphyda.model.checkpoint import load_model

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    out = train_prior(corpus, preset=tiny_preset, out=tmp_path / "m", steps=3, batch_size=2, widths=(8, 16),
                      vre_widths=(8, 16), features=2, progress=False, stats_max_times=None)
    card = json.loads((out / "card.json").read_text())
    assert card["channels"]["names"] == ["z500", "z850", "t500", "t850", "u500", "u850", "v500", "v850",
                                         "w500", "w850", "sp"]
    assert card["training"]["steps_done"] == 3
    assert list(card["normalisation"]["channels"]) == card["channels"]["names"]
    assert len(card["grid"]["latitude"]) == 8
    assert card["architecture"]["centred"] and len(card["architecture"]["sigma_data"]) == 11
    assert card["state_dicts"] == ["balance", "ema"]  # the balance statistics travel with the weights
    net, card2 = load_model(out, device="cpu")
    x = torch.zeros(1, 11, 8, 16)
    d, r = net(x, torch.ones(1), x, x, torch.zeros_like(x))
    assert torch.isfinite(d).all() and d.shape == x.shape
    # a second call resumes (nothing left to do) and still exports
    train_prior(corpus, preset=tiny_preset, out=tmp_path / "m", steps=3, batch_size=2, widths=(8, 16),
                vre_widths=(8, 16), features=2, progress=False, stats_max_times=None)
    metrics = (out / "work" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(metrics[-1])["step"] == 3


@pytest.mark.parametrize(
    ("kind", "says"),
    [("missing", "the path does not exist"), ("junk_nc", "could not read"), ("unknown", "cannot tell the format"),
     ("empty_folder", "holds no 'traj*.zarr' trajectories")],
)
def test_bad_data_fails_before_any_folder_is_made(tmp_path, tiny_preset, capsys, kind, says):
    """`phyda train --data missing.zarr --out m` used to leave an empty m/work behind."""
    from xphyda.cli import EXIT_ERROR, main
    from xphyda.errors import DataError

    data = {"missing": tmp_path / "missing.zarr", "junk_nc": tmp_path / "junk.nc",
            "unknown": tmp_path / "data.txt", "empty_folder": tmp_path / "empty"}[kind]
    if kind == "empty_folder":
        data.mkdir()
    elif kind != "missing":
        data.write_text("not a store")
    out = tmp_path / "out" / "m"
    with pytest.raises(DataError, match=re.escape(says)) as info:
        train_prior(data, preset=tiny_preset, out=out, steps=1, progress=False)
    assert str(data) in str(info.value) and "Fix:" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert main(["train", "--data", str(data), "--preset", tiny_preset, "--out", str(out), "--quiet"]) == EXIT_ERROR
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_channel_index_matches_spec_order():
    from xphyda.data.pipeline import ChannelSpec

    spec = ChannelSpec(("z", "t"), (300, 500, 850), ("sp",))
    idx = channel_index(spec)
    assert [spec.names[i] for i in idx["t"]] == ["t300", "t500", "t850"]


def test_background_regression_recovers_gain_and_spread(tmp_path):
    from xphyda.training import background_regression

    g = torch.Generator().manual_seed(0)

    class Pairs:
        def __len__(self):
            return 400

        def __getitem__(self, i):
            b = torch.randn(2, 16, 32, generator=g)
            truth = torch.stack([0.9 * b[0] + 0.1 * torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)])
            return {"truth": truth, "background": b}

    reg = background_regression(Pairs(), tmp_path, n=200)
    np.testing.assert_allclose(reg["gain"], [0.9, 0.0], atol=0.02)
    np.testing.assert_allclose(reg["spread"], [0.1, 1.0], rtol=0.03)
    assert json.loads((tmp_path / "background_regression.json").read_text()) == reg
    (tmp_path / "background_regression.json").write_text(json.dumps({"gain": [1, 1], "spread": [1, 1]}))
    assert background_regression(Pairs(), tmp_path)["gain"] == [1, 1]  # a resumed run keeps its values


def test_calibration_factors_account_for_what_the_balance_does():
    from xphyda.model.phyda import PhydaNet
    from xphyda.training import calibration_group

    torch.manual_seed(0)
    # untrained and centred on 0 with spread 1: the exact denoiser of N(0, 1), so members and truths match
    net = PhydaNet(3, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, centred=True, sigma_data=1.0,
                   background_gain=0.0).eval()
    g = torch.Generator().manual_seed(1)
    data = [{"truth": torch.randn(3, 8, 16, generator=g), "background": torch.randn(3, 8, 16, generator=g)}
            for _ in range(3)]
    lat = np.linspace(80, -80, 8)
    kw = dict(cases=3, members=4, steps=8, fraction=0.01)
    plain = calibration_group(net, data, lat, **kw)["spread_factor"]
    assert plain.shape == (3,) and bool((plain > 0.3).all()) and bool((plain < 3).all())
    same = calibration_group(net, data, lat, balance=lambda e: e, **kw)["spread_factor"]
    assert torch.allclose(same, plain, rtol=1e-4)
    # a "balance" that halves every departure from the mean: the factor doubles to compensate
    halved = calibration_group(net, data, lat, balance=lambda e: e.mean(0) + 0.5 * (e - e.mean(0)), **kw)
    assert torch.allclose(halved["spread_factor"], 2 * plain, rtol=1e-3)


@pytest.mark.parametrize("bad", [-1, 11, 2.5, True, None, "5"])
def test_train_prior_rejects_a_bad_lr_decay_before_making_folders(make_corpus, tmp_path, tiny_preset, bad, capsys):
    from xphyda.cli import EXIT_ERROR, main
    from xphyda.errors import ModelError

    corpus = make_corpus()
    with pytest.raises(ModelError, match="lr_decay_steps must be an integer from 0 to steps=10") as info:
        train_prior(corpus, preset=tiny_preset, out=tmp_path / "m", steps=10, lr_decay_steps=bad, progress=False)
    assert "Fix:" in str(info.value)
    assert not (tmp_path / "m").exists()
    if isinstance(bad, int) and not isinstance(bad, bool):
        argv = ["train", "--data", str(corpus), "--preset", tiny_preset, "--out", str(tmp_path / "m"),
                "--steps", "10", "--lr-decay-steps", str(bad), "--quiet"]
        assert main(argv) == EXIT_ERROR
        assert "lr_decay_steps" in capsys.readouterr().err


@pytest.mark.parametrize("weights, message", [({"q999": 2.0}, "not channels of this preset"),
                                              ({"t850": 0.0}, "positive finite numbers"),
                                              ({"t850": "heavy"}, "positive finite numbers")])
def test_train_prior_rejects_bad_channel_weights_before_making_folders(make_corpus, tmp_path, tiny_preset,
                                                                       weights, message, capsys):
    from xphyda.cli import EXIT_ERROR, main
    from xphyda.errors import ModelError

    corpus = make_corpus()
    with pytest.raises(ModelError, match=message) as info:
        train_prior(corpus, preset=tiny_preset, out=tmp_path / "m", steps=10, channel_weights=weights, progress=False)
    assert "Fix:" in str(info.value)
    assert not (tmp_path / "m").exists()
    (name, value), = weights.items()
    argv = ["train", "--data", str(corpus), "--preset", tiny_preset, "--out", str(tmp_path / "m"),
            "--steps", "10", "--channel-weight", f"{name}={value}", "--quiet"]
    assert main(argv) == EXIT_ERROR
    assert message in capsys.readouterr().err


def test_channel_weights_follow_the_channels_in_any_preset_order(make_corpus, tmp_path, tiny_preset):
    """Presets may list variables in any order (era5-v1's surface fields are not in channel order): the weights go
    to the named channels of the prepared data, and a run without weights is unaffected."""
    from xphyda.models import PRESETS

    PRESETS[tiny_preset] = dict(PRESETS[tiny_preset], variables=["w", "t", "z", "u", "v"])
    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    kw = dict(steps=1, batch_size=2, widths=(8, 16), vre_widths=(8, 16), features=2, progress=False,
              stats_max_times=None)
    out = train_prior(corpus, preset=tiny_preset, out=tmp_path / "w", channel_weights={"t850": 3.0}, **kw)
    card = json.loads((out / "card.json").read_text())
    names, weights = card["channels"]["names"], card["training"]["config"]["channel_weights"]
    assert weights[names.index("t850")] == 3.0 and sorted(weights) == [1.0] * (len(names) - 1) + [3.0]
    plain = train_prior(corpus, preset=tiny_preset, out=tmp_path / "p", **kw)
    assert json.loads((plain / "card.json").read_text())["training"]["config"]["channel_weights"] is None


def test_a_fine_tune_starts_from_the_models_weights_and_statistics(make_corpus, tmp_path, tiny_preset, monkeypatch):
    from safetensors.torch import load_file

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    base = train_prior(corpus, preset=tiny_preset, out=tmp_path / "base", steps=3, batch_size=2, widths=(8, 16),
                       vre_widths=(16, 16), features=3, progress=False, stats_max_times=None)
    base_card = json.loads((base / "card.json").read_text())
    # other data: a fresh run would compute other statistics; the fine-tune keeps the model's
    other = make_corpus(n_traj=2, n_times=40, levels=(100.0, 500.0, 850.0), name="other")
    tuned = train_prior(other, preset=tiny_preset, out=tmp_path / "tuned", steps=1, batch_size=2, lr=1e-12,
                        progress=False, stats_max_times=None, init_from=base)
    card = json.loads((tuned / "card.json").read_text())
    assert card["normalisation"] == base_card["normalisation"]
    assert card["architecture"] == base_card["architecture"]  # widths (16, 16) and 3 features, not the defaults
    assert card["training"]["init_from"] == {"model": str(base), "sha256": base_card["sha256"], "steps_done": 3,
                                             "total_steps": 3}
    assert total_steps(card) == 4  # its own step and the 3 behind its starting model
    assert card["training"]["config"]["physics_warmup"] == 0 and base_card["training"]["config"]["physics_warmup"] > 0
    before, after = (load_file(p / "model.safetensors") for p in (base, tuned))
    names = [k for k in before if k.startswith("ema/")]
    assert names and max(float((before[k] - after[k]).abs().max()) for k in names) < 1e-6  # lr 1e-12: unchanged
    scratch = train_prior(other, preset=tiny_preset, out=tmp_path / "scratch", steps=1, batch_size=2, lr=1e-12,
                          progress=False, stats_max_times=None, vre_widths=(16, 16), widths=(8, 16), features=3)
    fresh = load_file(scratch / "model.safetensors")
    assert max(float((before[k] - fresh[k]).abs().max()) for k in names) > 1e-2  # the comparison can fail
    assert json.loads((scratch / "card.json").read_text())["normalisation"] != base_card["normalisation"]


def test_a_fine_tune_of_a_model_of_another_preset_fails_before_any_folder(make_corpus, tmp_path, tiny_preset):
    from xphyda.errors import ModelError

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    with pytest.raises(ModelError, match=r"trained with preset 'jcm-t31-v1'.*pass --preset jcm-t31-v1"):
        train_prior(corpus, preset=tiny_preset, out=tmp_path / "out" / "m", steps=1, progress=False,
                    init_from="jcm-t31-v1")
    with pytest.raises(ModelError, match="no model named 'nope'"):
        train_prior(corpus, preset=tiny_preset, out=tmp_path / "out" / "m", steps=1, progress=False, init_from="nope")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("sizes", "error", "says"), [
    ({"widths": (8, 0)}, "ModelError", r"widths must be a non-empty sequence of positive integers.*got \(8, 0\)"),
    ({"vre_widths": ()}, "ModelError", "vre_widths must be a non-empty sequence"),
    ({"widths": 16}, "ModelError", "widths must be a non-empty sequence"),
    ({"features": 0}, "ModelError", "features must be a positive integer"),
    ({"widths": (8, 8, 8, 8, 8)}, "GridError", "8 latitudes x 16 longitudes but a U-Net with 5 levels"),
    ({"use_vre": 0}, "ModelError", r"use_vre must be True or False; got 0. Fix"),
])
def test_bad_network_sizes_fail_before_any_folder(make_corpus, tmp_path, tiny_preset, sizes, error, says):
    from xphyda import errors

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    with pytest.raises(getattr(errors, error), match=says):
        train_prior(corpus, preset=tiny_preset, out=tmp_path / "out" / "m", steps=1, progress=False, **sizes)
    assert not (tmp_path / "out").exists()


def test_network_sizes_with_init_from_fail_before_any_folder(make_corpus, tmp_path, tiny_preset):
    from xphyda.errors import ModelError

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    with pytest.raises(ModelError, match=r"\['widths'\] given with init_from='jcm-t31-v1'.*keeps its model's"):
        train_prior(corpus, preset=tiny_preset, out=tmp_path / "out" / "m", steps=1, progress=False,
                    init_from="jcm-t31-v1", widths=(8, 16))
    assert not (tmp_path / "out").exists()


def test_a_resumed_run_keeps_its_network_sizes_and_refuses_other_ones(make_corpus, tmp_path, tiny_preset):
    from xphyda.errors import ModelError

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    kw = dict(preset=tiny_preset, out=tmp_path / "m", batch_size=2, progress=False, stats_max_times=None)
    train_prior(corpus, steps=1, widths=(8, 16), vre_widths=(8, 16), features=2, **kw)
    with pytest.raises(ModelError, match=r"another network \(widths \[8, 16\] \(this run: \[16, 16\]\)\).*Fix"):
        train_prior(corpus, steps=2, widths=(16, 16), **kw)
    out = train_prior(corpus, steps=2, **kw)  # no sizes given: the run's own, not the defaults
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["steps_done"] == 2
    assert (card["architecture"]["widths"], card["architecture"]["features"]) == ([8, 16], 2)
    # a state without recorded sizes (older xphyda) that does not fit: the loader's reason, as a ModelError
    meta = json.loads((out / "work" / "train_state.json").read_text())
    del meta["architecture"]
    (out / "work" / "train_state.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"cannot load \(written for another network.*size mismatch.*Fix"):
        train_prior(corpus, steps=3, widths=(16, 16), vre_widths=(8, 16), features=2, **kw)


def test_a_fine_tune_can_add_observation_inputs_to_the_denoiser(make_corpus, tmp_path, tiny_preset):
    from safetensors.torch import load_file

    from xphyda.errors import ModelError

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    kw = dict(preset=tiny_preset, batch_size=2, progress=False, stats_max_times=None)
    base = train_prior(corpus, out=tmp_path / "base", steps=2, widths=(8, 16), vre_widths=(8, 16), features=2, **kw)
    tuned = train_prior(corpus, out=tmp_path / "tuned", steps=1, init_from=base, denoiser_obs=True, **kw)
    card = json.loads((tuned / "card.json").read_text())
    assert card["architecture"]["denoiser_obs"] is True
    before, after = load_file(base / "model.safetensors"), load_file(tuned / "model.safetensors")
    stem = "ema/denoiser.net.stem.weight"
    assert after[stem].shape[1] == before[stem].shape[1] + 2 * 11
    assert float(after[stem][:, -22:].abs().max()) > 0  # one step of training moved the new weights off zero
    # resuming without the flag keeps the run's choice; a fine-tune of it can drop the inputs again
    again = train_prior(corpus, out=tmp_path / "tuned", steps=2, init_from=base, **kw)
    assert json.loads((again / "card.json").read_text())["training"]["steps_done"] == 2
    dropped = train_prior(corpus, out=tmp_path / "dropped", steps=1, init_from=tuned, denoiser_obs=False, **kw)
    assert json.loads((dropped / "card.json").read_text())["architecture"]["denoiser_obs"] is False
    assert load_file(dropped / "model.safetensors")[stem].shape == before[stem].shape
    assert json.loads((train_prior(corpus, out=tmp_path / "t2", steps=1, init_from=tuned, **kw) / "card.json")
                      .read_text())["architecture"]["denoiser_obs"] is True
    with pytest.raises(ModelError, match=r"needs the VRE.*Fix"):
        train_prior(corpus, out=tmp_path / "out" / "y", steps=1, use_vre=False, denoiser_obs=True, **kw)
    with pytest.raises(ModelError, match=r"True or False; got 'yes'.*Fix"):
        train_prior(corpus, out=tmp_path / "out" / "z", steps=1, init_from=base, denoiser_obs="yes", **kw)
    assert not (tmp_path / "out").exists()
    # a numpy boolean is a boolean
    flag = train_prior(corpus, out=tmp_path / "np", steps=1, init_from=base, denoiser_obs=np.True_, **kw)
    assert json.loads((flag / "card.json").read_text())["architecture"]["denoiser_obs"] is True


def test_a_fine_tune_of_an_adapted_model_trains_its_new_parts_and_records_the_adaptation(make_corpus, tmp_path,
                                                                                           tiny_preset):
    import importlib.util

    from safetensors.torch import load_file

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    kw = dict(preset=tiny_preset, batch_size=2, progress=False, stats_max_times=None)
    base = train_prior(corpus, out=tmp_path / "base", steps=2, widths=(8, 16), vre_widths=(8, 16), features=2, **kw)
    script = Path(__file__).resolve().parents[2] / "scripts" / "adapt_model.py"
    spec = importlib.util.spec_from_file_location("adapt_model", script)
    adapt_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adapt_model)
    adapted = adapt_model.main([str(base), str(tmp_path / "adapted"), "--static", "latitude", "--attention",
                                "--recon-centre"])
    tuned = train_prior(corpus, out=tmp_path / "tuned", steps=2, init_from=adapted, **kw)
    card = json.loads((tuned / "card.json").read_text())
    assert card["architecture"]["static"] == ["latitude"] and card["architecture"]["attention"] is True
    assert card["training"]["init_from"]["adapted_from"]["static"] == ["latitude"]
    before, after = load_file(adapted / "model.safetensors"), load_file(tuned / "model.safetensors")
    stem, proj = "ema/denoiser.net.stem.weight", "ema/denoiser.net.attn.proj.weight"
    assert float(before[stem][:, -1].abs().max()) == 0 < float(after[stem][:, -1].abs().max())
    assert float(before[proj].abs().max()) == 0 < float(after[proj].abs().max())
    pull = "ema/denoiser.recon_pull"  # the centre's share of the reconstruction: 0, then trained
    assert card["architecture"]["recon_centre"] is True
    assert float(before[pull].abs().max()) == 0 < float(after[pull].abs().min())
    assert torch.equal(before["ema/static_fields"], after["ema/static_fields"])  # a buffer, not trained
    # a fine-tune of the fine-tune keeps the whole chain, adaptation included
    again = train_prior(corpus, out=tmp_path / "again", steps=1, init_from=tuned, **kw)
    chain = json.loads((again / "card.json").read_text())["training"]["init_from"]
    assert chain["model"] == str(tuned) and chain["init_from"] == card["training"]["init_from"]
    assert chain["init_from"]["adapted_from"]["recon_centre"] is True


def _static_store(corpus, path):
    """A land-sea mask on the corpus grid, stored south to north and -180..180 (a layout to be reordered)."""
    import xarray as xr

    grid = xr.open_zarr(corpus / "traj0.zarr")
    lat = np.sort(grid.latitude.values)
    lon = np.sort((grid.longitude.values + 180.0) % 360.0 - 180.0)
    lsm = (np.random.default_rng(0).random((lat.size, lon.size)) < 0.3).astype("float32")
    xr.Dataset({"lsm": (("lat", "lon"), lsm, {"units": "1"})},
               coords={"lat": ("lat", lat, {"units": "degrees_north"}),
                       "lon": ("lon", lon, {"units": "degrees_east"})}).to_netcdf(path)
    return path


def test_a_run_from_scratch_takes_static_fields_and_attention_and_keeps_them_when_resumed(make_corpus, tmp_path,
                                                                                          tiny_preset):
    import xarray as xr

    from xphyda.errors import DataError, ModelError
    from xphyda.model.checkpoint import load_model
    from xphyda.model.phyda import PhydaNet, standardise_static

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    store = _static_store(corpus, tmp_path / "static.nc")
    kw = dict(preset=tiny_preset, batch_size=2, progress=False, stats_max_times=None, widths=(8, 16),
              vre_widths=(8, 16), features=2)
    out = train_prior(corpus, out=tmp_path / "m", steps=2, static=["lsm", "latitude"], static_from=store,
                      attention=True, **kw)
    net, card = load_model(out, device="cpu")
    assert net.config["static"] == ["lsm", "latitude"] and net.config["attention"] is True
    assert card["training"]["static"] == {"names": ["lsm", "latitude"], "from": str(store)}
    expect = xr.open_dataset(store).lsm.sortby("lat", ascending=False).assign_coords(lon=lambda d: d.lon % 360)
    lat = np.asarray(card["grid"]["latitude"])
    assert torch.allclose(net.static_fields[0], standardise_static(expect.sortby("lon").values, lat))
    assert torch.allclose(net.static_fields[1], standardise_static(np.repeat(lat[:, None], 16, axis=1), lat))
    plain = PhydaNet(11, features=2, widths=(8, 16), vre_widths=(8, 16))
    assert net.denoiser.net.stem.weight.shape[1] == plain.denoiser.net.stem.weight.shape[1] + 2
    # resumed without the options: the run's own fields, store and attention, values from its saved state
    again = train_prior(corpus, out=tmp_path / "m", steps=3, **kw)
    net2, card2 = load_model(again, device="cpu")
    assert card2["training"]["steps_done"] == 3 and net2.config["static"] == ["lsm", "latitude"]
    assert net2.config["attention"] and torch.equal(net2.static_fields, net.static_fields)
    assert card2["training"]["static"] == card["training"]["static"]
    with pytest.raises(ModelError, match=r"another network \(static.*Fix"):
        train_prior(corpus, out=tmp_path / "m", steps=4, static=["latitude"], **kw)
    # names the store lacks, constant fields (the test corpus' own lsm is all zeros) and a store without
    # fields to read fail before any folder is made
    with pytest.raises(DataError, match=r"no variable 'orography'.*'lsm'.*Fix"):
        train_prior(corpus, out=tmp_path / "none" / "x", steps=1, static=["orography"], **kw)
    with pytest.raises(DataError, match=r"'lsm' in '.*corpus' is constant \(0 everywhere\).*Fix: leave it out"):
        train_prior(corpus, out=tmp_path / "none" / "y", steps=1, static=["lsm"], **kw)
    with pytest.raises(ModelError, match=r"static_from=.* without static fields.*Fix"):
        train_prior(corpus, out=tmp_path / "none" / "z", steps=1, static_from=store, **kw)
    assert not (tmp_path / "none").exists()


def test_a_fine_tune_adds_static_fields_and_attention_and_resumes_with_them(make_corpus, tmp_path, tiny_preset):
    from safetensors.torch import load_file

    from xphyda.errors import ModelError

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    store = _static_store(corpus, tmp_path / "static.nc")
    kw = dict(preset=tiny_preset, batch_size=2, progress=False, stats_max_times=None)
    base = train_prior(corpus, out=tmp_path / "base", steps=2, widths=(8, 16), vre_widths=(8, 16), features=2, **kw)
    tuned = train_prior(corpus, out=tmp_path / "tuned", steps=1, init_from=base, static=["lsm"], static_from=store,
                        attention=True, **kw)
    card = json.loads((tuned / "card.json").read_text())
    assert card["architecture"]["static"] == ["lsm"] and card["architecture"]["attention"] is True
    assert card["training"]["static"] == {"names": ["lsm"], "from": str(store)}
    after = load_file(tuned / "model.safetensors")["ema/denoiser.net.stem.weight"]
    before = load_file(base / "model.safetensors")["ema/denoiser.net.stem.weight"]
    assert after.shape[1] == before.shape[1] + 1 and float(after[:, -1].abs().max()) > 0  # zero at the start
    # the same command without the options resumes the fine-tune with its fields, store and attention
    again = train_prior(corpus, out=tmp_path / "tuned", steps=2, init_from=base, **kw)
    card2 = json.loads((again / "card.json").read_text())
    assert card2["training"]["steps_done"] == 2 and card2["architecture"]["static"] == ["lsm"]
    assert card2["architecture"]["attention"] is True and card2["training"]["static"]["from"] == str(store)
    # what the starting model has already, or cannot lose, is refused before any folder is made
    with pytest.raises(ModelError, match=r"has static fields \['lsm'\] already.*Fix"):
        train_prior(corpus, out=tmp_path / "no" / "a", steps=1, init_from=tuned, static=["lsm"],
                    static_from=store, **kw)
    for flag in (True, False):
        with pytest.raises(ModelError, match=r"has attention already.*Fix: leave attention unset"):
            train_prior(corpus, out=tmp_path / "no" / "b", steps=1, init_from=tuned, attention=flag, **kw)
    assert not (tmp_path / "no").exists()


def test_stats_from_reuses_a_models_or_a_runs_statistics_without_computing_them(make_corpus, tmp_path,
                                                                                  tiny_preset, monkeypatch):
    import shutil

    import xphyda.data.pipeline as pipeline
    from xphyda.errors import ModelError

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    kw = dict(preset=tiny_preset, batch_size=2, progress=False, stats_max_times=None, widths=(8, 16),
              vre_widths=(8, 16), features=2)
    base = train_prior(corpus, out=tmp_path / "base", steps=1, **kw)
    model = tmp_path / "model-only"  # a model folder without the run's work/
    model.mkdir()
    for f in ("card.json", "model.safetensors"):
        shutil.copy(base / f, model / f)

    def no_stats(*a, **k):
        raise AssertionError("statistics computed although stats_from was given")

    monkeypatch.setattr(pipeline, "compute_stats", no_stats)
    for name, ref in (("from-run", base), ("from-model", model)):
        out = train_prior(corpus, out=tmp_path / name, steps=1, stats_from=ref, **kw)
        for f in ("stats.json", "background_regression.json"):
            assert json.loads((out / "work" / f).read_text()) == json.loads((base / "work" / f).read_text())
        card = json.loads((out / "card.json").read_text())
        assert card["normalisation"] == json.loads((base / "card.json").read_text())["normalisation"]
        assert card["architecture"]["sigma_data"] == json.loads((base / "card.json").read_text())[
            "architecture"]["sigma_data"]
        assert card["training"]["stats_from"] == str(ref)
    # resumed without the option, the card still says where the statistics came from
    again = train_prior(corpus, out=tmp_path / "from-model", steps=2, **kw)
    assert json.loads((again / "card.json").read_text())["training"]["stats_from"] == str(model)
    # a run folder whose own statistics differ cannot take others
    reg = tmp_path / "from-run" / "work" / "background_regression.json"
    reg.write_text(json.dumps({**json.loads(reg.read_text()), "gain": [0.5] * 11}))
    with pytest.raises(ModelError, match=r"holds other statistics than stats_from.*Fix"):
        train_prior(corpus, out=tmp_path / "from-run", steps=2, stats_from=base, **kw)
    # statistics of other channels, or of the same ones in another order; unreadable files
    card = json.loads((model / "card.json").read_text())
    ch = card["normalisation"]["channels"]
    card["normalisation"]["channels"] = dict(reversed(list(ch.items())))
    (model / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"\(the same channels in another order\).*Fix"):
        train_prior(corpus, out=tmp_path / "x" / "a", steps=1, stats_from=model, **kw)
    (base / "work" / "stats.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"stats.json \(normalisation statistics\) cannot be read.*Fix"):
        train_prior(corpus, out=tmp_path / "x" / "b", steps=1, stats_from=base, **kw)
    with pytest.raises(ModelError, match=r"a fine-tune keeps its model's statistics.*Fix"):
        train_prior(corpus, out=tmp_path / "x" / "c", steps=1, stats_from=model, init_from=tmp_path / "from-run",
                    preset=tiny_preset, batch_size=2, progress=False)
    with pytest.raises(ModelError, match=r"no model named"):
        train_prior(corpus, out=tmp_path / "x" / "d", steps=1, stats_from="no-such-model", **kw)
    assert not (tmp_path / "x").exists()


DDP_SCRIPT = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from xphyda.models import PRESETS
from xphyda.training import train_prior
PRESETS["tiny"] = {preset!r}
out = train_prior(Path({corpus!r}), out=Path({out!r}), steps=2, static=["latitude"], attention=True,
                  stats_from={stats_from!r}, preset="tiny", batch_size=4, progress=False, stats_max_times=None,
                  widths=(8, 16), vre_widths=(8, 16), features=2)
print("OK", os.environ["RANK"], out)
"""


def test_train_prior_under_torchrun_writes_the_runs_files_once(make_corpus, tmp_path, tiny_preset):
    """Two gloo processes: rank 0 writes the statistics, options and cache; rank 1 waits for them."""
    import os
    import socket
    import subprocess
    import sys

    from xphyda.models import PRESETS

    corpus = make_corpus(n_traj=2, n_times=24, levels=(100.0, 500.0, 850.0))
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    base = train_prior(corpus, out=tmp_path / "base", steps=1, preset=tiny_preset, batch_size=2, progress=False,
                       stats_max_times=None, widths=(8, 16), vre_widths=(8, 16), features=2)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), preset=PRESETS[tiny_preset],
                                        corpus=str(corpus), out=str(tmp_path / "ddp"), stats_from=str(base)))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={port}", str(script)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("OK") == 2
    card = json.loads((tmp_path / "ddp" / "card.json").read_text())
    assert card["architecture"]["static"] == ["latitude"] and card["training"]["stats_from"] == str(base)
    assert json.loads((tmp_path / "ddp" / "work" / "stats.json").read_text()) == json.loads(
        (base / "work" / "stats.json").read_text())
    assert not list((tmp_path / "ddp" / "work").glob(".*.tmp"))  # every atomic write completed


# --------------------------------------------------------------------------- awkward runs (exploratory review)
@pytest.mark.parametrize(("bad", "says"), [
    ({"batch_size": 0}, "batch_size must be an integer of at least 1; got 0"),
    ({"lr": -1.0}, "lr must be a finite number above 0; got -1.0"),
    ({"lr": float("nan")}, "lr must be a finite number above 0; got nan"),
    ({"num_workers": -1}, "num_workers must be an integer of at least 0"),
    ({"steps": "5"}, "steps must be an integer of at least 1; got '5'"),
    ({"physics_lambda": -1.0}, "physics_lambda must be a finite number of at least 0"),
    ({"laws": ("hydrostatik",)}, "unknown physics laws ['hydrostatik']"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_bad_numbers_laws_and_devices_fail_before_any_folder(make_corpus, tmp_path, tiny_preset, bad, says):
    """They reached torch or the data loader as raw errors (exit 4, 'internal error') before."""
    from xphyda.errors import ModelError

    corpus = make_corpus(n_traj=1, n_times=8)
    kw = dict(preset=tiny_preset, out=tmp_path / "out" / "m", steps=2, batch_size=2, progress=False)
    with pytest.raises(ModelError, match=re.escape(says) + ".*Fix"):
        train_prior(corpus, **{**kw, **bad})
    assert not (tmp_path / "out").exists()


def test_a_run_resumes_only_on_its_own_store_and_with_its_sizes(make_corpus, tmp_path, tiny_preset):
    """Resuming with another --data trained on the first store's cache and recorded the second; a run stopped
    before its first checkpoint forgot its sizes and restarted with the default network."""
    from xphyda.errors import ModelError

    corpus = make_corpus(n_traj=2, n_times=24)
    other = make_corpus(n_traj=2, n_times=24, name="other")
    kw = dict(preset=tiny_preset, out=tmp_path / "m", batch_size=2, progress=False, stats_max_times=None)
    train_prior(corpus, steps=1, widths=(8, 16), vre_widths=(8, 16), features=2, **kw)
    with pytest.raises(ModelError, match=rf"started on {re.escape(str(corpus))}.*Fix: pass --data"):
        train_prior(other, steps=2, **kw)
    PRESETS["tiny2"] = dict(PRESETS[tiny_preset])
    try:
        with pytest.raises(ModelError, match=r"a run of preset 'tiny'; this call gives preset 'tiny2'.*Fix"):
            train_prior(corpus, **{**kw, "preset": "tiny2"}, steps=2)
    finally:
        del PRESETS["tiny2"]
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["training"]["data"] == str(corpus.resolve()) and card["description"].startswith("trained by phyda")
    for f in ("train_state.json", "train_state.safetensors"):  # as if killed before the first checkpoint
        (tmp_path / "m" / "work" / f).unlink()
    out = train_prior(corpus, steps=2, **kw)
    card = json.loads((out / "card.json").read_text())
    assert (card["architecture"]["widths"], card["architecture"]["features"]) == ([8, 16], 2)


def _store(corpus_dataset, path, change):
    import xarray as xr  # noqa: F401

    from tests.data.conftest import write_zarr

    ds = corpus_dataset(n_times=24)
    write_zarr(change(ds), path)
    return path


@pytest.mark.parametrize(("change", "error", "says"), [
    (lambda ds: ds.assign(t=ds.t.where(ds.time != ds.time[5])), "DataError",
     r"NaN or infinite values in 2 channels \(.*t500 4.17 %, t850 4.17 %.*Fix: fill them"),
    (lambda ds: ds.assign(t=(ds.t - 273.15).assign_attrs(ds.t.attrs)), "DataError",
     r"t500 averages -\d.* K: not a temperature in kelvin.*Fix: check its units"),
    (lambda ds: ds.isel(latitude=slice(0, 3)), "GridError", r"cover latitudes .* a preset's model is global.*Fix"),
])
def test_data_with_nan_wrong_units_or_a_region_are_refused(tmp_path, tiny_preset, change, error, says):
    import xphyda.errors
    from tests.data.conftest import corpus_dataset

    path = _store(corpus_dataset, tmp_path / "store.zarr", change)
    with pytest.raises(getattr(xphyda.errors, error), match=says):
        train_prior(path, preset=tiny_preset, out=tmp_path / "m", steps=1, batch_size=2, progress=False,
                    widths=(8, 16), vre_widths=(8, 16), features=2, stats_max_times=None)


def test_the_default_folder_does_not_hide_a_bundled_model_of_the_preset_name(make_corpus, tmp_path, tiny_preset,
                                                                              monkeypatch):
    import xphyda.models

    bundled = tmp_path / "pkg"
    (bundled / tiny_preset).mkdir(parents=True)
    monkeypatch.setattr(xphyda.models, "_bundled", lambda: bundled)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = train_prior(make_corpus(n_traj=2, n_times=24), preset=tiny_preset, steps=1, batch_size=2, progress=False,
                      widths=(8, 16), vre_widths=(8, 16), features=2, stats_max_times=None)
    assert out == tmp_path / "cache" / "xphyda" / "models" / f"{tiny_preset}-user" and (out / "card.json").exists()


def test_a_fine_tune_regrids_the_data_to_its_models_grid(make_corpus, tmp_path, tiny_preset):
    """``--init-from`` on a store on another grid: regridded to the starting model's own (Gaussian) latitudes.
    Before, the store was regridded to an equiangular grid of the preset's size and the run failed on the grid
    check after caching, saying the two grids (of the same size) differed."""
    from tests.data.conftest import corpus_dataset, write_zarr

    base = train_prior(make_corpus(n_traj=2, n_times=24), preset=tiny_preset, out=tmp_path / "base", steps=1,
                       batch_size=2, progress=False, widths=(8, 16), vre_widths=(8, 16), features=2,
                       stats_max_times=None)
    finer = tmp_path / "finer.zarr"
    write_zarr(corpus_dataset(n_times=24, nlat=16, nlon=32), finer)
    out = train_prior(finer, preset=tiny_preset, out=tmp_path / "tuned", steps=1, batch_size=2, progress=False,
                      init_from=base, stats_max_times=None)
    a, b = (json.loads((m / "card.json").read_text())["grid"] for m in (base, out))
    np.testing.assert_allclose(a["latitude"], b["latitude"])
    np.testing.assert_allclose(a["longitude"], b["longitude"])


def test_a_run_resumed_before_its_first_checkpoint_keeps_static_fields_attention_and_obs_inputs(
        make_corpus, tmp_path, tiny_preset):
    """With no training state, the resumed network was rebuilt from run_options.json: its static fields stayed 0
    and attention and the denoiser's observation inputs were dropped (review of the fix above)."""
    from xphyda.model.checkpoint import load_model

    corpus = make_corpus(n_traj=2, n_times=24)
    kw = dict(preset=tiny_preset, out=tmp_path / "m", batch_size=2, progress=False, stats_max_times=None)
    first = train_prior(corpus, steps=1, widths=(8, 16), vre_widths=(8, 16), features=2, static=["latitude"],
                        attention=True, denoiser_obs=True, **kw)
    want, _ = load_model(first, device="cpu")
    for f in ("train_state.json", "train_state.safetensors"):
        (first / "work" / f).unlink()
    net, card = load_model(train_prior(corpus, steps=1, **kw), device="cpu")
    assert (card["architecture"]["attention"], card["architecture"]["denoiser_obs"]) == (True, True)
    assert float(net.static_fields.abs().max()) > 1.0
    torch.testing.assert_close(net.static_fields, want.static_fields)


def test_a_fine_tune_checks_its_own_data_and_a_refused_store_does_not_lock_the_folder(make_corpus, tmp_path,
                                                                                        tiny_preset):
    """A fine-tune's statistics are its model's, so the data checks looked at the model; and a store refused
    before caching left run_options.json naming it, so the corrected retry was refused as 'another store'."""
    from tests.data.conftest import corpus_dataset, write_zarr
    from xphyda.errors import DataError, GridError

    corpus = make_corpus(n_traj=2, n_times=24)
    kw = dict(preset=tiny_preset, batch_size=2, progress=False, stats_max_times=None)
    base = train_prior(corpus, out=tmp_path / "base", steps=1, widths=(8, 16), vre_widths=(8, 16), features=2, **kw)
    ds = corpus_dataset(n_times=24)
    write_zarr(ds.assign(t=(ds.t - 273.15).assign_attrs(ds.t.attrs)), tmp_path / "celsius.zarr")
    with pytest.raises(DataError, match="not a temperature in kelvin"):
        train_prior(tmp_path / "celsius.zarr", out=tmp_path / "tuned", steps=1, init_from=base, **kw)
    write_zarr(ds.isel(latitude=slice(0, 3)), tmp_path / "region.zarr")
    with pytest.raises(GridError, match="global"):
        train_prior(tmp_path / "region.zarr", out=tmp_path / "m", steps=1, widths=(8, 16), vre_widths=(8, 16),
                    features=2, **kw)
    out = train_prior(corpus, out=tmp_path / "m", steps=1, widths=(8, 16), vre_widths=(8, 16), features=2, **kw)
    assert json.loads((out / "card.json").read_text())["training"]["data"] == str(corpus.resolve())


def test_a_run_in_the_old_default_folder_is_pointed_at(make_corpus, tmp_path, tiny_preset, monkeypatch):
    import xphyda.models
    from xphyda.errors import ModelError

    (tmp_path / "pkg" / tiny_preset).mkdir(parents=True)
    monkeypatch.setattr(xphyda.models, "_bundled", lambda: tmp_path / "pkg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old = tmp_path / "cache" / "xphyda" / "models" / tiny_preset
    (old / "work").mkdir(parents=True)
    with pytest.raises(ModelError, match=rf"default folder of an earlier xphyda.*Fix: pass --out {re.escape(str(old))}"):
        train_prior(make_corpus(n_traj=2, n_times=24), preset=tiny_preset, steps=1, progress=False)
