"""Physics residuals (xarray front) and their array kernels (numpy and torch).

>>> from xphyda import physics
>>> physics.available()
['continuity', 'geostrophic', 'hydrostatic']
"""

from .residuals import available, physics_residual, residual_summary

__all__ = ["available", "physics_residual", "residual_summary"]
