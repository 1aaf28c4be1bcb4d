"""Training and evaluation data for xphyda.

* :mod:`xphyda.data.simulate` -- the GCM training corpus generator; the module is
  callable, ``xphyda.data.simulate(store, years=...)`` runs
  :func:`xphyda.data.simulate.simulate` (needs the ``xphyda[gcm]`` extra).
* :mod:`xphyda.data.pipeline` -- open, select, regrid, normalise, split and stream
  training stores (the corpus or a user's ERA5).
* :mod:`xphyda.data.static` -- time-invariant input fields (land-sea mask,
  orography) on a model grid.

``xphyda.data.simulate`` stays the module (imported on first use, without jcm), so
``mock.patch("xphyda.data.simulate.<name>")`` and ``python -m xphyda.data.simulate``
keep working.
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    """Import the submodules ``simulate``, ``pipeline`` and ``static`` on first use (neither imports jcm or torch)."""
    if name in ("simulate", "pipeline", "static"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
