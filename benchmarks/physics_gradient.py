"""Does the physics term reach the network's weights?  Measure it on a real batch.

For the current training state of a model (its ``work/train_state.safetensors``)
and one batch of the training split, compute the gradient of each loss term
separately with respect to every weight, and print their norms and the cosine
between the physics and the denoising gradients (per network: denoiser U-Net
and VRE).  A zero norm would mean the physics term never reaches the weights
(the failure of the PhyDA paper's public code).

Usage: PYTHONPATH=. python benchmarks/physics_gradient.py /work/runs/jcm-t31-v1 [--sigma 0.5]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from xphyda.data.pipeline import prepare
from xphyda.model.phyda import PhydaNet
from xphyda.model.physics_loss import PhysicsLoss, physics_weight
from xphyda.model.train import area_weights, simulate_observations
from xphyda.training import channel_index, preset_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    work = Path(args.run) / "work"
    from safetensors.torch import load_file

    meta = json.loads((work / "train_state.json").read_text())
    cfg = preset_config(meta["config"].get("extra", {}).get("preset", "jcm-t31-v1"))
    td = prepare(work / "cache.zarr", variables=list(cfg["variables"]) + list(cfg["surface"]),
                 levels=cfg["levels_hpa"], stats=work / "stats.json")
    ds = td.dataset("train")
    coords = ds._reader.coords()
    lat, lon = np.asarray(coords["latitude"]), np.asarray(coords["longitude"])
    batch = [ds[i] for i in np.linspace(0, len(ds) - 1, args.batch).astype(int)]
    x = torch.stack([b["truth"] for b in batch])
    bg = torch.stack([b["background"] for b in batch])
    net = PhydaNet(td.spec.n_channels, widths=(32, 64, 128), vre_widths=(16, 32, 64))
    state = load_file(str(work / "train_state.safetensors"))
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    physics = PhysicsLoss(lat=lat, lon=lon, levels_hpa=td.spec.levels, index=channel_index(td.spec),
                          mean=td.stats.mean, std=td.stats.std)
    g = torch.Generator().manual_seed(0)
    y, mask = simulate_observations(x, fraction=(0.1, 0.1), noise=0.1, generator=g)
    sigma = torch.full((x.shape[0],), args.sigma)
    noisy = x + sigma[:, None, None, None] * torch.randn(x.shape, generator=g)
    w = area_weights(lat)

    def grads(term: str):
        net.zero_grad()
        d, _ = net(noisy, sigma, bg, y, mask)
        if term == "denoise":
            lam = (sigma**2 + 1) / sigma**2
            loss = (lam * ((d - x) ** 2 * w).mean((1, 2, 3))).mean()
            parts = {}
        else:
            phys, parts = physics(d, x)
            loss = (physics_weight(sigma) * phys).mean()
        loss.backward()
        out = {}
        for name, module in (("denoiser", net.denoiser), ("vre", net.vre)):
            out[name] = torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])
        return float(loss), out, {k: float(v.mean()) for k, v in parts.items()}

    l_den, g_den, _ = grads("denoise")
    l_phy, g_phy, parts = grads("physics")
    print(f"step {meta['step']}, sigma {args.sigma}: denoise loss {l_den:.4f}, physics loss {l_phy:.4f}, parts {parts}")
    for name in g_den:
        a, b = g_den[name], g_phy[name]
        cos = float(a @ b / (a.norm() * b.norm() + 1e-30))
        print(f"  {name}: |grad denoise| {float(a.norm()):.4g}  |grad physics| {float(b.norm()):.4g}  "
              f"cosine {cos:+.3f}  nonzero physics grads {int((b != 0).sum())}/{b.numel()}")


if __name__ == "__main__":
    main()
