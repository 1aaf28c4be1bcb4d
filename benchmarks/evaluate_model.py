"""The accuracy table of a PhyDA model against the background and OI (issue: model accuracy).

For each observed fraction, one OSSE on the test split of the corpus (``--split valid``: the
validation split, to choose settings without the test cases; background = the state 24 h
earlier, observations of every variable at the fraction's random columns with the default
realistic errors), with methods:

* ``background``;
* ``oi``: OI with the default length scales and background errors from the
  innovations; ``oi-tuned``: with the background errors and length scales of the
  validation split (``benchmarks/tune_oi.py``: per variable and level, and per
  variable and fraction);
* ``phyda``: the model, ensemble mean of ``--members``;
* any ``--ablation NAME=MODEL_FOLDER`` (e.g. ``no-physics=...``, ``no-vre=...``);
* any ``--variant NAME=JSON``: the model with other options, e.g.
  ``--variant 'phyda-unbalanced={"balance": []}'``.

Writes each OSSE's table and report to ``OUT/f<fraction>/`` and a summary
(``OUT/summary.json``, ``OUT/summary.md``): RMSE per variable and level, the
PhyDA/OI-tuned RMSE ratio, CRPS and spread-skill ratio, physics residual ratios
and seconds per analysis.

    python benchmarks/evaluate_model.py --data /work/corpus --model /work/runs/jcm-t31-v1c --cases 8
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
LEVELS = (200, 300, 500, 700, 850)


def _tuned(path: Path, setting: str) -> dict | None:
    """Options of the tuned OI: length scales per variable, and background errors when the tuning has them."""
    if not path.exists():
        return None
    tuning = json.loads(path.read_text())
    best = tuning["best"].get(setting)
    if best is None:
        return None
    out = {"length_scale": {v: b["length_scale_km"] * 1e3 for v, b in best.items()}}
    if "background_error" in tuning:
        out["background_error"] = tuning["background_error"]
    return out


def _pivot(summary, metric: str) -> dict:
    s = summary[summary.metric == metric]
    out: dict = {}
    for _, r in s.iterrows():
        key = r["variable"] + ("" if np.isnan(r["level"]) else str(int(r["level"])))
        if r["layer"]:
            key = f'{r["variable"]}[{r["layer"]}]'
        out.setdefault(r["method"], {})[key] = float(f"{float(r['value']):.4g}")
    return out


def main(argv: list[str]) -> dict:
    from xphyda.evaluate import run_osse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--guidance", default=None, help="PhyDA guidance (default: assimilate's)")
    p.add_argument("--oi-members", type=int, default=1, help="OI ensemble size (perturbed observations)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.01])
    p.add_argument("--ablation", nargs="*", default=[], metavar="NAME=MODEL")
    p.add_argument("--variant", nargs="*", default=[], metavar="NAME=JSON", help="the model with other options")
    p.add_argument("--balance", default=None, help="PhyDA balance laws, comma-separated, or 'none' (default: assimilate's)")
    p.add_argument("--tuning", default=str(HERE / "results" / "oi_tuning.json"))
    p.add_argument("--split", default="test", choices=["test", "valid"],
                   help="cases from the test year (the reported scores) or the validation year (to choose settings, "
                        "such as a channel weight, without looking at the test cases)")
    p.add_argument("--out", default="phyda-accuracy")
    a = p.parse_args(argv)
    out = Path(a.out)
    summary: dict = {"command": "python benchmarks/evaluate_model.py " + shlex.join(argv), "settings": {}}
    for f in a.fractions:
        setting = f"fraction={f:g}"
        phyda = {"model": a.model, "members": a.members, "steps": a.steps}
        if a.guidance:
            phyda["guidance"] = a.guidance
        if a.balance:
            phyda["balance"] = [] if a.balance == "none" else a.balance.split(",")
        oi = {"members": a.oi_members} if a.oi_members > 1 else {}
        methods = {"background": None, "oi": dict(oi)}
        tuned = _tuned(Path(a.tuning), setting)
        if tuned:
            methods["oi-tuned"] = {"method": "oi", **tuned, **oi}
        methods["phyda"] = phyda
        for item in a.ablation:
            name, model = item.split("=", 1)
            methods[name] = {**phyda, "model": model}
        for item in a.variant:
            name, options = item.split("=", 1)
            methods[name] = {**phyda, **json.loads(options)}
        res = run_osse(a.data, cases=a.cases, split=a.split, observations=[{"fraction": f}], methods=methods,
                       levels=LEVELS, out_dir=out / f"f{f:g}", overwrite=True, progress=False)
        s = res.summary()
        rmse = _pivot(s, "rmse")
        ref = "oi-tuned" if "oi-tuned" in rmse else "oi"
        ratio = {m: {k: round(v / rmse[ref][k], 3) for k, v in per.items() if rmse[ref].get(k)}
                 for m, per in rmse.items() if m not in ("truth", ref)}
        runs = res.runs.groupby("method")["seconds"].median().round(2).to_dict()
        summary["settings"][setting] = {
            "rmse": rmse, f"rmse_ratio_to_{ref}": ratio, "crps": _pivot(s, "crps"),
            "spread_skill_ratio": _pivot(s, "spread_skill_ratio"), "residual_ratio": _pivot(s, "residual_ratio"),
            "residual_ratio_ensemble_mean": _pivot(s, "residual_ratio_mean"),
            "median_seconds_per_analysis": runs, "oi_length_scales_m": tuned and tuned["length_scale"],
            "oi_background_error": tuned and tuned.get("background_error"),
        }
        print(setting, json.dumps(summary["settings"][setting][f"rmse_ratio_to_{ref}"], indent=None))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
