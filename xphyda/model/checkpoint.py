"""Checkpoints: ``model.safetensors`` plus a JSON model card, never a pickle.

A checkpoint is a directory holding

* ``model.safetensors`` -- one state dict, or several (``{"net": ..., "ema": ...}``)
  stored under ``"<name>/<key>"``;
* ``card.json`` -- whatever the caller describes (variables, levels, units,
  grid, normalisation statistics, training data provenance, scores...), the
  ``architecture`` needed to rebuild the network, and fields written here:
  ``format``, ``format_version``, ``sha256`` of the weights file,
  ``xphyda_version``, ``torch_version``, ``created`` and ``state_dicts``.

Loading checks the sha256 before reading a byte of the weights, and reads them
with :mod:`safetensors` (no code execution; ``torch.load`` is never used).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError, require_bool
from .device import resolve_device, resolve_dtype
from .precond import BackgroundCentredDenoiser, EDMDenoiser
from .unet import UNet

__all__ = ["architecture_card", "build_from_card", "load_checkpoint", "load_model", "model_from_state", "save_checkpoint"]

FORMAT = "xphyda-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CARD = "card.json"
RESERVED = (
    "format",
    "format_version",
    "sha256",
    "weights",
    "xphyda_version",
    "torch_version",
    "created",
    "state_dicts",
)
_ARCHITECTURES = {"UNet": "xphyda.model.unet", "PhydaNet": "xphyda.model.phyda"}
"""Network classes a card may name, and their modules (imported when needed)."""


def _architecture(name) -> type:
    import importlib

    if name not in _ARCHITECTURES:
        raise ModelError(
            f"the card's architecture class is {name!r}; expected one of {sorted(_ARCHITECTURES)} "
            "(write it with architecture_card(model))"
        )
    return getattr(importlib.import_module(_ARCHITECTURES[name]), name)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _json_default(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, (Path, _dt.date)):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _version() -> str:
    from .. import __version__

    return __version__


def architecture_card(model: torch.nn.Module) -> dict[str, Any]:
    """The card entries that rebuild ``model``: ``architecture`` and, for a denoiser, ``preconditioning``.

    ``model`` is a network with a ``config`` dict of its constructor arguments
    (:class:`~xphyda.model.unet.UNet`, :class:`~xphyda.model.phyda.PhydaNet`)
    or an :class:`EDMDenoiser` around a UNet; a
    :class:`~xphyda.model.precond.BackgroundCentredDenoiser` also records its
    ``gain`` and ``recon_centre`` (``kind: "background-centred"``), so
    :func:`load_model` rebuilds the same function.

    Examples
    --------
    >>> card = architecture_card(EDMDenoiser(UNet(2, 2, widths=(8, 16), groups=4)))
    >>> card["architecture"]["class"], card["preconditioning"]["sigma_data"]
    ('UNet', 1.0)
    """
    net = model.net if isinstance(model, EDMDenoiser) else model
    name = type(net).__name__
    if name not in _ARCHITECTURES or not isinstance(getattr(net, "config", None), dict):
        raise ModelError(
            f"cannot describe a {name}; expected one of {sorted(_ARCHITECTURES)} or an EDMDenoiser"
        )
    card: dict[str, Any] = {"architecture": {"class": name, **net.config}}
    if isinstance(model, BackgroundCentredDenoiser):
        card["preconditioning"] = {"kind": "background-centred", "sigma_data": model.sigma_data,
                                   "gain": model.gain, "recon_centre": model.recon_pull is not None}
    elif isinstance(model, EDMDenoiser):
        card["preconditioning"] = {"kind": "edm", "sigma_data": model.sigma_data}
    return card


def _wrap(net: UNet, card: Mapping[str, Any]) -> EDMDenoiser:
    """A bare UNet inside the preconditioning its card names (``edm`` when the card names none)."""
    pre = card.get("preconditioning") or {}
    if not isinstance(pre, Mapping):
        raise ModelError(f"the card's preconditioning is {pre!r}; expected a mapping such as "
                         "{'kind': 'edm', 'sigma_data': 1.0}. Fix: write the card with architecture_card(model)")
    kind = pre.get("kind", "edm")
    sigma_data = pre.get("sigma_data", 1.0)
    if kind == "edm":
        return EDMDenoiser(net, sigma_data=sigma_data)
    if kind == "background-centred":
        moved = require_bool("the card's preconditioning recon_centre", pre.get("recon_centre", False),
                             fix="set it to true or false in card.json (architecture_card(model) writes it)")
        return BackgroundCentredDenoiser(net, sigma_data=sigma_data, gain=pre.get("gain", 1.0), recon_centre=moved)
    raise ModelError(f"the card's preconditioning kind is {kind!r}; expected 'edm' or 'background-centred' "
                     f"(card written by xphyda {card.get('xphyda_version', 'unknown')}). Fix: load it with the "
                     "xphyda version that wrote it, or rewrite the card with architecture_card(model)")


def save_checkpoint(
    path: str | os.PathLike,
    state_dicts: Mapping[str, torch.Tensor] | Mapping[str, Mapping[str, torch.Tensor]],
    card: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``path/model.safetensors`` and ``path/card.json``.

    Parameters
    ----------
    path : path-like
        Checkpoint directory (created if needed).
    state_dicts : mapping
        One state dict, or a mapping of names to state dicts.
    card : mapping
        JSON-serialisable model card; numpy and torch values become lists.
        It should hold ``architecture`` (see :func:`architecture_card`).
    overwrite : bool
        Replace an existing checkpoint in ``path``.

    Returns
    -------
    pathlib.Path
        The directory.

    Examples
    --------
    >>> import tempfile
    >>> net = UNet(2, 2, widths=(8, 16), groups=4)
    >>> d = save_checkpoint(tempfile.mkdtemp(), net.state_dict(), {"variables": ["t2m"], **architecture_card(net)})
    >>> sorted(p.name for p in d.iterdir())
    ['card.json', 'model.safetensors']
    """
    from safetensors.torch import save_file

    clash = sorted(set(card) & set(RESERVED))
    if clash:
        raise ModelError(f"card keys {clash} are written by save_checkpoint; remove them from the card")
    if not state_dicts:
        raise ModelError("no weights to save: state_dicts is empty")
    several = all(isinstance(v, Mapping) for v in state_dicts.values())
    if not several and not all(isinstance(v, torch.Tensor) for v in state_dicts.values()):
        raise ModelError("state_dicts must map names to tensors (one state dict) or names to state dicts")
    groups = dict(state_dicts) if several else {"": state_dicts}
    flat = {}
    for name, sd in groups.items():
        if "/" in name:
            raise ModelError(f"state dict name {name!r} may not contain '/'")
        for key, value in sd.items():
            flat[f"{name}/{key}" if name else key] = value.detach().to("cpu").contiguous().clone()
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    weights, card_path = directory / WEIGHTS, directory / CARD
    if not overwrite and (weights.exists() or card_path.exists()):
        raise ModelError(
            f"{directory} already holds a checkpoint; pass overwrite=True or choose another directory"
        )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights": WEIGHTS,
        "state_dicts": sorted(groups) if several else None,
        "xphyda_version": _version(),
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        text = json.dumps({**meta, **dict(card)}, default=_json_default, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ModelError(
            f"the model card is not JSON serialisable ({err}); convert that entry to numbers or text"
        ) from err
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".safetensors.tmp")
    os.close(fd)
    try:
        save_file(flat, tmp, metadata={"format": "pt"})
        digest = _sha256(Path(tmp))
        os.replace(tmp, weights)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    full = json.loads(text)
    full["sha256"] = digest
    card_path.write_text(json.dumps(full, indent=2) + "\n")
    return directory


def _locate(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_file() and p.name in (WEIGHTS, CARD):
        p = p.parent
    if not (p / CARD).is_file() or not (p / WEIGHTS).is_file():
        raise ModelError(
            f"no checkpoint at {str(path)!r}: expected a directory holding {CARD} and {WEIGHTS} "
            "(as written by xphyda.model.save_checkpoint)"
        )
    return p


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Read and verify a checkpoint.

    Parameters
    ----------
    path : path-like
        The checkpoint directory, or its ``card.json`` or ``model.safetensors``.
    device : str or torch.device
        Where to put the tensors.

    Returns
    -------
    state_dicts : dict
        One state dict, or ``{name: state dict}`` if several were saved.
    card : dict

    Raises
    ------
    ModelError
        If files are missing, the card is not an xphyda card, or the weights'
        sha256 differs from the card's (modified or corrupted file).
    """
    from safetensors.torch import load_file

    directory = _locate(path)
    try:
        card = json.loads((directory / CARD).read_text())
    except json.JSONDecodeError as err:
        raise ModelError(
            f"{directory / CARD} is not valid JSON ({err}); restore it from the original checkpoint"
        ) from err
    if card.get("format") != FORMAT:
        raise ModelError(f"{directory / CARD} has format {card.get('format')!r}, expected {FORMAT!r}")
    if int(card.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"checkpoint format version {card['format_version']} is newer than this xphyda reads ({FORMAT_VERSION}); "
            "upgrade xphyda"
        )
    name = str(card.get("weights", WEIGHTS))
    if Path(name).name != name or not name.endswith(".safetensors"):
        raise ModelError(f"the card names weights {name!r}; expected a .safetensors file beside card.json")
    weights = directory / name
    found = _sha256(weights)
    if found != card.get("sha256"):
        raise ModelError(
            f"{weights} has sha256 {found} but its card records {card.get('sha256')}: the weights were modified "
            "or corrupted; download or copy the checkpoint again (never edit the card's sha256 to match)"
        )
    flat = load_file(str(weights), device=str(resolve_device(device)))
    names = card.get("state_dicts")
    if not names:
        return flat, card
    out: dict[str, dict] = {name: {} for name in names}
    for key, value in flat.items():
        name, _, sub = key.partition("/")
        out[name][sub] = value
    return out, card


def build_from_card(card: Mapping[str, Any]) -> torch.nn.Module:
    """Rebuild the (untrained) network described by ``card["architecture"]``.

    Examples
    --------
    >>> net = build_from_card({"architecture": {"class": "UNet", "in_channels": 2, "out_channels": 2,
    ...                                         "widths": [8, 16], "groups": 4}})
    >>> type(net).__name__
    'UNet'
    """
    arch = dict(card.get("architecture") or {})
    name = arch.pop("class", None)
    cls = _architecture(name)
    try:
        return cls(**arch)
    except TypeError as err:
        raise ModelError(f"the card's architecture does not fit {name}: {err}") from err


def load_model(
    path: str | os.PathLike,
    *,
    weights: str | None = None,
    device: str | torch.device = "auto",
    dtype: torch.dtype | str = torch.float32,
) -> tuple[torch.nn.Module, dict]:
    """Rebuild, load and verify a checkpoint's network, in eval mode, with its card.

    A bare UNet comes back wrapped in the card's ``preconditioning`` (an
    :class:`EDMDenoiser`, or a background-centred one); other networks (e.g. ``PhydaNet``) come back as built.

    Parameters
    ----------
    path : path-like
        Checkpoint directory (or a file in it).
    weights : str, optional
        The state dict to use when several were saved (default ``"ema"`` if
        present, else ``"net"``).
    device, dtype
        Where and in which precision to put the network.

    Examples
    --------
    >>> import tempfile
    >>> den = EDMDenoiser(UNet(2, 2, widths=(8, 16), groups=4))
    >>> d = save_checkpoint(tempfile.mkdtemp(), den.state_dict(), architecture_card(den))
    >>> model, card = load_model(d, device="cpu")
    >>> type(model).__name__, card["sha256"] == card["sha256"].lower()
    ('EDMDenoiser', True)
    """
    state, card = load_checkpoint(path, device="cpu")
    return model_from_state(state, card, weights=weights, device=device, dtype=dtype), card


def model_from_state(
    state: dict,
    card: dict,
    *,
    weights: str | None = None,
    device: str | torch.device = "auto",
    dtype: torch.dtype | str = torch.float32,
) -> torch.nn.Module:
    """Build the card's network and load ``state`` (as returned by :func:`load_checkpoint`) into it.

    The half of :func:`load_model` after reading the files, for callers that also
    need the checkpoint's other state dicts and should not read (and hash) the
    weights twice.

    Parameters
    ----------
    state, card
        What :func:`load_checkpoint` returned.
    weights, device, dtype
        As in :func:`load_model`.

    Returns
    -------
    torch.nn.Module
        The network in eval mode.

    Examples
    --------
    >>> import tempfile
    >>> den = EDMDenoiser(UNet(2, 2, widths=(8, 16), groups=4))
    >>> state, card = load_checkpoint(save_checkpoint(tempfile.mkdtemp(), {"ema": den.state_dict()},
    ...                                               architecture_card(den)))
    >>> type(model_from_state(state, card, device="cpu")).__name__
    'EDMDenoiser'
    """
    dev = resolve_device(device)
    dtype = resolve_dtype(dtype, device=dev)
    if card.get("state_dicts"):
        names = card["state_dicts"]
        weights = weights or ("ema" if "ema" in names else "net" if "net" in names else names[0])
        if weights not in state:
            raise ModelError(f"the checkpoint holds state dicts {names}, not {weights!r}; pass one of them")
        state = state[weights]
    net = build_from_card(card)
    model = target = net
    if isinstance(net, UNet):
        model = _wrap(net, card)
        # the wrapper's state dict names the UNet's weights "net.*" (and may hold its own, e.g. recon_pull)
        if any(k.startswith("net.") for k in state):
            target = model
        elif own := sorted(k for k in model.state_dict() if not k.startswith("net.")):
            raise ModelError(f"the card's preconditioning has weights of its own ({own}) but the checkpoint holds "
                             "only the U-Net's, so they would stay at their initial values. Fix: save the "
                             "denoiser's state_dict(), not its .net's")
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as err:
        hint = ("the card and the weights disagree on the movable centre (recon_pull): a card written before "
                "xphyda recorded a bare BackgroundCentredDenoiser says kind 'edm'. Fix: rewrite the card with "
                "architecture_card(model) for the model the weights came from" if "recon_pull" in str(err) else
                "Fix: save the card with architecture_card(model) and the weights with model.state_dict() of "
                "the same model")
        raise ModelError(f"the weights do not fit the architecture in the card: {err}. {hint}") from err
    return model.to(device=dev, dtype=dtype).eval()
