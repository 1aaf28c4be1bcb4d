"""Observations: their kinds, CSV tables, the operator H, regridding, errors, quality control and simulation.

>>> from xphyda import obs
>>> obs.KINDS
('points', 'gridded', 'grid')
"""

from .dataset import KINDS, observation_kind
from .operator import Operator, build_operator, to_torch
from .problem import ObsProblem, build_problem
from .qc import FLAGS
from .regridding import regrid
from .synthetic import simulate
from .tables import read_csv
from .uncertainty import DEFAULT_BACKGROUND_ERROR, DEFAULT_OBS_ERROR

__all__ = [
    "DEFAULT_BACKGROUND_ERROR",
    "DEFAULT_OBS_ERROR",
    "FLAGS",
    "KINDS",
    "ObsProblem",
    "Operator",
    "build_operator",
    "build_problem",
    "observation_kind",
    "read_csv",
    "regrid",
    "simulate",
    "to_torch",
]
