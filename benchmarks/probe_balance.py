"""What the balance step does to accuracy and residuals, by variant, on corpus test states.

    python benchmarks/probe_balance.py MODEL_FOLDER TRAIN_WORK_FOLDER [--cases 4] [--fraction 0.1]

MODEL_FOLDER must carry balance statistics (``scripts/bundle_model.py --balance-from``);
TRAIN_WORK_FOLDER is the training run's ``work/`` (``cache.zarr``, ``stats.json``).  Test
states spread over the split; observations of ``--fraction`` of the grid values with
normalised noise 0.1; 8 members, 16 steps, ``diag-fwd``.  For the raw ensemble and for each
balance variant: the latitude-weighted RMSE of the ensemble mean relative to the raw one
(mean over channels, and the channels that change by more than 2 %), and the residual
ratios (ensemble mean / truth) of continuity and hydrostatic balance per layer.  Variants:
``hydrostatic`` with the fixed prior spread; ``continuity-fixed`` (both laws, fixed spread);
``both-ensemble`` (both laws, the ensemble's own spread: what ``assimilate`` does).
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from xphyda.data.pipeline import prepare
from xphyda.model.balance import Balance
from xphyda.model.checkpoint import load_checkpoint, load_model
from xphyda.model.guidance import ObsTerm
from xphyda.model.physics_loss import PhysicsLoss
from xphyda.model.sampler import sample
from xphyda.model.train import simulate_observations
from xphyda.training import channel_index, preset_config

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from probe_obs_use import selection  # noqa: E402


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("work")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--fraction", type=float, default=0.1)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = preset_config("jcm-t31-v1")
    td = prepare(f"{a.work}/cache.zarr", variables=list(cfg["variables"]) + list(cfg.get("surface", [])),
                 levels=cfg["levels_hpa"], stats=f"{a.work}/stats.json")
    test = td.dataset("test")
    co = test._reader.coords()
    lat = np.asarray(co["latitude"])
    phys = PhysicsLoss(lat=lat, lon=np.asarray(co["longitude"]), levels_hpa=td.spec.levels,
                       index=channel_index(td.spec), mean=td.stats.mean, std=td.stats.std,
                       laws=["continuity", "hydrostatic"])
    net, _ = load_model(a.model, device="cpu")
    stats = load_checkpoint(a.model)[0]["balance"]
    sd = net.denoiser.data_std().reshape(-1).tolist()
    fixed_h = Balance.from_statistics(phys, stats, spread=sd, laws=("hydrostatic",))
    both = Balance.from_statistics(phys, stats, spread=sd, laws=("hydrostatic", "continuity"))
    variants = {"hydrostatic": fixed_h, "continuity-fixed": both, "both-ensemble": both.ensemble}
    w = torch.as_tensor(np.cos(np.deg2rad(lat)), dtype=torch.float64)
    w = (w / w.sum()).reshape(1, -1, 1)
    gen = torch.Generator().manual_seed(0)
    acc: dict = {}
    for case in np.linspace(0, len(test) - 1, a.cases + 2).astype(int)[1:-1]:
        item = test[int(case)]
        x, b = item["truth"][None], item["background"][None]
        y, m = simulate_observations(x, fraction=(a.fraction, a.fraction), noise=0.1, generator=gen, groups=None)
        with torch.no_grad():
            cond, _ = net.condition(b, y, m)
        idx = torch.nonzero(m.flatten()).flatten()
        H, HT = selection(idx, tuple(x.shape[1:]))
        terms = [ObsTerm(y.flatten()[idx], H, HT, torch.full((idx.numel(),), 0.01))]
        ens = sample(net.denoiser, shape=tuple(x.shape[1:]), terms=terms, cond=cond[0], members=8, steps=16,
                     seed=1, guidance="diag-fwd")
        truth_rms = both.rms(x.double())
        for name, e in {"raw": ens, **{k: f(ens) for k, f in variants.items()}}.items():
            r = both.rms(e.mean(0, keepdim=True).double())
            slot = acc.setdefault(name, {"mse": [], "ratio": []})
            slot["mse"].append(((((e.mean(0).double() - x[0]) ** 2) * w).sum(-2).mean(-1)))
            slot["ratio"].append(torch.cat([r[k][0] / truth_rms[k][0] for k in ("continuity", "hydrostatic")]))
    ref = torch.stack(acc["raw"]["mse"]).mean(0).sqrt()
    layers = [f"{lo:g}-{hi:g}" for lo, hi in zip(td.spec.levels[:-1], td.spec.levels[1:])]
    out = {"command": "python benchmarks/probe_balance.py " + " ".join(argv)}
    for name, slot in acc.items():
        rel = torch.stack(slot["mse"]).mean(0).sqrt() / ref
        ratio = torch.stack(slot["ratio"]).mean(0).tolist()
        out[name] = {
            "rmse_vs_raw_mean": round(float(rel.mean()), 3),
            "rmse_vs_raw_changed": {n: round(float(v), 2) for n, v in zip(td.spec.names, rel) if abs(float(v) - 1) > 0.02},
            "continuity_ratio_mean": {k: round(v, 2) for k, v in zip(layers[:-1], ratio[: len(layers) - 1])},
            "hydrostatic_ratio_mean": {k: round(v, 2) for k, v in zip(layers, ratio[len(layers):])},
        }
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
