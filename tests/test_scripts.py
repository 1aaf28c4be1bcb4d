"""The maintenance scripts in scripts/ that change a model: they write loadable models and refuse bad requests."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from xphyda.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_with_store(tiny_parts, tmp_path):
    """A tiny model with weights everywhere, saved, and a store with a land-sea mask on its grid."""
    from xphyda.data.regrid import model_grid

    tiny_net, save_tiny = tiny_parts
    net = tiny_net(centred=True, denoiser_obs=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = save_tiny(net, tmp_path / "tiny")
    g = model_grid(8, 16, kind="gaussian")
    lsm = (np.random.default_rng(0).random((8, 16)) < 0.3).astype("float32")
    xr.Dataset({"lsm": (("latitude", "longitude"), lsm)}, coords={"latitude": g.latitude.values,
               "longitude": g.longitude.values}).to_zarr(tmp_path / "static.zarr")
    return model, tmp_path / "static.zarr", tmp_path


def test_adapt_model_writes_a_model_with_the_new_parts(tiny_with_store, capsys):
    from xphyda.model.checkpoint import load_model

    model, store, tmp = tiny_with_store
    out = _script("adapt_model").main([str(model), str(tmp / "grown"), "--static-from", str(store), "--static",
                                       "lsm", "latitude", "--attention", "--drop-observation-inputs",
                                       "--recon-centre"])
    printed = capsys.readouterr().out
    assert "largest change of the denoised state on random inputs: 0" in printed and "dropping them changed" in printed
    net, card = load_model(out, device="cpu")
    assert net.config["static"] == ["lsm", "latitude"] and net.config["attention"] and not net.config["denoiser_obs"]
    assert card["adapted_from"]["static"] == ["lsm", "latitude"] and card["scores"] == {}
    assert net.config["recon_centre"] and card["adapted_from"]["recon_centre"] is True
    assert float(net.denoiser.recon_share().detach().abs().max()) == 0
    assert torch.equal(net.static_fields[0] > 0, torch.tensor(xr.open_zarr(store).lsm.values > 0.5))


def test_adapt_model_refuses_bad_requests(tiny_with_store):
    model, store, tmp = tiny_with_store
    adapt_model = _script("adapt_model")
    with pytest.raises(SystemExit, match=r"no variable 'orography'.*\['lsm'.*Fix"):
        adapt_model.main([str(model), str(tmp / "a"), "--static-from", str(store), "--static", "orography"])
    once = adapt_model.main([str(model), str(tmp / "b"), "--drop-observation-inputs"])
    with pytest.raises(ModelError, match=r"does not see the observations already.*Fix"):
        adapt_model.main([str(once), str(tmp / "c"), "--drop-observation-inputs"])
    assert not (tmp / "a").exists() and not (tmp / "c").exists()


def test_probe_new_parts_switches_off_the_static_inputs_and_the_attention(tiny_with_store):
    from xphyda.model.checkpoint import load_model

    model, store, tmp = tiny_with_store
    grown = _script("adapt_model").main([str(model), str(tmp / "grown"), "--static-from", str(store), "--static",
                                         "lsm", "--attention"])
    spec = importlib.util.spec_from_file_location("probe", ROOT / "benchmarks" / "probe_new_parts.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    probe.main(str(grown), str(tmp / "probe"))
    no_static, _ = load_model(tmp / "probe" / "no-static", device="cpu")
    no_attn, _ = load_model(tmp / "probe" / "no-attention", device="cpu")
    assert float(no_static.denoiser.net.stem.weight.detach()[:, -1].abs().max()) == 0
    assert float(no_attn.denoiser.net.attn.proj.weight.detach().abs().max()) == 0
