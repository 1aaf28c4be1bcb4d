"""The demo behind ``phyda demo``: real ERA5, simulated observations, PhyDA and OI side by side.

It needs no data of the user's and runs on a CPU in well under a minute:

1. the truth is the ERA5 extract shipped with xphyda (``t`` and ``z`` at 500
   and 850 hPa, 1 degree, 2007-01-01 12 UTC; :mod:`xphyda.tutorial`);
2. observations are drawn from it at randomly placed stations, with the
   default observation errors (1 K, 100 m2 s-2; :func:`xphyda.obs.simulate`);
3. the background is the truth **displaced** by a smooth random,
   non-divergent displacement field (RMS 150 km, correlation scale about
   1,200 km, the same at both levels; :func:`displaced_background`).  Misplaced
   troughs, ridges and fronts are what the errors of a 24-hour forecast mostly
   are; on this sample it gives errors of about 20 m of 500 hPa height and 1 K,
   and because a whole column moves, the background keeps the truth's
   hydrostatic balance (its residual ratio is 1);
4. the observations are assimilated with the bundled PhyDA model (an ensemble)
   and with optimal interpolation (:func:`xphyda.assimilate.assimilate`);
5. the scores are printed side by side (:mod:`xphyda.metrics`) and written to
   ``scores.csv``, and a figure ``demo.png`` shows truth, observations,
   background, analysis and errors of the 500 hPa geopotential height.

When the bundled model is not installed, the demo says so and runs the OI part
only.  The bundled model is a prior trained on a GCM corpus at 3.75 degrees
(``z t u v q w`` on five levels and ``sp``): the sample is a *partial*
background (``t`` and ``z`` at two levels), which the model completes from its
prior, and its increments are added to the background at 1 degree.

Examples
--------
>>> import xphyda
>>> truth = xphyda.tutorial.open_dataset("era5-z-t")
>>> background = displaced_background(truth, seed=0)
>>> rmse = xphyda.metrics.rmse(background, truth)
>>> 10 < rmse["z"].sel(level=500).item() / 9.80665 < 40   # metres of 500 hPa height
True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from .errors import ModelError, PhydaError
from .training import total_steps

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEMO_DEFAULTS", "demo_scores", "displaced_background", "format_scores", "run_demo"]

EARTH_RADIUS = 6.371e6  # m, as xphyda.physics.constants
G0 = 9.80665  # m s-2, standard gravity (geopotential to geopotential height)

DEMO_DEFAULTS: dict[str, object] = {
    "n_stations": 1000,
    "members": 4,
    "steps": 8,
    "guidance": "diag-fwd",
    "seed": 0,
    "displacement_km": 150.0,
    "scale_km": 1200.0,
}
"""Settings of ``phyda demo``, chosen so that it finishes in under a minute on two CPU cores.

``guidance="diag-fwd"`` (the library's default) needs no backward pass through
the network; see ``docs/benchmarks.md`` for its accuracy against ``"mmps"``.
"""


# --------------------------------------------------------------------------- the background
def _unit_vectors(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(lat_deg), np.deg2rad(lon_deg)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _displacement(points: np.ndarray, *, rms: float, scale: float, rng: np.random.Generator,
                  weights: np.ndarray, n_bumps: int = 400) -> np.ndarray:
    """Random smooth non-divergent displacement (3-D tangent vectors, in Earth radii) at ``points``.

    The displacement is ``r x grad(psi)`` of a random streamfunction ``psi``: a
    sum of Gaussian bumps (in chord distance, width ``scale``) centred at
    random points of the sphere with random signs, so it is isotropic, smooth
    and moves air around without converging it.
    """
    centres = _unit_vectors(np.rad2deg(np.arcsin(rng.uniform(-1.0, 1.0, n_bumps))), rng.uniform(0, 360, n_bumps))
    amp = rng.normal(size=n_bumps)
    inv = 1.0 / scale**2
    grad = np.empty_like(points)
    for start in range(0, points.shape[0], 8192):  # |x - c|^2 = 2 - 2 x.c on the unit sphere
        block = points[start:start + 8192]
        e = np.exp((block @ centres.T - 1.0) * inv) * amp
        grad[start:start + 8192] = (e @ centres) * inv
    tangent = grad - np.sum(grad * points, axis=-1, keepdims=True) * points
    disp = np.cross(points, tangent)
    size = np.sqrt(np.sum(weights * np.sum(disp**2, axis=-1)) / np.sum(weights))
    return disp * (rms / size)


def displaced_background(
    truth: xr.Dataset,
    *,
    displacement_km: float = 150.0,
    scale_km: float = 1200.0,
    seed: int = 0,
) -> xr.Dataset:
    """A forecast-like background: the truth moved by a smooth random displacement field.

    Every variable and level is moved by the same non-divergent displacement
    (area-weighted RMS ``displacement_km``, spatial scale ``scale_km``), that
    is each grid point takes the (bilinearly interpolated) value of the truth
    at its departure point.  Position errors of synoptic systems dominate
    short-range forecast errors; 150 km is a typical 24-hour position error.
    Whole columns move, so the background is as hydrostatically balanced as
    the truth.

    Parameters
    ----------
    truth : xarray.Dataset
        A global state on a latitude-longitude grid (levels and times optional).
    displacement_km : float
        Area-weighted RMS length of the displacement, in km.
    scale_km : float
        Width of the random streamfunction's bumps (the displacement's
        correlation scale), in km.
    seed : int
        The same seed gives the same background.

    Returns
    -------
    xarray.Dataset
        Like ``truth`` (same variables, dtypes and attributes) with a ``history`` line.

    Raises
    ------
    xphyda.PhydaError
        For a non-positive distance.

    Examples
    --------
    >>> import xphyda
    >>> truth = xphyda.tutorial.open_dataset("era5-z-t")
    >>> bg = displaced_background(truth, displacement_km=100.0, seed=1)
    >>> xphyda.metrics.residual_ratio(bg, truth, "hydrostatic").item() < 1.05
    True
    """
    from .grid import discover_grid
    from .obs.operator import build_operator

    for name, value in (("displacement_km", displacement_km), ("scale_km", scale_km)):
        if not np.isfinite(value) or value <= 0:
            raise PhydaError(f"{name} must be a positive distance in km; got {value!r}")
    grid = discover_grid(truth)
    lat, lon = grid.lat_values.astype(float), grid.lon_values.astype(float)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    points = _unit_vectors(la.ravel(), lo.ravel())
    weights = np.cos(np.deg2rad(la.ravel())).clip(min=0.0)
    disp = _displacement(points, rms=displacement_km * 1e3 / EARTH_RADIUS, scale=scale_km * 1e3 / EARTH_RADIUS,
                         rng=np.random.default_rng(seed), weights=weights)
    departure = points - disp
    departure /= np.linalg.norm(departure, axis=-1, keepdims=True)
    dep_lat = np.rad2deg(np.arcsin(np.clip(departure[:, 2], -1.0, 1.0)))
    dep_lon = np.rad2deg(np.arctan2(departure[:, 1], departure[:, 0])) % 360.0
    op = build_operator(dep_lat, dep_lon, lat, lon)
    out = truth.copy(deep=True)
    for name, da in truth.data_vars.items():
        if grid.lat not in da.dims or grid.lon not in da.dims or not np.issubdtype(da.dtype, np.floating):
            continue
        rest = [d for d in da.dims if d not in (grid.lat, grid.lon)]
        arr = np.asarray(da.transpose(*rest, grid.lat, grid.lon).values, dtype=np.float64)
        flat = arr.reshape(-1, lat.size * lon.size)
        moved = np.asarray(op.matrix @ flat.T).T.reshape(arr.shape)
        new = da.transpose(*rest, grid.lat, grid.lon).copy(data=moved.astype(da.dtype))
        out[name] = new.transpose(*da.dims)
    line = (f"displaced_background(displacement_km={displacement_km:g}, scale_km={scale_km:g}, seed={seed}): "
            "the truth moved by a smooth random non-divergent displacement field (xphyda.demo)")
    out.attrs["history"] = line + (f"\n{truth.attrs['history']}" if truth.attrs.get("history") else "")
    return out


# --------------------------------------------------------------------------- scores
def _state(ds: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
    """The analysed state variables only (drops the per-observation diagnostics)."""
    return ds[[v for v in truth.data_vars if v in ds.data_vars]]


def demo_scores(analyses: Mapping[str, xr.Dataset], truth: xr.Dataset) -> pd.DataFrame:
    """Scores of several states against the truth, one column per method.

    Rows are ``(score, variable, level)``: the area-weighted RMSE (of the
    ensemble mean for an ensemble), and for ensembles the fair CRPS, the RMS
    ensemble spread and the spread-skill ratio; plus the hydrostatic residual
    ratio (RMS residual of the state over that of the truth, per layer; pooled
    over the members of an ensemble).  Missing scores are NaN.

    Parameters
    ----------
    analyses : mapping of str to xarray.Dataset
        Method name (column) to its state; an ensemble has a ``member`` dimension.
    truth : xarray.Dataset

    Returns
    -------
    pandas.DataFrame
        Index ``(score, variable, level, units)``, one column per method, in the given order.

    Examples
    --------
    >>> import xphyda
    >>> truth = xphyda.tutorial.open_dataset("era5-z-t")
    >>> table = demo_scores({"warm": truth.assign(t=truth.t + 1.0)}, truth)
    >>> round(float(table.loc[("RMSE", "t", "500 hPa", "K"), "warm"]), 6)
    1.0
    """
    import pandas as pd

    from . import metrics
    from .metrics import member_dim_of

    rows = []
    for method, ds in analyses.items():
        state = _state(ds, truth)
        table = metrics.score_table({method: state}, truth, metrics=["rmse", "crps", "spread_skill_ratio"],
                                    residuals=["hydrostatic"])
        for r in table.itertuples(index=False):
            name = {"rmse": "RMSE", "crps": "CRPS", "spread_skill_ratio": "spread/skill",
                    "residual_ratio": "residual ratio", "residual_ratio_mean": "residual ratio (mean)"}[r.metric]
            where = r.layer if r.layer else (f"{r.level:g} hPa" if np.isfinite(r.level) else "")
            variable = "hydrostatic" if r.metric.startswith("residual_ratio") else r.variable
            rows.append((name, variable, where, r.units, method, r.value))
        if "member" in state.dims:
            member = member_dim_of(state, None, role="analysis")
            for var in state.data_vars:
                spread = state[var].std(member, ddof=1)
                rms = metrics.rmse(spread, xr.zeros_like(spread), dim=[d for d in spread.dims if d != "level"])
                for lev in np.atleast_1d(rms["level"].values) if "level" in rms.dims else [None]:
                    val = rms.sel(level=lev) if lev is not None else rms
                    rows.append(("spread", var, f"{lev:g} hPa" if lev is not None else "",
                                 state[var].attrs.get("units", ""), method, float(val)))
    df = pd.DataFrame(rows, columns=["score", "variable", "level", "units", "method", "value"])
    order = {"RMSE": 0, "CRPS": 1, "spread": 2, "spread/skill": 3, "residual ratio": 4, "residual ratio (mean)": 5}
    df["units"] = df["units"].str.replace("**", "", regex=False)
    wide = df.set_index(["score", "variable", "level", "units", "method"])["value"].unstack("method")
    wide = wide.reindex(columns=list(analyses))
    keys = sorted(wide.index, key=lambda k: (order.get(k[0], 9), k[1], k[2]))
    wide = wide.loc[keys]
    wide.columns.name = None
    return wide


def format_scores(table) -> str:
    """The score table as aligned text (``-`` where a score does not apply).

    Every column is as wide as its longest entry (label, header or number) plus a
    gap, so a long label such as ``residual ratio (mean)`` never runs into the
    next column.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`demo_scores`: rows indexed by (score, variable, level, units),
        one column per method.

    Returns
    -------
    str
        A header line and one line per row; labels left-aligned, numbers right-aligned.

    Examples
    --------
    >>> import xphyda
    >>> truth = xphyda.tutorial.open_dataset("era5-z-t")
    >>> text = format_scores(demo_scores({"truth": truth}, truth))
    >>> text.splitlines()[0].split()
    ['score', 'variable', 'level', 'units', 'truth']
    """
    head = ["score", "variable", "level", "units"]
    keys = [tuple(map(str, key)) for key in table.index]
    least = (14, 11, 12, 10)  # the widths of the usual labels, so that the usual table keeps its layout
    widths = [max([n, len(h)] + [len(k[i]) for k in keys]) + 1 for i, (h, n) in enumerate(zip(head, least))]
    cols = [str(c) for c in table.columns]
    cells = [[("-" if not np.isfinite(v) else f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}") for v in row]
             for row in table.to_numpy(dtype=float)]
    cw = [max([10, len(c)] + [len(r[j]) for r in cells]) + 1 for j, c in enumerate(cols)]
    lines = ["".join(h.ljust(w) for h, w in zip(head, widths)) + "".join(c.rjust(w) for c, w in zip(cols, cw))]
    for key, row in zip(keys, cells):
        labels = "".join(k.ljust(w) for k, w in zip(key, widths))
        lines.append(labels + "".join(c.rjust(w) for c, w in zip(row, cw)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the figure
def _greenwich(da: xr.DataArray) -> xr.DataArray:
    lon = da["longitude"]
    return da.assign_coords(longitude=((lon + 180.0) % 360.0) - 180.0).sortby("longitude")


def _figure(path: Path, truth, obs, background, analyses: dict, notice: str | None, *, level=500, dpi=80):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI window, any backend

    def height(ds):
        z = ds["z"].sel(level=level)
        z = z.isel(time=0) if "time" in z.dims else z
        return _greenwich(z / G0)

    def rms(err):
        w = np.cos(np.deg2rad(err["latitude"]))
        return float(np.sqrt((err**2).weighted(w).mean()))

    zt = height(truth)
    fields = {"background": height(background)}
    for name, ds in analyses.items():
        z = height(ds)
        fields[name] = z.mean("member") if "member" in z.dims else z
    best = "PhyDA" if "PhyDA" in analyses else "OI"
    vmin, vmax = float(zt.quantile(0.01)), float(zt.quantile(0.99))
    fig = Figure(figsize=(16, 5.4), layout="constrained")
    axes = fig.subplots(2, 4, sharex=True, sharey=True)
    kw = {"cmap": "viridis", "vmin": vmin, "vmax": vmax, "shading": "auto", "rasterized": True}
    panels = [
        (axes[0, 0], zt, f"truth: ERA5 {level} hPa height", kw),
        (axes[0, 2], fields["background"], "background (displaced truth)", kw),
        (axes[0, 3], fields[best], f"{best} analysis" + (" (ensemble mean)" if best == "PhyDA" else ""), kw),
    ]
    for ax, da, title, k in panels:
        m = ax.pcolormesh(da["longitude"], da["latitude"], da, **k)
        ax.set_title(title, fontsize=10)
    fig.colorbar(m, ax=axes[0, :], label="geopotential height (m)", shrink=0.9, pad=0.01)
    ax = axes[0, 1]
    zo = obs["z"].sel(level=level)
    zo = zo.isel(time=0) if "time" in zo.dims else zo
    lon_o = ((obs["lon"].values + 180.0) % 360.0) - 180.0
    flags = analyses[best].get("z_flag")
    rejected = np.zeros(zo.size, bool)
    if flags is not None:
        f = flags.sel(level=level)
        rejected = np.asarray((f.isel(time=0) if "time" in f.dims else f).values != 0)
    ax.scatter(lon_o[~rejected], obs["lat"].values[~rejected], c=zo.values[~rejected] / G0, s=7, cmap="viridis",
               vmin=vmin, vmax=vmax, rasterized=True)
    if rejected.any():
        ax.scatter(lon_o[rejected], obs["lat"].values[rejected], marker="x", c="red", s=20, label="not used")
        ax.legend(loc="lower left", fontsize=7)
    ax.set_title(f"{int(np.isfinite(zo.values).sum())} stations (noisy observations)", fontsize=10)
    ax.set_facecolor("0.92")
    errors = [(f"{name}{' mean' if name == 'PhyDA' else ''} - truth", fields[name] - zt)
              for name in ["background", "OI", "PhyDA"] if name in fields]
    # colour range of the background's errors: an analysis worse than the background saturates
    lim = max(float(abs(e).quantile(0.995)) for _, e in errors[:2])
    if "PhyDA" not in fields:  # without PhyDA, show where OI changed the background
        errors.append(("OI increment (analysis - background)", fields["OI"] - fields["background"]))
    ekw = {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim, "shading": "auto", "rasterized": True}
    for ax, (title, err) in zip(axes[1], errors):
        m = ax.pcolormesh(err["longitude"], err["latitude"], err, **ekw)
        ax.set_title(f"{title} (RMS {rms(err):.1f} m)", fontsize=10)
    fig.colorbar(m, ax=axes[1, :3], label="height difference (m)", location="bottom", shrink=0.5, aspect=40)
    ax = axes[1, 3]
    if "PhyDA" in analyses and "member" in analyses["PhyDA"].dims:
        z = height(analyses["PhyDA"])
        spread = z.std("member", ddof=1)
        m = ax.pcolormesh(spread["longitude"], spread["latitude"], spread, cmap="magma_r", shading="auto",
                          vmin=0, vmax=lim, rasterized=True)
        ax.set_title(f"PhyDA ensemble spread ({z.sizes['member']} members)", fontsize=10)
        fig.colorbar(m, ax=ax, label="spread (m)", location="bottom", shrink=0.8, aspect=20)
    else:
        ax.set_facecolor("0.95")
        ax.text(0, 0, "\n".join(_wrap(notice or "PhyDA not run", 38)), ha="center", va="center", fontsize=9)
        ax.set_title("PhyDA", fontsize=10)
    for ax in axes.flat:
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_xticks(range(-180, 181, 90))
        ax.set_yticks(range(-90, 91, 45))
        ax.tick_params(labelsize=8)
        ax.set_aspect("equal")
    when = np.datetime_as_string(truth["time"].values[0], unit="h") if "time" in truth.dims else ""
    fig.suptitle(f"xphyda demo: {level} hPa geopotential height, ERA5 {when} UTC", fontsize=12)
    fig.text(0.5, -0.01, truth.attrs.get("attribution", "ERA5, Copernicus Climate Change Service"),
             ha="center", va="top", fontsize=7, wrap=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


# --------------------------------------------------------------------------- the demo
def _verdict(scores, card: dict | None) -> list[str]:
    """The table in words: each analysis' RMSE relative to the background's, and a caveat when it is worse."""
    rmse = scores.xs("RMSE", level="score")
    change = {m: 100.0 * (float((rmse[m] / rmse["background"]).mean()) - 1.0) for m in rmse.columns if m != "background"}
    lines = ["RMSE relative to the background, mean over variables and levels: "
             + ", ".join(f"{m} {v:+.0f} %" for m, v in change.items())]
    if card is not None and change.get("PhyDA", -1.0) > 0:
        training = card.get("training") or {}
        done, lead = training.get("steps_done"), training.get("lead_hours")
        total = total_steps(card)  # a fine-tune: all the steps behind its starting model, then its own
        steps = (f"{total - done} + {done} fine-tuning" if training.get("init_from") and total is not None
                 else done if done is not None else "an unknown number of")
        lines.append(
            f"PhyDA is worse than the background here. The model {card.get('name', '')!r} "
            f"({card.get('description', 'no description')}; {steps} "
            f"training steps) learned to correct backgrounds like its training ones"
            f"{f' (the state {lead} h earlier in its corpus)' if lead else ''}; this background (a displaced truth, "
            "with the model's other channels filled by its prior) and the real climate differ from them. Its "
            f"held-out scores on its own data are in its card (`phyda models {card.get('name', 'NAME')}`).")
    return [*lines, ""]


def _bundled_model_notice(model) -> tuple[object | None, str | None]:
    """Resolve the model; for the default model, a missing one is a notice, not an error."""
    from .models import DEFAULT_MODEL, find

    if model is not None:
        return find(model), None  # a model the user named must exist: ModelError otherwise
    try:
        return find(None), None
    except ModelError:
        return None, (
            f"The bundled PhyDA model {DEFAULT_MODEL!r} is not installed on this machine, so only the "
            "optimal-interpolation (OI) part of the demo runs. Train it with "
            f"`phyda train --preset {DEFAULT_MODEL} --data CORPUS`, or run the demo with your own model: "
            "`phyda demo --model PATH`."
        )


def run_demo(
    *,
    output_dir: str | os.PathLike = "phyda-demo",
    model: str | os.PathLike | None = None,
    phyda: bool = True,
    n_stations: int = DEMO_DEFAULTS["n_stations"],
    members: int = DEMO_DEFAULTS["members"],
    steps: int = DEMO_DEFAULTS["steps"],
    guidance: str = DEMO_DEFAULTS["guidance"],
    seed: int = DEMO_DEFAULTS["seed"],
    displacement_km: float = DEMO_DEFAULTS["displacement_km"],
    device: str = "auto",
    progress: bool = True,
    echo: Callable[[str], object] = print,
) -> dict:
    """Run the demo: simulate observations of real ERA5, assimilate them with PhyDA and OI, score, plot.

    Parameters
    ----------
    output_dir : str or path
        Folder for ``demo.png`` and ``scores.csv`` (created if needed; files of
        these names in it are replaced).
    model : str or path, optional
        PhyDA model name or folder; default: the bundled model.  When the
        bundled model is not installed the demo prints a notice and runs OI
        only; a model given here must exist.
    phyda : bool
        Run the PhyDA part (``False``: OI only).
    n_stations : int
        Number of simulated stations (uniform on the sphere).
    members, steps, guidance
        PhyDA ensemble size, sampling steps and observation guidance
        (see :func:`xphyda.assimilate.assimilate`).
    seed : int
        Seed of the stations, their noise, the background and the ensemble.
    displacement_km : float
        RMS displacement of the background (see :func:`displaced_background`).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the PhyDA model.
    progress : bool
        Progress bar while sampling, and timings.
    echo : callable
        Where the report goes (default :func:`print`).

    Returns
    -------
    dict
        ``figure`` and ``table`` (paths), ``scores`` (DataFrame, see
        :func:`demo_scores`), ``analyses`` (dict of Datasets), ``notice``
        (why PhyDA did not run, or ``None``), ``seconds`` (wall time per stage).

    Raises
    ------
    xphyda.ModelError
        If ``model`` is given and cannot be found or used.
    xphyda.PhydaError
        For a non-positive number of stations, members or steps.

    Examples
    --------
    >>> out = run_demo(output_dir="phyda-demo", phyda=False)  # doctest: +SKIP
    >>> list(out["scores"].columns)  # doctest: +SKIP
    ['background', 'OI']
    """
    from . import __version__
    from .obs import simulate
    from .tutorial import open_dataset

    for name, value in (("n_stations", n_stations), ("members", members), ("steps", steps)):
        if int(value) != value or value < 1:
            raise PhydaError(f"{name} must be a positive integer; got {value!r}")
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}

    def stage(name, t0):
        seconds[name] = time.perf_counter() - t0
        if progress:
            echo(f"  ... {seconds[name]:.1f} s")

    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path, notice = (None, "PhyDA skipped (OI only was asked for).") if not phyda else _bundled_model_notice(model)

    t0 = time.perf_counter()
    truth = open_dataset("era5-z-t")
    echo(f"xphyda {__version__} demo")
    echo(f"truth: {truth.attrs['title']}")
    echo(f"       {truth.attrs.get('attribution', '')}")
    obs = simulate(truth, n_stations=n_stations, seed=seed)
    echo(f"observations: {n_stations} stations drawn uniformly on the sphere (seed {seed}), t and z at both "
         "levels, with Gaussian noise of 1 K and 100 m2 s-2 (about 10 m of height)")
    background = displaced_background(truth, displacement_km=displacement_km, scale_km=DEMO_DEFAULTS["scale_km"],
                                      seed=seed)
    echo(f"background: the truth displaced by a smooth random non-divergent field (RMS {displacement_km:g} km, "
         f"scale ~{DEMO_DEFAULTS['scale_km']:g} km, same at both levels), standing in for the position errors "
         "of a 24-hour forecast; it keeps the truth's hydrostatic balance")
    stage("data", t0)

    analyses: dict[str, xr.Dataset] = {"background": background}
    card = None
    echo("OI: optimal interpolation (Gaspari-Cohn correlations, background errors estimated from the innovations)")
    t0 = time.perf_counter()
    analyses["OI"] = background.phyda.assimilate(obs, method="oi")
    stage("OI", t0)

    if notice:
        echo("")
        echo("NOTICE: " + notice)
        echo("")
    else:
        from .models import read_card

        card = read_card(path)
        echo(f"PhyDA: model {path.name!r} ({card.get('description', 'no description')}); {members} members, "
             f"{steps} steps, guidance {guidance!r}. The sample is a partial background: the model's other "
             "channels come from its prior, and its increments are added at 1 degree")
        t0 = time.perf_counter()
        analyses["PhyDA"] = background.phyda.assimilate(obs, method="phyda", model=path, members=members,
                                                        steps=steps, seed=seed, guidance=guidance, device=device,
                                                        progress=progress)
        stage("PhyDA", t0)

    t0 = time.perf_counter()
    scores = demo_scores({k: v for k, v in analyses.items()}, truth)
    table_path = out_dir / "scores.csv"
    scores.to_csv(table_path)
    echo("")
    echo("Scores against the ERA5 truth, area-weighted over the globe"
         + ("; PhyDA: RMSE of the ensemble mean, fair CRPS, RMS spread, spread/skill ratio" if "PhyDA" in analyses
            else "") + "; residual ratio: RMS hydrostatic residual of the state over that of the truth (1 = as "
         "balanced as the truth)")
    echo(format_scores(scores))
    echo("")
    for line in _verdict(scores, card if not notice else None):
        echo(line)
    figure = out_dir / "demo.png"
    _figure(figure, truth, obs, background, {k: v for k, v in analyses.items() if k != "background"}, notice)
    stage("scores and figure", t0)
    seconds["total"] = time.perf_counter() - t_start
    echo(f"wrote {figure} and {table_path} ({seconds['total']:.0f} s in all)")
    return {"figure": figure, "table": table_path, "scores": scores, "analyses": analyses, "notice": notice,
            "seconds": seconds}
