"""Does a PhyDA network generalise?  Its losses on training states against validation states.

    python benchmarks/generalisation.py MODEL_FOLDER TRAIN_WORK_FOLDER [--samples 64] [--out FILE]

TRAIN_WORK_FOLDER is a training run's ``work/`` (its ``cache.zarr`` and
``stats.json``); the same ``--samples`` states are drawn from its training and
its validation split (seeded), with the same noise and observations.  Reported
per channel, area-weighted, in normalised units: the denoiser's squared error at
noise levels 0.05, 0.3 and 1 (10 % of the grid points observed) and the VRE
reconstruction's at 1 % and 10 % observed (normalised observation noise 0.1, as
in training).  A validation/training ratio well above 1 says the network
memorised its training states (more data or regularisation would help); near 1,
it generalises.  Prints the means and the q200 and w850 ratios; ``--out`` writes
every channel as JSON.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from xphyda.data.pipeline import prepare
from xphyda.model.checkpoint import load_model
from xphyda.model.train import area_weights, simulate_observations
from xphyda.training import _groups, preset_config

SIGMAS = (0.05, 0.3, 1.0)


def losses(net, dataset, index, lat, groups, *, batch: int = 8) -> dict[str, np.ndarray]:
    """Per-channel mean squared errors of ``net`` on the states ``index`` of ``dataset`` (fixed seeds)."""
    w = area_weights(lat)
    gen = torch.Generator().manual_seed(0)
    keys = [f"denoise_{s:g}" for s in SIGMAS] + ["reconstruction_1pct", "reconstruction_10pct"]
    total = {k: 0.0 for k in keys}
    for i0 in range(0, len(index), batch):
        items = [dataset[int(i)] for i in index[i0:i0 + batch]]
        x = torch.stack([it["truth"] for it in items])
        bg = torch.stack([it["background"] for it in items])
        with torch.no_grad():
            for frac, key in ((0.01, "reconstruction_1pct"), (0.1, "reconstruction_10pct")):
                y, m = simulate_observations(x, fraction=(frac, frac), noise=0.1, generator=gen, groups=groups)
                sig = torch.full((x.shape[0],), 0.05)
                _, rec = net(x + sig[:, None, None, None] * torch.randn(x.shape, generator=gen), sig, bg, y, m)
                total[key] = total[key] + ((rec - x) ** 2 * w).mean((2, 3)).sum(0)
            y, m = simulate_observations(x, fraction=(0.1, 0.1), noise=0.1, generator=gen, groups=groups)
            for s in SIGMAS:
                sig = torch.full((x.shape[0],), s)
                den, _ = net(x + s * torch.randn(x.shape, generator=gen), sig, bg, y, m)
                total[f"denoise_{s:g}"] = total[f"denoise_{s:g}"] + ((den - x) ** 2 * w).mean((2, 3)).sum(0)
    return {k: (v / len(index)).numpy() for k, v in total.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("work")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    net, card = load_model(a.model, device="cpu")
    cfg = preset_config(card["preset"])  # the model's own variables and levels
    td = prepare(f"{a.work}/cache.zarr", variables=list(cfg["variables"]) + list(cfg.get("surface", [])),
                 levels=cfg["levels_hpa"], stats=f"{a.work}/stats.json")
    names = list(td.spec.names)
    result: dict = {"model": a.model, "work": a.work, "samples": a.samples, "channels": names}
    for split in ("train", "valid"):
        ds = td.dataset(split)
        index = np.random.default_rng(1).choice(len(ds), a.samples, replace=False)
        lat = np.asarray(ds._reader.coords()["latitude"])
        result[split] = {k: v.tolist() for k, v in losses(net, ds, index, lat, _groups(td.spec)).items()}
    for key in result["train"]:
        tr, va = np.array(result["train"][key]), np.array(result["valid"][key])
        ratio = va / tr
        print(f"{key:22s} train {tr.mean():.5f} valid {va.mean():.5f}  valid/train mean {va.mean() / tr.mean():.3f}"
              f"  q200 {ratio[names.index('q200')]:.3f}  w850 {ratio[names.index('w850')]:.3f}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
