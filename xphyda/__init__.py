"""xphyda: physics-guided diffusion data assimilation for xarray.

Importing xphyda registers the ``.phyda`` accessor on xarray Datasets and
DataArrays.  Neither torch nor xESMF is imported here.
"""

from __future__ import annotations

from . import accessor as _accessor  # noqa: F401  (registers ds.phyda and da.phyda)
from . import metrics, obs, tutorial
from .errors import (
    CoordinateError,
    DataError,
    GridError,
    ModelError,
    ObservationError,
    PhydaError,
    ResidualNameError,
    UnitsError,
    VariableError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "metrics",
    "obs",
    "tutorial",
    "PhydaError",
    "CoordinateError",
    "VariableError",
    "UnitsError",
    "GridError",
    "ObservationError",
    "ModelError",
    "ResidualNameError",
    "DataError",
]
