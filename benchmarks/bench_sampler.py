"""Timings of the torch model on this machine: U-Net forward and ensemble sampling.

Run ``python benchmarks/bench_sampler.py`` (``--help`` for options).  Each figure
is the median of ``--repeats`` runs after one warm-up, as wall-clock time and as
this process's CPU time (``time.process_time``).  On a shared machine the wall
time depends on the other jobs (the load average is printed); with
``--threads 1`` the CPU time is the better estimate of an idle core's wall time.

Setup: a U-Net with the default widths and random weights, 26 state + 4 conditioning channels on
a 48 x 96 grid; observations are 5 % of the state values (random points of
random channels) with error variance 0.1 in normalised units.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from xphyda.model import EDMDenoiser, ObsTerm, UNet, sample


def median_time(fn, repeats: int, *, warmup: bool = True) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of ``fn()``."""
    if warmup:
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def selection_term(shape, fraction: float, *, seed: int = 0) -> ObsTerm:
    d = shape[0] * shape[1] * shape[2]
    m = int(fraction * d)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(d, generator=g)[:m]

    def H(x):
        return x.flatten(1)[:, idx]

    def HT(u):
        return torch.zeros(u.shape[0], d, dtype=u.dtype).index_add(1, idx, u).reshape(-1, *shape)

    return ObsTerm(torch.randn(m, generator=g), H, HT, torch.full((m,), 0.1), name="stations")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample-repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--skip-sampling", action="store_true")
    ap.add_argument("--methods", default="none,diag,diag-fwd,mmps1,mmps3,dps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c, cc, nlat, nlon = 26, 4, 48, 96
    net = UNet(c, c, cond_channels=cc).eval()
    with torch.no_grad():  # an untrained net has zero output layers (D = c_skip x): give it a real Jacobian
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    den = EDMDenoiser(net).eval()
    nparam = sum(p.numel() for p in net.parameters())
    print(
        f"threads={args.threads} load={os.getloadavg()} params={nparam / 1e6:.2f} M widths={net.config['widths']}"
    )
    x = torch.randn(8, c + cc, nlat, nlon).contiguous(memory_format=fmt)
    with torch.no_grad():
        w, u = median_time(lambda: net(x, torch.zeros(8)), args.repeats)
    print(f"forward batch 8, {c}+{cc} -> {c} channels, {nlat}x{nlon}: wall {w:.3f} s, cpu {u:.3f} s")
    xg = x.clone().requires_grad_(True)
    w, u = median_time(lambda: torch.autograd.grad(net(xg, torch.zeros(8)).sum(), xg), args.repeats)
    print(f"forward + input-gradient backward, batch 8: wall {w:.3f} s, cpu {u:.3f} s")
    if args.skip_sampling:
        return
    term = selection_term((c, nlat, nlon), 0.05)
    cond = torch.randn(cc, nlat, nlon)
    runs = {
        "none": {"guidance": None},
        "diag": {"terms": [term], "guidance": "diag"},
        "diag-fwd": {"terms": [term], "guidance": "diag-fwd"},
        "mmps1": {"terms": [term], "guidance": "mmps", "cg_iters": 1},
        "mmps3": {"terms": [term], "guidance": "mmps", "cg_iters": 3},
        "dps": {"terms": [term], "guidance": "dps"},
    }
    for name in args.methods.split(","):
        kw = runs[name]
        w, u = median_time(
            lambda kw=kw: sample(
                den, shape=(c, nlat, nlon), cond=cond, members=args.members, steps=args.steps, **kw
            ),
            args.sample_repeats,
            warmup=False,
        )
        print(f"sample {args.members} members x {args.steps} steps, guidance={name}: wall {w:.1f} s, cpu {u:.1f} s",
              flush=True)  # fmt: skip
    print(f"load={os.getloadavg()}")


if __name__ == "__main__":
    main()
