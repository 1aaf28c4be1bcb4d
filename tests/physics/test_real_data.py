"""Residuals of real analyses: magnitudes a meteorologist would expect.

* ERA5, t and z at 500 and 850 hPa (one 350 hPa layer, no humidity): the dry
  hypsometric thickness misses about 20 m of the 4.3 km layer (humidity and the
  curvature of T(ln p) over so thick a layer).
* ECMWF operational t u v z r on 6 levels at 10 degrees: a few metres per layer,
  less with the virtual temperature from r; an ageostrophic wind of 3 to 6 m s-1
  (a quarter to a half of the wind), largest near the ground where friction acts.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from xphyda.physics import physics_residual, residual_summary
from xphyda.physics.operators import omega_from_continuity


def _area_mean(da, lat="latitude"):
    return da.weighted(np.cos(np.deg2rad(da[lat]))).mean([lat, "longitude"])


def test_era5_hydrostatic(era5):
    res = physics_residual(era5, "hydrostatic")
    assert res.dims == ("time", "layer", "latitude", "longitude")
    assert res.layer.values.tolist() == ["500-850 hPa"]
    assert res.level_upper.item() == 500 and res.level_lower.item() == 850
    rms = np.sqrt(_area_mean(res**2)).item()
    mean = _area_mean(res).item()
    assert 15 < rms < 40  # measured 27.4 m
    assert 10 < mean < 30  # measured +19.4 m: the layer is thicker than its dry mean temperature says
    # pole rows are constant in longitude in ERA5, and so is the residual there
    assert float(res.isel(latitude=0).std()) < 1e-9


def test_era5_summary(era5):
    s = residual_summary(era5)
    assert list(s.data_vars) == ["hydrostatic_rms", "hydrostatic_relative"]
    np.testing.assert_allclose(s.hydrostatic_rms.values, [[27.39]], atol=0.01)
    np.testing.assert_allclose(s.hydrostatic_relative.values, [[0.0065]], atol=0.0001)  # of a 4.2 km thickness


def test_ecmwf_hydrostatic_with_and_without_humidity(ecmwf):
    dry = residual_summary(ecmwf.drop_vars("r"), ["hydrostatic"]).hydrostatic_rms
    moist = residual_summary(ecmwf, ["hydrostatic"]).hydrostatic_rms
    assert dry.layer.values.tolist() == ["1000-850 hPa", "850-700 hPa", "700-500 hPa", "500-400 hPa", "400-300 hPa"]
    assert float(dry.max()) < 12 and float(moist.max()) < 12  # measured up to 10.1 and 10.5 m
    free = {"layer": ["850-700 hPa", "700-500 hPa", "500-400 hPa", "400-300 hPa"]}
    assert (moist.sel(free) < dry.sel(free)).all()  # Tv from r helps above the boundary layer
    # 850-500 as one layer, as in the ERA5 sample: about 20 m, as there
    thick = residual_summary(ecmwf.sel(isobaricInhPa=[850, 500]).drop_vars("r"), ["hydrostatic"]).hydrostatic_rms
    assert 15 < float(thick.max()) < 30  # measured 23.4 m


def test_ecmwf_geostrophic(ecmwf):
    res = physics_residual(ecmwf, "geostrophic")
    assert np.isnan(res.sel(latitude=slice(10, -10))).all()
    s = residual_summary(ecmwf, ["geostrophic"])
    rms, rel = s.geostrophic_rms, s.geostrophic_relative
    assert float(rms.min()) > 2 and float(rms.max()) < 8  # measured 3.0 to 6.4 m s-1
    assert (rel.sel(isobaricInhPa=1000) > rel.sel(isobaricInhPa=500)).all()  # friction near the ground
    assert 0.15 < float(rel.sel(isobaricInhPa=500).min()) < 0.4  # measured 0.26


def test_ecmwf_continuity_with_balancing_omega(ecmwf):
    from xphyda.grid import discover_grid
    from xphyda.physics.operators import divergence

    g = discover_grid(ecmwf)
    dims = ("time", "isobaricInhPa", "latitude", "longitude")
    u, v = (ecmwf[k].transpose(*dims).values.astype(np.float64) for k in ("u", "v"))
    omega = omega_from_continuity(u, v, g.lat_values, g.lon_values, g.level_pa)
    ds = ecmwf.assign(w=(dims, omega, {"units": "Pa s-1"}))
    res = physics_residual(ds, "continuity")
    scale = np.abs(divergence(u, v, g.sphere())).max()
    assert float(np.abs(res).max()) < 1e-12 * scale * 100
    # and in hPa per hour, the omega a forecaster reads, the same residual
    ds_hpa = ds.assign(w=(ds.w * 36.0).assign_attrs(units="hPa h-1"))
    xr.testing.assert_allclose(physics_residual(ds_hpa, "continuity"), res, atol=1e-18)


def test_float32_data_are_computed_in_float32_without_loss(era5, ecmwf):
    """ERA5 files hold float32: computing in float32 changes the residuals by far less than they are."""
    a = physics_residual(era5, "hydrostatic")
    b = physics_residual(era5.astype("float64"), "hydrostatic")
    assert a.dtype == np.float32 and b.dtype == np.float64
    assert float(abs(a - b).max()) < 5e-3  # m; measured 1.4e-3 of residuals up to 126 m
    g32 = physics_residual(ecmwf.drop_vars("r"), "geostrophic")
    g64 = physics_residual(ecmwf.drop_vars("r").astype("float64"), "geostrophic")
    assert float(abs(g32 - g64).max()) < 1e-4  # m s-1; measured 2.4e-5
