"""The bundled model: listed, loadable from safetensors with a verified card, and usable end to end on CPU."""

import json

import numpy as np

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
