"""The ``.phyda`` accessor on xarray Datasets: thin and stateless.

Each method is a few lines that call a function of the package; the accessor
holds nothing but the object it was created on, and never modifies it.
"""

from __future__ import annotations

import xarray as xr

__all__ = ["PhydaDatasetAccessor"]


@xr.register_dataset_accessor("phyda")
class PhydaDatasetAccessor:
    """``ds.phyda``: physics checks, data assimilation and encoding for a Dataset.

    Examples
    --------
    >>> import xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> ds.phyda.grid.lat
    'latitude'
    """

    def __init__(self, obj: xr.Dataset):
        self._obj = obj

    @property
    def grid(self):
        """The discovered :class:`~xphyda.grid.Grid` (coordinate names, orientation, levels)."""
        from .grid import discover_grid

        return discover_grid(self._obj)

    def physics_residual(self, name: str, **kwargs) -> xr.DataArray:
        """Residual of a physical law; see :func:`xphyda.physics.physics_residual`.

        Examples
        --------
        >>> import xphyda
        >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
        >>> ds.phyda.physics_residual("hydrostatic").attrs["units"]
        'm'
        """
        from .physics import physics_residual

        return physics_residual(self._obj, name, **kwargs)

    def assimilate(self, obs, *, method: str = "oi", **options) -> xr.Dataset:
        """Analyse this background with observations; see :func:`xphyda.assimilate.assimilate`.

        Examples
        --------
        >>> import xphyda
        >>> truth = xphyda.tutorial.open_dataset("era5-z-t")
        >>> obs = xphyda.obs.simulate(truth, n_stations=200, seed=0)
        >>> analysis = truth.phyda.assimilate(obs, method="oi")
        >>> "t_flag" in analysis
        True
        """
        from .assimilate import assimilate

        return assimilate(self._obj, obs, method=method, **options)

    def encode(self, obs=None, *, model=None, device: str = "auto", **overrides) -> xr.Dataset:
        """The VRE's dense reconstruction and latent features; see :func:`xphyda.diffusion.encode`."""
        from .diffusion import encode

        return encode(self._obj, obs, model=model, device=device, **overrides)

    def evaluate(self, **options):
        """An observing-system simulation experiment with this Dataset as the truth; see :func:`xphyda.evaluate.run_osse`."""
        from .evaluate import run_osse

        return run_osse(self._obj, **options)

    def residual_summary(self, names=None, **kwargs) -> xr.Dataset:
        """Area-weighted RMS residuals per level; see :func:`xphyda.physics.residual_summary`."""
        from .physics import residual_summary

        return residual_summary(self._obj, names, **kwargs)
