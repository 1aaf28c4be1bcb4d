"""How much a PhyDA network uses observations: VRE reconstruction and ensemble-mean errors by observed fraction.

    python benchmarks/probe_obs_use.py MODEL_FOLDER TRAIN_WORK_FOLDER

TRAIN_WORK_FOLDER is the training run's ``work/`` (its ``cache.zarr`` and
``stats.json``).  Two test-split states; observations at 0, 1, 10 and 50 % of the
grid values (normalised noise 0.1, as in training); errors are RMS over all
channels in normalised units: the background, the VRE reconstruction, and the
mean of 4 members (16 steps) unguided and with ``diag-fwd`` guidance.  Prints JSON.
"""

from __future__ import annotations

import json
import sys

import torch

from xphyda.data.pipeline import prepare
from xphyda.model.checkpoint import load_model
from xphyda.model.guidance import ObsTerm
from xphyda.model.sampler import sample
from xphyda.model.train import simulate_observations
from xphyda.training import preset_config


def selection(idx: torch.Tensor, shape) -> ObsTerm:
    def H(z):
        return z.flatten(1)[:, idx]

    def HT(u):
        out = torch.zeros(u.shape[0], int(torch.tensor(shape).prod()), dtype=u.dtype)
        out[:, idx] = u
        return out.reshape(u.shape[0], *shape)

    return H, HT


def main(model_dir: str, work: str) -> dict:
    torch.set_num_threads(1)
    cfg = preset_config("jcm-t31-v1")
    td = prepare(f"{work}/cache.zarr", variables=list(cfg["variables"]) + list(cfg.get("surface", [])),
                 levels=cfg["levels_hpa"], stats=f"{work}/stats.json")
    ds = td.dataset("test")
    net, _ = load_model(model_dir, device="cpu")
    gen = torch.Generator().manual_seed(0)
    res: dict = {}
    for case in (100, 700):
        item = ds[case]
        x, b = item["truth"][None], item["background"][None]

        def rms(a, x=x):
            return float(((a - x) ** 2).mean().sqrt())

        res.setdefault("background", []).append(rms(b))
        for frac in (0.0, 0.01, 0.1, 0.5):
            if frac == 0:
                y, m = torch.zeros_like(x), torch.zeros_like(x)
            else:
                y, m = simulate_observations(x, fraction=(frac, frac), noise=0.1, generator=gen, groups=None)
            with torch.no_grad():
                cond, rec = net.condition(b, y, m)
            res.setdefault(f"vre_rec_{frac}", []).append(rms(rec))
            idx = torch.nonzero(m.flatten()).flatten()
            terms = []
            if idx.numel():
                H, HT = selection(idx, tuple(x.shape[1:]))
                terms = [ObsTerm(y.flatten()[idx], H, HT, torch.full((idx.numel(),), 0.01))]
            for guidance in ([None, "diag-fwd"] if terms else [None]):
                ens = sample(net.denoiser, shape=tuple(x.shape[1:]), terms=terms if guidance else [], cond=cond[0],
                             members=4, steps=16, seed=1, guidance=guidance)
                res.setdefault(f"sample_{frac}_{guidance}", []).append(rms(ens.mean(0, keepdim=True)))
    out = {k: [round(v, 4) for v in vals] for k, vals in res.items()}
    print(json.dumps(out, indent=0))
    return out


if __name__ == "__main__":
    main(*sys.argv[1:3])
