"""Many analysis times: ``assimilate`` time by time, serially or in parallel through dask.

A background with a time dimension of several times is analysed one time at
a time (:func:`assimilate_times`):

1. each observation is given to the nearest background time within the time
   window (half the smallest spacing of the background times by default, as
   :func:`xphyda.obs.build_problem`), so every time gets only its own
   observations;
2. each time is an independent call of :func:`xphyda.assimilate.assimilate`
   on a one-time background, with its own seed :func:`time_seed` ``(seed, i)``,
   ``i`` being the position of the time in the background;
3. the analyses are concatenated along time and the per-observation
   diagnostics put back in the observations' own layout.

Because a time's result depends only on its inputs and ``(seed, i)``, any
scheduler gives the same answer: a plain loop, dask threads or processes, or a
``dask.distributed`` cluster.  Dask is used when the background or the
observations are dask-backed (with dask's current scheduler: an active
``distributed.Client`` if there is one, threads otherwise), or when a
``scheduler`` is given.

Statistics that the one-call analysis pools over all times are computed per
time instead: the OI background error estimated from the innovations, and the
background check that uses it.

Examples
--------
>>> import numpy as np, xarray as xr, xphyda
>>> day = xphyda.tutorial.open_dataset("era5-z-t").isel(latitude=slice(None, None, 10),
...                                                      longitude=slice(None, None, 10))
>>> times = day.time.values[0] + np.arange(3) * np.timedelta64(6, "h")
>>> truth = xr.concat([day.assign_coords(time=[t]) for t in times], "time")
>>> obs = xphyda.obs.simulate(truth, fraction=0.2, seed=0)
>>> out = assimilate_times(truth + 1.0, obs, method="oi", progress=False)
>>> out["t"].sizes["time"], out["t_flag"].dims
(3, ('time', 'level', 'latitude', 'longitude'))
>>> lazy = assimilate_times((truth + 1.0).chunk(time=1), obs, method="oi", scheduler="sync", progress=False)
>>> bool((lazy["t"] == out["t"]).all())
True
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .errors import NotAnalysedWarning, ObservationError, PhydaError, PoorFitWarning

__all__ = ["assimilate_times", "needs_time_split", "time_seed"]

SCHEDULERS = ("serial", "sync", "synchronous", "threads", "processes")
"""Scheduler names :func:`assimilate_times` accepts, besides a ``distributed.Client``."""

_ROW = "_xphyda_row"  # temporary coordinate numbering the observations along the split dimension


# --------------------------------------------------------------------------- seeds and checks
def time_seed(seed: int, index: int) -> int:
    """Seed of analysis time ``index`` in a run seeded with ``seed``.

    The pair is hashed with :class:`numpy.random.SeedSequence`, so neighbouring
    seeds or times give unrelated streams, and the result depends on nothing
    else (not on the scheduler, the worker or the order of execution).

    Examples
    --------
    >>> time_seed(0, 1) == time_seed(0, 1), time_seed(0, 1) == time_seed(1, 0)
    (True, False)
    """
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise PhydaError(f"seed must be a non-negative integer; got {seed!r}")
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) | (int(state[1]) >> 1)  # 63 bits: fits every torch / numpy seed


def _time_dim(background: xr.Dataset) -> str | None:
    from .grid import discover_grid

    grid = discover_grid(background)
    return grid.time if grid.time is not None and grid.time in background.dims else None


def needs_time_split(background) -> bool:
    """Whether ``background`` has a time dimension with more than one time (the hook of ``assimilate``).

    Examples
    --------
    >>> import xphyda
    >>> needs_time_split(xphyda.tutorial.open_dataset("era5-surface"))
    True
    """
    if not isinstance(background, xr.Dataset):
        return False
    dim = _time_dim(background)
    return dim is not None and background.sizes[dim] > 1


def _is_dask(obj) -> bool:
    if isinstance(obj, xr.Dataset):
        return any(v.chunks is not None for v in obj.variables.values())
    return isinstance(obj, xr.DataArray) and obj.chunks is not None


# --------------------------------------------------------------------------- splitting the observations
@dataclass(frozen=True)
class _Split:
    """Which observations (positions along ``dim``) belong to each background time."""

    dim: str | None  # the observations' dimension carrying time; None: a scalar time
    size: int
    rows: tuple[np.ndarray, ...]

    def part(self, obs, i: int):
        if self.dim is None:
            return obs if self.rows[i].size else None
        return obs.isel({self.dim: self.rows[i]}) if self.rows[i].size else None


def _split_observations(obs, times: np.ndarray, window, tdim: str) -> _Split:
    from .grid import find_coord
    from .obs.qc import match_times

    name = find_coord(obs, "time", required=False)
    if name is None:
        raise ObservationError(
            f"the background has {times.size} times but the observations carry no time. Fix: add a time "
            "coordinate (obs.assign_coords(time=...), one per observation or a time dimension), or "
            f"analyse one time at a time (background.isel({tdim}=[0]))"
        )
    coord = obs[name]
    if coord.ndim > 1:
        raise ObservationError(
            f"the observations' time coordinate {name!r} has dims {coord.dims}; splitting by time needs it "
            "along one dimension (a time dimension, or one time per observation along the station dimension)"
        )
    values = np.atleast_1d(np.asarray(coord.values))
    if not np.issubdtype(values.dtype, np.datetime64):
        raise ObservationError(
            f"the observations' time coordinate {name!r} has dtype {values.dtype}; expected datetime64. "
            "Fix: xr.decode_cf(obs), or give it CF units such as 'hours since 2000-01-01'"
        )
    index, ok = match_times(values, times, window=window)
    rows = tuple(np.flatnonzero(ok & (index == i)) for i in range(times.size))
    return _Split(coord.dims[0] if coord.ndim else None, values.size, rows)


# --------------------------------------------------------------------------- one time
def _analyse_one(background, obs, i: int, label: str, method: str, seed: int | None, options: dict):
    """The analysis of one time (runs on a worker; its result depends only on its arguments)."""
    from .assimilate import _stochastic, assimilate

    if _stochastic(method, options.get("members")):  # PhyDA, or an OI ensemble
        options = {**options, "seed": time_seed(0 if seed is None else seed, i)}
    elif seed is not None:
        options = {**options, "seed": seed}  # refused by the method, with assimilate's message
    try:
        with warnings.catch_warnings():  # assimilate_times gives one for all times (_warn_not_analysed, _warn_poor_fit)
            warnings.simplefilter("ignore", NotAnalysedWarning)
            warnings.simplefilter("ignore", PoorFitWarning)
            return assimilate(background, obs, method=method, **options)
    except PhydaError as exc:
        raise type(exc)(f"analysis time {label} (index {i}): {exc}") from exc


def _analyse_in_process(*job):
    """:func:`_analyse_one` in a worker process of dask's ``processes`` scheduler, with one thread per library.

    Several such processes share the machine's cores; each with the libraries'
    default thread pools (torch, BLAS) oversubscribes them, which made a small
    PhyDA analysis 30 times slower on a loaded two-core machine.  Workers of
    ``dask.distributed`` get the same limit from their nanny
    (``OMP_NUM_THREADS=1``).  The process is the scheduler's, so nothing of the
    user's is changed.
    """
    from threadpoolctl import threadpool_limits

    if job[4] == "phyda":
        import torch

        torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        return _analyse_one(*job)


# --------------------------------------------------------------------------- running
def _progress_bar(progress, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="analysis times", unit="time")


def _default_client():
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _scheduler_name(scheduler) -> str:
    if isinstance(scheduler, str):
        return scheduler
    client = scheduler if scheduler is not None else _default_client()
    if client is not None:
        return f"distributed, {len(client.scheduler_info().get('workers', {}))} workers"
    import dask

    return str(dask.config.get("scheduler", None) or "threads")


def _run_serial(jobs, bar) -> list:
    out = []
    for job in jobs:
        out.append(_analyse_one(*job))
        if bar is not None:
            bar.update(1)
    return out


def _run_dask(jobs, scheduler, bar) -> list:
    import dask
    from dask.callbacks import Callback

    token = uuid.uuid4().hex[:8]
    func = _analyse_in_process if scheduler == "processes" else _analyse_one
    tasks = [
        dask.delayed(func, pure=False)(*job, dask_key_name=f"xphyda-analysis-{token}-{k}")
        for k, job in enumerate(jobs)
    ]
    client = scheduler if not isinstance(scheduler, str) and scheduler is not None else None
    if scheduler is None:
        client = (
            _default_client() if dask.config.get("scheduler", None) in (None, "dask.distributed") else None
        )
    if client is not None:  # futures, so the bar follows the cluster
        from distributed import as_completed

        futures = client.compute(tasks)
        for _ in as_completed(futures):
            if bar is not None:
                bar.update(1)
        return client.gather(futures)

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if bar is not None and str(key).startswith(f"xphyda-analysis-{token}"):
                bar.update(1)

    name = {"sync": "synchronous"}.get(scheduler, scheduler)
    with _Bar():
        return list(dask.compute(*tasks, scheduler=name))


# --------------------------------------------------------------------------- putting the times together
def _combine_diagnostics(parts: list[xr.Dataset], split: _Split, obs) -> xr.Dataset:
    """Concatenate per-time diagnostics along the observations' split dimension, in their original order."""
    from .obs.qc import FLAGS

    names = list(parts[0].data_vars)
    if split.dim is None:  # all observations at one time: its diagnostics are the diagnostics
        return next(p for p, r in zip(parts, split.rows) if r.size)
    out = {}
    for name in names:
        das = [p[name] for p in parts if name in p]
        if _ROW not in das[0].coords:
            raise PhydaError(
                f"diagnostics {name!r} lost the observations' {split.dim!r} dimension (regridded observations "
                "with a time that is not a dimension?); analyse the times one by one with assimilate()"
            )
        dim = das[0][_ROW].dims[0]
        da = xr.concat(das, dim=dim, data_vars="all", coords="minimal", compat="override", join="exact")
        rows = np.asarray(da[_ROW].values)
        order = np.argsort(rows, kind="stable")
        da = da.isel({dim: order})
        if rows.size < split.size:  # observations outside every time window: flagged, NaN values
            fill = FLAGS["outside_time_window"] if name.endswith("_flag") else np.nan
            axis = da.get_axis_num(dim)
            values = np.full(da.shape[:axis] + (split.size,) + da.shape[axis + 1 :], fill, dtype=da.dtype)
            np.moveaxis(values, axis, 0)[rows[order]] = np.moveaxis(np.asarray(da.values), axis, 0)
            da = da.isel({dim: np.zeros(split.size, dtype=int)}).copy(data=values)
            for c in list(da.coords):  # coordinates along the dimension: the observations' own
                if da[c].dims != (dim,):
                    continue
                source = c if c in obs.coords else c.removeprefix("obs_")
                if source in obs.coords and obs[source].dims == (split.dim,):
                    da = da.assign_coords({c: (dim, np.asarray(obs[source].values), obs[source].attrs)})
        out[name] = da.drop_vars(_ROW)
    return xr.Dataset(out)


def _combine(results: list[xr.Dataset], background: xr.Dataset, tdim: str, split: _Split, obs) -> xr.Dataset:
    state = [v for v in results[0].data_vars if v in background.data_vars]
    timed = [v for v in state if tdim in results[0][v].dims]
    fixed = [v for v in state if v not in timed]
    analysis = xr.concat(
        [r[timed] for r in results],
        dim=tdim,
        data_vars="all",
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="override",
    )
    diag = _combine_diagnostics([r.drop_vars(state) for r in results], split, obs)
    out = xr.merge(
        [analysis, results[0][fixed], diag], join="outer", compat="no_conflicts", combine_attrs="override"
    )
    out = out[[v for v in results[0].data_vars]]  # the one-time order: state, then diagnostics
    out.attrs = dict(results[0].attrs)
    return out


# --------------------------------------------------------------------------- the front
def assimilate_times(
    background: xr.Dataset,
    obs,
    *,
    method: str = "phyda",
    seed: int | None = None,
    scheduler=None,
    progress: bool | None = None,
    time_window=None,
    **options,
) -> xr.Dataset:
    """Analyse a background with several times, one time at a time (in parallel through dask when asked).

    Parameters
    ----------
    background : xarray.Dataset
        The background, with a time dimension (numpy or dask arrays).
    obs : xarray.Dataset or xarray.DataArray
        Observations with a time: a time dimension, or one time per
        observation along the station dimension.
    method : {"phyda", "oi"}
        As for :func:`xphyda.assimilate.assimilate` (default ``"phyda"``).
    seed : int, optional
        PhyDA and an OI ensemble (``members > 1``): time ``i`` (its position in
        ``background``) is sampled with :func:`time_seed` ``(seed, i)`` (``seed``
        defaults to 0).
    scheduler : {"serial", "sync", "threads", "processes"}, distributed.Client or None
        ``None``: dask's current scheduler (an active ``distributed.Client``,
        otherwise threads) when the background or the observations are
        dask-backed, a plain loop otherwise.  A name or a client forces it.
    progress : bool, optional
        A progress bar over the analysis times (default: on for more than one time).
    time_window : str or timedelta, optional
        Largest distance between an observation and its background time
        (default: half the smallest spacing of the background times).
    **options
        Every other option of :func:`xphyda.assimilate.assimilate` (``obs_error``,
        ``length_scale``, ``model``, ``members``, ``steps`` ...), used at each time.

    Returns
    -------
    xarray.Dataset
        As :func:`xphyda.assimilate.assimilate` returns for one time, with all
        times: the analysis (and its ``member`` dimension for an
        ensemble) along the background's time, and the per-observation
        diagnostics in the observations' own layout (observations outside
        every time window are flagged ``outside_time_window``).

    Raises
    ------
    ObservationError
        When the observations carry no usable time, or a background time has no observation.
    PhydaError
        For an unknown scheduler; errors of one time name that time.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xphyda
    >>> sfc = xphyda.tutorial.open_dataset("era5-surface").isel(latitude=slice(None, None, 10),
    ...                                                          longitude=slice(None, None, 10))
    >>> obs = xphyda.obs.simulate(sfc, n_stations=40, seed=1)  # (time, station): one time per row
    >>> out = assimilate_times(sfc + 0.5, obs, method="oi", scheduler="threads", progress=False)
    >>> out["t2m"].sizes["time"], out["t2m_flag"].dims
    (4, ('time', 'station'))
    """
    from .obs.problem import _time_window

    if not isinstance(background, xr.Dataset):
        raise PhydaError(f"the background must be an xarray Dataset; got {type(background).__name__}")
    if not (
        scheduler is None
        or (isinstance(scheduler, str) and scheduler in SCHEDULERS)
        or hasattr(scheduler, "compute")
    ):
        raise PhydaError(
            f"unknown scheduler {scheduler!r}; give one of {list(SCHEDULERS)}, a distributed.Client, "
            "or None (dask's current scheduler for dask-backed data, a plain loop otherwise)"
        )
    tdim = _time_dim(background)
    if tdim is None:
        raise PhydaError(
            "the background has no time dimension; use xphyda.assimilate.assimilate for a single time"
        )
    times = np.atleast_1d(np.asarray(background[tdim].values))
    if not np.issubdtype(times.dtype, np.datetime64):
        raise PhydaError(f"the background's time {tdim!r} has dtype {times.dtype}; expected datetime64")
    window = _time_window(times, time_window)
    if isinstance(obs, xr.Dataset | xr.DataArray):
        split = _split_observations(obs, times, window, tdim)
    else:
        raise ObservationError(
            f"observations must be an xarray Dataset or DataArray; got {type(obs).__name__}"
        )
    empty = [str(times[i])[:19] for i, r in enumerate(split.rows) if r.size == 0]
    if empty:
        raise ObservationError(
            f"{len(empty)} of {times.size} background times have no observation within the time window "
            f"{'(any)' if window is None else pd.Timedelta(window)} (nearest-time matching): {empty[:5]}{' ...' if len(empty) > 5 else ''}. Fix: leave them "
            f"out (background.sel({tdim}=...)), or widen time_window"
        )
    if split.dim is not None:
        obs = obs.assign_coords({_ROW: (split.dim, np.arange(split.size))})
    if time_window is not None:
        options["time_window"] = time_window
    jobs = [
        (background.isel({tdim: [i]}), split.part(obs, i), i, str(times[i])[:19], method, seed, options)
        for i in range(times.size)
    ]
    use_dask = scheduler not in (None, "serial") or (
        scheduler is None and (_is_dask(background) or _is_dask(obs))
    )
    bar = _progress_bar(times.size > 1 if progress is None else progress, times.size)
    try:
        results = _run_dask(jobs, scheduler, bar) if use_dask else _run_serial(jobs, bar)
    finally:
        if bar is not None:
            bar.close()
    out = _combine(results, background, tdim, split, obs)
    how = "serially" if not use_dask else f"through dask ({_scheduler_name(scheduler)})"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    line = (
        f"{stamp}: xphyda assimilate_times(method={method!r}): {times.size} analysis times, one at a time, "
        f"{how}; seeds time_seed(seed={0 if seed is None else seed}, i); first time:"
    )
    out.attrs["history"] = f"{line}\n{results[0].attrs.get('history', '')}".rstrip()
    if isinstance(obs, xr.Dataset | xr.DataArray) and _ROW in out.coords:
        out = out.drop_vars(_ROW)
    _warn_not_analysed(out, options.get("model"))
    if method == "phyda":
        _warn_poor_fit(out, options.get("model"))
    return out


def _warn_poor_fit(analysis: xr.Dataset, model) -> None:
    """One :class:`~xphyda.errors.PoorFitWarning` over all analysis times (:func:`~xphyda.diffusion.poor_fit_line`)."""
    from .assimilate import _outside_frame
    from .diffusion import poor_fit_line, poor_fit_message
    from .models import DEFAULT_MODEL, read_card
    from .obs.qc import FLAGS

    worse = []
    for name, da in analysis.data_vars.items():
        var = str(name)[:-5]
        if str(name).endswith("_flag") and f"{var}_innovation" in analysis:
            used = np.asarray(da.values) == FLAGS["used"]
            omb, oma = (np.asarray(analysis[f"{var}_{k}"].values)[used] for k in ("innovation", "residual"))
            worse.append(poor_fit_line(var, omb, oma, analysis[f"{var}_innovation"].attrs.get("units", "")))
    worse = [w for w in worse if w]
    if worse:
        label = Path(str(model)).name if model is not None else DEFAULT_MODEL
        try:
            description = read_card(model).get("description", "see its card")
        except PhydaError:
            description = "see its card"
        warnings.warn(poor_fit_message(worse, label, description), PoorFitWarning, stacklevel=_outside_frame())


def _warn_not_analysed(analysis: xr.Dataset, model) -> None:
    """One :class:`~xphyda.errors.NotAnalysedWarning` with the counts over all analysis times."""
    from .assimilate import _outside_frame
    from .diffusion import not_analysed_message
    from .models import DEFAULT_MODEL
    from .obs.qc import FLAGS

    counts = {}
    for name, da in analysis.data_vars.items():
        if str(name).endswith("_flag") and "flag_meanings" in da.attrs:
            n = int((da == FLAGS["not_analysed"]).sum())
            if n:
                counts[str(name)[:-5]] = n
    if counts:
        label = Path(str(model)).name if model is not None else DEFAULT_MODEL
        warnings.warn(not_analysed_message(counts, label), NotAnalysedWarning, stacklevel=_outside_frame())
