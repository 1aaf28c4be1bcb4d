"""Shared fixtures: the real sample datasets (loaded once per session, copied per test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def _era5_z_t():
    import xphyda

    return xphyda.tutorial.open_dataset("era5-z-t")


@pytest.fixture
def era5(_era5_z_t):
    """ERA5 t and z at 500 and 850 hPa, 2007-01-01 12Z, 181 x 360 (a fresh deep copy per test)."""
    return _era5_z_t.copy(deep=True)


@pytest.fixture(scope="session")
def _ecmwf_pl():
    # engine given explicitly: the default engine can crash at interpreter exit here
    with xr.open_dataset(DATA / "ecmwf_pl_10deg.nc", engine="netcdf4") as ds:
        return ds.load()


@pytest.fixture
def ecmwf(_ecmwf_pl):
    """ECMWF t u v z r on 6 pressure levels, 19 x 36 (10 degree), two times, cfgrib names (a deep copy)."""
    return _ecmwf_pl.copy(deep=True)
