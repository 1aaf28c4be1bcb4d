"""Markdown tables for docs/benchmarks.md from a ``benchmarks/evaluate_model.py`` summary.

    python benchmarks/summary_table.py OUT/summary.json [--phyda phyda] [--raw phyda-raw]

Prints: RMSE per field with ratios to tuned OI at each fraction, the means over
the level fields, CRPS and spread-skill ratios, and physics residual ratios
(members pooled, ensemble mean in brackets), for the ``--phyda`` row and, if
given, a ``--raw`` row of the same model with other options.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

FIELDS = ("z200", "z500", "z850", "t200", "t300", "t500", "t850", "u200", "u500", "u850", "v500", "q200", "q500", "q850",
          "w500", "w700", "w850", "sp")
UNITS = {"z": "m2 s-2", "t": "K", "u": "m s-1", "v": "m s-1", "q": "g kg-1", "w": "Pa s-1", "s": "Pa"}


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _level_fields(rmse: dict) -> list[str]:
    return [k for k in rmse if k[0] in "ztuvqw" and k[1:].isdigit()]


def tables(summary: dict, phyda: str = "phyda", raw: str | None = None) -> str:
    s = summary["settings"]
    fr = [k for k in s]
    ref = "oi-tuned" if "oi-tuned" in s[fr[0]]["rmse"] else "oi"
    lines = ["| field | background | " + " | ".join(
        f"OI ({ref}) {k.split('=')[1]} | PhyDA | ratio" + (" | raw ratio" if raw else "") for k in fr) + " |"]
    lines.append("| --- " * (1 + 1 + len(fr) * (3 + bool(raw))) + "|")
    for f in FIELDS:
        scale = 1e3 if f[0] == "q" else 1.0
        row = [f"{f} ({UNITS[f[0]]})", _fmt(s[fr[0]]["rmse"]["background"][f] * scale)]
        for k in fr:
            r = s[k]["rmse"]
            row += [_fmt(r[ref][f] * scale), _fmt(r[phyda][f] * scale), f"{r[phyda][f] / r[ref][f]:.2f}"]
            if raw:
                row.append(f"{r[raw][f] / r[ref][f]:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    row = ["**mean over the 30 level fields**", ""]
    worst = []
    for k in fr:
        r = s[k]["rmse"]
        names = _level_fields(r[ref])
        ratio = np.array([r[phyda][n] / r[ref][n] for n in names])
        row += ["1", "", f"**{ratio.mean():.2f}**"]
        if raw:
            row.append(f"{np.mean([r[raw][n] / r[ref][n] for n in names]):.2f}")
        worst.append((k, {n: round(float(v), 2) for n, v in zip(names, ratio)}))
    lines.append("| " + " | ".join(row) + " |")
    out = ["\n".join(lines), ""]
    for k, ratios in worst:
        limit = 0.8 if k.endswith("0.1") else 0.7
        above = {n: v for n, v in ratios.items() if v > limit}
        out.append(f"{k}: ratio range {min(ratios.values()):.2f} to {max(ratios.values()):.2f}; above {limit}: {above}")
    out.append("")
    head = "| | " + " | ".join(f"{m} {k.split('=')[1]}" for k in fr for m in ("OI ensemble", "PhyDA")) + " |"
    sep = "| --- " * (1 + 2 * len(fr)) + "|"
    rows = []
    for metric, label in (("crps", "CRPS relative to the OI ensemble"), ("spread_skill_ratio", "spread-skill ratio (mean; range)")):
        cells = []
        for k in fr:
            m = s[k][metric]
            names = _level_fields(m[ref])
            o, p = np.array([m[ref][n] for n in names]), np.array([m[phyda][n] for n in names])
            if metric == "crps":
                cells += ["1", f"{np.mean(p / o):.2f}"]
            else:
                cells += [f"{o.mean():.2f}", f"{p.mean():.2f} ({p.min():.2f} to {p.max():.2f})"]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    secs = [c for k in fr for c in (str(s[k]["median_seconds_per_analysis"].get(ref, "")),
                                    str(s[k]["median_seconds_per_analysis"][phyda]))]
    rows.append("| median seconds per analysis | " + " | ".join(secs) + " |")
    out += [head, sep, *rows, ""]
    # continuity 700-850 hPa: the truth's residual there is at rounding level (the corpus' omega comes from
    # continuity on adjacent levels), so the ratio says nothing
    layers = [n for n in s[fr[0]]["residual_ratio"][phyda] if "[" in n and n != "continuity_residual[700-850 hPa]"]
    cols = [(k, m) for k in fr for m in ([ref, phyda] + ([raw] if raw else []))]
    out.append("| layer | " + " | ".join(f"{m} {k.split('=')[1]}" for k, m in cols) + " |")
    out.append("| --- " * (1 + len(cols)) + "|")
    for layer in sorted(layers):
        cells = []
        for k, m in cols:
            pooled = s[k]["residual_ratio"][m][layer]
            mean = s[k]["residual_ratio_ensemble_mean"].get(m, {}).get(layer)
            cells.append(f"{pooled:.3g}" + (f" ({mean:.3g})" if mean is not None else ""))
        out.append(f"| {layer.replace('_residual', '')} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str]) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("summary")
    p.add_argument("--phyda", default="phyda")
    p.add_argument("--raw", default=None)
    a = p.parse_args(argv)
    text = tables(json.loads(open(a.summary).read()), a.phyda, a.raw)
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
