"""What an OSSE is made of: observation settings, methods, truth data, cases and seeds (no analysis here).

Each piece is checked before any analysis runs, so a typo fails in seconds,
not after an hour of sampling.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import CoordinateError, DataError, ModelError, ObservationError, PhydaError

TRAJECTORY = "trajectory"
SETTING_KEYS = ("fraction", "n_stations", "stations", "noise", "variables", "label")
KINDS = ("background", "oi", "phyda")


class EvaluationError(PhydaError, ValueError):
    """An evaluation setting (observations, methods, cases, split) cannot be used."""


# --------------------------------------------------------------------------- observation settings
@dataclass(frozen=True)
class Setting:
    """One way of observing the truth: the keyword arguments of :func:`xphyda.obs.simulate`."""

    label: str
    kwargs: dict = field(hash=False)

    @property
    def seed_key(self) -> int:
        """Part of the observation seed: depends on the label, not on the order of the settings."""
        return zlib.crc32(self.label.encode())


def _label(kw: Mapping) -> str:
    if "fraction" in kw:
        head = f"fraction={kw['fraction']:g}"
    elif "n_stations" in kw:
        head = f"n_stations={int(kw['n_stations'])}"
    else:
        st = kw["stations"]
        n = (
            st.sizes.get(next(iter(st.dims), ""), 0)
            if isinstance(st, xr.Dataset | xr.DataArray)
            else len(st["lat"] if isinstance(st, Mapping) else st)
        )
        head = f"stations={n}"
    extra = []
    if kw.get("noise") is not None:
        noise = kw["noise"]
        extra.append(
            "noise="
            + (",".join(f"{k}:{v}" for k, v in noise.items()) if isinstance(noise, Mapping) else str(noise))
        )
    if kw.get("variables") is not None:
        v = kw["variables"]
        extra.append("variables=" + ("+".join(v) if not isinstance(v, str) else v))
    return ", ".join([head] + extra)


def settings_from(observations, noise) -> list[Setting]:
    """Observation settings from dicts such as ``{"fraction": 0.1}``, ``{"n_stations": 500, "noise": {"t": 1}}``."""
    if isinstance(observations, Mapping):
        observations = [observations]
    if not isinstance(observations, Sequence) or isinstance(observations, str) or not observations:
        raise EvaluationError(
            "observations must be a non-empty list of settings, e.g. "
            "[{'fraction': 0.1}, {'n_stations': 500}, {'stations': [(48.1, 11.6), (51.5, 0.0)]}]"
        )
    out, seen = [], set()
    for i, raw in enumerate(observations):
        if not isinstance(raw, Mapping):
            raise EvaluationError(
                f"observation setting {i} is {raw!r}; expected a dict such as {{'fraction': 0.1}}"
            )
        unknown = sorted(set(raw) - set(SETTING_KEYS))
        if unknown:
            raise EvaluationError(
                f"observation setting {dict(raw)!r} has unknown keys {unknown}; known: {SETTING_KEYS}"
            )
        how = [k for k in ("fraction", "n_stations", "stations") if raw.get(k) is not None]
        if len(how) != 1:
            raise EvaluationError(
                f"observation setting {dict(raw)!r} must give exactly one of fraction, n_stations or stations; "
                f"got {how or 'none'}"
            )
        if "fraction" in how and not 0.0 < float(raw["fraction"]) <= 1.0:
            raise EvaluationError(
                f"fraction must be in (0, 1], a share of the grid columns; got {raw['fraction']!r}"
            )
        if "n_stations" in how and (isinstance(raw["n_stations"], bool) or int(raw["n_stations"]) < 1):
            raise EvaluationError(f"n_stations must be a positive integer; got {raw['n_stations']!r}")
        kw = {k: v for k, v in raw.items() if k != "label" and v is not None}
        if "noise" not in kw and noise is not None:
            kw["noise"] = noise
        label = str(raw.get("label") or _label(kw))
        if label in seen:
            raise EvaluationError(f"two observation settings are both labelled {label!r}; give one a 'label'")
        seen.add(label)
        out.append(Setting(label, kw))
    return out


# --------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class MethodSpec:
    """A method of the comparison: its row name, kind (background, oi, phyda) and assimilate options."""

    name: str
    kind: str
    options: dict = field(hash=False)


def methods_from(methods) -> list[MethodSpec]:
    """Methods from ``{"name": options or None}``; the kind is ``options["method"]``, the name, or phyda with a model."""
    from ..assimilate import METHODS

    if isinstance(methods, str):
        methods = {methods: None}
    elif isinstance(methods, Sequence):
        methods = {m: None for m in methods}
    if not isinstance(methods, Mapping) or not methods:
        raise EvaluationError(
            "methods must be a non-empty dict of name to options, e.g. {'background': None, 'oi': {}, "
            "'phyda': {'model': 'jcm-t31-v1', 'members': 8}, 'no-physics': {'model': 'path/to/model'}}"
        )
    out = []
    for name, options in methods.items():
        options = dict(options or {})
        kind = options.pop("method", None) or (
            name if name in KINDS else ("phyda" if "model" in options else None)
        )
        if kind not in KINDS:
            raise EvaluationError(
                f"method {name!r}: cannot tell what it is (kind {kind!r}); name it one of {list(KINDS)}, give "
                f"options={{'method': 'oi'}}, or a 'model' for a PhyDA variant such as an ablation"
            )
        if kind == "background":
            if options:
                raise EvaluationError(
                    f"method {name!r} is the background itself; it takes no options, got {options}"
                )
        else:
            allowed = set(METHODS[kind].options) - {"progress"}
            unused = sorted(set(options) - allowed)
            if unused:
                raise EvaluationError(
                    f"method {name!r} ({kind}): options {unused} are not options of assimilate(method={kind!r}); "
                    f"it takes {sorted(allowed)}"
                )
        if kind == "oi":  # an ensemble size that cannot work fails now, not at the first analysis
            from ..baselines.oi import check_members

            try:
                check_members(options.get("members"))
            except PhydaError as exc:
                raise EvaluationError(f"method {name!r}: {exc}") from None
        if kind == "phyda":
            from ..models import find

            try:
                find(options.get("model"))
            except ModelError as exc:
                raise ModelError(f"method {name!r}: {exc}") from None
        out.append(MethodSpec(str(name), kind, options))
    return out


# --------------------------------------------------------------------------- truth data and cases
def open_truth(source, *, variables, levels, store_kwargs) -> tuple[xr.Dataset, str, str]:
    """The truth as a (lazy) Dataset, its time dimension, and a description of where it came from."""
    from ..data.pipeline import open_store
    from ..grid import discover_grid

    if isinstance(source, xr.Dataset):
        ds, where = source, "a user Dataset"
        if variables is not None:
            names = [variables] if isinstance(variables, str) else list(variables)
            missing = [v for v in names if v not in ds.data_vars]
            if missing:
                raise EvaluationError(
                    f"variables {missing} are not in the data; it has {sorted(map(str, ds.data_vars))}"
                )
            ds = ds[names]
        if levels is not None:
            grid = discover_grid(ds)
            if grid.level is None:
                raise EvaluationError(
                    f"levels={list(levels)} were given but the data have no pressure levels"
                )
            ds = ds.sel({grid.level: list(levels)})
    else:
        ds = open_store(source, variables=variables, levels=levels, **dict(store_kwargs or {}))
        where = str(source)
    grid = discover_grid(ds)
    if grid.time is None or grid.time not in ds.dims:
        raise CoordinateError(
            "the truth needs a time dimension (cases are truth times, the background is the state `lead` earlier). "
            "Fix: ds.expand_dims(time=[...]) and pass a background, or give a store with times"
        )
    extra = [d for d in ds.dims if d not in {grid.time, grid.level, grid.lat, grid.lon, TRAJECTORY} - {None}]
    if extra:
        raise EvaluationError(
            f"the truth has dimensions {extra} besides time, level, latitude, longitude and "
            f"trajectory; select along them first (ds.isel({extra[0]}=0))"
        )
    return ds, grid.time, where


@dataclass(frozen=True)
class Case:
    """One analysis: a truth time (in a trajectory), and the time its background comes from."""

    index: int
    time: np.datetime64
    trajectory: int | None
    background_time: np.datetime64 | None  # None: from the user's background

    @property
    def label(self) -> str:
        t = str(np.datetime64(self.time, "s"))
        return t if self.trajectory is None else f"{t} (trajectory {self.trajectory})"

    def seed(self, seed: int, *extra: int) -> int:
        """A seed from ``(seed, trajectory, time, *extra)``: the same case gets the same draws in any selection."""
        secs = int(np.datetime64(self.time, "s").astype(np.int64))
        state = np.random.SeedSequence(
            [int(seed), self.trajectory or 0, secs + 2**40, *extra]
        ).generate_state(2)
        return (int(state[0]) << 31) | (int(state[1]) >> 1)


def resolve_split(ds, tdim, split, lead):
    """``(TimeSplit or None, description)``; a named split on data too short for the default uses all times."""
    from ..data.splits import SPLITS, TimeSplit, as_timedelta, default_split

    if split is None:
        return None, "all times"
    if isinstance(split, TimeSplit):
        return split, "given"
    if split not in SPLITS:
        raise EvaluationError(
            f"split must be one of {SPLITS}, a TimeSplit or None (all times); got {split!r}"
        )
    try:
        ts = default_split(ds[tdim].values, gap=max(as_timedelta(lead), as_timedelta("24h")))
    except DataError as exc:
        return None, f"all times (the data are too short for the default split: {str(exc).split('.')[0]})"
    return ts, "default"


def select_cases(ds, tdim, *, cases, split, split_name, lead, background) -> list[Case]:
    """The cases: ``cases`` evenly spaced eligible truth times, or the times (or (trajectory, time)) given."""
    from ..data.splits import as_timedelta

    times = np.asarray(ds[tdim].values).astype("datetime64[ns]")
    lead_td = as_timedelta(lead).astype("timedelta64[ns]")
    trajs = list(range(ds.sizes[TRAJECTORY])) if TRAJECTORY in ds.dims else [None]
    ok = np.ones(times.size, bool)
    if split is not None:
        ok &= split.truth_mask(times, split_name, lead=lead if background is None else None)
    avail = np.asarray(ds["available"].values, bool) if "available" in ds.coords else None
    if background is None:
        has_bg = np.isin(times - lead_td, times)
        ok &= has_bg
    else:
        bt = find_time(background)
        ok &= np.isin(times, np.asarray(background[bt].values).astype("datetime64[ns]"))
    eligible = []
    for t_i in np.flatnonzero(ok):
        for k in trajs:
            if avail is not None and not avail[k, t_i]:
                continue
            if avail is not None and background is None:
                j = np.flatnonzero(times == times[t_i] - lead_td)[0]
                if not avail[k, j]:
                    continue
            eligible.append((k, times[t_i]))
    where = f"the {split_name} split" if split is not None else "the data"
    if not eligible:
        which = f"the state {lead} earlier" if background is None else "in the given background"
        raise EvaluationError(
            f"no truth time in {where} has a background ({which}); the data run {times.min()} to {times.max()}. "
            "Fix: another split (split=None for all times), or a shorter lead"
        )
    if isinstance(cases, (int, np.integer)) and not isinstance(cases, bool):
        if cases < 1:
            raise EvaluationError(f"cases must be at least 1; got {cases}")
        if cases > len(eligible):
            raise EvaluationError(
                f"{cases} cases were asked for but {where} has only {len(eligible)} truth times with a background. "
                f"Fix: cases={len(eligible)} or fewer, or another split"
            )
        # centres of equal bins of the eligible (time, trajectory) pairs, trajectories in turn
        of_traj = np.array([trajs.index(e[0]) for e in eligible])
        taken = np.zeros(len(eligible), bool)
        for k in range(cases):
            dist = np.abs(np.arange(len(eligible)) - (k + 0.5) * len(eligible) / cases).astype(float)
            dist[taken] = np.inf
            mine = np.where(of_traj == k % len(trajs), dist, np.inf)
            taken[int(np.argmin(mine if np.isfinite(mine).any() else dist))] = True
        chosen = [eligible[i] for i in np.flatnonzero(taken)]
    else:
        chosen = []
        for item in [cases] if isinstance(cases, str) else list(cases):
            k, t = item if isinstance(item, tuple) else (trajs[0], item)
            t = np.datetime64(pd.Timestamp(t).to_datetime64(), "ns")
            if (k, t) not in eligible:
                near = min(eligible, key=lambda e: abs(e[1] - t))
                raise EvaluationError(
                    f"case {item!r} is not a truth time of {where} with a background; the nearest is "
                    f"{np.datetime64(near[1], 's')}"
                    + (f" in trajectory {near[0]}" if near[0] is not None else "")
                )
            chosen.append((k, t))
    return [Case(i, t, k, None if background is not None else t - lead_td) for i, (k, t) in enumerate(chosen)]


def find_time(ds) -> str:
    from ..grid import discover_grid

    tdim = discover_grid(ds).time
    if tdim is None or tdim not in ds.dims:
        raise CoordinateError("the background needs a time dimension holding the valid times of the cases")
    return tdim


def case_states(ds, tdim, case: Case, *, background=None, lead="24h") -> tuple[xr.Dataset, xr.Dataset]:
    """Truth and background of one case, in memory, each with a time dimension of length one (the truth's time)."""
    one = ds.isel({TRAJECTORY: case.trajectory}) if case.trajectory is not None else ds
    one = one.drop_vars([c for c in ("available", TRAJECTORY) if c in one.coords])
    truth = one.sel({tdim: [case.time]}).load()
    if background is None:
        bg = one.sel({tdim: [case.background_time]}).load().assign_coords({tdim: truth[tdim]})
        bg.attrs = dict(
            bg.attrs,
            history=f"persistence background: the truth's state {lead} earlier "
            f"({np.datetime64(case.background_time, 's')})",
        )
    else:
        btd = find_time(background)
        sel = background.isel({TRAJECTORY: case.trajectory}) if TRAJECTORY in background.dims else background
        bg = sel.sel({btd: [case.time]}).load()
        missing = [v for v in truth.data_vars if v not in bg.data_vars]
        if missing:
            raise ObservationError(
                f"the background lacks variables {missing} of the truth; it has "
                f"{sorted(map(str, bg.data_vars))}"
            )
        bg = bg[list(truth.data_vars)]
    return truth, bg


def residuals_for(truth: xr.Dataset, residuals) -> list[str]:
    """``"auto"``: every physics residual the truth has the variables for."""
    from ..physics import available, physics_residual

    if residuals is None:
        return []
    if residuals != "auto":
        names = [residuals] if isinstance(residuals, str) else list(residuals)
        bad = [n for n in names if n not in available()]
        if bad:
            raise EvaluationError(f"unknown physics residuals {bad}; available: {available()}")
        return names
    out = []
    for name in available():
        try:
            physics_residual(truth, name)
        except PhydaError:
            continue
        out.append(name)
    return out
