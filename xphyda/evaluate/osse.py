"""Observing-system simulation experiments: every method on identical synthetic observations, one tidy table.

For each *case* (a truth time from the test split of a store, or of a user
Dataset) and each *observation setting* (a fraction of the grid columns, N
random stations, a station list, a noise level), observations are drawn once
from the truth with :func:`xphyda.obs.simulate` and given to every *method*
(the background itself, OI, PhyDA with a named model and its ablations).  The
analyses are scored against the truth with :func:`xphyda.metrics.score_table`:
RMSE, bias and MAE per variable and level, CRPS and the spread-skill ratio for
ensembles, ACC with a climatology, and the physics residual ratios
analysis / truth.

Seeds: the observations of a case and setting come from ``(seed, trajectory,
time, setting label)``, the ensembles of a case (PhyDA, an OI ensemble with
``{"oi": {"members": 8}}``) from ``(seed, trajectory, time)``, the same for every
setting and every PhyDA variant (common random numbers, so differences between
methods are not sampling noise).  A case gets
the same draws whatever other cases are run.

Examples
--------
>>> import numpy as np, xarray as xr, xphyda
>>> era5 = xphyda.tutorial.open_dataset("era5-z-t").isel(latitude=slice(0, None, 12), longitude=slice(0, None, 12))
>>> times = era5.time.values[0] + np.arange(6) * np.timedelta64(12, "h")
>>> data = xr.concat([era5.roll(longitude=k, roll_coords=False).assign_coords(time=[t])
...                   for k, t in enumerate(times)], "time")  # six "states", 12-hourly
>>> res = run_osse(data, cases=2, split=None, lead="12h", observations=[{"fraction": 0.3}],
...                methods={"background": None, "oi": {}}, progress=False)
>>> sorted(res.table["method"].unique())  # "truth": its own physics residuals, the reference of the ratios
['background', 'oi', 'truth']
>>> sorted(res.table["metric"].unique())
['bias', 'mae', 'residual_ratio', 'residual_relative', 'rmse']
>>> s = res.summary().query("metric == 'rmse' and variable == 't' and level == 850")
>>> bool(s.set_index("method").loc["oi", "value"] < s.set_index("method").loc["background", "value"])
True
"""

from __future__ import annotations

import json
import os
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import PhydaError
from ._fields import case_fields, map_keys
from ._setup import (
    EvaluationError,
    case_states,
    methods_from,
    open_truth,
    residuals_for,
    resolve_split,
    select_cases,
    settings_from,
)

__all__ = [
    "COLUMNS",
    "DEFAULT_METHODS",
    "DEFAULT_OBSERVATIONS",
    "OSSEResult",
    "check_out_dir",
    "run_osse",
    "summarize",
]

COLUMNS = (
    "case",
    "time",
    "trajectory",
    "setting",
    "method",
    "variable",
    "level",
    "layer",
    "metric",
    "value",
    "units",
)
"""Columns of the results table (``trajectory`` is -1 for data without trajectories)."""

DEFAULT_OBSERVATIONS = ({"fraction": 0.1}, {"fraction": 0.01}, {"n_stations": 500})
"""The PhyDA paper's densities (10 % and 1 % of the grid columns) and 500 random stations."""

DEFAULT_METHODS = {"background": None, "oi": {}}
"""The yardsticks; add ``"phyda": {"model": ..., "members": 8}`` and ablations."""


# --------------------------------------------------------------------------- the result
@dataclass
class OSSEResult:
    """What :func:`run_osse` returns: the scores, the cost of each run, fields of one case, the set-up.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per case, setting, method, variable, level (or residual layer)
        and metric: columns :data:`COLUMNS`.
    runs : pandas.DataFrame
        One row per case, setting and method: ``seconds`` (wall clock of the
        analysis), ``n_obs`` (observations used), ``members``.
    fields : xarray.Dataset
        Maps of the first case (see :func:`run_osse`, ``maps``).
    config : dict
        The set-up, JSON-serialisable (data, split, cases, settings, methods, seed).
    files : dict
        Paths written by :meth:`write`.
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    fields: xr.Dataset
    config: dict
    files: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """The table averaged over cases (see :func:`summarize`)."""
        return summarize(self.table)

    def to_dataset(self) -> xr.Dataset:
        """The table as an xarray Dataset on a ``row`` dimension, with the set-up in its attributes."""
        df = self.table.reset_index(drop=True)
        ds = xr.Dataset({c: ("row", df[c].to_numpy()) for c in df.columns})
        for c in ("case", "time", "trajectory", "setting", "method", "variable", "layer", "metric", "units"):
            if c in ds and ds[c].dtype == object:
                ds[c] = ds[c].astype(str)
        ds["level"].attrs = {
            "long_name": "pressure level (NaN for single-level variables and residuals)",
            "units": "hPa",
        }
        ds["value"].attrs = {"long_name": "score; its units are in the column units"}
        ds["layer"].attrs = {"long_name": "layer of a physics residual ratio ('' otherwise)"}
        ds.attrs = {
            "title": "xphyda OSSE scores",
            "Conventions": "CF-1.8",
            "history": self.config.get("history", ""),
            "config": json.dumps(self.config, default=str),
        }
        return ds

    def write(self, out_dir, *, report: bool = True, overwrite: bool = False) -> dict:
        """Write ``scores.csv``, ``scores.nc``, ``summary.csv``, ``runs.csv``, ``fields.nc`` (and the report).

        Returns the paths by name; ``report`` adds ``report.md`` and ``figures/*.png``
        (:func:`xphyda.evaluate.write_report`).
        """
        out = check_out_dir(out_dir, overwrite=overwrite)
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "scores_csv": out / "scores.csv",
            "scores_nc": out / "scores.nc",
            "summary_csv": out / "summary.csv",
            "runs_csv": out / "runs.csv",
            "fields_nc": out / "fields.nc",
            "config_json": out / "config.json",
        }
        self.table.to_csv(files["scores_csv"], index=False)
        self.summary().to_csv(files["summary_csv"], index=False)
        self.runs.to_csv(files["runs_csv"], index=False)
        self.to_dataset().to_netcdf(files["scores_nc"], engine="netcdf4")
        self.fields.to_netcdf(files["fields_nc"], engine="netcdf4")
        files["config_json"].write_text(json.dumps(self.config, indent=1, default=str))
        if report:
            from .report import write_report

            files.update(write_report(self, out))
        self.files = {k: Path(v) for k, v in files.items()}
        return self.files

    @classmethod
    def open(cls, out_dir) -> OSSEResult:
        """Read a result written by :meth:`write` (for a new report, or to compare runs)."""
        out = Path(out_dir)
        table = pd.read_csv(out / "scores.csv", keep_default_na=False, na_values=[""])
        table["layer"] = table["layer"].fillna("").astype(str)
        with xr.open_dataset(out / "fields.nc", engine="netcdf4") as f:
            fields = f.load()
        return cls(
            table, pd.read_csv(out / "runs.csv"), fields, json.loads((out / "config.json").read_text())
        )


def check_out_dir(out_dir, *, overwrite: bool = False) -> Path:
    """``out_dir`` as a Path; raises ``OutputExistsError`` if it is a non-empty folder and not ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        from ..cli import OutputExistsError

        raise OutputExistsError(f"output folder {str(out)!r} is not empty; pass overwrite=True (--overwrite)")
    return out


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Average a results table over cases: RMSE as the root of the mean square, the others as means.

    Columns: ``setting, method, variable, level, layer, metric, units, value,
    sem, n_cases`` where ``sem`` is the standard error of the per-case values
    (``std / sqrt(n)``; NaN for one case).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"case": [0, 1], "setting": "s", "method": "m", "variable": "t", "level": 500.0,
    ...                   "layer": "", "metric": "rmse", "value": [3.0, 4.0], "units": "K"})
    >>> round(float(summarize(t)["value"].iloc[0]), 4)  # sqrt((9 + 16) / 2)
    3.5355
    """
    keys = ["setting", "method", "variable", "level", "layer", "metric", "units"]
    rows = []
    for key, g in table.groupby(keys, dropna=False, sort=False):
        v = g["value"].to_numpy(float)
        mean = float(np.sqrt(np.mean(v**2))) if key[5] == "rmse" else float(np.mean(v))
        sem = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else np.nan
        rows.append((*key, mean, sem, v.size))
    return pd.DataFrame(rows, columns=keys + ["value", "sem", "n_cases"])


# --------------------------------------------------------------------------- the runner
def _context(exc: PhydaError, where: str) -> PhydaError:
    new = type(exc)(f"{where}: {exc}")
    new.__cause__ = exc
    return new


def run_osse(
    source,
    *,
    cases: int | Sequence = 8,
    split="test",
    lead="24h",
    background: xr.Dataset | None = None,
    observations: Sequence[Mapping] = DEFAULT_OBSERVATIONS,
    noise=None,
    methods: Mapping | Sequence[str] = DEFAULT_METHODS,
    variables: Sequence[str] | None = None,
    levels: Sequence[float] | None = None,
    metrics: Sequence[str] | None = None,
    residuals="auto",
    climatology: xr.Dataset | None = None,
    maps="auto",
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    report: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    store_kwargs: Mapping | None = None,
) -> OSSEResult:
    """Run an observing-system simulation experiment and score every method on identical observations.

    Parameters
    ----------
    source : str, os.PathLike or xarray.Dataset
        A store :func:`xphyda.data.open_store` opens (the jcm corpus folder, a
        Zarr store, netCDF files) or a Dataset with a time dimension (and
        optionally ``trajectory``).
    cases : int or sequence
        How many cases, evenly spaced over the eligible truth times of the
        split (those whose background exists), or the truth times themselves
        (``"2002-03-01T00"``, or ``(trajectory, time)`` pairs).
    split : {"test", "valid", "train"}, TimeSplit or None
        Where truth times come from: a split of :func:`xphyda.data.default_split`
        (all times when the data are too short for it), the test split of a
        :class:`~xphyda.data.TimeSplit`, or ``None`` for all times.  Truth times
        start one split gap after the split's start, so backgrounds stay inside it.
    lead : str or timedelta
        The background is the truth's state ``lead`` earlier (persistence) ...
    background : xarray.Dataset, optional
        ... unless a background is given: a forecast valid at the case times
        (same variables and grid as the truth; a ``trajectory`` dim if the truth has one).
    observations : sequence of dict
        Observation settings, each the options of :func:`xphyda.obs.simulate`:
        exactly one of ``fraction``, ``n_stations``, ``stations``; optionally
        ``noise``, ``variables`` (observed variables) and ``label``.
    noise : float, str or dict, optional
        Noise of the settings that do not give theirs (default:
        :func:`xphyda.obs.uncertainty.default_obs_error`, per level for specific humidity).
    methods : dict or sequence of str
        Name to options of :func:`xphyda.assimilate.assimilate`: ``"background"``
        (``None``: the background itself), ``"oi"`` (``{"members": 8}`` for a
        perturbed-observation OI ensemble, scored with CRPS and spread-skill
        too), ``"phyda"``; other names are PhyDA variants when they give a
        ``model`` (an ablation: another model name or folder), or say
        ``{"method": "oi", ...}``.
    variables : sequence of str, optional
        Variables to load, observe and score (default: all of the data's).
    levels : sequence of float, optional
        Pressure levels (hPa) to keep (default: all).
    metrics : sequence of str, optional
        Among :data:`xphyda.metrics.TABLE_METRICS` (default: all that apply).
    residuals : "auto", sequence of str or None
        Physics residual ratios to add (``"auto"``: every one the data allow).
    climatology : xarray.Dataset, optional
        For ACC: a climatology without time, or with the case times.
    maps : "auto", sequence or None
        ``(variable, level)`` pairs mapped for the first case (``"auto"``: z500 and
        t850 when present; ``None``: no maps).
    seed : int
        Seed of the observations and ensembles (see the module notes).
    out_dir : path, optional
        Write the table, summary, fields and (``report``) the report there.
    report : bool
        With ``out_dir``: also write ``report.md`` and its figures.
    overwrite : bool
        Allow writing into a non-empty ``out_dir``.
    progress : bool
        A progress bar over the analyses.
    store_kwargs : mapping, optional
        More options of :func:`xphyda.data.open_store` (``grid``, ``chunks``, ``names`` ...).

    Returns
    -------
    OSSEResult
        ``table`` (columns :data:`COLUMNS`), ``runs``, ``fields``, ``config``;
        ``summary()`` averages over cases.

    Raises
    ------
    EvaluationError
        For settings, methods, splits or cases that cannot be used (before any analysis runs).
    ModelError
        When a PhyDA model is not found.
    """
    from ..assimilate import _stochastic
    from ..metrics import score_table
    from ..obs import simulate

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EvaluationError(f"seed must be a non-negative integer; got {seed!r}")
    if out_dir is not None:
        check_out_dir(out_dir, overwrite=overwrite)  # before hours of computing, not after
    settings = settings_from(observations, noise)
    specs = methods_from(methods)
    _check_metrics(metrics, climatology)
    ds, tdim, where = open_truth(source, variables=variables, levels=levels, store_kwargs=store_kwargs)
    ts, split_note = resolve_split(ds, tdim, split, lead)
    split_name = split if isinstance(split, str) else "test"
    chosen = select_cases(
        ds, tdim, cases=cases, split=ts, split_name=split_name, lead=lead, background=background
    )
    started = datetime.now(timezone.utc)
    rows, runs, fields, res_names = [], [], None, None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(chosen) * len(settings) * sum(m.kind != "background" for m in specs),
            desc="OSSE",
            unit="analysis",
        )
    try:
        for case in chosen:
            truth, bg = case_states(ds, tdim, case, background=background, lead=lead)
            if res_names is None:
                res_names = residuals_for(truth, residuals)
                keys = map_keys(truth, maps)
            clim = None
            if climatology is not None:
                clim = climatology.sel({tdim: [case.time]}) if tdim in climatology.dims else climatology
            analyses, obs_by_setting = {}, {}
            for setting in settings:
                where_ = f"case {case.label}, observations {setting.label!r}"
                try:
                    obs = simulate(truth, **setting.kwargs, seed=case.seed(seed, setting.seed_key))
                except PhydaError as exc:
                    raise _context(exc, where_) from None
                obs_by_setting[setting.label] = obs
                scored = {}
                for m in specs:
                    t0 = _time.perf_counter()
                    if m.kind == "background":
                        out, n_used, members = bg, 0, 1
                    else:
                        opts = dict(m.options)
                        if _stochastic(m.kind, opts.get("members")):  # PhyDA, or an OI ensemble
                            opts.setdefault("seed", case.seed(seed))
                        if m.kind == "phyda":
                            opts["progress"] = False
                        try:
                            out = _assimilate(bg, obs, m.kind, opts)
                        except PhydaError as exc:
                            raise _context(exc, f"{where_}, method {m.name!r}") from None
                        n_used = _count_used(out)
                        members = out.sizes.get("member", 1)
                        if bar is not None:
                            bar.update(1)
                    seconds = _time.perf_counter() - t0
                    state = out[[v for v in truth.data_vars]]
                    scored[m.name] = state
                    analyses[(setting.label, m.name)] = state
                    runs.append((case.index, setting.label, m.name, m.kind, seconds, n_used, members))
                try:
                    table = score_table(scored, truth, metrics=metrics, climatology=clim, residuals=res_names)
                    if res_names:
                        table = pd.concat(
                            [table, _residual_rows(scored, truth, res_names)], ignore_index=True
                        )
                except PhydaError as exc:
                    raise _context(exc, f"{where_}, scoring") from None
                table.insert(0, "setting", setting.label)
                table.insert(0, "trajectory", -1 if case.trajectory is None else case.trajectory)
                table.insert(0, "time", str(np.datetime64(case.time, "s")))
                table.insert(0, "case", case.index)
                rows.append(table)
            if fields is None:
                fields = case_fields(truth, bg, obs_by_setting, analyses, keys, settings, specs, case)
    finally:
        if bar is not None:
            bar.close()
    table = pd.concat(rows, ignore_index=True)[list(COLUMNS)]
    runs_df = pd.DataFrame(runs, columns=["case", "setting", "method", "kind", "seconds", "n_obs", "members"])
    from .. import __version__

    config = {
        "source": where,
        "split": {
            "name": split_name if ts is not None else None,
            "how": split_note,
            "ranges": None if ts is None else ts.to_dict(),
        },
        "lead": str(lead),
        "background": "persistence (the truth's state `lead` earlier)" if background is None else "given",
        "cases": [
            {
                "index": c.index,
                "time": str(np.datetime64(c.time, "s")),
                "trajectory": c.trajectory,
                "background_time": None
                if c.background_time is None
                else str(np.datetime64(c.background_time, "s")),
            }
            for c in chosen
        ],
        "observations": [
            {"label": s.label, **{k: (v if k != "stations" else "given") for k, v in s.kwargs.items()}}
            for s in settings
        ],
        "methods": {m.name: {"kind": m.kind, **m.options} for m in specs},
        "variables": [str(v) for v in ds.data_vars],
        "residuals": res_names,
        "seed": int(seed),
        "xphyda": __version__,
        "started": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "history": f"{started:%Y-%m-%d %H:%M:%S} UTC: xphyda {__version__} run_osse on {where}: {len(chosen)} cases, "
        f"{len(settings)} observation settings, methods {[m.name for m in specs]}, seed {seed}",
    }
    result = OSSEResult(table, runs_df, fields, json.loads(json.dumps(config, default=str)))
    if out_dir is not None:
        result.write(out_dir, report=report, overwrite=overwrite)
    return result


def _residual_rows(scored: Mapping[str, xr.Dataset], truth: xr.Dataset, names) -> pd.DataFrame:
    """``residual_relative`` rows: RMS residual over its natural scale, per layer or level, for the truth too.

    The ratio analysis / truth is meaningless where the truth is balanced by
    construction (for example the jcm corpus' omega, derived from continuity on
    its own levels); these rows show the magnitudes behind each ratio.
    """
    from ..physics import residual_summary

    rows = []
    for method, ds in [*scored.items(), ("truth", truth)]:
        summary = residual_summary(ds, list(names))
        for name in names:
            rel = summary[f"{name}_relative"]
            keep = "layer" if "layer" in rel.dims else next((d for d in rel.dims if d == "level"), None)
            pooled = [d for d in rel.dims if d != keep]
            rel = np.sqrt((rel**2).mean(pooled)) if pooled else rel  # RMS over time and members
            for i in range(1 if keep is None else rel.sizes[keep]):
                v = rel if keep is None else rel.isel({keep: i})
                level = float(v[keep]) if keep == "level" else np.nan
                layer = str(v[keep].values) if keep == "layer" else ""
                rows.append((method, f"{name}_residual", level, layer, "residual_relative", float(v), "1"))
    return pd.DataFrame(rows, columns=["method", "variable", "level", "layer", "metric", "value", "units"])


def _check_metrics(metrics, climatology) -> None:
    from ..metrics import TABLE_METRICS

    if metrics is None:
        return
    unknown = [m for m in metrics if m not in TABLE_METRICS]
    if unknown:
        raise EvaluationError(f"unknown metrics {unknown}; the table knows {list(TABLE_METRICS)}")
    if "acc" in metrics and climatology is None:
        raise EvaluationError(
            "metric 'acc' needs a climatology: pass climatology=... (without time, or with the case times)"
        )


def _count_used(analysis: xr.Dataset) -> int:
    """Observations the analysis used (flag ``used`` in its per-observation diagnostics)."""
    from ..obs import FLAGS

    flags = [
        v for v in analysis.data_vars if str(v).endswith("_flag") and "flag_meanings" in analysis[v].attrs
    ]
    return int(sum(int((analysis[v] == FLAGS["used"]).sum()) for v in flags))


def _assimilate(bg, obs, kind, options):
    from ..assimilate import assimilate

    return assimilate(bg, obs, method=kind, **options)
