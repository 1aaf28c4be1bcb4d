"""Classical analyses, the yardsticks: optimal interpolation / 3D-Var.

>>> from xphyda.baselines import oi
>>> oi.CORRELATIONS
('gaspari-cohn', 'soar', 'gaussian')
"""

from . import oi
from .oi import DEFAULT_LENGTH_SCALE, oi_analysis

__all__ = ["oi", "oi_analysis", "DEFAULT_LENGTH_SCALE"]
