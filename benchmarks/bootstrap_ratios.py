"""Bootstrap intervals of PhyDA's RMSE ratio to tuned OI, over the cases of an evaluation.

    python benchmarks/bootstrap_ratios.py OUT [--phyda NAME] [--reference NAME] [--fractions f0.1 f0.01]
                                              [--level 0.90] [--resamples 4000]

``OUT`` is the ``--out`` folder of ``benchmarks/evaluate_model.py``; each
fraction's ``scores.csv`` holds the RMSE of every case.  The ratio of a field is
``sqrt(mean_cases(MSE_phyda) / mean_cases(MSE_oi))`` (the figure of the
summary); the cases are resampled with replacement, the same draw for both
methods, so the interval reflects case-to-case variation only (not the sampling
noise of the ensembles given the cases).  Prints, per fraction, the mean ratio
over the level fields and each field's ratio with its interval, and marks the
fields whose interval reaches the target (0.8 at 10 %, 0.7 at 1 %).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TARGETS = {"f0.1": 0.8, "f0.01": 0.7}


def intervals(scores: pd.DataFrame, *, phyda: str = "phyda", reference: str = "oi-tuned", level: float = 0.9,
              resamples: int = 4000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """``{field: (ratio, low, high)}`` from a ``scores.csv`` table (one row per case, method, field, metric)."""
    t = scores[scores.metric == "rmse"]
    rng = np.random.default_rng(seed)
    out = {}
    for (var, lev), a in t.groupby(["variable", "level"], dropna=False):
        pair = a.pivot_table(index="case", columns="method", values="value")
        if phyda not in pair or reference not in pair:
            continue
        pair = pair[[phyda, reference]].dropna()  # cases both methods have, paired by case
        ph, ref = pair[phyda].to_numpy(), pair[reference].to_numpy()
        if len(ph) == 0:
            continue
        name = f"{var}{'' if np.isnan(lev) else int(lev)}"
        idx = rng.integers(0, len(ph), (resamples, len(ph)))
        boot = np.sqrt(np.mean(ph[idx] ** 2, 1) / np.mean(ref[idx] ** 2, 1))
        lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
        out[name] = (float(np.sqrt(np.mean(ph**2) / np.mean(ref**2))), float(lo), float(hi))
    return out


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder written by benchmarks/evaluate_model.py --out")
    p.add_argument("--fractions", nargs="+", default=list(TARGETS))
    p.add_argument("--level", type=float, default=0.9)
    p.add_argument("--resamples", type=int, default=4000)
    p.add_argument("--reference", default=None, help="baseline method (default: oi-tuned if present, else oi)")
    p.add_argument("--phyda", default="phyda", help="the method to score (an --ablation or --variant name)")
    a = p.parse_args(argv)
    result = {}
    for f in a.fractions:
        scores = pd.read_csv(Path(a.out) / f / "scores.csv")
        ref = a.reference or ("oi-tuned" if (scores.method == "oi-tuned").any() else "oi")
        missing = [m for m in (a.phyda, ref) if not (scores.method == m).any()]
        if missing:
            sys.exit(f"{f}: no scores of {missing} in {Path(a.out) / f / 'scores.csv'}; it has "
                     f"{sorted(scores.method.unique())}")
        iv = intervals(scores, phyda=a.phyda, reference=ref, level=a.level, resamples=a.resamples)
        fields = {k: v for k, v in iv.items() if k[0] in "ztuvqw" and k[1:].isdigit()}
        n = scores["case"].nunique()
        target = TARGETS.get(f) if ref.startswith("oi") else None  # the targets are ratios to OI
        print(f"{f}: {n} cases, {a.phyda} against {ref}, mean ratio over {len(fields)} level fields {np.mean([v[0] for v in fields.values()]):.3f}")
        for k, (r, lo, hi) in iv.items():
            flag = "" if target is None else ("  MISS" if r > target else ("  interval reaches target" if hi > target else ""))
            print(f"  {k:6s} {r:.3f} ({lo:.3f}-{hi:.3f}){flag}")
        result[f] = {"cases": n, "fields": {k: [round(x, 4) for x in v] for k, v in iv.items()}}
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
