"""Training: one process on CPU or GPU, or many with ``torchrun`` (DistributedDataParallel).

The objective per sample, with ``sigma`` drawn from EDM's log-normal::

    L = lambda_edm(sigma) <a_c |D(x + sigma n; sigma, c) - x|^2>
        + lambda_phys * ramp(step) * w(sigma) * L_phys(D, x)   (xphyda.model.physics_loss)
        + lambda_rec <a_c |R - x|^2>                     (the VRE's reconstruction R)

where ``ramp`` grows linearly to 1 over ``physics_warmup`` steps (an untrained
denoiser's residuals are huge and would otherwise dominate the first updates),
``<.>`` is the area-weighted mean over the grid, ``a_c`` optional per-channel
weights (``channel_weights``, mean 1; all 1 by default), ``c`` the conditioning
(background, VRE reconstruction and features) built from observations simulated
on the fly: a random fraction of grid points (log-uniform between
``obs_fraction``), each with a random subset of the variables, with Gaussian
noise ``obs_noise`` (in normalised units).

Runs are resumable: ``out_dir/train_state.safetensors`` + ``train_state.json``
hold the weights, the EMA weights, the optimiser moments and the step; nothing
is ever unpickled.  Under ``torchrun`` every rank runs the same loop on its own
shard of each batch (:class:`StepBatchSampler`); rank 0 logs and checkpoints.  Batches and
simulated observations are pure functions of ``(seed, step)``, so a resumed run
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from .physics_loss import PhysicsLoss, physics_weight
from .schedule import loss_weight

__all__ = ["TrainConfig", "area_weights", "learning_rate", "simulate_observations", "train"]


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (stored in the model card)."""

    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 200
    lr_decay_steps: int = 0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    p_mean: float = -1.2
    p_std: float = 1.2
    physics_lambda: float = 0.02
    physics_warmup: int = 500
    physics_laws: tuple[str, ...] = ("continuity", "hydrostatic", "geostrophic")
    rec_lambda: float = 1.0
    obs_fraction: tuple[float, float] = (0.005, 0.3)
    obs_noise: float = 0.1
    channel_weights: tuple[float, ...] | None = None
    checkpoint_every: int = 200
    log_every: int = 20
    num_workers: int = 0
    device: str = "auto"
    extra: dict = field(default_factory=dict)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then constant.

    With ``config.lr_decay_steps = N > 0`` the last ``N`` steps before
    ``config.steps`` follow a half cosine from ``config.lr`` down to 0, so a run
    can be annealed at its end.  The rate depends only on the step and the
    configuration, so a resumed run continues the same schedule.

    Parameters
    ----------
    config : TrainConfig
        Uses ``lr``, ``warmup``, ``steps`` and ``lr_decay_steps``.
    step : int
        The optimiser step about to be taken, from 0.

    Returns
    -------
    float
        The learning rate for that step.

    Examples
    --------
    >>> cfg = TrainConfig(steps=1000, lr=1e-3, warmup=100, lr_decay_steps=200)
    >>> [round(learning_rate(cfg, s), 6) for s in (0, 99, 500, 800, 900, 999)]
    [1e-05, 0.001, 0.001, 0.001, 0.0005, 0.0]
    """
    rate = config.lr * min(1.0, (step + 1) / max(1, config.warmup))
    n = int(config.lr_decay_steps)
    if n > 0:
        start = config.steps - n
        frac = min(1.0, max(0.0, (step - start) / n))
        rate *= 0.5 * (1.0 + math.cos(math.pi * frac))
    return rate


def area_weights(lat_deg) -> torch.Tensor:
    """Cell-area weights (nlat, 1) normalised to mean 1 (finite-volume areas of the grid)."""
    from ..physics.operators import SphereGrid

    lat = np.asarray(lat_deg, dtype=np.float64)
    g = SphereGrid(lat, np.arange(0.0, 360.0, 360.0 / 8))
    w = np.abs(g.dsin)
    return torch.as_tensor(w / w.mean(), dtype=torch.float32)[:, None]


def simulate_observations(truth: torch.Tensor, *, fraction: tuple[float, float], noise: float,
                          generator: torch.Generator, groups: list[list[int]] | None = None):
    """Random sparse observations of a normalised batch ``truth`` (B, C, H, W).

    Each sample gets its own observed fraction (log-uniform in ``fraction``) of
    grid points; at each observed point a random non-empty subset of the
    variable ``groups`` (channel index lists, e.g. all levels of one variable)
    is observed.  Returns ``(y, mask)`` with ``y`` zero where unobserved.
    """
    b, c, h, w = truth.shape
    lo, hi = math.log(fraction[0]), math.log(fraction[1])
    frac = torch.exp(lo + (hi - lo) * torch.rand(b, 1, 1, 1, generator=generator))
    points = (torch.rand(b, 1, h, w, generator=generator) < frac).float()
    groups = groups or [[k] for k in range(c)]
    keep = (torch.rand(b, len(groups), generator=generator) < 0.7).float()
    keep[keep.sum(1) == 0, 0] = 1.0
    chan = torch.zeros(b, c, 1, 1)
    for gi, chans in enumerate(groups):
        chan[:, chans] = keep[:, gi, None, None, None]
    mask = points * chan
    y = (truth.cpu() + noise * torch.randn(truth.shape, generator=generator)) * mask
    return y.to(truth.device), mask.to(truth.device)


# ------------------------------------------------------------------------ state I/O (safetensors only)
def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_train_state(out_dir: Path, net, ema, opt, step: int, config: TrainConfig, history: list) -> None:
    from safetensors.torch import save_file

    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    opt_tensors, opt_meta = _flatten_optimizer(opt)
    tensors.update(opt_tensors)
    tmp = out_dir / "train_state.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(out_dir / "train_state.safetensors")
    meta = {"step": step, "config": asdict(config), "optimizer": opt_meta, "rng": history[-1:] if history else [],
            "architecture": _sizes(net)}
    (out_dir / "train_state.json.tmp").write_text(json.dumps(meta, default=list))
    (out_dir / "train_state.json.tmp").replace(out_dir / "train_state.json")


def _trim_metrics(path: Path, step: int) -> None:
    """Drop the log lines of steps after ``step`` (an interrupted run logged them, this run repeats them) and any
    line cut short."""
    if not path.exists():
        return

    def logged(line: str) -> int | None:
        try:
            return int(json.loads(line).get("step", 0))
        except (ValueError, TypeError, AttributeError):  # a line cut short when the run was killed
            return None

    lines = path.read_text().splitlines()
    kept = [s for s in lines if (n := logged(s)) is not None and n <= step]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(s + "\n" for s in kept))
        tmp.replace(path)


_SIZES = ("channels", "use_vre", "features", "widths", "vre_widths", "groups", "denoiser_obs", "static", "grid",
          "attention", "recon_centre")


def _sizes(net) -> dict:
    """What fixes the shapes of a network's weights (a :class:`~xphyda.model.phyda.PhydaNet`'s config), or {}."""
    cfg = getattr(net, "config", None) or {}
    return {k: cfg[k] for k in _SIZES if k in cfg}


def _unreadable(out_dir: Path, what: str, reason) -> ModelError:
    return ModelError(
        f"{Path(out_dir) / what} cannot be read ({' '.join(str(reason).split())[:300]}), so the run cannot resume. "
        "Fix: delete train_state.safetensors and train_state.json there to start afresh, or train into another folder"
    )


def _state_meta(out_dir: Path) -> dict | None:
    """The training state's ``train_state.json`` in ``out_dir``, None without one, a ModelError if unreadable."""
    path = Path(out_dir) / "train_state.json"
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _unreadable(out_dir, path.name, exc) from exc
    if not isinstance(meta, dict) or "step" not in meta or "optimizer" not in meta:
        raise _unreadable(out_dir, path.name, "not a training state: no 'step' and 'optimizer'")
    return meta


def saved_sizes(out_dir: Path) -> dict:
    """The network sizes the training state in ``out_dir`` recorded: {} without one (or from an older xphyda)."""
    return ((_state_meta(out_dir) or {}).get("architecture")) or {}


def load_train_state(out_dir: Path, net, ema, opt) -> int:
    from safetensors.torch import load_file

    meta = _state_meta(out_dir)
    if meta is None:
        raise _unreadable(out_dir, "train_state.json", "the file is missing beside train_state.safetensors")
    try:
        tensors = load_file(str(out_dir / "train_state.safetensors"))
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise _unreadable(out_dir, "train_state.safetensors", exc) from exc
    saved, ours = meta.get("architecture") or {}, _sizes(net)
    differ = {k: (saved[k], ours[k]) for k in saved if k in ours and saved[k] != ours[k]}
    if differ:
        what = ", ".join(f"{k} {a} (this run: {b})" for k, (a, b) in differ.items())
        raise ModelError(
            f"{out_dir} holds the training state of another network ({what}), so this run cannot resume it. "
            "Fix: resume with the network sizes it was started with, or train into another folder"
        )
    try:
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:600]
        raise ModelError(
            f"{out_dir} holds a training state this network cannot load (written for another network, or by "
            f"another xphyda version): {detail}. Fix: resume with the settings it was started with, or train "
            "into another folder"
        ) from exc
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    _restore_optimizer(opt, tensors, meta["optimizer"])
    return int(meta["step"])


# ------------------------------------------------------------------------ distributed
def _channel_factors(values, net) -> torch.Tensor:
    """``config.channel_weights`` as a tensor rescaled to mean 1, or a :class:`ModelError` that says why not."""
    n = getattr(net, "config", {}).get("channels")
    try:
        a = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        a = None
    if a is None or (n is not None and a.numel() != n) or not bool(torch.isfinite(a).all() and (a > 0).all()):
        raise ModelError(f"channel_weights must be {f'{n} ' if n else ''}positive finite numbers, one per channel in "
                         f"channel order; got {values!r}. Fix: one weight per channel, or None for equal weights")
    return a / a.mean()


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _init_distributed(device: torch.device) -> bool:
    rank, world, _ = _dist_info()
    if world <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _resolve_device(device: str) -> torch.device:
    _, world, local = _dist_info()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local if world > 1 else 0)
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'. Fix: pass "
                         "device='auto' (CUDA when present, else the CPU)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ModelError(f"device {device!r} is not supported; expected 'auto', 'cpu', 'cuda' or 'cuda:N'. "
                         "Fix: pass device='auto'")
    if dev.type == "cuda" and dev.index is None and world > 1:
        dev = torch.device("cuda", local)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was requested but torch sees no GPU. Fix: use device='auto' or 'cpu'")
    return dev


class StepBatchSampler:
    """Batches of dataset indices as a pure function of ``(seed, step)``, for exact resumption.

    Each epoch is a permutation seeded by ``(seed, epoch)``; the global batch of
    a step is cut into ``world`` equal shards and rank ``rank`` takes its own.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, start_step: int, steps: int, rank: int = 0, world: int = 1):
        if n < batch_size:
            raise ModelError(f"the dataset has {n} samples, fewer than one batch of {batch_size}; use a smaller batch")
        self.n, self.batch, self.seed = n, batch_size, seed
        self.start, self.steps, self.rank, self.world = start_step, steps, rank, world

    def __len__(self) -> int:
        return max(0, self.steps - self.start)

    def __iter__(self):
        per_epoch = self.n // self.batch
        shard = self.batch // self.world
        for step in range(self.start, self.steps):
            epoch, pos = divmod(step, per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            batch = perm[pos * self.batch : (pos + 1) * self.batch]
            yield batch[self.rank * shard : (self.rank + 1) * shard].tolist()


def _step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + rank) * 1_000_033 + step)


# ------------------------------------------------------------------------ the loop
def train(net, dataset, *, config: TrainConfig, out_dir, physics: PhysicsLoss | None, lat,
          groups: list[list[int]] | None = None, progress: bool = True, log=print) -> dict:
    """Train ``net`` (a :class:`~xphyda.model.phyda.PhydaNet`) on ``dataset``; resumes from ``out_dir``.

    Parameters
    ----------
    net : PhydaNet
        Network whose ``forward(x_noisy, sigma, background, y, mask)`` returns
        ``(denoised, reconstruction)`` (reconstruction ``None`` without a VRE).
    dataset : torch.utils.data.Dataset
        Yields dicts with normalised ``"truth"`` and ``"background"`` tensors (C, H, W).
    config : TrainConfig
    out_dir : path
        Where the resumable state and ``metrics.jsonl`` are written.
    physics : PhysicsLoss or None
        The physics term (``None`` or ``config.physics_lambda == 0`` trains without it).
    lat : array_like
        Model latitudes (degrees), for the area weights.
    groups : list of list of int, optional
        Channel groups observed together (one per variable) in simulated observations.

    Returns
    -------
    dict
        ``{"step", "ema": state_dict, "metrics": last logged metrics}``.
    """
    from torch.utils.data import DataLoader

    factors = None if config.channel_weights is None else _channel_factors(config.channel_weights, net)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = _resolve_device(config.device)
    distributed = _init_distributed(device)
    rank, world, _ = _dist_info()
    net = net.to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step = 0
    if (out_dir / "train_state.safetensors").exists():
        step = load_train_state(out_dir, net, ema, opt)
        if rank == 0:
            log(f"resumed from step {step} in {out_dir}")
    if rank == 0:  # a run killed before its first checkpoint logged steps this one repeats
        _trim_metrics(out_dir / "metrics.jsonl", step)
    model = net
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if config.batch_size % world:
        raise ModelError(f"batch_size {config.batch_size} is not divisible by the {world} processes")
    sampler = StepBatchSampler(len(dataset), config.batch_size, seed=config.seed, start_step=step,
                               steps=config.steps, rank=rank, world=world)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers)
    if physics is not None:
        physics = physics.to(device)
    weights = area_weights(lat).to(device)
    if factors is not None:  # (C, H, 1): a per-channel factor on the area weights
        weights = weights * factors.to(device)[:, None, None]
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="train", unit="step")
    metrics_path = out_dir / "metrics.jsonl"
    last: dict = {}
    sd = net.denoiser.data_std()  # one value, or one per channel (training backgrounds are complete)
    sd_rms = float(sd.pow(2).mean().sqrt())
    t0 = time.perf_counter()
    saved_at = step
    # Ctrl-C (single process): finish the step in progress, save the state, then stop; a second one stops at once
    interrupted: list = []
    catch = world == 1 and threading.current_thread() is threading.main_thread()

    def _on_sigint(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)

    previous = signal.signal(signal.SIGINT, _on_sigint) if catch else None
    try:
        for batch in loader:
            gen = _step_generator(config.seed, rank, step)
            x = batch["truth"].to(device)
            bg = batch["background"].to(device)
            y, mask = simulate_observations(x, fraction=config.obs_fraction, noise=config.obs_noise, generator=gen, groups=groups)
            sigma = torch.exp(config.p_mean + config.p_std * torch.randn(x.shape[0], generator=gen)).to(device)
            noise = torch.randn(x.shape, generator=gen).to(device)
            denoised, recon = model(x + sigma[:, None, None, None] * noise, sigma, bg, y, mask)
            lam = loss_weight(sigma[:, None, None, None], sigma_data=sd.to(x.dtype))
            den = (lam * (denoised - x) ** 2 * weights).mean((1, 2, 3)).mean()
            loss = den
            parts = {"denoise": float(den.detach())}
            if recon is not None and config.rec_lambda > 0:
                rec = ((recon - x) ** 2 * weights).mean()
                loss = loss + config.rec_lambda * rec
                parts["reconstruction"] = float(rec.detach())
            if physics is not None and config.physics_lambda > 0:
                phys, per_law = physics(denoised, x)
                ramp = min(1.0, (step + 1) / max(1, config.physics_warmup))
                loss = loss + ramp * config.physics_lambda * (physics_weight(sigma, sigma_data=sd_rms) * phys).mean()
                parts.update({f"physics_{k}": float(v.detach().mean()) for k, v in per_law.items()})
            finite = bool(torch.isfinite(loss))
            if distributed:  # every process stops together (one alone would leave the others waiting in DDP)
                import torch.distributed as dist

                flag = torch.tensor(float(finite), device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MIN)
                finite = bool(flag.item())
            if not finite:
                raise ModelError(
                    f"the training loss is not finite at step {step + 1} in at least one process "
                    f"({', '.join(f'{k} {v:.4g}' for k, v in parts.items())}); "
                    + (f"the state saved at step {saved_at} in {out_dir} is kept" if saved_at else "no state was saved")
                    + ". Fix: look for NaN or infinite values in the training data, or lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
            for g in opt.param_groups:
                g["lr"] = learning_rate(config, step)
            opt.step()
            with torch.no_grad():
                decay = min(config.ema_decay, (1.0 + step) / (10.0 + step))  # warm-up: early EMA follows the net
                for pe, pn in zip(ema.parameters(), net.parameters()):
                    pe.lerp_(pn, 1.0 - decay)
                for be, bn in zip(ema.buffers(), net.buffers()):
                    be.copy_(bn)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if rank == 0 and (step % config.log_every == 0 or step == config.steps):
                last = {"step": step, "loss": float(loss.detach()), "grad_norm": float(gnorm), **parts,
                        "seconds": round(time.perf_counter() - t0, 2)}
                with metrics_path.open("a") as fh:
                    fh.write(json.dumps(last) + "\n")
            if step % config.checkpoint_every == 0 or step == config.steps:
                if rank == 0:
                    save_train_state(out_dir, net, ema, opt, step, config, [])
                saved_at = step  # on every process, for its messages
            if interrupted:
                if step > saved_at:  # keep what was done since the last checkpoint; a further Ctrl-C waits for it
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    save_train_state(out_dir, net, ema, opt, step, config, [])
                log(f"interrupted at step {step}: the training state is saved in {out_dir}; run the same command "
                    "to resume")
                raise KeyboardInterrupt
    finally:
        if catch and previous is not None:  # None: a handler installed outside Python, which cannot be restored
            signal.signal(signal.SIGINT, previous)
    if bar is not None:
        bar.close()
    if distributed:
        import torch.distributed as dist

        dist.barrier()
    return {"step": step, "ema": ema.state_dict(), "metrics": last}
