"""Checkpoints: safetensors + JSON card, round trip, tamper detection, no pickles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xphyda.errors import ModelError
from xphyda.model import (
    EDMDenoiser,
    UNet,
    architecture_card,
    build_from_card,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def denoiser():
    torch.manual_seed(0)
    net = UNet(2, 2, cond_channels=1, widths=(8, 16), groups=4)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return EDMDenoiser(net, sigma_data=0.8).eval()


def _card(den):
    return {
        "variables": ["t", "z"],
        "levels_hpa": [500],
        "units": {"t": "K", "z": "m2 s-2"},
        "grid": {"nlat": 8, "nlon": 16},
        "normalisation": {"mean": np.array([280.0, 5.0e4]), "std": np.array([10.0, 500.0], dtype=np.float32)},
        "training_data": "synthetic fields for the test suite",
        "scores": {"rmse": 0.5},
        **architecture_card(den),
    }


def test_round_trip(tmp_path, denoiser):
    d = save_checkpoint(tmp_path / "ckpt", denoiser.state_dict(), _card(denoiser))
    assert sorted(p.name for p in d.iterdir()) == ["card.json", "model.safetensors"]
    state, card = load_checkpoint(d / "card.json")
    for k, v in denoiser.state_dict().items():
        assert torch.equal(state[k], v)
    assert card["variables"] == ["t", "z"] and card["normalisation"]["std"] == [10.0, 500.0]
    assert card["format"] == "xphyda-checkpoint" and len(card["sha256"]) == 64
    assert card["architecture"]["class"] == "UNet" and card["preconditioning"]["sigma_data"] == 0.8
    model, _ = load_model(d, device="cpu")
    x, c = torch.randn(2, 2, 8, 16), torch.randn(2, 1, 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 0.7, c), denoiser(x, 0.7, c))


def test_several_state_dicts_and_bare_network(tmp_path, denoiser):
    net = denoiser.net
    ema = {k: v + 1.0 for k, v in net.state_dict().items()}
    d = save_checkpoint(tmp_path, {"net": net.state_dict(), "ema": ema}, _card(denoiser))
    state, card = load_checkpoint(d)
    assert sorted(state) == ["ema", "net"] and card["state_dicts"] == ["ema", "net"]
    model, _ = load_model(d, device="cpu")  # picks "ema"
    assert torch.equal(model.net.stem.bias, ema["stem.bias"])
    model, _ = load_model(d, device="cpu", weights="net")
    assert torch.equal(model.net.stem.bias, net.stem.bias)
    with pytest.raises(ModelError, match="not 'best'"):
        load_model(d, device="cpu", weights="best")


def test_background_centred_round_trip_keeps_gain_and_moved_centre(tmp_path):
    from xphyda.model.precond import BackgroundCentredDenoiser

    torch.manual_seed(1)
    den = BackgroundCentredDenoiser(UNet(2, 2, cond_channels=6, widths=(8, 16), groups=4),
                                    sigma_data=[0.3, 0.5], gain=[0.9, 0.7], recon_centre=True).eval()
    with torch.no_grad():
        den.recon_pull.copy_(torch.tensor([0.03, 0.06]))  # alpha 0.3 and 0.6
    card = architecture_card(den)
    assert card["preconditioning"] == {"kind": "background-centred", "sigma_data": [0.3, 0.5],
                                       "gain": [0.9, 0.7], "recon_centre": True}
    model, _ = load_model(save_checkpoint(tmp_path / "c", den.state_dict(), card), device="cpu")
    assert type(model) is BackgroundCentredDenoiser
    x, cond = torch.randn(2, 2, 8, 16), torch.randn(2, 6, 8, 16)
    cond[:, 2:4] = 1.0
    with torch.no_grad():
        torch.testing.assert_close(model(x, 0.4, cond), den(x, 0.4, cond))
        plain = EDMDenoiser(model.net, sigma_data=[0.3, 0.5])(x, 0.4, cond)
    assert not torch.allclose(plain, den(x, 0.4, cond))  # what a card without gain and centre would rebuild


def test_unknown_preconditioning_kind_is_an_error(tmp_path, denoiser):
    card = {**architecture_card(denoiser), "preconditioning": {"kind": "ve", "sigma_data": 1.0}}
    d = save_checkpoint(tmp_path / "k", denoiser.state_dict(), card)
    with pytest.raises(ModelError, match="preconditioning kind is 've'.*Fix:"):
        load_model(d, device="cpu")


def _centred(recon_centre=True):
    from xphyda.model.precond import BackgroundCentredDenoiser

    return BackgroundCentredDenoiser(UNet(2, 2, cond_channels=6, widths=(8, 16), groups=4),
                                     sigma_data=0.4, gain=np.array([0.9, 0.7]), recon_centre=recon_centre)


def test_a_movable_centre_is_not_lost_or_mismatched_silently(tmp_path):
    den = _centred()
    assert den.gain == [0.9, 0.7]  # an array gain is recorded as the numbers given
    only_unet = save_checkpoint(tmp_path / "u", den.net.state_dict(), architecture_card(den))
    with pytest.raises(ModelError, match=r"weights of its own \(\['recon_pull'\]\).*Fix: save the denoiser's"):
        load_model(only_unet, device="cpu")
    # weights with a moved centre under a card without one (as cards written before kind 'background-centred')
    stale = save_checkpoint(tmp_path / "s", den.state_dict(), architecture_card(_centred(recon_centre=False)))
    with pytest.raises(ModelError, match=r"recon_pull.*Fix: rewrite the card"):
        load_model(stale, device="cpu")


@pytest.mark.parametrize(
    ("pre", "match"),
    [
        ("edm", r"preconditioning is 'edm'; expected a mapping.*Fix"),
        ({"kind": "background-centred", "sigma_data": 0.4, "recon_centre": "false"},
         r"recon_centre must be True or False; got 'false'. Fix"),
    ],
)
def test_malformed_preconditioning_is_explained(tmp_path, pre, match):
    den = _centred(recon_centre=False)
    d = save_checkpoint(tmp_path / "p", den.state_dict(), {**architecture_card(den), "preconditioning": pre})
    with pytest.raises(ModelError, match=match):
        load_model(d, device="cpu")


def test_tampered_weights_are_rejected(tmp_path, denoiser):
    d = save_checkpoint(tmp_path, denoiser.state_dict(), _card(denoiser))
    raw = bytearray((d / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="sha256"):
        load_checkpoint(d)


def test_edited_card_hash_is_rejected(tmp_path, denoiser):
    d = save_checkpoint(tmp_path, denoiser.state_dict(), _card(denoiser))
    card = json.loads((d / "card.json").read_text())
    card["sha256"] = "0" * 64
    (d / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="modified or corrupted"):
        load_checkpoint(d)


def test_never_unpickles(tmp_path, denoiser, monkeypatch):
    d = save_checkpoint(tmp_path, denoiser.state_dict(), _card(denoiser))

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", forbidden)
    load_model(d, device="cpu")


def test_save_errors(tmp_path, denoiser):
    sd = denoiser.state_dict()
    with pytest.raises(ModelError, match="written by save_checkpoint"):
        save_checkpoint(tmp_path, sd, {"sha256": "abc"})
    with pytest.raises(ModelError, match="JSON"):
        save_checkpoint(tmp_path / "a", sd, {"bad": object()})
    save_checkpoint(tmp_path / "b", sd, {})
    with pytest.raises(ModelError, match="overwrite=True"):
        save_checkpoint(tmp_path / "b", sd, {})
    save_checkpoint(tmp_path / "b", sd, {"note": "second"}, overwrite=True)
    assert load_checkpoint(tmp_path / "b")[1]["note"] == "second"
    with pytest.raises(ModelError, match="empty"):
        save_checkpoint(tmp_path / "c", {}, {})


def test_load_errors(tmp_path):
    with pytest.raises(ModelError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(ModelError, match="architecture class"):
        build_from_card({"architecture": {"class": "Transformer"}})
    with pytest.raises(ModelError, match="does not fit UNet"):
        build_from_card({"architecture": {"class": "UNet", "in_channels": 2, "out_channels": 2, "depth": 3}})
    d = save_checkpoint(tmp_path / "ckpt", UNet(1, 1, widths=(4, 8), groups=2).state_dict(),
                        {"architecture": {"class": "UNet", "in_channels": 1, "out_channels": 1, "widths": [4, 4],
                                          "groups": 2}})  # fmt: skip
    with pytest.raises(ModelError, match="do not fit the architecture"):
        load_model(d, device="cpu")


def test_build_from_card_rebuilds_phydanet():
    from xphyda.model.phyda import PhydaNet

    net = PhydaNet(2, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4)
    twin = build_from_card(architecture_card(net))
    assert isinstance(twin, PhydaNet) and twin.config == net.config
