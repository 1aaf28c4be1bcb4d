"""Classical analyses, the yardsticks: optimal interpolation / 3D-Var.

>>> from xphyda.baselines import oi
>>> oi.CORRELATIONS
('gaspari-cohn', 'soar', 'gaussian')
"""

from . import oi
from .oi import DEFAULT_LENGTH_SCALE, MASS_LENGTH_SCALE, default_length_scale, oi_analysis

__all__ = ["DEFAULT_LENGTH_SCALE", "MASS_LENGTH_SCALE", "default_length_scale", "oi", "oi_analysis"]
