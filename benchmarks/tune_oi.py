"""Tune OI's horizontal length scale on the validation split, per variable and observed fraction.

OI analyses each variable on its own, so one sweep over length scales gives the best
scale per variable: the one with the smallest latitude-weighted RMSE averaged over
levels and cases.  Writes ``benchmarks/results/oi_tuning.json``, which
``benchmarks/evaluate_model.py`` uses for the tuned-OI rows.

    python benchmarks/tune_oi.py --data /work/corpus --cases 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xphyda.evaluate import run_osse

SCALES_KM = (250, 400, 600, 800, 1100, 1500)
LEVELS = (200, 300, 500, 700, 850)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.01])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "oi_tuning.json"))
    a = p.parse_args(argv)
    methods = {f"oi-{L}": {"method": "oi", "length_scale": L * 1e3} for L in SCALES_KM}
    res = run_osse(a.data, cases=a.cases, split="valid", observations=[{"fraction": f} for f in a.fractions],
                   methods=methods, levels=LEVELS, metrics=["rmse"], residuals=None, maps=None, report=False,
                   progress=False)
    t = res.table
    t = t[t.metric == "rmse"]
    mean = t.groupby(["setting", "variable", "method"])["value"].mean().reset_index()
    best: dict = {}
    for (setting, var), g in mean.groupby(["setting", "variable"]):
        row = g.loc[g["value"].idxmin()]
        best.setdefault(setting, {})[var] = {
            "length_scale_km": int(row["method"].split("-")[1]),
            "rmse_by_scale": {m.split("-")[1]: round(float(v), 4) for m, v in zip(g["method"], g["value"])},
        }
    out = {"command": "python benchmarks/tune_oi.py " + " ".join(argv or []), "split": "valid",
           "cases": a.cases, "levels_hPa": list(LEVELS), "best": best}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    for setting, per in best.items():
        print(setting, {v: b["length_scale_km"] for v, b in per.items()})
    return out


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
