"""Tune OI on the validation split: background errors, then the length scale per variable and fraction.

The background-error standard deviation of each variable and level is the
area-weighted RMS of background minus truth over ``--error-cases`` validation
states (the background being the state 24 h earlier, as in the evaluation): the
error statistics a DA centre estimates from past backgrounds.  (Left to itself OI
estimates it from one analysis's innovations, which cannot resolve it where the
observation errors dominate: q at 200 hPa, with an observation error 30 times
its background error, got 3 times too large a value and an analysis 4 times
worse than its background.)  With those, OI analyses each variable on its own,
so one sweep over length scales gives the best scale per variable: the one with
the smallest latitude-weighted RMSE averaged over cases and over levels, each
level's RMSE in units of its background error (so that every level counts the
same, not just the one with the largest values).  Writes
``benchmarks/results/oi_tuning.json``, which ``benchmarks/evaluate_model.py``
uses for the tuned-OI rows.

    python benchmarks/tune_oi.py --data /work/corpus --cases 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xphyda.evaluate import run_osse

SCALES_KM = (250, 400, 600, 800, 1100, 1500)
LEVELS = (200, 300, 500, 700, 850)


def background_errors(data, cases: int) -> dict:
    """``{variable: [sigma_b per level in LEVELS] or [sigma_b]}`` in the data's units, from validation states."""
    from xphyda.evaluate._setup import case_states, open_truth, resolve_split, select_cases

    ds, tdim, _ = open_truth(data, variables=None, levels=LEVELS, store_kwargs=None)
    split, _ = resolve_split(ds, tdim, "valid", "24h")
    chosen = select_cases(ds, tdim, cases=cases, split=split, split_name="valid", lead="24h", background=None)
    sums: dict = {}
    for case in chosen:
        truth, bg = case_states(ds, tdim, case, lead="24h")
        w = np.cos(np.deg2rad(truth["latitude"]))
        for v in truth.data_vars:
            mse = ((bg[v] - truth[v]) ** 2).weighted(w).mean(("latitude", "longitude")).squeeze()
            sums[v] = sums.get(v, 0.0) + mse.values / len(chosen)
    return {v: [float(f"{x:.4g}") for x in np.atleast_1d(np.sqrt(m))] for v, m in sums.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.01])
    p.add_argument("--error-cases", type=int, default=48, help="validation states for the background errors")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "oi_tuning.json"))
    a = p.parse_args(argv)
    sigma_b = background_errors(a.data, a.error_cases)
    methods = {f"oi-{L}": {"method": "oi", "length_scale": L * 1e3, "background_error": sigma_b} for L in SCALES_KM}
    res = run_osse(a.data, cases=a.cases, split="valid", observations=[{"fraction": f} for f in a.fractions],
                   methods=methods, levels=LEVELS, metrics=["rmse"], residuals=None, maps=None, report=False,
                   progress=False)
    t = res.table
    t = t[t.metric == "rmse"].copy()
    # each level counts the same: RMSE in units of that level's background error (else q850 decides q200's scale)
    t["value"] = [value / (sigma_b[var][LEVELS.index(int(lev))] if np.isfinite(lev) else sigma_b[var][0])
                  for value, var, lev in zip(t["value"], t["variable"], t["level"])]
    mean = t.groupby(["setting", "variable", "method"])["value"].mean().reset_index()
    best: dict = {}
    for (setting, var), g in mean.groupby(["setting", "variable"]):
        row = g.loc[g["value"].idxmin()]
        best.setdefault(setting, {})[var] = {
            "length_scale_km": int(row["method"].split("-")[1]),
            "rmse_over_background_error": {m.split("-")[1]: float(f"{v:.4g}") for m, v in zip(g["method"], g["value"])},
        }
    out = {"command": "python benchmarks/tune_oi.py " + " ".join(argv or []), "split": "valid",
           "cases": a.cases, "levels_hPa": list(LEVELS), "error_cases": a.error_cases,
           "background_error": sigma_b, "best": best}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    for setting, per in best.items():
        print(setting, {v: b["length_scale_km"] for v, b in per.items()})
    return out


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
