"""What a wider denoiser costs: a training step and an analysis' network evaluations, by U-Net widths.

For each ``--widths`` set (the VRE kept at the bundled model's ``16 32 64``, 8
features), on the bundled model's 31 channels and 48 x 96 grid: parameters, the
CPU seconds of one training step without the physics term (forward and
backward of denoiser and VRE, batch 8) and of one denoiser forward pass on 8
members (an analysis with ``diag-fwd`` guidance and 16 steps makes 32 of them).
One torch thread; process CPU time, median of ``--repeats``.

    python benchmarks/bench_network_size.py --widths 32,64,128 48,96,192 64,128,256
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path


def _median(xs):
    return sorted(xs)[len(xs) // 2]


def main(argv: list[str]) -> dict:
    import torch

    from xphyda.model.phyda import PhydaNet

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", nargs="+", default=["32,64,128", "48,96,192", "64,128,256"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    c, shape = 31, (48, 96)
    rows = {}
    for spec in a.widths:
        widths = tuple(int(w) for w in spec.split(","))
        net = PhydaNet(c, widths=widths, vre_widths=(16, 32, 64), features=8, centred=True,
                       sigma_data=[0.3] * c, background_gain=[0.9] * c)
        x = torch.randn(8, c, *shape)
        train, fwd = [], []
        for _ in range(a.repeats):
            net.zero_grad()
            t0 = time.process_time()
            d, r = net(x, torch.ones(8), x, x, torch.ones_like(x))
            (d.square().mean() + r.square().mean()).backward()
            train.append(time.process_time() - t0)
        with torch.no_grad():
            cond, _ = net.condition(x[:1], x[:1], torch.ones_like(x[:1]))
            cond = cond.expand(8, -1, -1, -1)
            for _ in range(a.repeats):
                t0 = time.process_time()
                net.denoiser(x, torch.ones(8), cond)
                fwd.append(time.process_time() - t0)
        rows[spec] = {"parameters_M": round(sum(q.numel() for q in net.parameters()) / 1e6, 2),
                      "train_step_cpu_s": round(_median(train), 3),
                      "denoiser_forward_8_cpu_s": round(_median(fwd), 3)}
        print(spec, rows[spec], flush=True)
    base = rows[a.widths[0]]
    for row in rows.values():
        row["forward_ratio"] = round(row["denoiser_forward_8_cpu_s"] / base["denoiser_forward_8_cpu_s"], 2)
        row["train_ratio"] = round(row["train_step_cpu_s"] / base["train_step_cpu_s"], 2)
    out = {"command": "python benchmarks/bench_network_size.py " + shlex.join(argv), "widths": rows}
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
