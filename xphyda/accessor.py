"""The ``.phyda`` accessors on xarray Datasets and DataArrays: thin and stateless.

Each method is a few lines that call a function of the package; an accessor
holds nothing but the object it was created on, and never modifies it.  The
DataArray accessor offers what makes sense for one variable (its grid and its
values in SI); residuals, assimilation and encoding need several variables and
live on the Dataset accessor.
"""

from __future__ import annotations

import xarray as xr

__all__ = ["PhydaDataArrayAccessor", "PhydaDatasetAccessor"]


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

    def assimilate(self, obs, *, method: str = "phyda", **options) -> xr.Dataset:
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


@xr.register_dataarray_accessor("phyda")
class PhydaDataArrayAccessor:
    """``da.phyda``: the grid and the SI values of one variable.

    Examples
    --------
    >>> import xphyda
    >>> t = xphyda.tutorial.open_dataset("era5-z-t")["t"]
    >>> t.phyda.grid.level_pa.tolist()
    [50000.0, 85000.0]
    >>> t.phyda.to_si().attrs["units"]
    'K'
    """

    def __init__(self, obj: xr.DataArray):
        self._obj = obj

    @property
    def grid(self):
        """The discovered :class:`~xphyda.grid.Grid` of this DataArray's coordinates."""
        from .grid import discover_grid

        return discover_grid(self._obj)

    def to_si(self, kind: str | None = None) -> xr.DataArray:
        """This variable converted to SI (float64, lazily for dask); see :func:`xphyda.units.to_si`.

        Parameters
        ----------
        kind : str, optional
            The kind of quantity (a key of :data:`xphyda.units.QUANTITIES`, such as
            ``"temperature"`` or ``"geopotential"``).  By default it is read from the
            alias table :data:`xphyda.grid.VARIABLES` through the variable's
            ``standard_name`` or its name.

        Returns
        -------
        xarray.DataArray
            A new DataArray with the SI ``units`` attribute; the original is unchanged.

        Raises
        ------
        VariableError
            When ``kind`` is not given and the variable is not in the alias table.
        UnitsError
            When the units are missing, unparseable or of the wrong dimensionality.
        """
        from .units import to_si

        return to_si(self._obj, kind or _kind_of(self._obj))


def _kind_of(da: xr.DataArray) -> str:
    """The kind of quantity of ``da`` from the alias table (standard name first, then name)."""
    from .errors import VariableError
    from .grid import VARIABLES
    from .units import QUANTITIES

    standard_name = da.attrs.get("standard_name")
    for alias in VARIABLES.values():
        if standard_name and standard_name in alias.standard_names:
            return alias.kind
    for alias in VARIABLES.values():
        if da.name is not None and str(da.name) in alias.names:
            return alias.kind
    raise VariableError(
        f"variable {da.name!r} (standard_name {standard_name!r}) is not in xphyda's alias table, so its kind of "
        f"quantity is unknown. Fix: pass it, e.g. da.phyda.to_si(kind='temperature'); kinds: {sorted(QUANTITIES)}"
    )
