"""The OSSE report: Markdown with PNG figures (matplotlib's Agg canvas, no pyplot and no display needed).

Figures (in ``figures/``):

``maps_{field}.png``
    For the first case and the first observation setting: truth (with the
    observation positions), background and its error; for each method the
    analysis (ensemble mean), its error, and the ensemble spread on the error's
    colour scale (so spread and error can be compared by eye).
``scores_rmse.png`` (and ``bias``, ``crps``, ``spread_skill_ratio``)
    Bars by method, grouped by observation setting, one panel per variable at
    its report level; error bars are the standard error over cases.
``density.png``
    RMSE relative to the background against the number of observations used.
``residual_ratios.png``
    Physics residual ratios analysis / truth (mean over layers); 1 is the truth's own imbalance.

Examples
--------
>>> md_table([["a", 1.0]], ["name", "value"]).splitlines()[1]
'| --- | --- |'
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["md_table", "write_report"]

REPORT_LEVEL = 500.0
"""Level (hPa) of the headline rows for variables not mapped (nearest available)."""

BALANCED = 1e-5
"""Relative residual of the truth below which it is balanced by construction; ratios there are left out."""


def md_table(rows, header, *, bold=None) -> str:
    """A Markdown table; ``bold`` is a set of ``(row, column)`` positions to embolden."""
    bold = bold or set()

    def cell(i, j, v):
        s = f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)
        return f"**{s}**" if (i, j) in bold else s

    lines = ["| " + " | ".join(map(str, header)) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(i, j, v) for j, v in enumerate(r)) + " |" for i, r in enumerate(rows)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- selection helpers
def _headline(summary: pd.DataFrame, fields) -> list[tuple[str, float]]:
    """One (variable, level) per scored variable: the mapped level, else the one nearest 500 hPa."""
    mapped = {
        v: (np.nan if lev is None else float(lev)) for v, lev in json.loads(fields.attrs.get("maps", "[]"))
    }
    out = []
    det = summary[(summary["metric"] == "rmse")]
    for var in dict.fromkeys(det["variable"]):
        levels = det.loc[det["variable"] == var, "level"].dropna().unique()
        if levels.size == 0:
            out.append((var, np.nan))
        elif var in mapped and np.isfinite(mapped[var]) and np.isclose(levels, mapped[var]).any():
            out.append((var, mapped[var]))
        else:
            out.append((var, float(levels[np.argmin(np.abs(levels - REPORT_LEVEL))])))
    return out


def _pick(summary, metric, var, lev) -> pd.DataFrame:
    s = summary[(summary["metric"] == metric) & (summary["variable"] == var)]
    return s[s["level"].isna()] if not np.isfinite(lev) else s[np.isclose(s["level"], lev)]


def _name(var, lev) -> str:
    return var if not np.isfinite(lev) else f"{var}{lev:g}"


def _obs_per_setting(runs) -> pd.Series:
    """Observations used per analysis in each setting: the mean over cases of the method that used the most
    (PhyDA flags observations of variables its model does not serve ``not_analysed``; OI uses them)."""
    if not len(runs):
        return pd.Series(dtype=float)
    runs = runs[runs["kind"] != "background"]
    return runs.groupby(["setting", "method"])["n_obs"].mean().groupby(level="setting").max()


def _order_settings(summary, runs) -> list[str]:
    """Settings from the most observations to the fewest."""
    settings = list(dict.fromkeys(summary["setting"]))
    n = _obs_per_setting(runs)
    return sorted(settings, key=lambda s: -float(n.get(s, 0.0)))


# --------------------------------------------------------------------------- figures
def _figure(nrows, ncols, w=3.4, h=2.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def _bars(ax, summary, metric, var, lev, settings, methods, colours):
    width = 0.8 / max(len(methods), 1)
    s = _pick(summary, metric, var, lev)
    for j, m in enumerate(methods):
        vals, errs = [], []
        for st in settings:
            r = s[(s["setting"] == st) & (s["method"] == m)]
            vals.append(float(r["value"].iloc[0]) if len(r) else np.nan)
            errs.append(float(r["sem"].iloc[0]) if len(r) and np.isfinite(r["sem"].iloc[0]) else 0.0)
        x = np.arange(len(settings)) + (j - (len(methods) - 1) / 2) * width
        ax.bar(x, vals, width, yerr=errs, label=m, color=colours[m], capsize=2)
    ax.set_xticks(np.arange(len(settings)), settings, rotation=20, ha="right", fontsize=7)
    units = s["units"].iloc[0] if len(s) else ""
    ax.set_title(
        f"{metric} {_name(var, lev)}" + (f" ({units})" if units and units != "1" else ""), fontsize=9
    )
    if metric == "bias":
        ax.axhline(0.0, color="k", lw=0.6)
    if metric == "spread_skill_ratio":
        ax.axhline(1.0, color="k", lw=0.6, ls="--")


def _fig_scores(summary, metric, keys, settings, methods, colours):
    keys = [k for k in keys if len(_pick(summary, metric, *k))]
    if not keys:
        return None
    ncols = min(4, len(keys))
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = _figure(nrows, ncols)
    for ax, (var, lev) in zip(axes.flat, keys):
        _bars(ax, summary, metric, var, lev, settings, methods, colours)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    return fig


def _fig_density(summary, runs, keys, settings, methods, colours):
    n = _obs_per_setting(runs)
    has_bg = "background" in methods
    keys = keys[:4]
    fig, axes = _figure(1, len(keys))
    for ax, (var, lev) in zip(axes.flat, keys):
        s = _pick(summary, "rmse", var, lev)
        for m in methods:
            if m == "background":
                continue
            xs, ys = [], []
            for st in settings:
                r = s[(s["setting"] == st) & (s["method"] == m)]
                b = s[(s["setting"] == st) & (s["method"] == "background")]
                if len(r) and st in n.index and n[st] > 0:
                    xs.append(n[st])
                    ys.append(
                        float(r["value"].iloc[0]) / (float(b["value"].iloc[0]) if has_bg and len(b) else 1.0)
                    )
            order = np.argsort(xs)
            ax.plot(np.asarray(xs)[order], np.asarray(ys)[order], "o-", color=colours[m], label=m)
            if m == methods[-1]:
                for x, y, st in zip(xs, ys, [st for st in settings if st in n.index and n[st] > 0]):
                    ax.annotate(st, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("observations used", fontsize=8)
        ax.set_title(f"RMSE {_name(var, lev)}" + (" / background" if has_bg else ""), fontsize=9)
        if has_bg:
            ax.axhline(1.0, color="k", lw=0.6, ls="--")
    axes.flat[0].legend(fontsize=7)
    return fig


def _residual_means(summary) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Ratios averaged over the layers (levels) where the truth is not balanced by construction.

    Returns the mean ratio per setting, method and residual; the truth's mean
    relative residual per residual; and the layers left out (truth relative
    residual below :data:`BALANCED`).
    """
    ratio = summary[summary["metric"] == "residual_ratio"].copy()
    rel = summary[(summary["metric"] == "residual_relative") & (summary["method"] == "truth")]
    where = rel.assign(where=rel["layer"].where(rel["layer"] != "", rel["level"].map("{:g} hPa".format)))
    truth_rel = where.groupby(["variable", "where"])["value"].mean()
    ratio["where"] = ratio["layer"].where(ratio["layer"] != "", ratio["level"].map("{:g} hPa".format))
    balanced = [key for key, v in truth_rel.items() if v < BALANCED]
    keep = ~pd.Series(list(zip(ratio["variable"], ratio["where"])), index=ratio.index).isin(balanced)
    means = ratio[keep].groupby(["setting", "method", "variable"], sort=False)["value"].mean().reset_index()
    truth_mean = (
        where[~pd.Series(list(zip(where["variable"], where["where"])), index=where.index).isin(balanced)]
        .groupby("variable")["value"]
        .mean()
    )
    return means, truth_mean, [f"{v.replace('_residual', '')} {w}" for v, w in balanced]


def _fig_residuals(summary, settings, methods, colours):
    if summary[summary["metric"] == "residual_ratio"].empty:
        return None
    s, _, _ = _residual_means(summary)
    names = list(dict.fromkeys(s["variable"]))
    fig, axes = _figure(1, len(names))
    width = 0.8 / len(methods)
    for ax, name in zip(axes.flat, names):
        for j, m in enumerate(methods):
            vals = [
                float(s[(s.setting == st) & (s.method == m) & (s.variable == name)]["value"].mean())
                for st in settings
            ]
            x = np.arange(len(settings)) + (j - (len(methods) - 1) / 2) * width
            ax.bar(x, vals, width, label=m, color=colours[m])
        ax.axhline(1.0, color="k", lw=0.6, ls="--")
        vals = s.loc[s.variable == name, "value"]
        if vals.max() / max(vals.min(), 1e-12) > 20:
            ax.set_yscale("log")
        ax.set_xticks(np.arange(len(settings)), settings, rotation=20, ha="right", fontsize=7)
        ax.set_title(f"{name.replace('_residual', '')} residual: analysis / truth", fontsize=9)
    axes.flat[0].legend(fontsize=7)
    return fig


def _fig_maps(fields, key, setting):
    import matplotlib.colors as mcolors

    truth = fields[f"truth_{key}"]
    lat_name, lon_name = truth.dims
    lon, lat = truth[lon_name].values, truth[lat_name].values
    units = truth.attrs.get("units", "")
    bg = fields[f"background_{key}"]
    an = fields[f"analysis_{key}"].sel(setting=setting)
    sp = fields[f"spread_{key}"].sel(setting=setting)
    methods = list(an["method"].values)
    vmin, vmax = np.nanpercentile(truth.values, [1, 99])
    elim = float(np.nanpercentile(np.abs(bg.values - truth.values), 99)) or 1.0
    fig, axes = _figure(1 + len(methods), 3, w=3.6, h=2.0)
    norm_err = mcolors.Normalize(-elim, elim)

    def show(ax, values, title, cmap, norm):
        m = ax.pcolormesh(lon, lat, values, cmap=cmap, norm=norm, shading="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        return m

    field_norm = mcolors.Normalize(vmin, vmax)
    m0 = show(axes[0, 0], truth.values, f"truth {key} ({units})", "viridis", field_norm)
    olat, olon = fields["obs_lat"].sel(setting=setting).values, fields["obs_lon"].sel(setting=setting).values
    ok = np.isfinite(olat)
    axes[0, 0].scatter(olon[ok] % 360.0, olat[ok], s=2, c="k", marker=".", linewidths=0)
    show(axes[0, 1], bg.values, "background", "viridis", field_norm)
    m2 = show(axes[0, 2], bg.values - truth.values, "background - truth", "RdBu_r", norm_err)
    m3 = None
    for i, m in enumerate(methods, start=1):
        a = an.sel({"method": m}).values
        show(axes[i, 0], a, f"{m}: analysis", "viridis", field_norm)
        show(axes[i, 1], a - truth.values, f"{m}: analysis - truth", "RdBu_r", norm_err)
        s = sp.sel({"method": m}).values
        if np.isfinite(s).any():
            m3 = show(axes[i, 2], s, f"{m}: ensemble spread", "magma", mcolors.Normalize(0, elim))
        else:
            axes[i, 2].set_axis_off()
            axes[i, 2].text(
                0.5,
                0.5,
                "deterministic:\nno spread",
                ha="center",
                va="center",
                fontsize=8,
                transform=axes[i, 2].transAxes,
            )
    fig.colorbar(m0, ax=axes[:, 0], shrink=0.6, label=units)
    fig.colorbar(m2, ax=axes[:, 1], shrink=0.6, label=f"error ({units})")
    if m3 is not None:  # on the error's scale, so spread and error compare by eye
        fig.colorbar(m3, ax=axes[:, 2], shrink=0.6, label=f"spread ({units})")
    fig.suptitle(f"{fields.attrs.get('case', '')}; observations: {setting}", fontsize=9)
    return fig


# --------------------------------------------------------------------------- the report
def write_report(result, out_dir=None, *, title: str = "xphyda OSSE report", dpi: int = 110) -> dict:
    """Write ``report.md`` and ``figures/*.png`` for an OSSE result (or a folder written by ``run_osse``).

    Parameters
    ----------
    result : OSSEResult or path
        The result, or the folder :meth:`OSSEResult.write` wrote (re-plotting without rerunning).
    out_dir : path, optional
        Where to write (default: the folder given as ``result``).
    title : str
        The report's title.
    dpi : int
        Resolution of the PNG figures.

    Returns
    -------
    dict
        ``{"report_md": path, "fig_...": path, ...}``.
    """
    from .osse import OSSEResult

    if not isinstance(result, OSSEResult):
        out_dir = result if out_dir is None else out_dir
        result = OSSEResult.open(result)
    if out_dir is None:
        raise ValueError("out_dir is needed when result is an OSSEResult")
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    summary, runs, fields, cfg = result.summary(), result.runs, result.fields, result.config
    methods = [m for m in dict.fromkeys(summary["method"]) if m != "truth"]  # truth: reference rows only
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    colours = {m: ("0.55" if m == "background" else palette(i % 10)) for i, m in enumerate(methods)}
    settings = _order_settings(summary, runs)
    keys = _headline(summary, fields)
    files, figs = {}, []

    def save(fig, name, caption):
        if fig is None:
            return
        path = figdir / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        files[f"fig_{name}"] = path
        figs.append((caption, f"figures/{name}.png"))

    first_setting = next(s["label"] for s in cfg["observations"])
    for var, lev in json.loads(fields.attrs.get("maps", "[]")):
        key = var if lev is None else f"{var}{float(lev):g}"
        save(
            _fig_maps(fields, key, first_setting),
            f"maps_{key}",
            f"Maps of {key} for case {fields.attrs.get('case', '')}, observations {first_setting}",
        )
    for metric in ("rmse", "bias", "crps", "spread_skill_ratio"):
        save(
            _fig_scores(summary, metric, keys, settings, methods, colours),
            f"scores_{metric}",
            f"{metric} by method and observation setting (error bars: standard error over cases)",
        )
    if any(m != "background" for m in methods):
        save(
            _fig_density(summary, runs, keys, settings, methods, colours),
            "density",
            "RMSE against the number of observations used",
        )
    save(
        _fig_residuals(summary, settings, methods, colours),
        "residual_ratios",
        "Physics residual ratios analysis / truth (mean over layers where the truth is not balanced by "
        "construction)",
    )

    md = [
        f"# {title}",
        "",
        f"Written by xphyda {cfg.get('xphyda', '')}; run started {cfg.get('started', '')}.",
        "",
        "## Set-up",
        "",
        *([f"* **command**: `{cfg['command']}`"] if cfg.get("command") else []),
        f"* **data**: `{cfg['source']}`; split: {cfg['split']['name'] or 'none'} ({cfg['split']['how']})",
        f"* **cases**: {len(cfg['cases'])}: "
        + ", ".join(
            c["time"] + ("" if c["trajectory"] is None else f" (traj {c['trajectory']})")
            for c in cfg["cases"][:12]
        )
        + (" ..." if len(cfg["cases"]) > 12 else ""),
        f"* **background**: {cfg['background']}; lead {cfg['lead']}",
        f"* **seed**: {cfg['seed']} (observations from (seed, case, setting); ensembles from (seed, case))",
        f"* **physics residuals**: {', '.join(cfg['residuals']) or 'none'}",
        "",
    ]
    n_obs = _obs_per_setting(runs)
    md += [
        "### Observation settings",
        "",
        md_table(
            [
                [
                    s["label"],
                    f"{n_obs.get(s['label'], float('nan')):.0f}",
                    json.dumps({k: v for k, v in s.items() if k != "label"}, default=str),
                ]
                for s in cfg["observations"]
            ],
            ["setting", "observations used (mean)", "options"],
        ),
        "",
    ]
    cost = runs.groupby("method", sort=False)["seconds"].mean()
    md += [
        "### Methods",
        "",
        md_table(
            [
                [
                    m,
                    o["kind"],
                    json.dumps({k: v for k, v in o.items() if k != "kind"}, default=str),
                    f"{cost.get(m, float('nan')):.2f}",
                ]
                for m, o in cfg["methods"].items()
            ],
            ["method", "kind", "options", "seconds per analysis"],
        ),
        "",
    ]
    md += [
        "## RMSE",
        "",
        (
            "Mean over cases (root mean square), ± the standard error over cases; the best of each row in bold. "
            "All variables and levels are in `scores.csv` (per case) and `summary.csv` (averaged)."
        ),
        "",
    ]
    for st in settings:
        rows, bold = [], set()
        for i, (var, lev) in enumerate(keys):
            s = _pick(summary, "rmse", var, lev)
            s = s[s["setting"] == st]
            vals = [s[s["method"] == m] for m in methods]
            nums = [float(v["value"].iloc[0]) if len(v) else np.nan for v in vals]
            cells = [
                (
                    f"{x:.4g}"
                    + (
                        f" ± {float(v['sem'].iloc[0]):.2g}"
                        if len(v) and np.isfinite(v["sem"].iloc[0])
                        else ""
                    )
                )
                if np.isfinite(x)
                else ""
                for x, v in zip(nums, vals)
            ]
            if np.isfinite(nums).any():
                bold.add((i, 2 + int(np.nanargmin(nums))))
            rows.append([_name(var, lev), s["units"].iloc[0] if len(s) else ""] + cells)
        md += [f"### Observations: {st}", "", md_table(rows, ["field", "units"] + methods, bold=bold), ""]
    if not summary[summary["metric"] == "residual_ratio"].empty:
        means, truth_rel, balanced = _residual_means(summary)
        r = means.set_index(["variable", "setting", "method"])["value"].unstack("method")
        rows = [
            [v.replace("_residual", ""), st, float(truth_rel.get(v, np.nan))]
            + [r.loc[(v, st)].get(m, np.nan) for m in methods]
            for v, st in r.index
        ]
        md += [
            "## Physics residual ratios",
            "",
            (
                "RMS residual of the analysis over that of the truth, averaged over layers (levels for geostrophy): "
                "1 is as balanced as the truth, above 1 the analysis breaks the law more. The truth's own residual "
                "is given relative to its natural scale (divergence, thickness, wind speed). Per-layer values, and "
                "each method's relative residual, are in `summary.csv` (metrics `residual_ratio`, `residual_relative`)."
            ),
            "",
            md_table(rows, ["residual", "setting", "truth: RMS residual / natural scale", *methods]),
            "",
        ]
        if balanced:
            md += [
                (
                    f"Left out of the means: {', '.join(balanced)}, where the truth's residual is below "
                    f"{BALANCED:g} of its natural scale (balanced by construction, e.g. omega derived from continuity "
                    "on those levels), so a ratio there says nothing."
                ),
                "",
            ]
    ens = summary[summary["metric"].isin(["crps", "spread_skill_ratio"])]
    if not ens.empty:
        rows = []
        for var, lev in keys:
            for metric in ("crps", "spread_skill_ratio"):
                e = _pick(ens, metric, var, lev)
                for (st, m), g in e.groupby(["setting", "method"], sort=False):
                    rows.append([_name(var, lev), metric, st, m, float(g["value"].iloc[0])])
        md += [
            "## Ensemble scores",
            "",
            "CRPS (fair) and spread-skill ratio (1 for a reliable ensemble).",
            "",
            md_table(rows, ["field", "metric", "setting", "method", "value"]),
            "",
        ]
    md += ["## Figures", ""] + [f"![{c}]({p})\n\n*{c}.*\n" for c, p in figs]
    md += [
        "## Files",
        "",
        (
            "`scores.csv` / `scores.nc` (one row per case, setting, method, variable, level and "
            "metric), `summary.csv` (averaged over cases), `runs.csv` (seconds and observations per analysis), "
            "`fields.nc` (the mapped case), `config.json` (the set-up)."
        ),
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(md))
    files["report_md"] = path
    return files
