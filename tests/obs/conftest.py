"""Fixtures for the observation tests: real ERA5 fields, also on a coarse 64 x 128 grid without pole rows."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


def coarse_target(nlat: int = 64, nlon: int = 128) -> xr.Dataset:
    """A regular global grid without pole rows (WeatherBench2-like), descending latitude."""
    lat = 90.0 - (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = np.arange(nlon) * 360.0 / nlon
    return xr.Dataset(
        coords={
            "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
    )


def coarsen(ds: xr.Dataset, nlat: int = 64, nlon: int = 128) -> xr.Dataset:
    from xphyda.obs.regridding import regrid

    out = regrid(ds, coarse_target(nlat, nlon), method="conservative", backend="xphyda")
    for v in out.data_vars:
        out[v] = out[v].astype(ds[v].dtype)
    return out


def area_rmse(a: xr.DataArray, b: xr.DataArray) -> float:
    lat = next(d for d in a.dims if "lat" in d)
    return float(np.sqrt(((a - b) ** 2).weighted(np.cos(np.deg2rad(a[lat]))).mean()))


@pytest.fixture(scope="session")
def _surface():
    import xphyda

    return xphyda.tutorial.open_dataset("era5-surface")


@pytest.fixture
def surface(_surface):
    """ERA5 t2m u10 v10 msl at 4 times, 181 x 360 (a deep copy per test)."""
    return _surface.copy(deep=True)


@pytest.fixture(scope="session")
def _coarse_era5(_era5_z_t):
    return coarsen(_era5_z_t)


@pytest.fixture
def coarse_era5(_coarse_era5):
    """ERA5 t and z at 500/850 hPa conservatively remapped to 64 x 128 (no pole rows)."""
    return _coarse_era5.copy(deep=True)


@pytest.fixture(scope="session")
def _coarse_surface(_surface):
    return coarsen(_surface)


@pytest.fixture
def coarse_surface(_coarse_surface):
    """ERA5 surface fields at 4 times on 64 x 128."""
    return _coarse_surface.copy(deep=True)


@pytest.fixture
def rmse():
    """Area-weighted RMS difference of two DataArrays on a lat-lon grid."""
    return area_rmse
