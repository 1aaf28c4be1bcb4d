"""Benchmarks of evaluation at scale: an OSSE on the jcm corpus, and many analysis times serially and with dask.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_evaluate.py osse --cases 8            # background + OI, 3 densities
    PYTHONPATH=. python benchmarks/bench_evaluate.py osse --cases 8 --model jcm-t31-v1 --members 8 --steps 16
    PYTHONPATH=. python benchmarks/bench_evaluate.py times --times 8           # OI: serial, threads, LocalCluster
    PYTHONPATH=. python benchmarks/bench_evaluate.py times --times 4 --model PATH --members 4 --steps 8

``osse`` writes the table and report to ``--out`` (default ``bench-osse``) and
prints RMSE summaries and the cost per analysis.  ``times`` assimilates
``--times`` consecutive 6-hourly corpus states (the background is the state
24 h earlier, observations 10 % of the columns) with each scheduler, checks
that every scheduler gives the serial answer and prints the wall times.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import sys
import time

import numpy as np

CORPUS = "/work/corpus"


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU, Python {platform.python_version()}, "
        f"load average {load:.1f} at the start"
    )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_osse(args) -> None:
    from xphyda.evaluate import run_osse

    methods = {"background": None, "oi": {}}
    if args.model:
        methods["phyda"] = {"model": args.model, "members": args.members, "steps": args.steps}
    t0 = time.perf_counter()
    res = run_osse(
        args.data,
        cases=args.cases,
        levels=args.levels,
        methods=methods,
        out_dir=args.out,
        overwrite=True,
        progress=True,
        observations=[{"fraction": 0.1}, {"fraction": 0.01}, {"n_stations": 500}],
    )
    total = time.perf_counter() - t0
    s = res.summary()
    print(f"\nOSSE: {len(res.config['cases'])} cases, {total:.1f} s in all, peak memory {peak_mb():.0f} MB")
    cost = res.runs.groupby(["method", "setting"], sort=False)[["seconds", "n_obs"]].mean()
    print(cost.round(3).to_string())
    for var, lev in (("z", 500.0), ("t", 850.0), ("u", 500.0), ("sp", None)):
        rows = s[(s.metric == "rmse") & (s.variable == var)]
        rows = rows[rows.level.isna()] if lev is None else rows[np.isclose(rows.level, lev)]
        if len(rows):
            print(f"\nRMSE {var}{'' if lev is None else f'{lev:g}'} ({rows.units.iloc[0]}):")
            print(rows.pivot(index="setting", columns="method", values="value").round(4).to_string())
    from xphyda.evaluate.report import _residual_means

    means, truth_rel, balanced = _residual_means(s)
    print(
        "\nphysics residual ratio analysis / truth (mean over layers, without those balanced by construction):"
    )
    print(
        means.pivot_table(index=["variable", "setting"], columns="method", values="value")
        .round(3)
        .to_string()
    )
    print(f"truth RMS residual / natural scale: {truth_rel.round(4).to_dict()}; left out: {balanced}")
    print(f"\nreport: {args.out}/report.md")


def _times_case(n: int):
    """``n`` consecutive test-split states of trajectory 0 (truth) and the states 24 h earlier (background)."""
    from xphyda.data.pipeline import open_store
    from xphyda.obs import simulate

    ds = open_store(CORPUS, levels=[200, 500, 850], variables=["z", "t", "u", "v"]).isel(trajectory=0)
    start = int(np.searchsorted(ds.time.values, np.datetime64("2002-03-01")))
    truth = ds.isel(time=slice(start, start + n)).load()
    background = ds.isel(time=slice(start - 4, start - 4 + n)).load().assign_coords(time=truth.time)
    obs = simulate(truth, fraction=0.1, seed=0)
    return truth, background, obs


def bench_times(args) -> None:
    import distributed

    from xphyda.parallel import assimilate_times

    truth, background, obs = _times_case(args.times)
    opts = {"method": "oi"}
    if args.model:
        opts = {
            "method": "phyda",
            "model": args.model,
            "members": args.members,
            "steps": args.steps,
            "seed": 0,
        }
    print(f"{args.times} analysis times, {dict(truth.sizes)}, method {opts['method']}")

    def run(label, bg, ob, **kw):
        t0 = time.perf_counter()
        out = assimilate_times(bg, ob, progress=False, **opts, **kw)
        dt = time.perf_counter() - t0
        print(f"  {label:<34} {dt:7.2f} s  ({dt / args.times:.2f} s per time)")
        return out

    assimilate_times(background.isel(time=[0, 1]), obs.isel(time=[0, 1]), progress=False, **opts)  # warm-up
    serial = run("serial", background, obs, scheduler="serial")
    lazy_bg, lazy_obs = background.chunk(time=1), obs.chunk(time=1)
    outs = {
        "dask threads": run("dask threads (chunked data)", lazy_bg, lazy_obs),
        "dask processes": run("dask processes", background, obs, scheduler="processes"),
    }
    t0 = time.perf_counter()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster),
    ):
        start = time.perf_counter() - t0
        run(f"LocalCluster 2x1, cold (+{start:.1f} s start)", lazy_bg, lazy_obs)  # workers import xphyda
        outs["LocalCluster(2 x 1)"] = run("LocalCluster 2x1, warm", lazy_bg, lazy_obs)
    for label, out in outs.items():
        diff = max(float(abs(out[v] - serial[v]).max()) for v in ("z", "t"))
        print(f"  {label}: largest difference from serial in z, t: {diff:.3g}")
    rmse_b = float(np.sqrt(((background.t - truth.t) ** 2).mean()))
    sel = serial.t.mean("member") if "member" in serial.t.dims else serial.t
    print(
        f"  t RMSE: background {rmse_b:.3f} K, analysis {float(np.sqrt(((sel - truth.t) ** 2).mean())):.3f} K"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["osse", "times"])
    p.add_argument("--data", default=CORPUS)
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--levels", type=float, nargs="*", default=[200.0, 300.0, 500.0, 700.0, 850.0])
    p.add_argument("--times", type=int, default=8)
    p.add_argument("--model", default=None)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--out", default="bench-osse")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads in this process (on a loaded machine 1 is much faster)",
    )
    args = p.parse_args(argv)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    print(f"$ python {' '.join(shlex.quote(a) for a in sys.argv)}\n{machine()}")
    bench_osse(args) if args.what == "osse" else bench_times(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
