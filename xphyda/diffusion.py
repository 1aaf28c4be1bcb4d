"""The xarray front of the diffusion model: ``assimilate(..., method="phyda")`` and ``encode``.

A model works on its own grid and channels (its card says which).  This
module maps a user's Dataset to them and back:

* **background -> model**: each model channel ``(variable, level)`` is taken
  from the background when it has that variable at that pressure level
  (regridded to the model grid: conservative when coarsening, bilinear
  otherwise); channels it lacks are marked unavailable and the prior fills them;
* **observations -> model**: the observation operator built on the user's grid
  (:func:`xphyda.obs.build_problem`: points, gridded or on-grid observations,
  with quality control) is composed with the bilinear map from the model grid
  to the user's grid, so ``H_model = H_user P``;
* **model -> user grid**: the analysis increment (analysis minus the
  background on the model grid) is interpolated to the user's grid and added
  to the user's background, so scales finer than the model's are kept.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import xarray as xr

from .assimilate import NON_NEGATIVE, _floor_note
from .errors import GridError, ModelError, NotAnalysedWarning, UnitsError, VariableError, require_bool
from .grid import VARIABLES, Grid, discover_grid, find_variable, require_finite

__all__ = ["assimilate_phyda", "encode", "load"]


# --------------------------------------------------------------------------- model loading
@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A network with its card, and the arrays the front needs (SI normalisation, grid)."""

    net: object
    card: dict
    path: Path
    names: tuple[str, ...]
    variables: tuple[tuple[str, float | None], ...]  # (key, level hPa or None) per channel
    mean: np.ndarray
    std: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    balance_stats: dict | None = None  # the checkpoint's "balance" group (xphyda.model.balance.balance_statistics)
    spread_factor: object = None  # the checkpoint's "calibration" group's per-channel factor (xphyda.model.spread)
    spread_factor_antithetic: object = None  # the same for mirror-pair ensembles (sample(antithetic=True))

    def factor(self, antithetic: bool):
        """The spread factor for independent members or mirror pairs (``None`` when the checkpoint lacks it)."""
        return self.spread_factor_antithetic if antithetic else self.spread_factor

    @property
    def train_config(self) -> dict:
        """The card's ``training.config`` (empty when the card has none)."""
        return (self.card.get("training") or {}).get("config") or {}

    @property
    def channels(self) -> int:
        return len(self.names)

    def balance(self, laws):
        """A :class:`~xphyda.model.balance.Balance` for ``laws`` on this model's normalised states."""
        from .model.balance import Balance
        from .model.physics_loss import PhysicsLoss

        if self.balance_stats is None:
            raise ModelError(
                f"model {self.path.name} carries no balance statistics, so balance={list(laws)} cannot be applied; "
                "pass balance=() or add them (scripts/bundle_model.py --balance-from RUN/work)"
            )
        levels = list(dict.fromkeys(lev for _, lev in self.variables if lev is not None))  # the card's order
        keys = dict.fromkeys(k for k, lev in self.variables if lev is not None)
        index = {k: [self.variables.index((k, lev)) for lev in levels] for k in keys if
                 all((k, lev) in self.variables for lev in levels)}
        physics = PhysicsLoss(lat=self.lat, lon=self.lon, levels_hpa=levels, index=index, mean=self.mean,
                              std=self.std, laws=laws)
        physics.to(next(self.net.parameters()).device)
        spread = self.net.denoiser.data_std().detach().cpu().double().reshape(-1)
        spread = spread.expand(self.channels) if spread.numel() == 1 else spread
        return Balance.from_statistics(physics, self.balance_stats, spread=spread.tolist(), laws=laws)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float, device: str) -> LoadedModel:
    from .data.channels import ChannelSpec
    from .model.checkpoint import load_checkpoint, model_from_state

    state, card = load_checkpoint(path)
    net = model_from_state(state, card, device=device)
    spec = ChannelSpec.from_dict(card["channels"])
    extra = state if card.get("state_dicts") else {}
    balance = extra.get("balance")
    calib = extra.get("calibration", {})
    factor, anti = calib.get("spread_factor"), calib.get("spread_factor_antithetic")
    if "calibration" in extra and (factor is None or any(f is not None and f.numel() != len(spec.names)
                                                         for f in (factor, anti))):
        raise ModelError(
            f"{path}: the 'calibration' group must hold 'spread_factor' (and optionally 'spread_factor_antithetic') "
            f"with one value per channel ({len(spec.names)}); rebuild it with scripts/bundle_model.py --calibrate"
        )
    stats = card["normalisation"]["channels"]
    mean = np.array([stats[n]["mean"] for n in spec.names])
    std = np.array([stats[n]["std"] for n in spec.names])
    return LoadedModel(
        net, card, Path(path), tuple(spec.names), tuple(spec.channel(i) for i in range(spec.n_channels)),
        mean, std, np.asarray(card["grid"]["latitude"], float), np.asarray(card["grid"]["longitude"], float),
        balance, factor, anti,
    )


def load(model=None, *, device: str = "auto") -> LoadedModel:
    """Load a model by name or path (default: the bundled model); cached per file and device."""
    from .model.device import resolve_device
    from .models import find

    path = find(model)
    dev = str(resolve_device(device))
    return _load_cached(str(path), (path / "model.safetensors").stat().st_mtime, dev)


# --------------------------------------------------------------------------- grids
def _bilinear(src_lat, src_lon, dst_lat, dst_lon) -> sp.csr_matrix:
    """Sparse bilinear map from a source grid to every point of a destination grid (periodic, pole-aware)."""
    from .obs.operator import build_operator

    la, lo = np.meshgrid(np.asarray(dst_lat, float), np.asarray(dst_lon, float), indexing="ij")
    op = build_operator(la.ravel(), lo.ravel() % 360.0, np.asarray(src_lat, float), np.asarray(src_lon, float) % 360.0)
    return op.matrix


def _to_model_grid(src_lat, src_lon, dst_lat, dst_lon) -> sp.csr_matrix:
    """Conservative when the model grid is coarser than the source, bilinear otherwise."""
    from .obs.regridding import conservative_weights

    coarser = abs(np.diff(dst_lat)).mean() > 1.5 * abs(np.diff(src_lat)).mean()
    w = (sp.csr_matrix(conservative_weights(src_lat, src_lon, dst_lat, dst_lon)) if coarser
         else _bilinear(src_lat, src_lon, dst_lat, dst_lon))
    cover = np.asarray(abs(w).sum(axis=1)).ravel()
    if (cover <= 1e-9).any():
        frac = float((cover > 1e-9).mean())
        raise GridError(
            f"the background covers {100 * frac:.0f} % of the model's global grid (latitudes "
            f"{float(np.min(src_lat)):g} to {float(np.max(src_lat)):g}, longitudes {float(np.min(src_lon)):g} to "
            f"{float(np.max(src_lon)):g}); the model needs a global background. Fix: pass a global background, "
            "or use method='oi' for a regional one"
        )
    # a model cell the source covers only in part (its grid stops short of a pole or of 360 degrees)
    # gets the mean over the covered part, not a value scaled down by the uncovered fraction
    return sp.diags(1.0 / cover) @ w if coarser else w


def _level_index(grid: Grid, level_hpa: float | None) -> int | None:
    if level_hpa is None or grid.level_pa is None:
        return None
    hit = np.flatnonzero(np.isclose(grid.level_pa, level_hpa * 100.0))
    return int(hit[0]) if hit.size else None


@dataclass
class _Mapping:
    """Where each model channel lives in the user's background (or that it does not)."""

    grid: Grid
    source: list  # per channel: (variable name, level index or None) or None when unavailable
    kinds: list
    reduced: tuple[str, int] | None = None  # (msl variable, sp channel): msl analysed through sp (_reduce)
    ratios: list | None = None  # with ``reduced``: msl_b / sp_b per analysis time (_reduction_ratio)
    unreduced: tuple[str | None, str] | None = None  # (msl variable, why it is not analysed through sp)


def _map_background(background: xr.Dataset, model: LoadedModel, overrides: dict) -> _Mapping:
    grid = discover_grid(background)
    source, kinds = [], []
    for key, level in model.variables:
        name = find_variable(background, key, overrides.get(key), required=False)
        kinds.append(VARIABLES[key].kind)
        if name is None:
            source.append(None)
            continue
        da = background[name]
        if level is None:
            source.append((name, None) if grid.level is None or grid.level not in da.dims else None)
            continue
        if grid.level is not None and grid.level in da.dims:
            k = _level_index(grid, level)
            source.append((name, k) if k is not None else None)
        elif grid.level is not None and grid.level in da.coords and grid.level_pa.size == 1:
            # one level as a scalar coordinate (background.sel(level=500)): the field is that level's
            source.append((name, None) if _level_index(grid, level) == 0 else None)
        else:
            source.append(None)
    if not any(s is not None for s in source):
        one = grid.level is not None and grid.level not in background.dims  # a scalar level coordinate
        at = f" at {grid.level_pa[0] / 100:g} hPa" if one else ""
        have = [f"{n} {background[n].dims}{at if grid.level in background[n].coords else ''}"
                for n in map(str, background.data_vars)]
        raise ModelError(
            f"the background has none of the model's channels {list(model.names)} (a name is a variable and "
            f"its pressure level in hPa; surface fields have no level): it has {have}"
            + ("" if grid.level_pa is None else f" with levels {(grid.level_pa / 100).tolist()} hPa")
            + ". Fix: pass a background with some of them, or rename variables by keyword (e.g. t='air')"
        )
    mapping = _Mapping(grid, source, kinds)
    _reduce(background, model, mapping, overrides)
    return mapping


def _reduce(background, model, mapping: _Mapping, overrides) -> None:
    """Set ``mapping.reduced`` and ``mapping.ratios`` when the model does not serve mean sea-level pressure but the
    background has it, usable, beside the surface pressure that the model analyses; otherwise, if the background
    has an msl, ``mapping.unreduced = (msl name, why not)``.

    Best effort: a background whose msl cannot be related to sp is analysed as before, its msl unchanged.
    """
    try:
        msl = find_variable(background, "msl", overrides.get("msl"), required=False)
    except VariableError as exc:
        mapping.unreduced = (None, f"msl is ambiguous: {exc}")
        return
    grid, source = mapping.grid, mapping.source
    if msl is None or msl in {s[0] for s in source if s is not None}:
        return
    sp_c = [c for c, (key, _) in enumerate(model.variables) if key == "sp" and source[c] is not None]
    extra = set(background[msl].dims) - {d for d in (grid.time, grid.lat, grid.lon) if d is not None}
    if not sp_c:
        mapping.unreduced = (msl, "msl is analysed through the surface pressure, which the background lacks (add it)")
    elif extra:
        mapping.unreduced = (msl, f"msl has dimensions {sorted(map(str, extra))} beside time, latitude and longitude")
    else:
        times = range(background.sizes[grid.time]) if grid.time in background.dims else [None]
        try:
            ratios = [_reduction_ratio(background, grid, msl, source[sp_c[0]][0], t) for t in times]
        except (ModelError, UnitsError) as exc:
            mapping.unreduced = (msl, str(exc))
        else:
            mapping.reduced, mapping.ratios = (msl, sp_c[0]), ratios


def _reduction_ratio(background, grid: Grid, msl: str, sp_name: str, time) -> np.ndarray:
    """``msl_b / sp_b`` on the user's grid (flat), the background's reduction to sea level at ``time``.

    Mean sea-level pressure is surface pressure times a factor of the surface height and the temperature of the
    air column below it (the corpus: ``msl = sp (1 + Gamma zs / (g Ts)) ** (g / (Rd Gamma))``).  Holding the
    background's factor ``k``, ``msl = k sp`` is linear in ``sp``: an observation of msl with operator row
    ``h`` observes ``sp`` through ``h diag(k)``; :func:`_obs_operator` divides that row, the value and the
    error by ``h k`` (the ``k`` at the observation), so that the VRE sees a surface pressure.  The analysed
    ``msl`` is ``msl_b + k (sp_a - sp_b)`` (a 1 K change of the column temperature changes ``k`` by 0.09 % at
    2 km).
    """
    top = _field_si(background, msl, None, grid, "pressure", time, finite=False)
    bottom = _field_si(background, sp_name, None, grid, "pressure", time, finite=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = top / bottom
    if not np.isfinite(ratio).all() or (ratio <= 0).any():
        raise ModelError(
            f"the background's {msl!r} / {sp_name!r} is not finite and positive everywhere, so msl cannot be "
            f"analysed through the surface pressure. Fix: fill the gaps of {msl!r} and {sp_name!r}"
        )
    return ratio.ravel()


def _field_si(background: xr.Dataset, name: str, k: int | None, grid: Grid, kind: str, time,
              finite: bool = True) -> np.ndarray:
    from .units import to_si

    da = background[name]
    if grid.time is not None and grid.time in da.dims:
        da = da.isel({grid.time: time})
    if k is not None:
        da = da.isel({grid.level: k})
    da = da.compute()  # a new object: a dask-backed background is read once, not loaded in place
    if finite:  # a channel of the model (the msl reduction checks its own fields)
        require_finite(
            da, name,
            fix=f"fill them (for example background[{name!r}].interpolate_na({grid.lon!r})), or drop the variable "
            "or those levels: the model's prior fills the channels a background lacks",
        )
    return np.asarray(to_si(da, kind, name=name).transpose(grid.lat, grid.lon).values, dtype=np.float64)


# --------------------------------------------------------------------------- the analysis
def _model_inputs(background, model, mapping, time, w_in):
    """The background on the model grid (SI), which channels it has, and ``{channel: field on the user's grid}``
    for the channels that are never negative (their analysis is floored at 0 there)."""
    nh = model.lat.size * model.lon.size
    xb = np.zeros((model.channels, nh))
    avail = np.zeros(model.channels, bool)
    user = {}
    for c, src in enumerate(mapping.source):
        if src is None:
            continue
        f = _field_si(background, src[0], src[1], mapping.grid, mapping.kinds[c], time).ravel()
        xb[c] = w_in @ f
        avail[c] = True
        if mapping.kinds[c] in NON_NEGATIVE:
            user[c] = f
    return xb, avail, user


def _obs_operator(problem, model, mapping, p_out, time, ratio=None):
    """Rows of ``H_model`` (normalised-free, SI) and ``y``, ``sigma_o`` of the used observations at ``time``.

    With ``ratio`` (one of ``mapping.ratios``), the observations of ``mapping.reduced``'s msl are used as
    observations of the surface pressure (:func:`_reduction_ratio`).
    """
    from .obs.qc import FLAGS

    nh_m = model.lat.size * model.lon.size
    nh_u = mapping.grid.shape[0] * mapping.grid.shape[1]
    blocks, ys, sig, used = [], [], [], {}
    for name, target in problem.targets.items():
        rows = np.flatnonzero((target.time_index == time) & (target.flags == FLAGS["used"]))
        # columns of the target's state on the user's grid: (level, lat, lon)
        reduced = ratio is not None and mapping.reduced is not None and name == mapping.reduced[0]
        chans = [mapping.reduced[1]] if reduced else []
        for k in range(0 if reduced else target.nlev):
            hit = [c for c, s in enumerate(mapping.source) if s is not None and s[0] == name and (s[1] == k or s[1] is None)]
            chans.append(hit[0] if hit else None)
        if rows.size == 0:
            continue
        H = target.H[rows]
        keep = np.ones(rows.size, bool)
        for k, c in enumerate(chans):  # an observation touching a level the model lacks cannot be used
            if c is None:
                keep &= np.asarray(abs(H[:, k * nh_u:(k + 1) * nh_u]).sum(1)).ravel() == 0
        if not keep.any():
            continue
        rows, H = rows[keep], H[keep]
        factor = 1.0
        if reduced:  # msl = k sp: the row H diag(k), divided (with y and sigma) by H k, the k at the observation
            factor = H @ ratio
            H = sp.diags(1.0 / factor) @ H @ sp.diags(ratio)
        per_channel = [None] * model.channels
        for k, c in enumerate(chans):
            if c is not None:
                sub = H[:, k * nh_u:(k + 1) * nh_u] @ p_out  # (n, nh_m)
                per_channel[c] = sub if per_channel[c] is None else per_channel[c] + sub
        blocks.append(sp.hstack([b if b is not None else sp.csr_matrix((rows.size, nh_m)) for b in per_channel]))
        ys.append(target.y[rows] / factor)
        sig.append(target.sigma_o[rows] / factor)
        used[name] = rows
    if not blocks:
        return None, None, None, used
    return sp.vstack(blocks).tocsr(), np.concatenate(ys), np.concatenate(sig), used


def _flag_not_analysed(problem, used: dict, time: int) -> None:
    """Flag ``not_analysed`` the observations at ``time`` that passed QC but that the model cannot use."""
    from .obs.qc import FLAGS

    for name, target in problem.targets.items():
        rows = np.flatnonzero((target.time_index == time) & (target.flags == FLAGS["used"]))
        target.flags[np.setdiff1d(rows, used.get(name, []))] = FLAGS["not_analysed"]


def not_analysed_message(counts: dict[str, int], model: str, channels: str = "", why: str = "") -> str:
    """The text of the :class:`~xphyda.errors.NotAnalysedWarning` for ``{variable: count}``."""
    return (
        f"{sum(counts.values())} observations that passed quality control are not analysed by model {model} "
        f"({', '.join(f'{n}: {c}' for n, c in counts.items())}): they observe a variable, or depend on a pressure "
        f"level, that is not one of the model's channels{f' ({channels})' if channels else ''}"
        f"{f'; {why}' if why else ''}. They are flagged 'not_analysed' (6) in the *_flag variables; those "
        "variables or levels keep the background. Fix: use a model that serves them, or method='oi', which "
        "analyses every background variable"
    )


def _channels_text(model: LoadedModel) -> str:
    """``"z, t at 500, 850 hPa; sp"``: the model's variables with their levels (grouped when they share them)."""
    levels: dict[str, list[float]] = {}
    for key, lev in model.variables:
        levels.setdefault(key, []).append(lev)
    groups: dict[tuple, list[str]] = {}
    for key, levs in levels.items():
        groups.setdefault(tuple(levs), []).append(key)
    return "; ".join(", ".join(keys) + ("" if levs == (None,) else f" at {', '.join(f'{v:g}' for v in levs)} hPa")
                     for levs, keys in groups.items())


def _warn_not_analysed(problem, model: LoadedModel, mapping: _Mapping) -> None:
    """Say which observations the model left out (flagged ``not_analysed``) and why."""
    from .obs.qc import FLAGS

    counts = {n: int((t.flags == FLAGS["not_analysed"]).sum()) for n, t in problem.targets.items()}
    counts = {n: c for n, c in counts.items() if c}
    if not counts:
        return
    from .assimilate import _outside_frame

    why = mapping.unreduced[1] if mapping.unreduced and mapping.unreduced[0] in (None, *counts) else ""
    warnings.warn(not_analysed_message(counts, model.path.name, _channels_text(model), why),
                  NotAnalysedWarning, stacklevel=_outside_frame())


def _vre_rows(H, sigma_o, model: LoadedModel) -> np.ndarray:
    """Rows of ``H`` the VRE may see: observations whose error, in the channel's normalised units, is at most
    three times the noise the model was trained with (the card's ``training.config.obs_noise``).

    The VRE is given observed values and a mask, not their errors: it takes every observation to be as accurate
    as in training.  Default errors of omega (0.1 Pa s-1) are 1 to 2.3 of its normalised units and of q at
    200 hPa (1 g/kg) 16, against 0.1 in training; fed to the VRE they made w and q worse with more observations.
    A model built with ``denoiser_obs`` gets the same rows as its denoiser's ``[y, mask]`` inputs (as in
    training).  The guidance still uses every observation with its own error.
    """
    noise = model.train_config.get("obs_noise")
    if H is None or sigma_o is None or not noise:
        return np.ones(0 if H is None else H.shape[0], bool)
    nh = model.lat.size * model.lon.size
    channel = np.asarray(abs(H).tocsr().argmax(axis=1)).ravel() // nh  # the channel of each row's largest weight
    return np.asarray(sigma_o) / model.std[channel] <= 3.0 * float(noise)


def _gridded_obs(H, y, model: LoadedModel, *, sigma_o=None) -> tuple[np.ndarray, np.ndarray]:
    """Observations spread onto the model grid for the VRE (and, with ``denoiser_obs``, the denoiser):
    ``(y_grid, mask)``, flat ``(C * nlat * nlon,)``.

    ``y_grid = H^T (y - H mean) / (H^T 1) / std`` (normalised) where ``H^T 1 > 0.9``, zero elsewhere:
    observations at grid points give their normalised value, and a model point counts as observed only when
    observations lie on it or surround it closely.  The VRE was trained on observations at grid points; on a
    finer user grid (96 x 192, 10 % of its columns) a threshold of 0.25 marked 54 % of the model values as
    observed with interpolated values and made the analysis worse (t850 RMSE 1.53 K against 1.38 K at 0.9;
    docs/benchmarks.md).  On a grid so dense that more model points count as observed than the largest
    fraction the model was trained with (the card's ``training.config.obs_fraction``), a random subset of
    that size is kept: at 181 x 360 (10 % of the columns) every point was observed, and the cap took t850
    RMSE from 1.49 to 1.42 K (one run).  Given ``sigma_o``, only the rows :func:`_vre_rows` keeps are used.
    The guidance still uses every observation.
    """
    nh = model.lat.size * model.lon.size
    if H is not None and sigma_o is not None:  # with their errors: only those as accurate as in training
        keep = _vre_rows(H, sigma_o, model)
        H, y = (H[keep], y[keep]) if keep.any() else (None, None)
    if H is None:
        return np.zeros(model.channels * nh), np.zeros(model.channels * nh, np.float32)
    mean_vec, std_vec = np.repeat(model.mean, nh), np.repeat(model.std, nh)
    den = np.asarray(abs(H).T @ np.ones(H.shape[0])).ravel()
    num = H.T @ (y - H @ mean_vec)
    ok = den > 0.9
    top = model.train_config.get("obs_fraction")
    if top:  # keep the VRE within the observed fractions it was trained on (a dense user grid observes every point)
        rng = np.random.default_rng(0)
        for c in range(model.channels):
            part = ok[c * nh:(c + 1) * nh]
            idx = np.flatnonzero(part)
            if idx.size > float(top[1]) * nh:
                drop = rng.choice(idx, idx.size - int(float(top[1]) * nh), replace=False)
                part[drop] = False
    return np.where(ok, num / np.maximum(den, 1e-12) / std_vec, 0.0), ok.astype(np.float32)


def _run_model(model, xb, avail, H, y, sigma_o, *, members, steps, seed, device, guidance, progress, balance=(),
               calibrate=False, antithetic=False):
    import torch

    from .model.guidance import ObsTerm
    from .model.sampler import sample
    from .obs.operator import to_torch

    c, (nlat, nlon) = model.channels, (model.lat.size, model.lon.size)
    nh = nlat * nlon
    mean_vec = np.repeat(model.mean, nh)
    std_vec = np.repeat(model.std, nh)
    dev = next(model.net.parameters()).device
    xb_n = ((xb - model.mean[:, None]) / model.std[:, None]) * avail[:, None]
    bg = torch.as_tensor(xb_n.reshape(1, c, nlat, nlon), dtype=torch.float32, device=dev)
    bmask = torch.as_tensor(avail.astype(np.float32).reshape(1, c, 1, 1), device=dev)
    terms = []
    if H is not None:
        Hn = H @ sp.diags(std_vec)
        d = y - H @ mean_vec
        op = to_torch(Hn, device=dev)
        shape = (c, nlat, nlon)
        terms.append(ObsTerm(
            torch.as_tensor(d, dtype=torch.float32),
            lambda x: op(x.reshape(x.shape[0], -1)),
            lambda u: op.adjoint(u).reshape(u.shape[0], *shape),
            torch.as_tensor(sigma_o**2, dtype=torch.float32),
        ))
    grid_obs, mask = _gridded_obs(H, y, model, sigma_o=sigma_o)
    yg = torch.as_tensor(grid_obs.reshape(1, c, nlat, nlon), dtype=torch.float32, device=dev)
    mg = torch.as_tensor(mask.reshape(1, c, nlat, nlon), device=dev)
    with torch.no_grad():
        cond, recon = model.net.condition(bg, yg, mg, bmask)
    ens = sample(model.net.denoiser, shape=(c, nlat, nlon), terms=terms, cond=cond[0], members=members,
                 steps=steps, seed=seed, device=dev, guidance=guidance if terms else None, progress=progress,
                 antithetic=antithetic)
    if calibrate and members > 1:
        from .model.spread import apply_spread_factor

        ens = apply_spread_factor(ens, model.factor(antithetic).to(ens.device))
    if balance:  # an ensemble by its own spread; one member by the prior's (which knows the missing channels)
        bal = model.balance(balance)
        ens = bal.ensemble(ens) if members > 1 else bal(ens, spread=model.net.denoiser.data_std(cond[:1]))
    out = ens.detach().cpu().double().numpy().reshape(members, c, nh)
    rec = None if recon is None else recon.detach().cpu().double().numpy().reshape(c, nh)
    to_si = lambda a: a * model.std[:, None] + model.mean[:, None]
    return np.stack([to_si(m) for m in out]), (None if rec is None else to_si(rec))


def _background_check(problem, qc: float | None) -> None:
    """Flag observations far from the background, as the OI path does (sigma_b from the innovations)."""
    from .assimilate import _sigma_b
    from .obs.diagnostics import model_equivalent
    from .obs.qc import FLAGS, background_check

    if qc is None:
        return
    for target in problem.targets.values():
        d = target.y - model_equivalent(target, target.background)
        cand = target.flags == FLAGS["used"]
        wlev = target.level_weights()
        sigma_b, _ = _sigma_b(target, None, d, cand, wlev, warn=False)
        reject = cand & background_check(np.where(cand, d, 0.0), target.sigma_o, wlev @ sigma_b, k=qc)
        target.flags[reject] = FLAGS["rejected_by_background_check"]


def assimilate_phyda(background: xr.Dataset, obs, *, model=None, members: int = 8, steps: int = 16,
                     seed: int = 0, device: str = "auto", guidance: str = "diag-fwd", progress: bool = False,
                     qc: float | None = 5.0, problem_kwargs: dict | None = None, balance="auto",
                     calibrate="auto", antithetic: bool = True, **overrides) -> xr.Dataset:
    """Ensemble analysis with the PhyDA diffusion prior; see :func:`xphyda.assimilate.assimilate`.

    Returns the background's variables on its own grid (with a ``member``
    dimension when ``members > 1``), the per-observation diagnostics (of the
    ensemble mean), and provenance in ``history``.
    """
    from .assimilate import _history
    from .obs.diagnostics import diagnostics
    from .obs.problem import build_problem

    for label, v, low, eg in (("members", members, 1, 8), ("steps", steps, 1, 16), ("seed", seed, 0, 0)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < low:
            raise ModelError(f"{label} must be a whole number of at least {low}; got {v!r}. Fix: pass e.g. {label}={eg}")
    require_bool("antithetic", antithetic, fix="pass antithetic=True for mirrored member pairs, else False")
    lm = load(model, device=device)
    balance = _balance_laws(balance, lm, members)
    if calibrate not in ("auto", True, False):
        raise ModelError(f"calibrate must be 'auto', True or False, got {calibrate!r}")
    antithetic = bool(antithetic) and members > 1
    if calibrate is True and lm.factor(antithetic) is None:
        kind = "for mirror-pair (antithetic) ensembles " if antithetic else ""
        raise ModelError(
            f"model {lm.path.name} carries no spread calibration {kind}so calibrate=True cannot be applied; pass "
            f"calibrate=False{', or antithetic=False' if antithetic and lm.spread_factor is not None else ''}, "
            "or add it (scripts/bundle_model.py --balance-from RUN/work --calibrate)"
        )
    calibrate = bool(calibrate) and lm.factor(antithetic) is not None
    mapping = _map_background(background, lm, overrides)
    grid = mapping.grid
    problem = build_problem(background, obs, **(problem_kwargs or {}))
    _background_check(problem, qc)
    w_in = _to_model_grid(grid.lat_values, grid.lon_values, lm.lat, lm.lon)
    p_out = _bilinear(lm.lat, lm.lon, grid.lat_values, grid.lon_values)
    times = range(background.sizes[grid.time]) if grid.time in background.dims else [None]
    increments = {}  # (name, level index) -> list over time of (members, nlat_u*nlon_u)
    analyses_si = {n: t.background.copy() for n, t in problem.targets.items()}
    floored = {}  # name -> [values set to 0, values]
    for ti, t in enumerate(times):
        xb, avail, xb_user = _model_inputs(background, lm, mapping, t, w_in)
        ratio = None if mapping.reduced is None else mapping.ratios[ti]
        H, y, sig, used = _obs_operator(problem, lm, mapping, p_out, ti, ratio)
        _flag_not_analysed(problem, used, ti)
        ens, _ = _run_model(lm, xb, avail, H, y, sig, members=members, steps=steps, seed=seed + 7919 * ti,
                            device=device, guidance=guidance, progress=progress, balance=balance,
                            calibrate=calibrate, antithetic=antithetic)
        for c, src in enumerate(mapping.source):
            if src is None:
                continue
            inc = (ens[:, c] - xb[c]) @ p_out.T  # (members, nh_user)
            if c in xb_user:  # never negative: no member below 0 on the user's grid
                floor = -xb_user[c]
                count = floored.setdefault(src[0], [0, 0])
                count[0], count[1] = count[0] + int((inc < floor).sum()), count[1] + inc.size
                inc = np.maximum(inc, floor)
            pieces = [(src, inc)]
            if mapping.reduced is not None and c == mapping.reduced[1]:
                pieces.append(((mapping.reduced[0], None), inc * ratio))  # msl_a = msl_b + k (sp_a - sp_b)
            for key, v in pieces:
                increments.setdefault(key, []).append(v)
                if key[0] in analyses_si:
                    analyses_si[key[0]][ti, 0 if key[1] is None else key[1]] += v.mean(0).reshape(grid.shape)
    _warn_not_analysed(problem, lm, mapping)
    _warn_poor_fit(problem, analyses_si, lm)
    out = _assemble(background, mapping, increments, members, times)
    diag = diagnostics(problem, analyses_si, background)
    out = xr.merge([out, diag], join="exact", compat="no_conflicts", combine_attrs="override")
    out.attrs = dict(background.attrs)
    note = (f"model {lm.path.name} ({lm.card.get('description', '')}); {members} members"
            f"{' in mirror pairs (antithetic)' if antithetic else ''}{', the last unpaired' if antithetic and members % 2 else ''}, {steps} steps, "
            f"guidance {guidance}, seed {seed}, balance {list(balance) or 'none'}, spread calibration {'on' if calibrate and members > 1 else 'off'}; channels filled by the prior: "
            f"{[n for n, s in zip(lm.names, mapping.source) if s is None]}; "
            + (f"{mapping.reduced[0]} analysed through {mapping.source[mapping.reduced[1]][0]} (the background's "
               "ratio msl/sp held); " if mapping.reduced else "")
            + "background variables not analysed (not served by the model): "
            f"{sorted(set(map(str, background.data_vars)) - {s[0] for s in increments})}" + _floor_note(floored))
    out.attrs["history"] = _history(background, problem, "phyda", note)
    return out


def _warn_poor_fit(problem, analyses_si: dict, model: LoadedModel) -> None:
    """Warn (:class:`~xphyda.errors.PoorFitWarning`) for each target whose ensemble mean fits its used observations
    worse than the background did (:func:`poor_fit_line`)."""
    import warnings

    from .assimilate import _outside_frame
    from .errors import PoorFitWarning
    from .obs.diagnostics import model_equivalent
    from .obs.qc import FLAGS

    worse = []
    for name, target in problem.targets.items():
        if name not in analyses_si:
            continue
        used = target.flags == FLAGS["used"]
        omb, oma = (target.from_si(target.y[used] - model_equivalent(target, x)[used], difference=True)
                    for x in (target.background, analyses_si[name]))
        worse.append(poor_fit_line(name, omb, oma, target.units or ""))
    worse = [w for w in worse if w]
    if worse:
        warnings.warn(poor_fit_message(worse, model.path.name, model.card.get("description", "see its card")),
                      PoorFitWarning, stacklevel=_outside_frame())


def poor_fit_line(name: str, omb, oma, units: str, least: int = 10) -> str | None:
    """``"'t': O - A ..., O - B ... K (n observations)"`` when the RMS of ``oma`` (O - A of the used observations)
    is above that of ``omb`` (O - B) over at least ``least`` observations, else None."""
    omb, oma = np.asarray(omb, dtype=float), np.asarray(oma, dtype=float)
    if omb.size < least:
        return None
    rb, ra = float(np.sqrt(np.mean(omb**2))), float(np.sqrt(np.mean(oma**2)))
    return f"{name!r}: O - A {ra:.3g}, O - B {rb:.3g} {units} ({omb.size} observations)" if ra > rb else None


def poor_fit_message(worse: list[str], name: str, description: str) -> str:
    """The text of a :class:`~xphyda.errors.PoorFitWarning`: ``worse`` holds :func:`poor_fit_line`'s lines."""
    return (
        f"the PhyDA analysis fits the observations worse than the background did (RMS, ensemble mean): "
        f"{'; '.join(worse)}. The background is probably far from the states model {name!r} was trained on "
        f"({description}). Fix: compare with method='oi', and for such data use a model trained on data like "
        "them (phyda train, docs/models.md)"
    )


def _balance_laws(balance, model: LoadedModel, members: int) -> tuple[str, ...]:
    """The laws to balance.

    ``"auto"``: when the model carries balance statistics, both laws for an
    ensemble (weighted by its own spread) and the hydrostatic balance alone for
    one member (with the fixed prior spread the continuity balance degrades
    omega; see :meth:`xphyda.model.balance.Balance.ensemble`).
    """
    from .model.balance import BALANCE_LAWS

    if balance is None or balance is True or (isinstance(balance, str) and balance == "auto"):
        if model.balance_stats is None:
            return ()
        return ("hydrostatic", "continuity") if members > 1 else ("hydrostatic",)
    if balance is False:
        return ()
    try:
        laws = (balance,) if isinstance(balance, str) else tuple(dict.fromkeys(balance))
    except TypeError:
        laws = (balance,)
    bad = [law for law in laws if law not in BALANCE_LAWS]
    if bad:
        raise ModelError(
            f"balance {balance!r}: unknown laws {bad}; expected 'auto' (or True/None), False or (), or a subset of "
            f"{BALANCE_LAWS}"
        )
    if laws and model.balance_stats is None:
        model.balance(laws)  # raises with the fix
    return laws


def _assemble(background, mapping, increments, members, times) -> xr.Dataset:
    from .units import parse_units, si_scale

    grid = mapping.grid
    out = background.copy(deep=False)
    for name in {src[0] for src in increments}:
        da = background[name]
        kinds = [mapping.kinds[c] for c, s in enumerate(mapping.source) if s is not None and s[0] == name]
        if not kinds and mapping.reduced is not None and name == mapping.reduced[0]:
            kinds = [VARIABLES["msl"].kind]  # the one analysed variable that is not a channel (_reduce)
        kind = kinds[0]
        scale, _ = si_scale(parse_units(da.attrs.get("units"), name=name), kind)
        order = [d for d in (grid.time, grid.level, grid.lat, grid.lon) if d is not None and d in da.dims]
        base = da.transpose(*order)
        inc = np.zeros((members,) + base.shape)
        slots = []
        for (n, k), per_time in increments.items():
            if n != name:
                continue
            for ti, v in enumerate(per_time):
                idx = [slice(None)]
                if grid.time in order:
                    idx.append(ti)
                if grid.level in order:
                    idx.append(k)
                slots.append(tuple(idx))
                inc[tuple(idx)] = v.reshape((members,) + grid.shape) / scale
        values = base.values[None] + inc
        if kind in NON_NEGATIVE:  # floored in SI already; exactly 0 in the user's units too (no offset)
            for idx in slots:
                values[idx] = np.maximum(values[idx], 0.0)
        new = xr.DataArray(values.astype(da.dtype, copy=False), dims=("member",) + base.dims,
                           coords=base.coords, attrs=dict(da.attrs))
        new = new.transpose("member", *da.dims)
        out[name] = new if members > 1 else new.isel(member=0, drop=True)
    if members > 1:
        # variables the model does not serve are carried unchanged in every member (zero spread)
        analysed = {src[0] for src in increments}
        for name, da in background.data_vars.items():
            if name not in analysed and grid.lat in da.dims and grid.lon in da.dims:
                out[name] = da.expand_dims(member=members)
        out = out.assign_coords(member=("member", np.arange(members), {"long_name": "ensemble member"}))
    return out


def encode(background: xr.Dataset, obs=None, *, model=None, device: str = "auto", **overrides) -> xr.Dataset:
    """The VRE's dense reconstruction (and latent features) of a background and observations.

    The VRE runs on the model grid; its output is interpolated (bilinear) to
    the input's grid.  Returns a Dataset on the input's latitude and longitude
    with one variable per model channel (``z500``, ``t850``, ... in SI units)
    and ``features`` (``feature``, lat, lon): the VRE's latent channels
    (dimensionless), which condition the denoiser.  Observations of variables
    or levels that are not channels of the model are left out with a
    :class:`~xphyda.errors.NotAnalysedWarning`, as in an analysis.  Humidity
    below 0 is set to 0, as in an analysis, with its share in ``history``.
    A background with several times is encoded time by time (each with its
    own observations, matched as in an analysis) and the result has the same
    time dimension; with one time, the maps are 2-D and the time is a scalar
    coordinate.
    """
    import torch

    from .obs.problem import build_problem

    lm = load(model, device=device)
    if lm.net.vre is None:
        raise ModelError(
            f"model {lm.path.name!r} was trained without a VRE; encode needs one. Fix: use a model trained with "
            "the VRE (the bundled one is), or train one (phyda train; the VRE is on unless --no-vre)"
        )
    mapping = _map_background(background, lm, overrides)
    grid = mapping.grid
    w_in = _to_model_grid(grid.lat_values, grid.lon_values, lm.lat, lm.lon)
    p_out = _bilinear(lm.lat, lm.lon, grid.lat_values, grid.lon_values)
    times = range(background.sizes[grid.time]) if grid.time in background.dims else [None]
    c, nlat, nlon = lm.channels, lm.lat.size, lm.lon.size
    nh = nlat * nlon
    problem = None
    if obs is not None:
        problem = build_problem(background, obs)
    dev = next(lm.net.parameters()).device
    t = lambda a: torch.as_tensor(np.asarray(a, np.float32).reshape(1, c, nlat, nlon), device=dev)
    recs, featss = [], []
    for ti, time in enumerate(times):
        xb, avail, _ = _model_inputs(background, lm, mapping, time, w_in)
        yg = np.zeros((c, nh))
        mg = np.zeros((c, nh), np.float32)
        if problem is not None:
            ratio = None if mapping.reduced is None else mapping.ratios[ti]
            H, y, sig, used = _obs_operator(problem, lm, mapping, p_out, ti, ratio)
            _flag_not_analysed(problem, used, ti)
            yg, mg = _gridded_obs(H, y, lm, sigma_o=sig)
        xb_n = ((xb - lm.mean[:, None]) / lm.std[:, None]) * avail[:, None]
        with torch.no_grad():
            rec, feats = lm.net.vre(t(xb_n), torch.as_tensor(avail.astype(np.float32).reshape(1, c, 1, 1), device=dev),
                                    t(yg), t(mg))
        recs.append(rec[0].cpu().double().numpy().reshape(c, nh) * lm.std[:, None] + lm.mean[:, None])
        featss.append(feats[0].cpu().double().numpy().reshape(feats.shape[1], nh))
    if problem is not None:
        _warn_not_analysed(problem, lm, mapping)
    shape = grid.shape
    rec = np.stack([(p_out @ r.T).T.reshape((c,) + shape) for r in recs], axis=1)  # (channel, time, lat, lon)
    keep = [i for i, k in enumerate(mapping.kinds) if k in NON_NEGATIVE]  # humidity is never negative
    floored = {lm.names[i]: [int((rec[i] < 0).sum()), rec[i].size] for i in keep}
    rec[keep] = np.maximum(rec[keep], 0.0)
    feats = np.stack([(p_out @ f.T).T.reshape((-1,) + shape) for f in featss], axis=1)  # (feature, time, ...)
    several = len(times) > 1
    if not several:
        rec, feats = rec[:, 0], feats[:, 0]
    coords = {grid.lat: background[grid.lat], grid.lon: background[grid.lon]}
    dims = (grid.lat, grid.lon)
    if grid.time is not None and grid.time in background.coords:
        coords[grid.time] = background[grid.time] if several else background[grid.time].squeeze(drop=True)
        dims = ((grid.time,) if several else ()) + dims
    from .data.channels import ChannelSpec

    spec = ChannelSpec.from_dict(lm.card["channels"])
    data = {n: (dims, rec[i], {"units": spec.units[i], "long_name": f"VRE reconstruction of {n}"})
            for i, n in enumerate(lm.names)}
    data["features"] = (("feature",) + dims, feats.astype(np.float32),
                        {"units": "1", "long_name": "VRE latent features (conditioning of the denoiser)"})
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return xr.Dataset(data, coords=coords, attrs={
        "title": "xphyda virtual reconstruction", "model": lm.path.name,
        "history": f"{stamp}: xphyda encode with model {lm.path.name}; {len(times)} time{'s' if several else ''}; "
                   f"background channels available: {int(avail.sum())} of {c}; observations: {'yes' if obs is not None else 'none'}" + _floor_note(floored),
    })
