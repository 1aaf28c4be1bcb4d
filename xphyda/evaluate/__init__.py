"""Evaluation at scale: observing-system simulation experiments (OSSEs), their tables and reports.

* :func:`run_osse` runs every method on identical synthetic observations and
  scores it (:mod:`xphyda.evaluate.osse`);
* :func:`write_report` writes a Markdown report with PNG figures
  (:mod:`xphyda.evaluate.report`);
* :func:`main` is the ``phyda evaluate`` command (:mod:`xphyda.evaluate.cli`; the ``phyda``
  command forwards to it).

Neither torch nor matplotlib is imported until they are needed.

>>> from xphyda import evaluate
>>> evaluate.COLUMNS[:4]
('case', 'time', 'trajectory', 'setting')
"""

from ._setup import EvaluationError
from .cli import evaluate_main, main
from .osse import COLUMNS, DEFAULT_METHODS, DEFAULT_OBSERVATIONS, OSSEResult, run_osse, summarize
from .report import write_report

__all__ = [
    "COLUMNS",
    "DEFAULT_METHODS",
    "DEFAULT_OBSERVATIONS",
    "EvaluationError",
    "OSSEResult",
    "evaluate_main",
    "main",
    "run_osse",
    "summarize",
    "write_report",
]
