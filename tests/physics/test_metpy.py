"""Cross-check against MetPy in the mid-latitudes, and document where the two differ.

MetPy (1.7) differentiates with second-order finite differences on the actual
distances between grid points, one-sided at the first and last rows and columns.
In |lat| <= 60 and away from the 0/360 seam it agrees with xphyda to the
truncation error; at the seam it is not periodic (its answer depends on where
the array starts) and within about 10 degrees of the poles its error grows by
orders of magnitude (the pole rows give values of order 1e4 times the field).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import A

from xphyda.physics.kernels import ageostrophic
from xphyda.physics.operators import SphereGrid, divergence, vorticity

mpcalc = pytest.importorskip("metpy.calc")

INNER = slice(2, -2)  # away from the seam: MetPy's one-sided differences there


def _metpy(func, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MetPy divides by cos(90) at the pole rows
        out = func(*args)
    return [o.metpy.dequantify().values for o in out] if isinstance(out, tuple) else out.metpy.dequantify().values


@pytest.fixture(scope="module")
def one_degree(request):
    """Tilted rotation plus the harmonic divergent wind on the ERA5 grid, with MetPy's answers."""
    import conftest as c

    lat, lon = c.grid_coords("pole181x360")
    u1, v1, zeta = c.tilted_rotation(lat, lon)
    u2, v2, _, div = c.harmonic_wind(lat, lon)
    u, v = u1 + u2, v1 + v2
    ds = c.to_dataset(lat, lon, u=u, v=v).metpy.assign_crs(grid_mapping_name="latitude_longitude", earth_radius=A)
    return {
        "lat": lat, "lon": lon, "u": u, "v": v, "div": div, "zeta": zeta,
        "metpy_div": _metpy(mpcalc.divergence, ds.u, ds.v),
        "metpy_vort": _metpy(mpcalc.vorticity, ds.u, ds.v),
    }


def test_divergence_and_vorticity_agree_with_metpy_in_midlatitudes(one_degree):
    d = one_degree
    g = SphereGrid(d["lat"], d["lon"])
    mid = np.abs(d["lat"]) <= 60
    ours_div, ours_vort = divergence(d["u"], d["v"], g), vorticity(d["u"], d["v"], g)
    div_diff = np.abs(ours_div - d["metpy_div"])[mid][:, INNER].max() / np.abs(d["div"]).max()
    vort_diff = np.abs(ours_vort - d["metpy_vort"])[mid][:, INNER].max() / np.abs(d["zeta"]).max()
    assert div_diff < 1e-3  # measured 5.1e-4 of max |div|: both second order, different metric terms
    assert vort_diff < 2e-3  # measured 1.0e-3 of max |zeta|


def test_metpy_degrades_near_the_poles_and_xphyda_does_not(one_degree):
    d = one_degree
    g = SphereGrid(d["lat"], d["lon"])
    scale = np.abs(d["div"]).max()
    ours = np.abs(divergence(d["u"], d["v"], g) - d["div"]) / scale
    theirs = np.abs(d["metpy_div"] - d["div"]) / scale
    near = (np.abs(d["lat"]) >= 80) & (np.abs(d["lat"]) < 90)
    pole = np.abs(d["lat"]) == 90
    assert ours[near].max() < 0.02 and theirs[near].max() > 1.0  # measured 0.0115 vs 1.3e4 (at 89 degrees)
    assert ours[pole].max() < 0.07 and theirs[pole].max() > 100  # measured 0.046 vs 2.7e4


def test_geostrophic_wind_agrees_with_metpy_on_era5(era5):
    ds = era5.isel(time=0).metpy.assign_crs(grid_mapping_name="latitude_longitude", earth_radius=A)
    ug, vg = _metpy(mpcalc.geostrophic_wind, ds.z)
    lat, lon = ds.latitude.values, ds.longitude.values
    z = ds.z.values.astype(np.float64)
    du, dv, _ = ageostrophic(0 * z, 0 * z, z, SphereGrid(lat, lon), band=15.0)
    band = (np.abs(lat) >= 15) & (np.abs(lat) <= 60)
    diff = np.maximum(np.abs(-du - ug), np.abs(-dv - vg))[:, band]
    assert diff[..., INNER].max() < 2e-3  # m s-1; measured 7.9e-4 (RMS wind 18.6 m s-1)
    # at the seam MetPy's one-sided differences differ from the periodic centred ones by metres per second
    assert diff[..., [0, -1]].max() > 1.0  # measured 6.5 m s-1


def test_divergence_and_vorticity_agree_with_metpy_on_real_winds(ecmwf):
    """ECMWF analysis u, v on 6 levels at 10 degrees: both second order, so in |lat| <= 60 away from
    the seam they differ by the truncation error of so coarse a grid; at the seam MetPy is not periodic."""
    from xphyda.grid import discover_grid

    grid = discover_grid(ecmwf)
    ds = ecmwf.metpy.assign_crs(grid_mapping_name="latitude_longitude", earth_radius=A)
    theirs = [x.transpose(*ecmwf.u.dims) for x in (mpcalc.divergence(ds.u, ds.v), mpcalc.vorticity(ds.u, ds.v))]
    theirs = [x.metpy.dequantify().values for x in theirs]
    u, v = (ecmwf[k].values.astype(np.float64) for k in ("u", "v"))
    ours = divergence(u, v, grid.sphere()), vorticity(u, v, grid.sphere())
    mid = np.abs(grid.lat_values) <= 60
    for name, a, b, rms_bound, corr_bound in (
        ("divergence", ours[0], theirs[0], 0.25, 0.97),  # measured 0.18 and 0.983
        ("vorticity", ours[1], theirs[1], 0.09, 0.995),  # measured 0.063 and 0.998
    ):
        a, b = a[..., mid, :], b[..., mid, :]
        scale = np.sqrt(np.mean(a**2))
        inner_a, inner_b = a[..., INNER], b[..., INNER]
        rms_diff = np.sqrt(np.mean((inner_a - inner_b) ** 2)) / scale
        corr = np.corrcoef(inner_a.ravel(), inner_b.ravel())[0, 1]
        assert rms_diff < rms_bound and corr > corr_bound, (name, rms_diff, corr)
        seam = np.abs(a - b)[..., [0, -1]].max() / scale
        assert seam > 2.0, (name, seam)  # measured 6.6 (divergence) and 2.5 (vorticity) times the RMS field
