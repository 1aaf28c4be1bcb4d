"""The model registry: where named models come from.

A model is a folder holding ``model.safetensors`` and ``card.json``.  A name
resolves, in this order, from

1. the folders listed in the environment variable ``XPHYDA_MODEL_PATH``
   (separated by ``os.pathsep``),
2. the user cache ``$XDG_CACHE_HOME/xphyda/models`` (default
   ``~/.cache/xphyda/models``), where ``phyda train`` writes,
3. the models bundled with the package.

``model=`` elsewhere in xphyda also takes a path to such a folder.  A name that
is not found is an error: another model is never substituted.

Presets are named training set-ups; ``"era5-v1"`` is the paper's setting on
real ERA5, which has no bundled weights because ERA5 cannot be shipped: train
it with ``phyda train --preset era5-v1 --data ERA5_STORE``.

Examples
--------
>>> import xphyda.models
>>> sorted(xphyda.models.PRESETS)
['era5-v1', 'jcm-t31-v1']
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from ..errors import ModelError

__all__ = ["available", "find", "read_card", "search_path", "DEFAULT_MODEL", "PRESETS", "user_cache"]

DEFAULT_MODEL = "jcm-t31-v1"
"""The bundled model used when ``model`` is not given."""

CARD, WEIGHTS = "card.json", "model.safetensors"

PRESETS: dict[str, dict] = {
    "era5-v1": {
        "description": "the PhyDA paper's setting on real ERA5 at 1.40625 degrees (128 x 256)",
        "grid": {"nlat": 128, "nlon": 256, "resolution_deg": 1.40625},
        "variables": ["z", "t", "u", "v", "q"],
        "levels_hpa": [50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000],
        "surface": ["u10", "v10", "t2m", "msl"],
        "background_lead_hours": 24,
        "observed_fraction": [0.01, 0.1],
        "train_command": "phyda train --preset era5-v1 --data ERA5_STORE",
    },
    DEFAULT_MODEL: {
        "description": "bundled prior trained on the jcm SPEEDY T31 corpus (48 x 96 Gaussian grid)",
        "grid": {"nlat": 48, "nlon": 96, "resolution_deg": 3.75},
        "variables": ["z", "t", "u", "v", "q", "w"],
        "levels_hpa": [200, 300, 500, 700, 850],
        "surface": ["sp"],
        "background_lead_hours": 24,
        "train_command": "phyda train --preset jcm-t31-v1 --data /path/to/corpus",
    },
}


def user_cache() -> Path:
    """The user's model folder (``$XDG_CACHE_HOME/xphyda/models``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xphyda" / "models"


def _bundled() -> Path:
    return Path(str(resources.files("xphyda.models")))


def search_path() -> list[Path]:
    """Folders searched for named models, first match wins."""
    env = [Path(p) for p in os.environ.get("XPHYDA_MODEL_PATH", "").split(os.pathsep) if p]
    return env + [user_cache(), _bundled()]


def _is_model_dir(path: Path) -> bool:
    return (path / CARD).is_file() and (path / WEIGHTS).is_file()


def available() -> list[str]:
    """Names of the models that can be loaded on this machine (sorted).

    Examples
    --------
    >>> "era5-v1" in available()   # a preset, not trained here
    False
    """
    names = set()
    for folder in search_path():
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if p.is_dir() and _is_model_dir(p))
    return sorted(names)


def find(model: str | os.PathLike | None = None) -> Path:
    """Folder of a model given by name or path (``None`` is :data:`DEFAULT_MODEL`).

    Raises
    ------
    ModelError
        When the model is not found; for a preset with no trained weights the
        message says how to train it.
    """
    model = DEFAULT_MODEL if model is None else model
    path = Path(model)
    if path.is_dir():
        if not _is_model_dir(path):
            raise ModelError(
                f"folder {str(path)!r} is not an xphyda model: expected {CARD} and {WEIGHTS} in it"
            )
        return path
    name = str(model)
    for folder in search_path():
        if _is_model_dir(folder / name):
            return folder / name
    where = ", ".join(str(p) for p in search_path())
    if name in PRESETS:
        raise ModelError(
            f"model {name!r} is a preset ({PRESETS[name]['description']}) but has no trained weights on this "
            f"machine (searched {where}). Train it with `{PRESETS[name]['train_command']}`, which writes to "
            f"{user_cache() / name}. Models available now: {available()}"
        )
    raise ModelError(
        f"no model named {name!r}; searched {where}. Available: {available()}; presets: {sorted(PRESETS)}. "
        "Pass a path to a folder with card.json and model.safetensors, or set XPHYDA_MODEL_PATH"
    )


def read_card(model: str | os.PathLike | None = None) -> dict:
    """The JSON model card of a model given by name or path."""
    path = find(model) / CARD
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"model card {str(path)!r} is not valid JSON: {exc}") from None
