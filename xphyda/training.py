"""Train a PhyDA prior on a store: the Python side of ``phyda train``.

This is the xarray front of :mod:`xphyda.model.train`: it opens the store with
the data pipeline, fixes the channel layout of a preset, computes (or reloads)
the normalisation statistics on the training years, builds the network and
the physics term, runs the resumable training loop, and writes the model
folder (``model.safetensors`` with the EMA weights, and ``card.json``).

One process::

    phyda train --preset jcm-t31-v1 --data /path/to/corpus --steps 20000

Many GPUs or nodes (DistributedDataParallel; each process takes a shard of
every batch)::

    python -m torch.distributed.run --nproc_per_node=4 -m xphyda.cli train --preset era5-v1 --data ERA5_STORE
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

from .errors import DataError, ModelError, require_bool

__all__ = [
    "background_regression",
    "balance_group",
    "calibration_group",
    "channel_index",
    "preset_config",
    "train_prior",
]


def preset_config(preset: str) -> dict:
    """The training set-up of a named preset (see :data:`xphyda.models.PRESETS`).

    Examples
    --------
    >>> preset_config("era5-v1")["grid"]["nlat"]
    128
    """
    from .models import PRESETS

    if preset not in PRESETS:
        raise ModelError(f"unknown preset {preset!r}; available presets: {sorted(PRESETS)}")
    return PRESETS[preset]


def balance_group(dataset, spec, stats, lat, lon, *, samples: int = 200, batch: int = 25) -> dict | None:
    """The checkpoint's ``"balance"`` tensors (:func:`xphyda.model.balance.balance_statistics`) from training truths.

    ``samples`` states spread evenly over ``dataset``; ``None`` when the model
    lacks a variable the laws need (u, v, w, z, t on at least two levels).
    """
    import numpy as np
    import torch

    from .model.balance import BALANCE_LAWS, balance_statistics
    from .model.physics_loss import PhysicsLoss

    index = channel_index(spec)
    if len(spec.levels) < 2 or any(k not in index for k in ("u", "v", "w", "z", "t")) or lat is None:
        return None
    physics = PhysicsLoss(lat=lat, lon=lon, levels_hpa=spec.levels, index=index, mean=stats.mean, std=stats.std,
                          laws=BALANCE_LAWS)
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(samples, len(dataset))).astype(int))
    batches = (torch.stack([dataset[int(i)]["truth"] for i in picks[k:k + batch]]) for k in range(0, picks.size, batch))
    return balance_statistics(batches, physics)


def calibration_group(net, dataset, lat, *, cases: int = 8, members: int = 8, steps: int = 16,
                      fraction: float = 0.1, seed: int = 0, balance=None) -> dict:
    """The checkpoint's ``"calibration"`` tensors: per-channel spread factors (:mod:`xphyda.model.spread`).

    ``cases`` states spread evenly over ``dataset`` (use the validation split)
    are analysed as the front end does (observations of ``fraction`` of the
    grid values with normalised noise 0.1, ``diag-fwd`` guidance, ``members``
    members of ``steps`` steps); the factor makes their corrected spread-skill
    ratio 1 per channel.  With ``balance`` (a callable on an ensemble, e.g.
    :meth:`xphyda.model.balance.Balance.ensemble`, applied after the factor as
    ``assimilate`` does), the factor is corrected once for what the balance
    does to spread and error (it shrinks the spread of ``z`` and its error).
    Two factors: ``"spread_factor"`` for independent members and
    ``"spread_factor_antithetic"`` for mirror pairs (``sample(antithetic=True)``,
    whose mean is closer to the truth for the same spread).

    Returns
    -------
    dict
        ``{"spread_factor": (C,), "spread_factor_antithetic": (C,)}`` float32 CPU
        tensors, clipped to [0.1, 10].
    """
    import numpy as np
    import torch

    from .model.guidance import ObsTerm
    from .model.sampler import sample
    from .model.spread import apply_spread_factor, spread_factor
    from .model.train import simulate_observations

    gen = torch.Generator().manual_seed(seed)
    dev = next(net.parameters()).device  # the network's device (CPU or CUDA)
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(cases, len(dataset))).astype(int))
    kinds = {"spread_factor": False, "spread_factor_antithetic": True}
    ens, truths = {k: [] for k in kinds}, []
    for i in picks:  # each case read, observed and encoded once, then sampled both ways
        item = dataset[int(i)]
        x, b = item["truth"][None], item["background"][None]
        y, m = simulate_observations(x, fraction=(fraction, fraction), noise=0.1, generator=gen, groups=None)
        x, b, y, m = (t.to(dev) for t in (x, b, y, m))
        idx = torch.nonzero(m.flatten()).flatten()
        shape = tuple(x.shape[1:])

        def H(z, idx=idx):
            return z.flatten(1)[:, idx]

        def HT(u, idx=idx, shape=shape):
            flat = torch.zeros(u.shape[0], int(np.prod(shape)), dtype=u.dtype, device=u.device)
            return flat.index_copy(1, idx, u).reshape(-1, *shape)

        with torch.no_grad():
            cond, _ = net.condition(b, y, m)
        terms = [ObsTerm(y.flatten()[idx], H, HT, torch.full((idx.numel(),), 0.01, device=dev))] if idx.numel() else []
        for key, antithetic in kinds.items():
            ens[key].append(sample(net.denoiser, shape=shape, terms=terms, cond=cond[0], members=members, steps=steps,
                                   seed=seed + int(i), guidance="diag-fwd" if terms else None, device=dev,
                                   antithetic=antithetic))
        truths.append(x[0])
    w = torch.as_tensor(np.cos(np.deg2rad(np.asarray(lat, float))), dtype=torch.float32, device=dev)
    truths = torch.stack(truths)
    out = {}
    for key, draws in ens.items():
        stacked = torch.stack(draws)
        factor = spread_factor(stacked, truths, w)
        if balance is not None:
            after = torch.stack([balance(apply_spread_factor(e, factor)).to(e.dtype) for e in stacked])
            factor = (factor * spread_factor(after, truths, w)).clamp(0.1, 10.0)
        out[key] = factor.float().cpu()
    return out


def channel_index(spec) -> dict[str, list[int]]:
    """Channel indices per level variable, in level order: the layout the physics term needs.

    Examples
    --------
    >>> from xphyda.data.pipeline import ChannelSpec
    >>> channel_index(ChannelSpec(("u", "v"), (500, 850), ("sp",)))
    {'u': [0, 1], 'v': [2, 3]}
    """
    n = len(spec.levels)
    return {v: list(range(i * n, (i + 1) * n)) for i, v in enumerate(spec.level_variables)}


def _groups(spec) -> list[list[int]]:
    """Channels observed together in simulated observations: all levels of a variable; each surface field."""
    index = channel_index(spec)
    n_lev = len(spec.level_variables) * len(spec.levels)
    return list(index.values()) + [[n_lev + k] for k in range(len(spec.surface_variables))]


def _grid(cfg: dict, source_grid):
    from .data.pipeline import model_grid

    g = cfg.get("grid")
    if g is None or source_grid is None:
        return None
    nlat, nlon = source_grid
    if (nlat, nlon) == (g["nlat"], g["nlon"]):
        return None  # the store is on the model grid already (e.g. the jcm corpus)
    return model_grid(g["nlat"], g["nlon"], kind="equiangular")


def _check_global(ds, data) -> None:
    """The presets' models are global: a regional store is a GridError (it trained as if global before)."""
    import numpy as np

    from .errors import GridError

    lat = np.sort(np.asarray(ds["latitude"].values, dtype=float))
    lon = np.sort(np.mod(np.asarray(ds["longitude"].values, dtype=float), 360.0))
    dlat = float(np.median(np.diff(lat))) if lat.size > 1 else 180.0
    gaps = np.diff(np.concatenate([lon, lon[:1] + 360.0])) if lon.size else np.array([360.0])
    polar = max(90.0 - lat[-1], lat[0] + 90.0) if lat.size else 180.0  # the wider of the two polar caps left out
    if lat.size < 3 or polar > 1.5 * dlat or float(gaps.max()) > 3.0 * float(np.median(gaps)):
        raise GridError(
            f"the training data {data} cover latitudes {lat[0]:g} to {lat[-1]:g} and longitudes {lon[0]:g} to "
            f"{lon[-1]:g} (largest gap {float(gaps.max()):g} degrees); a preset's model is global, with periodic "
            "longitudes and both poles. Fix: train on a global store (a regional model is not supported)"
        )


def _cache(data, cfg: dict, work: Path, progress: bool, target=None) -> Path:
    """Write the model's channels once with one state per chunk (fast random access); reuse it after.

    ``target``: the grid (a Dataset of ``latitude`` and ``longitude``) to regrid to whatever the store's, the
    starting model's for a fine-tune; else the preset's grid when the store's size differs from it.
    """
    import numpy as np

    from .data.pipeline import open_store, write_store

    cache = work / "cache.zarr"
    done = work / "cache.done"
    if done.exists():
        return cache
    variables = list(cfg["variables"]) + list(cfg.get("surface", []))
    ds = open_store(data, variables=variables, levels=cfg["levels_hpa"])
    _check_global(ds, data)
    grid = _grid(cfg, (ds.sizes["latitude"], ds.sizes["longitude"]))
    if target is not None:
        same = all(ds.sizes[c] == target.sizes[c] and np.allclose(ds[c].values, target[c].values)
                   for c in ("latitude", "longitude"))
        grid = None if same else target
    if grid is not None:
        ds = open_store(data, variables=variables, levels=cfg["levels_hpa"], grid=grid)
    if progress:
        print(f"caching {len(ds.data_vars)} variables of {data} to {cache} (one state per chunk)")
    write_store(ds, cache, time_chunk=1)
    done.write_text("ok")
    return cache


def background_regression(dataset, work: Path, *, n: int = 256) -> dict[str, list[float]]:
    """Per-channel regression of the truth on the background (normalised), cached in ``work``.

    ``gain = <truth background> / <background^2>`` (clipped to [0, 1]) and
    ``spread = rms(truth - gain * background)``: the centre and the EDM
    ``sigma_data`` of the background-centred denoiser.  Where the background
    predicts the truth well (geopotential, temperature a day ahead) the gain
    is near 1 and the spread small; where it does not (vertical velocity) the
    gain is near 0 and the prior falls back to climatology.  Computed once
    from ``n`` evenly spaced training pairs and kept in
    ``work/background_regression.json`` so that a resumed run uses the same values.
    """
    import numpy as np

    path = Path(work) / "background_regression.json"
    if path.exists():
        return json.loads(path.read_text())
    idx = np.unique(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int))
    tb = bb = tt = 0.0
    for i in idx:
        item = dataset[int(i)]
        t, b = item["truth"].double(), item["background"].double()
        tb = tb + (t * b).mean(dim=(-2, -1)).numpy()
        bb = bb + (b * b).mean(dim=(-2, -1)).numpy()
        tt = tt + (t * t).mean(dim=(-2, -1)).numpy()
    gain = np.clip(tb / np.maximum(bb, 1e-12), 0.0, 1.0)
    spread = np.sqrt(np.maximum(tt - 2 * gain * tb + gain**2 * bb, 0.0) / idx.size)
    out = {"gain": [round(float(v), 6) for v in gain],
           "spread": [round(float(v), 6) for v in np.clip(spread, 0.02, 3.0)]}  # guards the weight 1 / spread^2
    _write_json(path, out)  # every process of a torchrun computes the same values; none reads half a file
    return out


def _initial_model(model, preset: str, names) -> tuple[dict, dict]:
    """The weights (``ema`` if saved) and card of a fine-tune's starting model, checked against ``preset``."""
    from .model.checkpoint import load_checkpoint
    from .models import find

    state, card = load_checkpoint(find(model))
    if card.get("state_dicts"):
        state = state.get("ema", state.get("net"))
    theirs = (card.get("channels") or {}).get("names") or []
    if card.get("preset") != preset or list(theirs) != list(names) or (card.get("architecture") or {}).get(
            "class") != "PhydaNet" or state is None:
        raise ModelError(
            f"init_from={str(model)!r} was trained with preset {card.get('preset')!r} and channels "
            f"{list(theirs)[:4]}...; this run's preset {preset!r} has {list(names)[:4]}... . Fine-tune a PhydaNet "
            f"model of the same preset (pass --preset {card.get('preset')}), or train from scratch without init_from."
        )
    return state, card


def _start_from(init: tuple[dict, dict], model, lat, lon):
    """The starting model's network with its weights, after checking that the data are on its grid.

    (Its channels were checked against the preset, which the data's follow, by :func:`_initial_model`.)
    """
    import numpy as np

    from .model.checkpoint import build_from_card

    state, card = init
    grid = card.get("grid") or {}
    if lat is None or not (
            np.shape(grid.get("latitude")) == np.shape(lat) and np.allclose(grid["latitude"], lat)
            and np.shape(grid.get("longitude")) == np.shape(lon) and np.allclose(grid["longitude"], lon)):
        raise ModelError(
            f"init_from={str(model)!r}: its grid ({len(grid.get('latitude', []))} x {len(grid.get('longitude', []))}) "
            f"must be the training data's ({0 if lat is None else len(lat)} x {0 if lon is None else len(lon)}); "
            "use data on the model's grid or train from scratch."
        )
    net = build_from_card(card)
    net.load_state_dict(state, strict=True)
    return net


ARCHITECTURE = {"widths": (32, 64, 128), "vre_widths": (16, 32, 64), "features": 8}  # the bundled model's


def _architecture(widths, vre_widths, features, *, init_from, use_vre: bool, grid: dict, resumed: dict) -> dict:
    """The network sizes of a run from scratch, checked against the preset's grid.

    Unset sizes are those of the run being resumed (``resumed``, its training
    state's record), else :data:`ARCHITECTURE`.  A fine-tune takes its model's
    sizes, so giving any of them with ``init_from`` is an error.
    """
    import numpy as np

    from .model.unet import check_grid

    given = {k: v for k, v in (("widths", widths), ("vre_widths", vre_widths), ("features", features)) if v is not None}
    if init_from is not None:
        if given:
            raise ModelError(
                f"{sorted(given)} given with init_from={str(init_from)!r}: a fine-tune keeps its model's network "
                "sizes. Fix: leave them unset, or train from scratch without init_from")
        return {}
    out = {**ARCHITECTURE, **{k: resumed[k] for k in ARCHITECTURE if k in resumed}, **given}
    for name in ("widths", "vre_widths"):
        value = out[name]
        if not (np.ndim(value) == 1 and len(value) > 0 and all(_positive_int(w) for w in value)):
            raise ModelError(f"{name} must be a non-empty sequence of positive integers, one channel count per "
                             f"resolution; got {value!r}. Fix: e.g. {name}={list(ARCHITECTURE[name])}")
        out[name] = tuple(int(w) for w in value)
        if grid.get("nlat") and grid.get("nlon") and (use_vre or name == "widths"):
            check_grid(len(out[name]), int(grid["nlat"]), int(grid["nlon"]))
    if not _positive_int(out["features"]):
        raise ModelError(f"features must be a positive integer (VRE latent channels); got {out['features']!r}. "
                         "Fix: e.g. features=8")
    return {"widths": out["widths"], "vre_widths": out["vre_widths"], "features": int(out["features"])}


def _denoiser_obs(value, init, *, use_vre: bool, resumed: dict) -> bool:
    """Whether the run's denoiser sees ``[y, mask]``: checked against the VRE and the starting model."""
    had = bool(((init or ({}, {}))[1].get("architecture") or {}).get("denoiser_obs", False))
    if value is None:
        return bool(resumed.get("denoiser_obs", had))
    value = require_bool("denoiser_obs", value, fix="pass denoiser_obs=True (or --denoiser-obs), or leave it unset")
    vre = (init[1].get("architecture") or {}).get("use_vre", True) if init is not None else use_vre
    if value and not vre:
        raise ModelError("denoiser_obs=True needs the VRE: without it the denoiser is conditioned on [y, mask] "
                         "already. Fix: drop denoiser_obs (or --denoiser-obs) for the no-VRE ablation")
    return value


def _data_id(data) -> str | None:
    """A store as an absolute path (or URL) for the run's record; None for an in-memory Dataset."""
    if isinstance(data, (list, tuple)):
        return " ".join(filter(None, (_data_id(d) for d in data))) or None
    if isinstance(data, (str, os.PathLike)):
        text = str(data)
        return text if "://" in text else str(Path(text).expanduser().resolve())
    return None


def _same_data(data, saved: dict, out: Path, preset: str | None = None) -> None:
    """A resumed run reads its cached copy of the store it was started with: another store (or preset) is an error.

    A run that has neither a cache nor a training state yet (refused before either was written) may start afresh.
    """
    if not ((out / "work" / "cache.done").exists() or (out / "work" / "train_state.safetensors").exists()):
        return
    if preset is not None and saved.get("preset") and saved["preset"] != preset:
        raise ModelError(
            f"{out} is a run of preset {saved['preset']!r}; this call gives preset {preset!r}. Fix: pass --preset "
            f"{saved['preset']} to resume it, or --out NEW_FOLDER for a run of {preset!r}"
        )
    was, now = saved.get("data"), _data_id(data)
    if was and now and was.rstrip("/") != now.rstrip("/"):
        raise ModelError(
            f"{out} is a run started on {was}; this call gives {now}. Resuming would go on training on the first "
            f"store's cached copy. Fix: pass --data {was} to resume it, or --out NEW_FOLDER to train on {now}"
        )


def _check_training_data(dataset, names, data, samples: int = 16) -> None:
    """:func:`_check_values` on ``samples`` states read from the data themselves.

    A fine-tune or a ``stats_from`` run brings its statistics from elsewhere, so they say nothing about these data.
    """
    import numpy as np

    n = len(dataset)
    if not hasattr(dataset, "read") or n == 0:
        return
    pick = np.unique(np.linspace(0, n - 1, min(n, samples)).round().astype(int))
    states = np.stack([np.asarray(dataset.read(int(i))[0], dtype=np.float64) for i in pick])  # (k, C, H, W)
    bad = ~np.isfinite(states)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(bad, np.nan, states), axis=(0, 2, 3))
    share = bad.mean(axis=(0, 2, 3))
    _check_values({nm: float(f) for nm, f in zip(names, share) if f > 0}, dict(zip(names, np.nan_to_num(mean))), data)


def _check_values(nonfinite: dict, means: dict, data) -> None:
    """Refuse training data with NaN or infinite values (``nonfinite``: share per channel), or temperatures and
    humidities (``means``: per channel) whose means are not those of kelvin and kg kg-1."""
    if nonfinite:
        listed = ", ".join(f"{n} {100 * f:.3g} %" for n, f in list(nonfinite.items())[:8])
        raise DataError(
            f"the training data {data} have NaN or infinite values in {len(nonfinite)} channels (share of the "
            f"sampled states' values: {listed}{' ...' if len(nonfinite) > 8 else ''}); expected finite values "
            "everywhere: one makes the loss NaN. Fix: fill them (ds.interpolate_na(...)) or leave out the times that "
            "have them (ds.dropna('time', how='any')), write a new store and train into a new --out (this run's "
            "work/ holds a copy of these values)"
        )
    for name, mean in means.items():
        kind = name.rstrip("0123456789")
        if kind in ("t", "t2m") and not 150.0 < mean < 350.0:
            raise DataError(
                f"the training data's {name} averages {mean:.4g} K: not a temperature in kelvin. Fix: check its units "
                "attribute (Celsius values labelled 'K'?) and correct it, e.g. ds['t'].attrs['units'] = 'degC', then "
                "train into a new --out (this run's work/ holds a copy of these values)"
            )
        if kind == "q" and not -1e-4 < mean < 0.05:
            raise DataError(
                f"the training data's {name} averages {mean:.4g} kg kg-1: not a specific humidity in kg kg-1. Fix: "
                "check its units attribute (g kg-1 values labelled 'kg kg-1'?) and correct it, then train into a new "
                "--out (this run's work/ holds a copy of these values)"
            )


def _check_numbers(*, steps, batch_size, lr, physics_lambda, laws, num_workers, seed) -> None:
    """The run's numbers and laws, checked before any folder is made (they reached torch as raw errors before)."""
    import math
    import numbers

    from .model.physics_loss import _NEEDS

    def whole(value, low):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low

    def real(value):
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)

    bad = [
        (name, value, want, eg) for name, value, ok, want, eg in (
            ("steps", steps, whole(steps, 1), "an integer of at least 1", "steps=2000"),
            ("batch_size", batch_size, whole(batch_size, 1), "an integer of at least 1", "batch_size=8"),
            ("lr", lr, real(lr) and lr > 0, "a finite number above 0", "lr=2e-4"),
            ("physics_lambda", physics_lambda, real(physics_lambda) and physics_lambda >= 0,
             "a finite number of at least 0 (0 trains without the physics term)", "physics_lambda=0.02"),
            ("num_workers", num_workers, whole(num_workers, 0), "an integer of at least 0", "num_workers=0"),
            ("seed", seed, whole(seed, 0), "an integer of at least 0", "seed=0"),
        ) if not ok
    ]
    if bad:
        name, value, want, eg = bad[0]
        raise ModelError(f"{name} must be {want}; got {value!r}. Fix: e.g. {eg} (phyda train --{name.replace('_', '-')})")
    laws = (laws,) if isinstance(laws, str) else tuple(laws)
    unknown = [law for law in laws if law not in _NEEDS]
    if unknown:
        raise ModelError(f"unknown physics laws {unknown}; expected some of {sorted(_NEEDS)}. Fix: check the spelling, "
                         "or pass physics_lambda=0 to train without the physics term")


def _positive_int(value) -> bool:
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def total_steps(card: dict) -> int | None:
    """All the training steps behind a model: its own and, for a fine-tune, its starting model's total.

    Examples
    --------
    >>> total_steps({"training": {"steps_done": 5000, "init_from": {"steps_done": 3000, "total_steps": 24000}}})
    29000
    >>> total_steps({"training": {"steps_done": 3000, "init_from": {"steps_done": 21000}}})  # an older card
    24000
    """
    training = card.get("training") or {}
    done = training.get("steps_done")
    parent = training.get("init_from")
    if done is None or not parent:
        return done
    before = parent.get("total_steps", parent.get("steps_done"))
    return None if before is None else int(before) + int(done)


def _channel_weights(weights, names) -> dict[str, float] | None:
    """``weights`` checked against the channel ``names`` (any order): ``{name: float}``, or None."""
    import numbers

    if weights is None or (isinstance(weights, dict) and not weights):
        return None
    example = f"{{{names[0]!r}: 4.0}}"
    if not isinstance(weights, dict):
        raise ModelError(f"channel_weights must be a dict of channel name to weight; got {weights!r}. "
                         f"Fix: e.g. channel_weights={example}")
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ModelError(f"channel_weights names {unknown}, which are not channels of this preset; "
                         f"expected some of {list(names)}. Fix: use the names as the model card spells them, "
                         f"e.g. {example}")
    bad = {k: v for k, v in weights.items() if isinstance(v, bool) or not isinstance(v, numbers.Real)
           or not math.isfinite(float(v)) or float(v) <= 0}
    if bad:
        raise ModelError(f"channel_weights must be positive finite numbers; got {bad}. Fix: e.g. {example}")
    return {k: float(v) for k, v in weights.items()}


def _read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} ({what}) cannot be read: {' '.join(str(exc).split())[:200]}. "
                         "Fix: pass another model or run, or delete the file to have it made again") from None


def _write_json(path: Path, value) -> None:
    """Write JSON atomically (a process reading the file never sees half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def _statistics_from(ref, names) -> tuple[dict, dict]:
    """``(normalisation, background regression)`` of a model (name or folder) or a training run folder.

    A run folder (``out`` of an earlier ``train_prior``, with ``work/stats.json``)
    gives the files its run computed; a model gives its card's normalisation and
    the background gain and spread its network was built with.  The channels
    must be ``names``, in that order.
    """
    from .data.stats import NormStats

    p = Path(ref) if isinstance(ref, (str, os.PathLike)) else None
    run = p / "work" if p is not None and (p / "work" / "stats.json").exists() else None
    if run is not None:
        if not (run / "background_regression.json").exists():
            raise ModelError(f"stats_from={str(ref)!r} is a training run without work/background_regression.json "
                             "(it stopped before computing it). Fix: pass a finished run or a model")
        norm = _read_json(run / "stats.json", "normalisation statistics")
        reg = _read_json(run / "background_regression.json", "background regression")
    else:
        from .models import read_card

        card = read_card(ref)  # a ModelError naming the models available if it cannot be found
        arch = card.get("architecture") or {}
        if "normalisation" not in card or "background_gain" not in arch or "sigma_data" not in arch:
            raise ModelError(f"stats_from={str(ref)!r}: its card has no normalisation or background regression "
                             "(it is not a background-centred PhydaNet). Fix: pass a model trained by phyda train, "
                             "or a training run folder")
        norm, reg = card["normalisation"], {"gain": arch["background_gain"], "spread": arch["sigma_data"]}
    try:
        norm = NormStats.from_dict(norm).to_dict()  # the form stats.json has
    except Exception as exc:
        raise ModelError(f"stats_from={str(ref)!r}: its normalisation statistics are incomplete "
                         f"({' '.join(str(exc).split())[:200]}). Fix: pass another model or run") from None
    theirs = list(norm.get("channels") or {})
    if theirs != list(names):
        order = " (the same channels in another order)" if sorted(theirs) == sorted(names) else ""
        raise ModelError(f"stats_from={str(ref)!r} has statistics for channels {theirs[:4]}... ({len(theirs)}){order}; "
                         f"this run has {list(names)[:4]}... ({len(names)}). Fix: take them from a model or run of "
                         "the same preset")
    gain, spread = (reg.get(k) if isinstance(reg, dict) else None for k in ("gain", "spread"))
    if not all(isinstance(v, list) and len(v) == len(names) for v in (gain, spread)):
        raise ModelError(f"stats_from={str(ref)!r} has no per-channel background regression (gain {gain!r:.60}, "
                         f"spread {spread!r:.60}; expected {len(names)} values each). Fix: pass a model or run "
                         "trained by phyda train (a background-centred network)")
    return norm, {"gain": gain, "spread": spread}


def _put_statistics(work: Path, norm: dict, reg: dict, ref) -> None:
    """Write the statistics into a run's ``work`` folder; a resumed run must have the same ones already."""
    for fname, value in (("stats.json", norm), ("background_regression.json", reg)):
        path = work / fname
        if path.exists():
            if _read_json(path, "statistics") != json.loads(json.dumps(value)):
                raise ModelError(f"{path} holds other statistics than stats_from={str(ref)!r}, so this run cannot "
                                 "use them. Fix: train into another folder, or resume without stats_from")
        else:
            _write_json(path, value)


def _static_inputs(net, names, source, lat, lon, *, init: bool, attention):
    """The network with the static fields ``names`` (read from ``source``) and attention, for this run.

    From scratch the network was built with them, so only the values are set;
    a fine-tune adds them with :func:`xphyda.model.phyda.adapt`, keeping its
    starting model's function.
    """
    import torch

    from .data.static import static_fields
    from .model.phyda import adapt, standardise_static

    if lat is None and names:
        raise ModelError("static fields need the training data's grid, which this store does not give. "
                         "Fix: train on a store with latitude and longitude coordinates")
    fields = static_fields(source, names, lat, lon) if names else {}
    if init:
        add_attention = True if attention and not net.config.get("attention") else None
        return adapt(net, static=fields or None, lat=lat, attention=add_attention) if fields or add_attention else net
    if fields:
        with torch.no_grad():
            values = [standardise_static(v, lat, name=f"static field {k!r}") for k, v in fields.items()]
            net.static_fields.copy_(torch.stack(values).to(net.static_fields))
    return net


def _run_inputs(static, static_from, attention, stats_from, *, init, init_from, data, saved: dict) -> dict:
    """The run's static fields, their store, attention and statistics source, checked before any folder is made.

    Unset options of a resumed run are those it was started with (``saved``,
    its ``work/run_options.json``).  A fine-tune adds fields and attention to
    its starting model, so naming what the model has already is an error here
    rather than after the data are cached.
    """
    if attention is not None:
        attention = require_bool("attention", attention, fix="pass attention=True (or --attention), or leave it unset")
    if static_from is not None and not static and not saved.get("static"):
        raise ModelError(f"static_from={str(static_from)!r} given without static fields to read from it. "
                         "Fix: name them with static=[...] (--static NAME ...), or drop static_from")
    if stats_from is not None and init is not None:
        raise ModelError(f"stats_from={str(stats_from)!r} given with init_from={str(init_from)!r}: a fine-tune keeps "
                         "its model's statistics. Fix: drop stats_from")
    from .data.static import check_static

    if isinstance(static, str):
        check_static(None, static)  # the DataError for a string instead of a list
    given = bool(static)
    names = [str(n) for n in static] if given else [str(n) for n in saved.get("static") or []]
    if static_from is None and not given:
        static_from = saved.get("static_from")
    if attention is None and init is not None:
        attention = saved.get("attention")
    if init is not None:
        arch = init[1].get("architecture") or {}
        twice = sorted(set(names) & set(arch.get("static") or []))
        if twice:
            raise ModelError(f"init_from={str(init_from)!r} has static fields {twice} already. "
                             "Fix: give only new fields (or none)")
        if attention is not None and bool(arch.get("attention")):
            raise ModelError(f"attention={attention} given, but init_from={str(init_from)!r} has attention already "
                             f"{'and a fine-tune cannot remove it' if not attention else ''}. Fix: leave attention unset")
    source = static_from if static_from is not None else data
    if names and (given or init is not None):  # a resumed run from scratch has the values in its state
        check_static(source, names)  # each field present, one finite map, not constant
    return {"static": names, "static_from": None if static_from is None else str(static_from),
            "source": source, "attention": attention,
            "stats_from": str(stats_from) if stats_from is not None else saved.get("stats_from")}


def train_prior(
    data,
    *,
    preset: str = "jcm-t31-v1",
    out: str | os.PathLike | None = None,
    steps: int = 2000,
    batch_size: int = 8,
    lr: float = 2e-4,
    lr_decay_steps: int = 0,
    device: str = "auto",
    physics_lambda: float = 0.02,
    laws=("continuity", "hydrostatic", "geostrophic"),
    channel_weights: dict[str, float] | None = None,
    use_vre: bool = True,
    widths=None,
    vre_widths=None,
    features: int | None = None,
    denoiser_obs: bool | None = None,
    static=(),
    static_from=None,
    attention: bool | None = None,
    stats_from=None,
    seed: int = 0,
    num_workers: int = 0,
    cache: bool = True,
    stats_max_times: int | None = 2000,
    export: bool = True,
    progress: bool = True,
    init_from: str | os.PathLike | None = None,
) -> Path:
    """Train (or resume training) a prior and write the model folder ``out``.

    Parameters
    ----------
    data : path or URL
        A training store: the jcm corpus folder (``traj*.zarr``) or an ERA5
        store in WeatherBench2 layout, netCDF or GRIB files.
    preset : str
        Channel layout and grid (``"jcm-t31-v1"`` or ``"era5-v1"``).
    out : path, optional
        Model folder (default: the user cache ``~/.cache/xphyda/models/<preset>``,
        or ``<preset>-user`` when a bundled model has the preset's name, which
        the user cache would otherwise hide);
        its ``work/`` subfolder holds the resumable state, the metrics log and
        the statistics.
    steps : int
        Total optimiser steps (a resumed run continues up to this number).
    batch_size : int
        Global batch size (split across processes under ``torchrun``).
    lr : float
        Peak learning rate (AdamW, linear warm-up).
    lr_decay_steps : int
        Anneal the learning rate to 0 along a half cosine over the last this
        many steps before ``steps`` (0: constant after the warm-up).  To anneal
        a run at its end, resume it with a larger ``steps`` and this set.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    physics_lambda : float
        Weight of the physics term (0 trains without it: the ablation).
    laws : sequence of str
        Physics laws in the term; laws whose variables the preset lacks (for
        example continuity without ``w``) are dropped, and said so.
    channel_weights : dict, optional
        Loss weight per channel name (``{"q200": 4.0}``; unnamed channels 1),
        rescaled to mean 1 so the physics term keeps its relative weight.  A
        fine-tune can spend more of the network on fields that matter most.
    use_vre : bool
        Condition through the virtual reconstruction encoder (``False``: the ablation).
    widths : sequence of int, optional
        U-Net widths of the denoiser, one per resolution (default ``(32, 64, 128)``,
        the bundled model's; the preset grid's latitude count must be divisible
        by ``2 ** (len(widths) - 1)`` and its longitude count by ``2 ** len(widths)``).
        The denoiser runs once per member and sampling step, so its size sets
        the cost of an analysis.  A resumed run keeps the sizes it was started
        with unless they are given.
    vre_widths : sequence of int, optional
        U-Net widths of the VRE (default ``(16, 32, 64)``); it runs once per analysis.
    features : int, optional
        VRE latent channels.
    denoiser_obs : bool, optional
        Condition the denoiser on the gridded observations ``[y, mask]`` as
        well as on the VRE's reconstruction (needs the VRE).  With
        ``init_from`` a model without these inputs gets them with zero weights
        (:func:`xphyda.model.phyda.adapt`), so the fine-tune starts from the
        same function; ``False`` with a model that has them removes them (its
        function then changes by what they had learned).  Default: the
        starting model's (or the resumed run's) choice, else False.
    static : sequence of str
        Time-invariant fields appended to the denoiser's inputs, by variable
        name in ``static_from`` (e.g. ``["lsm", "z_surface"]`` in the jcm
        corpus, ``["land_sea_mask", "geopotential_at_surface"]`` in a
        WeatherBench2 store), plus ``"latitude"`` for the grid's own latitude;
        regridded to the model grid if needed and standardised
        (:func:`xphyda.data.static.static_fields`); each must be one finite map
        that is not constant (checked before any folder is made).  With
        ``init_from`` they are added to the starting model's inputs with zero
        weight (:func:`xphyda.model.phyda.adapt`).  A resumed run (from scratch
        or a fine-tune) takes the fields and their store it was started with
        (``work/run_options.json``) unless given; the values are saved with the
        weights.  The card records them under ``training.static``.
    static_from : path or URL, optional
        The store that holds the static fields (default: ``data``).
    attention : bool, optional
        Self-attention at the denoiser's coarsest level (default: the resumed
        run's choice, else False; a fine-tune keeps its model's).  With
        ``init_from``, ``True`` adds it to a model without it, with a zero
        output projection.
    stats_from : str or path-like, optional
        Take the normalisation statistics and the background regression from
        this model (name or folder) or training run folder instead of
        computing them (which reads up to ``stats_max_times`` states: minutes
        and gigabytes on a large store).  Runs that share them are compared on
        equal terms (the ablations).  Not with ``init_from``, which brings its
        model's.
    seed : int
        Seed of batches, noise and simulated observations.
    num_workers : int
        DataLoader workers.
    cache : bool
        Copy the model's channels once to a store with one state per chunk.
    stats_max_times : int, optional
        States used for the normalisation statistics (evenly spaced).
    export : bool
        Write ``model.safetensors`` and ``card.json`` at the end.
    init_from : str or path-like, optional
        Fine-tune: start from this model's weights (a registered name such as
        ``"jcm-t31-v1"`` or a model folder) instead of random ones, with its
        architecture, normalisation statistics and background regression (so
        ``widths``, ``vre_widths``, ``features`` and ``use_vre`` are the
        model's); the optimiser starts afresh with the usual learning-rate
        warm-up and the step count from 0, the physics term at full weight.
        The model must have been trained with ``preset``; the data are
        regridded to its grid when cached (with ``cache=False`` they must be on it).
        A resumed fine-tune continues from its own state.

    Returns
    -------
    pathlib.Path
        The model folder.

    Raises
    ------
    ModelError
        For an unknown ``preset``, ``lr_decay_steps`` outside ``0..steps``,
        ``channel_weights`` naming a channel the preset lacks or holding a
        weight that is not a positive number, network sizes that are not
        positive integers or given together with ``init_from``, ``denoiser_obs``
        without the VRE, or an
        ``init_from`` model that cannot be found or was trained with another
        preset or grid; when resuming in ``out`` a run that was started with
        other network sizes or static fields; for ``static_from`` without
        ``static``, static fields or attention the ``init_from`` model has
        already, and a ``stats_from`` that cannot be read, is of other channels,
        is given with ``init_from`` or differs from the statistics ``out`` has.
    GridError
        If the preset's grid does not fit a U-Net of ``len(widths)`` (or
        ``len(vre_widths)``) resolutions.
    DataError
        If ``data`` does not exist, has a format that cannot be told, or cannot be
        read (checked before any folder is made), or if its training split is
        smaller than a batch; for static fields the store lacks or that are not
        one finite, non-constant map.
    """
    import numpy as np

    from .data.pipeline import prepare
    from .data.sources import open_source
    from .model.checkpoint import architecture_card, save_checkpoint
    from .model.phyda import PhydaNet, adapt
    from .model.physics_loss import PhysicsLoss
    from .model.train import TrainConfig, saved_sizes, train
    from .models import user_cache

    cfg = preset_config(preset)
    _check_numbers(steps=steps, batch_size=batch_size, lr=lr, physics_lambda=physics_lambda, laws=laws,
                   num_workers=num_workers, seed=seed)
    from .model.train import _resolve_device

    _resolve_device(device)  # an unknown device, or CUDA on a machine without, fails before any folder is made
    if (isinstance(lr_decay_steps, bool) or not isinstance(lr_decay_steps, (int, float, np.integer))
            or int(lr_decay_steps) != lr_decay_steps or not 0 <= lr_decay_steps <= steps):
        raise ModelError(
            f"lr_decay_steps must be an integer from 0 to steps={steps}; got {lr_decay_steps!r}. "
            "Fix: the number of final steps over which the learning rate anneals, e.g. steps // 10"
        )
    from .data.channels import ChannelSpec

    names = ChannelSpec(cfg["variables"], cfg["levels_hpa"], cfg.get("surface", ())).names
    use_vre = require_bool("use_vre", use_vre, fix="pass use_vre=False (or --no-vre) for the no-VRE ablation, else True")
    channel_weights = _channel_weights(channel_weights, names)  # checked before any folder is made
    if out is None:
        from .models import _bundled

        # the user cache is searched before the package: a run named like a bundled model would hide it
        shadow = (_bundled() / preset).is_dir()
        if shadow and (user_cache() / preset / "work").is_dir():
            raise ModelError(
                f"{user_cache() / preset} holds a run started in the default folder of an earlier xphyda; the default "
                f"is now {user_cache() / (preset + '-user')}, which does not hide the bundled model {preset!r}. Fix: "
                f"pass --out {user_cache() / preset} to resume that run (and move the model out of the user cache "
                "afterwards), or --out NEW_FOLDER"
            )
        out = user_cache() / (f"{preset}-user" if shadow else preset)
        if progress:
            print(f"training into {out} (pass --out to choose)")
    out = Path(out)
    saved = (_read_json(out / "work" / "run_options.json", "the run's options")
             if (out / "work" / "run_options.json").exists() else {})
    _same_data(data, saved, out, preset)
    # a run stopped before its first checkpoint has no training state: its sizes are in run_options.json
    before = saved_sizes(out / "work") or dict(saved.get("architecture") or {})
    sizes = _architecture(widths, vre_widths, features, init_from=init_from, use_vre=use_vre,
                          grid=cfg.get("grid") or {}, resumed=before)
    init = _initial_model(init_from, preset, names) if init_from is not None else None
    denoiser_obs = _denoiser_obs(denoiser_obs, init, use_vre=use_vre, resumed=before)
    options = _run_inputs(static, static_from, attention, stats_from, init=init, init_from=init_from, data=data,
                          saved=saved)
    if init is None and "use_vre" in before and bool(before["use_vre"]) != use_vre:
        raise ModelError(f"{out} is a run {'with' if before['use_vre'] else 'without'} the VRE; this call asks "
                         f"use_vre={use_vre}. Fix: {'drop --no-vre' if before['use_vre'] else 'pass --no-vre'} to "
                         "resume it, or --out NEW_FOLDER")
    # what fixes the network's shapes, for a run resumed before its first checkpoint (no training state yet)
    record = {**sizes, "use_vre": use_vre, "denoiser_obs": denoiser_obs,
              "attention": (bool(before.get("attention", False)) if options["attention"] is None
                            else bool(options["attention"])) if init is None else options["attention"]}
    statistics = _statistics_from(stats_from, names) if stats_from is not None else None
    resumed = cache and (out / "work" / "cache.done").exists()  # a resumed run reads its cached copy
    if isinstance(data, (str, os.PathLike, list, tuple)) and not resumed:
        # a missing, unknown or unreadable store fails here, before out/work/ is made (lazy: metadata only)
        for part in open_source(data, engine=None, chunks=None, storage_options=None)[0]:
            part.close()
    from .model.physics_loss import _NEEDS

    have = set(cfg["variables"])
    dropped = [law for law in laws if not set(_NEEDS[law]) <= have]
    laws = tuple(law for law in laws if law not in dropped)
    if dropped and progress:
        print(f"physics laws {dropped} dropped: preset {preset!r} lacks their variables")
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:  # one process writes the run's files; the others wait for cache.done and stats.done below
        if init is not None:  # the starting model's statistics, unless a resumed fine-tune has its own already
            arch = init[1]["architecture"]
            if not (work / "stats.json").exists():
                from .data.stats import NormStats

                _write_json(work / "stats.json", NormStats.from_dict(init[1]["normalisation"]).to_dict())
            if not (work / "background_regression.json").exists():
                _write_json(work / "background_regression.json",
                            {"gain": arch["background_gain"], "spread": arch["sigma_data"]})
        if statistics is not None:
            _put_statistics(work, *statistics, stats_from)
        _write_json(work / "run_options.json", {**{k: v for k, v in options.items() if k != "source"},
                                                "data": _data_id(data), "preset": preset, "architecture": record})
    target = None
    if init is not None and (init[1].get("grid") or {}).get("latitude") is not None:
        import xarray as xr

        target = xr.Dataset(coords={"latitude": ("latitude", np.asarray(init[1]["grid"]["latitude"], float)),
                                    "longitude": ("longitude", np.asarray(init[1]["grid"]["longitude"], float))})
    source = _cache(data, cfg, work, progress and rank == 0, target) if cache and rank == 0 else data
    if rank != 0:
        import time

        while not ((work / "stats.done").exists() and (not cache or (work / "cache.done").exists())):
            time.sleep(2)
        source = work / "cache.zarr" if cache else data
    variables = list(cfg["variables"]) + list(cfg.get("surface", []))
    td = prepare(source, variables=variables, levels=cfg["levels_hpa"], stats=work / "stats.json",
                 max_times=stats_max_times)
    # the statistics of these data (all sampled states) when computed here; a model's brought ones hold no "nonfinite"
    _check_values((td.stats.info or {}).get("nonfinite") or {}, dict(zip(td.stats.channels, td.stats.mean)), data)
    if td.split is None and rank == 0:
        import warnings

        warnings.warn(
            f"the training data {data} are too short for a time split (a training range, then a validation and a "
            "test year): every time is used for training, and an evaluation on these data (phyda evaluate) would "
            "score the model on its own training times. Fix: train on a longer store to hold years out",
            UserWarning, stacklevel=2,
        )
    if rank == 0:
        (work / "stats.done").write_text("ok")
    spec, stats = td.spec, td.stats
    dataset = td.dataset("train")
    _check_training_data(dataset, list(spec.names), data)  # statistics brought from a model say nothing of these data
    if len(dataset) < batch_size:
        raise DataError(f"the training split of {data} has {len(dataset)} samples, fewer than a batch of {batch_size}. "
                        "Fix: pass a smaller --batch-size, or train on a longer store")
    coords = dataset._reader.coords() if hasattr(dataset, "_reader") else None
    lat = np.asarray(coords["latitude"]) if coords else None
    lon = np.asarray(coords["longitude"]) if coords else None
    reg = background_regression(dataset, work)
    if init is not None:
        net = _start_from(init, init_from, lat, lon)
        use_vre = net.vre is not None
        if denoiser_obs != bool(net.config.get("denoiser_obs")):
            net = adapt(net, denoiser_obs=denoiser_obs)
        net = _static_inputs(net, options["static"], options["source"], lat, lon, init=True,
                             attention=options["attention"])
    else:
        static = options["static"] or list(before.get("static") or [])  # a resumed run's values come with its state
        net = PhydaNet(spec.n_channels, use_vre=use_vre, **sizes, centred=True, sigma_data=reg["spread"],
                       background_gain=reg["gain"], denoiser_obs=denoiser_obs, static=static,
                       grid=(len(lat), len(lon)) if static and lat is not None else None,
                       attention=bool(before.get("attention", False)) if options["attention"] is None
                       else options["attention"])
        if static and options["static"] and not (work / "train_state.safetensors").exists():  # else from the state
            net = _static_inputs(net, static, options["source"], lat, lon, init=False, attention=None)
    physics = None
    if physics_lambda > 0:
        physics = PhysicsLoss(lat=lat, lon=lon, levels_hpa=spec.levels, index=channel_index(spec),
                              mean=stats.mean, std=stats.std, laws=laws)
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, lr_decay_steps=int(lr_decay_steps), seed=seed, device=device,
                         physics_lambda=physics_lambda, physics_laws=tuple(laws), num_workers=num_workers,
                         channel_weights=None if channel_weights is None
                         else tuple(channel_weights.get(n, 1.0) for n in spec.names),  # in the data's channel order
                         **({"physics_warmup": 0} if init is not None else {}))  # a trained net needs no ramp
    result = train(net, dataset, config=config, out_dir=work, physics=physics, lat=lat, groups=_groups(spec),
                   progress=progress)
    if not export or rank != 0:
        return out
    provenance = {}
    try:
        import xarray as xr

        provenance = {k: str(v) for k, v in xr.open_zarr(source).attrs.items()} if Path(source).suffix == ".zarr" else {}
    except Exception:  # provenance is informative only
        provenance = {}
    card = {
        "name": out.name,
        "description": f"trained by phyda train with preset {preset!r} on {_data_id(data) or 'an in-memory Dataset'}",
        "preset": preset,
        "channels": spec.to_dict(),
        "variables": list(spec.level_variables),
        "surface_variables": list(spec.surface_variables),
        "levels_hPa": list(spec.levels),
        "units": list(spec.units),
        "grid": {"latitude": lat.tolist(), "longitude": lon.tolist()},
        "normalisation": stats.to_dict(),
        "training": {
            "data": _data_id(data) or str(type(data).__name__),
            "data_attrs": provenance,
            "split": td.split.to_dict() if td.split is not None else None,
            "lead_hours": 24,
            "config": asdict(config),
            "steps_done": result["step"],
            "last_metrics": result["metrics"],
            "physics_laws": list(laws) if physics is not None else [],
            "use_vre": use_vre,
            **({"static": {"names": options["static"], "from": str(options["source"])}} if options["static"] else {}),
            **({"stats_from": options["stats_from"]} if options["stats_from"] else {}),
            **({"init_from": {"model": str(init_from), "sha256": init[1].get("sha256"),
                              "steps_done": init[1].get("training", {}).get("steps_done"),
                              "total_steps": total_steps(init[1]),
                              **({"adapted_from": init[1]["adapted_from"]} if init[1].get("adapted_from") else {}),
                              # the starting model's own lineage, so a chain of fine-tunes keeps every link
                              **({"init_from": init[1]["training"]["init_from"]}
                                 if (init[1].get("training") or {}).get("init_from") else {})}}
                if init else {}),
        },
        "scores": {},
        **architecture_card(net),
    }
    save_checkpoint(out, {"ema": result["ema"]}, card, overwrite=True)  # the weights are safe first
    balance = balance_group(dataset, spec, stats, lat, lon)
    if balance is not None:  # then the balance statistics beside them
        save_checkpoint(out, {"ema": result["ema"], "balance": balance}, card, overwrite=True)
    (work / "card_preview.json").write_text(json.dumps({k: card[k] for k in ("name", "training")}, indent=1, default=str))
    return out
