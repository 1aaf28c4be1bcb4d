"""The xarray front of data assimilation: ``assimilate(background, obs, method=...)``.

It builds the observation problem (``y``, ``H``, ``R`` and the first quality
flags, :func:`xphyda.obs.problem.build_problem`), hands it to an analysis
method, and returns a CF Dataset: the analysis on the background's grid with
the background's variable names, units, dtypes and attributes, a new
``history`` line, and per-observation diagnostics (flag, ``O - B``, ``O - A``,
error used; :mod:`xphyda.obs.diagnostics`).

Methods are rows of :data:`METHODS`: a function taking the problem and its
options and returning the SI analysis of each observed variable plus a note for
the history line.  ``"phyda"`` (the default) is the diffusion prior with
observation guidance (:func:`xphyda.diffusion.assimilate_phyda`); ``"oi"`` is
optimal interpolation / 3D-Var (:mod:`xphyda.baselines.oi`), or with
``members=N`` its perturbed-observation ensemble.

Examples
--------
>>> import xphyda
>>> from xphyda.obs import simulate
>>> truth = xphyda.tutorial.open_dataset("era5-z-t")
>>> background = truth.copy(deep=True)
>>> background["t"] = background["t"] + 1.0  # a warm bias
>>> obs = simulate(truth, n_stations=300, seed=1)
>>> out = assimilate(background, obs, method="oi", background_error={"t": 1.0, "z": 50.0})
>>> err_b = float(abs(background.t - truth.t).mean())
>>> err_a = float(abs(out.t - truth.t).mean())
>>> err_a < err_b
True
>>> small = background.coarsen(latitude=6, longitude=6, boundary="trim").mean(keep_attrs=True)  # 30 x 60
>>> ens = assimilate(small, obs, method="oi", members=4, seed=0)  # an OI ensemble
>>> ens["t"].dims, ens.sizes["member"]
(('member', 'time', 'level', 'latitude', 'longitude'), 4)
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import xarray as xr

from .errors import ObservationError, PhydaError
from .obs.diagnostics import diagnostics, model_equivalent
from .obs.problem import ObsProblem, Target, build_problem
from .obs.qc import FLAGS, background_check
from .obs.uncertainty import DEFAULT_BACKGROUND_ERROR, error_to_si

__all__ = ["METHODS", "assimilate"]


@dataclass(frozen=True)
class Method:
    """An analysis method: ``run(problem, qc=..., **options) -> ({target: SI analysis}, note)``."""

    run: Callable[..., tuple[dict[str, np.ndarray], str]]
    options: tuple[str, ...]
    description: str


# --------------------------------------------------------------------------- OI
def _per_target(value, name: str):
    return value.get(name) if isinstance(value, Mapping) else value


def _metres(value, name: str) -> float:
    from .units import registry

    if isinstance(value, str) or hasattr(value, "magnitude"):
        try:
            q = registry().Quantity(value) if isinstance(value, str) else value
            return float(q.m_as("m"))
        except Exception:  # noqa: BLE001 - pint raises several types for bad strings
            raise PhydaError(
                f"length_scale {value!r} for {name!r} is not a distance. Fix: give metres or a string "
                "such as '500 km'"
            ) from None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise PhydaError(f"length_scale for {name!r} must be a distance in metres; got {value!r}. "
                         "Fix: e.g. length_scale=500e3 or '500 km'") from None
    if not np.isfinite(out) or out <= 0:
        raise PhydaError(f"length_scale for {name!r} must be positive; got {value!r}. Fix: e.g. '500 km'")
    return out


def _outside_frame() -> int:
    """``stacklevel`` for :func:`warnings.warn` that names the first caller outside this package."""
    import inspect
    from pathlib import Path

    package = str(Path(__file__).resolve().parent)
    frame, level = inspect.currentframe(), 0
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return max(level, 1)


def _sigma_b(
    target: Target, given, d: np.ndarray, cand: np.ndarray, wlev: np.ndarray, *, warn: bool = True
) -> tuple[np.ndarray, str]:
    """Background-error standard deviation per level (SI) and how it was obtained.

    ``warn``: say so when the innovations cannot resolve an estimate (for
    an analysis; a quality check merely gets more lenient).
    """
    from .baselines.oi import estimate_background_error, innovation_spread, unresolved

    nlev = target.nlev
    if given is not None and not (isinstance(given, str) and given == "estimate"):
        values = np.atleast_1d(np.asarray(given, dtype=object))
        if values.size not in (1, nlev):
            raise ObservationError(
                f"background_error for {target.name!r} has {values.size} values. Fix: give one, or one "
                f"per level ({nlev})"
            )
        sigma = np.array(
            [error_to_si(v, target.units, target.kind, name=target.name) for v in values], dtype=float
        )
        if np.any(~np.isfinite(sigma)) or np.any(sigma <= 0):
            raise ObservationError(f"background_error for {target.name!r} must be positive; got {given!r}. "
                                   f"Fix: a standard deviation above 0 in {target.units!r}")
        return np.broadcast_to(sigma, (nlev,)).copy(), "given"
    level = np.argmax(wlev, axis=1)
    pooled = estimate_background_error(d[cand], target.sigma_o[cand])
    sigma, how, unresolved_levels = np.empty(nlev), [], []
    for k in range(nlev):
        sel = cand & (level == k)
        est = estimate_background_error(d[sel], target.sigma_o[sel])
        if est is None:
            sel, est = cand, pooled
        if est is not None and unresolved(est, d[sel]):
            so = float(np.sqrt(np.median(target.sigma_o[sel] ** 2)))
            values = target.from_si(np.array([est, innovation_spread(d[sel]), so]), difference=True)
            unresolved_levels.append((k, *values, int(sel.sum())))
        if est is None:
            if target.kind is None:
                raise ObservationError(
                    f"too few observations of {target.name!r} to estimate its background error, and "
                    "no default for "
                    f"its units. Fix: pass background_error={{{target.name!r}: value}} in {target.units!r}"
                )
            est, tag = DEFAULT_BACKGROUND_ERROR[target.kind], "default"
        else:
            tag = "estimated from innovations"
        sigma[k] = est
        how.append(tag)
    if unresolved_levels and warn:
        def at(k):
            return "" if target.levels_pa is None else f"at {target.levels_pa[k] / 100:g} hPa: "

        found = "; ".join(
            f"{at(k)}estimate {e:.3g}, innovation spread {sp:.3g}, observation error {so:.3g} ({n} observations)"
            for k, e, sp, so, n in unresolved_levels
        )
        warnings.warn(
            f"the background error of {target.name!r} cannot be estimated from the innovations, which the "
            f"observation errors dominate (in {target.units}: {found}): the estimate is within a standard error of zero "
            f"and may be far too large. Fix: pass background_error={{{target.name!r}: ...}} (one value, or one per "
            f"level, in {target.units!r}; `phyda assimilate --background-error {target.name}=VALUE`) from past "
            "background errors",
            stacklevel=_outside_frame(),
        )
    if unresolved_levels:
        how.append("unresolved by the innovations")
    return sigma, "/".join(sorted(set(how)))


def _run_oi(
    problem: ObsProblem,
    *,
    qc,
    length_scale=None,
    background_error=None,
    correlation=None,
    vertical_length_scale=None,
    solver=None,
    members=None,
    seed=None,
) -> tuple[dict[str, np.ndarray], str]:
    """OI of every target; with ``members > 1`` each analysis has a leading member axis."""
    from .baselines.oi import check_members, default_length_scale, oi_analysis

    members = check_members(members)
    ensemble = members is not None and members > 1
    seed = 0 if seed is None else seed
    kind = correlation or "gaspari-cohn"
    grid = problem.grid
    analyses, notes = {}, []
    for target in problem.targets.values():
        length = _metres(
            _per_target(length_scale, target.name) or default_length_scale(target.kind), target.name
        )
        d = target.y - model_equivalent(target, target.background)
        cand = target.flags == FLAGS["used"]
        wlev = target.level_weights()
        sigma_b, how = _sigma_b(target, _per_target(background_error, target.name), d, cand, wlev)
        if qc is not None:
            reject = cand & background_check(np.where(cand, d, 0.0), target.sigma_o, wlev @ sigma_b, k=qc)
            target.flags[reject] = FLAGS["rejected_by_background_check"]
        xa = np.repeat(target.background[None], members if ensemble else 1, axis=0)
        log_p = None if target.levels_pa is None else np.log(target.levels_pa)
        for t in range(target.background.shape[0]):
            rows = np.flatnonzero((target.time_index == t) & (target.flags == FLAGS["used"]))
            if rows.size == 0 and not ensemble:  # without observations an ensemble still has spread
                continue
            res = oi_analysis(
                target.background[t],
                target.H[rows],
                target.y[rows],
                target.sigma_o[rows],
                lat=grid.lat_values,
                lon=grid.lon_values,
                sigma_b=sigma_b,
                length_scale=length,
                kind=kind,
                log_p=log_p,
                vertical_length_scale=vertical_length_scale,
                members=members if ensemble else None,
                seed=(seed, zlib.crc32(target.name.encode()), t),  # own draws per variable and time
                solver=solver or "auto",
            )
            xa[:, t] = res.analysis
        analyses[target.name] = xa if ensemble else xa[0]
        sb = ", ".join(f"{v:.3g}" for v in target.from_si(sigma_b, difference=True))
        notes.append(f"{target.name}: sigma_b {sb} {target.units} ({how}), length scale {length / 1e3:g} km")
    ens = f"perturbed-observation ensemble of {members} members, seed {seed}; " if ensemble else ""
    return analyses, f"{ens}{kind} correlation; " + "; ".join(notes)


NON_NEGATIVE = ("specific_humidity", "relative_humidity")
"""Kinds of quantity that are never negative: analysed values below 0 are set to 0, and counted in ``history``."""


def _floor_note(counts: dict[str, list[int]]) -> str:
    """``"; values below 0 set to 0 (a quantity that is never negative): q 12.5 % of values"`` from
    ``{name: [values set to 0, values analysed]}`` (empty if none were)."""
    share = lambda k, n: f"{100 * k / n:.1f}" if 100 * k / n >= 0.1 else "<0.1"
    parts = [f"{name} {share(k, n)} % of values" for name, (k, n) in sorted(counts.items()) if k]
    return f"; values below 0 set to 0 (a quantity that is never negative): {', '.join(parts)}" if parts else ""


def _stochastic(method: str, members=None) -> bool:
    """Whether ``method`` draws random numbers (and takes a ``seed``): PhyDA, and OI with ``members > 1``."""
    return method == "phyda" or (method == "oi" and isinstance(members, (int, np.integer)) and members > 1)


METHODS: dict[str, Method] = {
    "oi": Method(
        _run_oi,
        (
            "length_scale",
            "background_error",
            "correlation",
            "vertical_length_scale",
            "solver",
            "members",
            "seed",
        ),
        "optimal interpolation / 3D-Var (xphyda.baselines.oi)",
    ),
    # the diffusion model works on the whole state, not per observed variable: see xphyda.diffusion
    "phyda": Method(
        None,
        ("model", "members", "steps", "seed", "device", "guidance", "progress", "balance", "calibrate",
         "antithetic"),
        "PhyDA diffusion prior with observation guidance (xphyda.diffusion)",
    ),
}
"""Analysis methods by name."""


# --------------------------------------------------------------------------- output
def _analysis_dataset(
    background: xr.Dataset, problem: ObsProblem, analyses: dict[str, np.ndarray], members: int = 1
) -> xr.Dataset:
    """The background with its analysed variables replaced; ``members > 1``: analyses with a leading
    member axis, as a ``member`` dimension (first) as :func:`xphyda.diffusion.assimilate_phyda` gives."""
    out = background.copy(deep=False)
    lead = ("member",) if members > 1 else ()
    for name, xa in analyses.items():
        target = problem.targets[name]
        da = background[name]
        shaped = da.transpose(*target.dims)
        values = target.from_si(xa).reshape(xa.shape[: len(lead)] + shaped.shape).astype(da.dtype, copy=False)
        if lead:
            new = xr.DataArray(values, dims=lead + shaped.dims, coords=shaped.coords, name=name)
        else:
            new = shaped.copy(data=values)
        new = new.transpose(*lead, *da.dims)
        new.attrs = dict(da.attrs)
        new.encoding = dict(da.encoding)
        out[name] = new
    if lead:  # variables not analysed are carried unchanged in every member (zero spread)
        grid = problem.grid
        for name, da in background.data_vars.items():
            if name not in analyses and grid.lat in da.dims and grid.lon in da.dims:
                out[name] = da.expand_dims(member=members)
        out = out.assign_coords(member=("member", np.arange(members), {"long_name": "ensemble member"}))
    return out


def _history(background: xr.Dataset, problem: ObsProblem, method: str, note: str) -> str:
    from . import __version__

    counts = ", ".join(
        f"{problem.count(f)} {f.replace('_', ' ')}" for f in FLAGS if f != "used" and problem.count(f)
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    line = (
        f"{stamp}: xphyda {__version__} assimilate(method={method!r}): {METHODS[method].description}; "
        f"{problem.count('used')} of {problem.count()} observations used ({problem.kind})"
        + (f", not used: {counts}" if counts else "")
        + f"; {note}"
    )
    old = background.attrs.get("history")
    return f"{line}\n{old}" if old else line


def assimilate(
    background: xr.Dataset,
    obs,
    *,
    method: str = "phyda",
    variables=None,
    obs_error=None,
    qc: float | None = 5.0,
    time_window=None,
    regrid="auto",
    min_coverage: float = 0.5,
    length_scale=None,
    background_error=None,
    correlation: str | None = None,
    vertical_length_scale: float | None = None,
    solver: str | None = None,
    model=None,
    members: int | None = None,
    steps: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    guidance: str | None = None,
    balance=None,
    calibrate=None,
    antithetic: bool | None = None,
    progress: bool | None = None,
    scheduler=None,
    **names,
) -> xr.Dataset:
    """Analyse ``background`` with observations ``obs``; return the analysis and per-observation diagnostics.

    Parameters
    ----------
    background : xarray.Dataset
        The background state on a lat-lon grid (optionally pressure levels and
        times; one member).
    obs : xarray.Dataset or xarray.DataArray
        Point, gridded, or on-the-grid observations (:mod:`xphyda.obs.dataset`),
        variables named like the background's, NaN where not observed.
    method : {"phyda", "oi"}
        Analysis method (:data:`METHODS`): the PhyDA diffusion prior
        (:func:`xphyda.diffusion.assimilate_phyda`; the default), or optimal
        interpolation, the classical baseline.
    variables : list of str, optional
        Observation variables to use (default: all).
    obs_error : number, str, pint.Quantity or dict, optional
        Observation-error standard deviations in each variable's units, e.g.
        ``{"t": 0.5, "z": 20.0}``; otherwise CF ancillary ``standard_error``
        variables, otherwise :func:`xphyda.obs.uncertainty.default_obs_error`
        (one value per kind of quantity; for specific humidity, per pressure).
    qc : float or None
        Background check: reject where ``|O - B| > qc * sqrt(sigma_o^2 + sigma_b^2)``;
        ``None`` turns it off (missing values, points outside the grid or the
        time window and duplicates are always flagged).
    time_window : str or timedelta, optional
        Largest distance of an observation from its background time (default:
        half the background's time step; any for a single time).
    regrid : {"auto", "bilinear", "conservative"}, callable or None
        How gridded observations on another grid are used: ``"auto"`` remaps
        products finer than the analysis grid conservatively and observes
        coarser ones at their own grid points through ``H``; ``"bilinear"`` or
        ``"conservative"`` always regrid (with xESMF when importable,
        :mod:`xphyda.obs.regridding` otherwise); a regridder object (such as an
        ``xesmf.Regridder``) is applied as is; ``None`` never regrids.
    min_coverage : float
        Fraction of a regridded value that must come from observed points.
    length_scale : float, str or dict, optional
        OI: Daley length scale of the horizontal correlation, metres or
        ``"500 km"``, per variable as a dict (default
        :func:`xphyda.baselines.oi.default_length_scale`: 800 km for
        geopotential and pressure, 500 km otherwise, calibrated on ERA5).
    background_error : float, str, sequence or dict, optional
        OI: background-error standard deviation in the background variable's
        units, one value or one per level, per variable as a dict.  Default:
        estimated from the innovations (:func:`xphyda.baselines.oi.estimate_background_error`),
        per level, falling back to :data:`xphyda.obs.uncertainty.DEFAULT_BACKGROUND_ERROR`.
    correlation : {"gaspari-cohn", "soar", "gaussian"}, optional
        OI: horizontal correlation function (default ``"gaspari-cohn"``).
    vertical_length_scale : float, optional
        OI: Gaspari-Cohn length scale in ``ln p`` between levels (default: levels independent).
    solver : {"auto", "cholesky", "cg"}, optional
        OI: exact (Cholesky) up to 2,000 observations per variable and time, conjugate gradients above.
    model : str or path, optional
        PhyDA: model name or folder (default: the bundled model, :data:`xphyda.models.DEFAULT_MODEL`).
    members : int, optional
        PhyDA: ensemble size (default 8); a ``member`` dimension is added when above 1.
        OI: ``None`` or 1 (default) is the deterministic analysis; above 1, a
        perturbed-observation OI ensemble (:func:`xphyda.baselines.oi.oi_analysis`:
        members sample the analysis error of OI's own ``B`` and ``R``), with the
        same ``member`` dimension, on grids of at most
        :data:`xphyda.baselines.oi.ENSEMBLE_MAX_POINTS` points.
    steps : int, optional
        PhyDA: sampling steps (default 16; network evaluations per member).
    seed : int, optional
        PhyDA and an OI ensemble (default 0): the draw of member ``k`` depends
        only on ``(seed, k)``, whatever the ensemble size.  PhyDA's steps over
        the whole ensemble (``balance`` weighted by the ensemble's spread,
        ``calibrate``) then use every member, so with them (the default) a
        member also depends on the ensemble size; ``balance=(), calibrate=False``
        make it depend on ``(seed, k)`` alone.
    device : str, optional
        PhyDA: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    guidance : {"mmps", "diag", "diag-fwd", "dps"}, optional
        PhyDA: observation guidance (:mod:`xphyda.model.guidance`; default
        ``"diag-fwd"``, chosen by measurement: with the trained network it is
        both faster and more accurate than ``"mmps"``, see ``docs/benchmarks.md``).
        ``"mmps"`` is exact for a Gaussian prior but its conjugate gradients run
        through the network's Jacobian, which is not symmetric: with the bundled
        model its analyses are tens of times worse than ``"diag-fwd"``'s.
    balance : "auto", sequence of str, or (), optional
        PhyDA: laws each member is brought back to the truth's level of balance
        afterwards (:mod:`xphyda.model.balance`): the smallest change of ``z``
        and ``t`` (``"hydrostatic"``) or of omega and the divergent wind
        (``"continuity"``) that does it, column by column, weighted by the
        ensemble's spread.  Default ``"auto"``: when the model carries balance
        statistics (the bundled one does), both laws for an ensemble and
        ``("hydrostatic",)`` for one member; else none.  ``()`` turns it off.
        Measured effects are in ``docs/benchmarks.md``.
    calibrate : "auto", bool, optional
        PhyDA ensembles: scale each member's departure from the ensemble mean by
        the model's per-channel spread factor (:mod:`xphyda.model.spread`,
        measured on validation cases; the mean is unchanged).  Default
        ``"auto"``: when the model carries the factors (the bundled one does).
    antithetic : bool, optional
        PhyDA ensembles: draw the members in mirror pairs (member ``2j + 1``
        starts from the negated noise of member ``2j``; default ``True``).  Each
        member is a draw of the same sampler, but the ensemble mean carries much
        less sampling noise (measured with the bundled model: RMSE of the
        8-member mean 6 % lower on average, 32 % for surface pressure;
        ``docs/benchmarks.md``).  ``False`` gives independent members.  With an
        odd number of members the last one is unpaired.
    progress : bool, optional
        One analysis time, PhyDA: a progress bar over the sampling steps
        (default off: the bundled model takes seconds).  Several times: a
        progress bar over the analysis times (default on).
    scheduler : optional
        With several times (see :mod:`xphyda.parallel`): how the times run.
        ``None``: dask's current scheduler when the data are dask-backed, a plain
        loop otherwise.  Time ``i`` is seeded with ``time_seed(seed, i)``, so
        every scheduler gives the serial answer.
    **names
        PhyDA: which background variable serves a model variable, by key of
        :data:`xphyda.grid.VARIABLES`, e.g. ``t="air"`` when the names and CF
        attributes do not tell (two variables with the same ``standard_name``).
        OI matches observations to background variables by name and takes none.

    Returns
    -------
    xarray.Dataset
        The background's variables (observed ones analysed), its coordinates
        and attributes with a new ``history`` line, and for each observation
        variable ``v``: ``v_flag``, ``v_innovation``, ``v_residual``, ``v_obs_error``.
        An ensemble has a ``member`` dimension (first) on the variables on the
        grid; its diagnostics are those of the ensemble mean.

    Raises
    ------
    ObservationError, VariableError, UnitsError, GridError
        With the variable at fault and the fix.  PhyDA's models are global: a
        background that does not cover the globe is a ``GridError`` (use
        ``method="oi"`` for a regional one).
    """
    if method not in METHODS:
        raise PhydaError(f"unknown assimilation method {method!r}; available: {sorted(METHODS)}. "
                         "Fix: method='phyda' (the diffusion prior) or method='oi'")
    options = {
        "model": model,
        "members": members,
        "steps": steps,
        "seed": seed,
        "device": device,
        "guidance": guidance,
        "balance": balance,
        "calibrate": calibrate,
        "antithetic": antithetic,
        "progress": progress,
        "length_scale": length_scale,
        "background_error": background_error,
        "correlation": correlation,
        "vertical_length_scale": vertical_length_scale,
        "solver": solver,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if names:
        from .grid import VARIABLES

        unknown = sorted(set(names) - set(VARIABLES))
        if unknown:
            import difflib
            import inspect

            known = [p for p in inspect.signature(assimilate).parameters if p not in ("background", "obs", "names")]
            close = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
            hint = ", ".join(f"{u!r} -> {c[0]!r}" for u, c in close.items() if c)
            raise PhydaError(
                f"assimilate() got unknown options {unknown}; it takes {known} and, for method 'phyda', "
                f"variable names by key {sorted(VARIABLES)} (e.g. t='air'). Fix: "
                + (f"did you mean {hint}?" if hint else "check the spelling (help(xphyda.assimilate.assimilate))")
            )
        if method != "phyda":
            raise PhydaError(
                f"variable names by key {sorted(names)} are used by method 'phyda' only; method {method!r} "
                "matches each observation variable to the background variable of the same name. Fix: drop "
                "them, or name the observations like the background's variables"
            )
        options.update(names)
    from .parallel import assimilate_times, needs_time_split

    if needs_time_split(background):  # many analysis times: one at a time, in parallel through dask if asked
        per_time = {k: v for k, v in options.items() if k not in ("seed", "progress")}
        return assimilate_times(
            background, obs, method=method, seed=seed, progress=progress, scheduler=scheduler,
            variables=variables, obs_error=obs_error, qc=qc, time_window=time_window, regrid=regrid,
            min_coverage=min_coverage, **per_time,
        )
    unused = sorted(set(options) - set(METHODS[method].options) - set(names))
    if unused:
        other = [m for m in METHODS if m != method and set(unused) <= set(METHODS[m].options)]
        hint = f". Fix: pass method={other[0]!r}" if other else f". Fix: drop {unused}"
        raise PhydaError(
            f"options {unused} are not used by method {method!r}; it takes {METHODS[method].options}{hint}"
        )
    from .baselines.oi import check_members

    if method == "oi" and seed is not None and not _stochastic(method, check_members(members)):
        raise PhydaError(
            "option seed is not used by method 'oi' without an ensemble: the deterministic OI draws no "
            f"random numbers (members={members!r}). Fix: drop seed, or pass members=N with N > 1 for a "
            "perturbed-observation OI ensemble"
        )
    if qc is not None:
        try:
            ok = not isinstance(qc, bool) and float(qc) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ObservationError(
                f"qc must be a positive number of standard deviations, or None to turn it off; got {qc!r}. "
                "Fix: e.g. qc=5.0"
            )
    if method == "phyda":
        from .diffusion import assimilate_phyda

        kwargs = dict(variables=variables, obs_error=obs_error, time_window=time_window, regrid=regrid,
                      min_coverage=min_coverage)
        return assimilate_phyda(background, obs, problem_kwargs=kwargs, qc=qc, **options)
    problem = build_problem(
        background,
        obs,
        variables=variables,
        obs_error=obs_error,
        time_window=time_window,
        regrid=regrid,
        min_coverage=min_coverage,
    )
    analyses, note = METHODS[method].run(problem, qc=qc, **options)
    counts = {}
    for name, xa in analyses.items():
        if problem.targets[name].kind in NON_NEGATIVE:
            counts[name] = [int((xa < 0).sum()), int(xa.size)]
            analyses[name] = np.maximum(xa, 0.0)
    note += _floor_note(counts)
    n = members if _stochastic(method, members) else 1
    out = _analysis_dataset(background, problem, analyses, n)
    mean = {k: v.mean(0) for k, v in analyses.items()} if n > 1 else analyses  # diagnostics of the mean
    out = xr.merge([out, diagnostics(problem, mean, background)], join="exact", compat="no_conflicts",
                   combine_attrs="override")
    out.attrs = dict(background.attrs)
    out.attrs["history"] = _history(background, problem, method, note)
    return out
