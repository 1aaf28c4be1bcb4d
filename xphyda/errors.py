"""Exceptions raised by xphyda.

Every error is a :class:`PhydaError`; each subclass also inherits the matching
builtin, so ``except KeyError`` keeps working for code that does not know
xphyda.  Messages say what was found, what was expected and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CoordinateError",
    "DataError",
    "GridError",
    "ModelError",
    "NotAnalysedWarning",
    "ObservationError",
    "PhydaError",
    "PoorFitWarning",
    "ResidualNameError",
    "UnitsError",
    "VariableError",
]


class PhydaError(Exception):
    """Base class of every error raised by xphyda."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class CoordinateError(PhydaError, KeyError):
    """A coordinate (latitude, longitude, level, ...) is missing, ambiguous or malformed."""


class VariableError(PhydaError, KeyError):
    """A data variable needed by a computation is missing, ambiguous or unusable."""


class UnitsError(PhydaError, ValueError):
    """Units are missing, cannot be parsed, or have the wrong dimensionality."""


class GridError(PhydaError, ValueError):
    """The horizontal or vertical grid cannot be used (unsorted, duplicated, too few points...)."""


class ObservationError(PhydaError, ValueError):
    """Observations are malformed, outside the domain, or inconsistent with the state."""


class ModelError(PhydaError, LookupError):
    """A model cannot be found, loaded, or cannot serve the given inputs."""


class ResidualNameError(PhydaError, KeyError):
    """An unknown physics residual was requested."""


class DataError(PhydaError, ValueError):
    """Data values cannot be used: a malformed training or evaluation store, or a background with NaN."""


class NotAnalysedWarning(UserWarning):
    """Observations passed quality control but the method could not use them (flag ``not_analysed``)."""


class PoorFitWarning(UserWarning):
    """An analysis fits the observations it used worse than the background did (RMS of O - A above O - B).

    A sign that the background lies far from the states the model was trained
    on (real data given to a model trained on a simulation, other units or
    levels); compare with ``method="oi"``.
    """


def require_bool(name: str, value, *, fix: str) -> bool:
    """``value`` as a bool if it is one (numpy booleans included), else a :class:`ModelError` naming ``name``.

    Examples
    --------
    >>> import numpy as np
    >>> require_bool("antithetic", np.True_, fix="pass antithetic=True")
    True
    >>> require_bool("antithetic", "no", fix="pass antithetic=True")
    Traceback (most recent call last):
        ...
    xphyda.errors.ModelError: antithetic must be True or False; got 'no'. Fix: pass antithetic=True
    """
    import numpy as np

    if not isinstance(value, (bool, np.bool_)):
        raise ModelError(f"{name} must be True or False; got {value!r}. Fix: {fix}")
    return bool(value)
