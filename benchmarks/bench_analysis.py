"""Wall time and peak memory of one full PhyDA analysis through the xarray front end.

    python benchmarks/bench_analysis.py --model jcm-t31-v1 --members 8 --repeats 3

A corpus test state is the truth, the state 24 h earlier the background, and
``--fraction`` of the columns are observed (``xphyda.obs.simulate``), optionally all
interpolated to a finer ``--grid``; the timed call is
``background.phyda.assimilate(obs, method="phyda", members=..., steps=..., guidance=...)``
(regridding, QC, conditioning, sampling, output).  Median of ``--repeats`` after one
warm-up; the peak resident memory of the process is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np


def main(argv=None) -> dict:
    import torch

    import xphyda  # noqa: F401 - the accessor
    from xphyda.data.pipeline import open_store
    from xphyda.obs import simulate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/work/corpus")
    p.add_argument("--model", default="jcm-t31-v1")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--steps", type=int, default=None, help="default: assimilate's")
    p.add_argument("--guidance", default=None, help="default: assimilate's")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fraction", type=float, default=0.1, help="observed fraction of the columns")
    p.add_argument("--grid", default=None, metavar="NLATxNLON",
                   help="interpolate the states to this regular grid first (the cost of a finer user grid)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ds = open_store(a.data, variables=["z", "t", "u", "v", "q", "w", "sp"], levels=[200, 300, 500, 700, 850])
    if "trajectory" in ds.dims:
        ds = ds.isel(trajectory=0)
    truth = ds.isel(time=-40).load()
    background = ds.isel(time=-44).load()
    background = background.assign_coords(time=truth["time"])
    if a.grid:
        nlat, nlon = (int(n) for n in a.grid.lower().split("x"))
        lat_max = float(abs(truth["latitude"]).max())
        target = {"latitude": np.linspace(lat_max, -lat_max, nlat),
                  "longitude": np.linspace(0.0, float(truth["longitude"].max()), nlon)}
        truth, background = truth.interp(target), background.interp(target)
    obs = simulate(truth, fraction=a.fraction, seed=0)
    kw = {k: v for k, v in (("steps", a.steps), ("guidance", a.guidance)) if v is not None}

    def run():
        return background.phyda.assimilate(obs, method="phyda", model=a.model, members=a.members, progress=False, **kw)

    run()
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    mean = out["t"].mean("member") if "member" in out["t"].dims else out["t"]
    err = float(np.sqrt(((mean.sel(level=850) - truth["t"].sel(level=850)) ** 2).mean()))
    err_b = float(np.sqrt(((background["t"].sel(level=850) - truth["t"].sel(level=850)) ** 2).mean()))
    res = {"members": a.members, "fraction": a.fraction, "grid": a.grid or "model grid", "n_obs": int(sum(
           int(obs[v].notnull().sum()) for v in obs.data_vars)), "median_s": round(statistics.median(times), 2), "min_s": round(min(times), 2),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
           "threads": a.threads, "load_avg": round(os.getloadavg()[0], 1), "t850_rmse_unweighted": round(err, 3),
           "background_t850_rmse_unweighted": round(err_b, 3)}
    print(res)
    return res


if __name__ == "__main__":
    main()
