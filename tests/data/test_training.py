"""phyda train end to end on a tiny corpus: the model folder loads and has a complete card."""

import json

import numpy as np
import pytest
import torch

from xphyda.models import PRESETS
from xphyda.training import channel_index, train_prior


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
    net, card2 = load_model(out, device="cpu")
    x = torch.zeros(1, 11, 8, 16)
    d, r = net(x, torch.ones(1), x, x, torch.zeros_like(x))
    assert torch.isfinite(d).all() and d.shape == x.shape
    # a second call resumes (nothing left to do) and still exports
    train_prior(corpus, preset=tiny_preset, out=tmp_path / "m", steps=3, batch_size=2, widths=(8, 16),
                vre_widths=(8, 16), features=2, progress=False, stats_max_times=None)
    metrics = (out / "work" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(metrics[-1])["step"] == 3


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
