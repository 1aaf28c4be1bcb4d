"""The finite-volume operators and array kernels against analytic oracles.

Every bound below is stated per grid as ``(mid-latitudes |lat| <= 60, all rows
including the pole rows)``, relative to the natural scale of the field (2U/a for
solid-body rotation, max |div| for the harmonic wind, U or 10 m s-1 for the
geostrophic wind), with the value measured when the bound was set.  Bounds are
1.5 times the measured error, rounded up.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ALL_GRIDS, GAUSSIAN, P_LEVELS, POLES, REGULAR, U0, A

from xphyda.errors import GridError
from xphyda.physics import kernels
from xphyda.physics.operators import (
    SphereGrid,
    ddp,
    divergence,
    gradient,
    layer_difference,
    layer_mean,
    omega_from_continuity,
    vorticity,
)

# fmt: off
BOUNDS = {
    ("rotation_divergence", "reg32x64"): (0.00076, 0.0092),  # measured 5.02e-04, 6.13e-03
    ("rotation_vorticity", "reg32x64"): (0.0029, 0.013),  # measured 1.91e-03, 8.15e-03
    ("harmonic_divergence", "reg32x64"): (0.032, 0.19),  # measured 2.08e-02, 1.23e-01
    ("harmonic_vorticity", "reg32x64"): (0.006, 0.055),  # measured 3.99e-03, 3.62e-02
    ("continuity", "reg32x64"): (0.03, 0.18),  # measured 2.00e-02, 1.18e-01
    ("geostrophic_rotation", "reg32x64"): (0.0091, 0.0091),  # measured 6.04e-03, 6.04e-03
    ("geostrophic_harmonic", "reg32x64"): (0.02, 0.02),  # measured 1.33e-02, 1.33e-02
    ("rotation_divergence", "reg64x128"): (0.00018, 0.0047),  # measured 1.19e-04, 3.07e-03
    ("rotation_vorticity", "reg64x128"): (0.00072, 0.0054),  # measured 4.76e-04, 3.58e-03
    ("harmonic_divergence", "reg64x128"): (0.0077, 0.097),  # measured 5.07e-03, 6.41e-02
    ("harmonic_vorticity", "reg64x128"): (0.0016, 0.028),  # measured 1.00e-03, 1.84e-02
    ("continuity", "reg64x128"): (0.0074, 0.093),  # measured 4.88e-03, 6.17e-02
    ("geostrophic_rotation", "reg64x128"): (0.0024, 0.0024),  # measured 1.55e-03, 1.55e-03
    ("geostrophic_harmonic", "reg64x128"): (0.0054, 0.0054),  # measured 3.55e-03, 3.55e-03
    ("rotation_divergence", "reg180x360"): (2.5e-05, 0.0017),  # measured 1.62e-05, 1.09e-03
    ("rotation_vorticity", "reg180x360"): (9.1e-05, 0.0018),  # measured 6.03e-05, 1.16e-03
    ("harmonic_divergence", "reg180x360"): (0.001, 0.035),  # measured 6.63e-04, 2.31e-02
    ("harmonic_vorticity", "reg180x360"): (0.0002, 0.01),  # measured 1.27e-04, 6.61e-03
    ("continuity", "reg180x360"): (0.00096, 0.034),  # measured 6.38e-04, 2.22e-02
    ("geostrophic_rotation", "reg180x360"): (0.0003, 0.0003),  # measured 1.96e-04, 1.96e-04
    ("geostrophic_harmonic", "reg180x360"): (0.00068, 0.00068),  # measured 4.49e-04, 4.49e-04
    ("rotation_divergence", "pole33x64"): (0.00068, 0.019),  # measured 4.51e-04, 1.23e-02
    ("rotation_vorticity", "pole33x64"): (0.0029, 0.021),  # measured 1.90e-03, 1.38e-02
    ("harmonic_divergence", "pole33x64"): (0.03, 0.39),  # measured 1.94e-02, 2.58e-01
    ("harmonic_vorticity", "pole33x64"): (0.0061, 0.12),  # measured 4.01e-03, 7.41e-02
    ("continuity", "pole33x64"): (0.029, 0.38),  # measured 1.87e-02, 2.48e-01
    ("geostrophic_rotation", "pole33x64"): (0.0093, 0.0093),  # measured 6.14e-03, 6.14e-03
    ("geostrophic_harmonic", "pole33x64"): (0.021, 0.021),  # measured 1.39e-02, 1.39e-02
    ("rotation_divergence", "pole65x128"): (0.00019, 0.0093),  # measured 1.26e-04, 6.14e-03
    ("rotation_vorticity", "pole65x128"): (0.00072, 0.0098),  # measured 4.77e-04, 6.52e-03
    ("harmonic_divergence", "pole65x128"): (0.0079, 0.2),  # measured 5.22e-03, 1.30e-01
    ("harmonic_vorticity", "pole65x128"): (0.0016, 0.056),  # measured 1.01e-03, 3.73e-02
    ("continuity", "pole65x128"): (0.0076, 0.19),  # measured 5.03e-03, 1.25e-01
    ("geostrophic_rotation", "pole65x128"): (0.0024, 0.0024),  # measured 1.54e-03, 1.54e-03
    ("geostrophic_harmonic", "pole65x128"): (0.0053, 0.0053),  # measured 3.48e-03, 3.48e-03
    ("rotation_divergence", "pole181x360"): (2.5e-05, 0.0033),  # measured 1.65e-05, 2.18e-03
    ("rotation_vorticity", "pole181x360"): (9.1e-05, 0.0034),  # measured 6.03e-05, 2.23e-03
    ("harmonic_divergence", "pole181x360"): (0.001, 0.07),  # measured 6.66e-04, 4.63e-02
    ("harmonic_vorticity", "pole181x360"): (0.0002, 0.02),  # measured 1.27e-04, 1.32e-02
    ("continuity", "pole181x360"): (0.00097, 0.067),  # measured 6.41e-04, 4.45e-02
    ("geostrophic_rotation", "pole181x360"): (0.0003, 0.0003),  # measured 1.96e-04, 1.96e-04
    ("geostrophic_harmonic", "pole181x360"): (0.00068, 0.00068),  # measured 4.52e-04, 4.52e-04
    ("rotation_divergence", "gauss48x96"): (0.00032, 0.0077),  # measured 2.12e-04, 5.08e-03
    ("rotation_vorticity", "gauss48x96"): (0.0013, 0.0031),  # measured 8.34e-04, 2.03e-03
    ("harmonic_divergence", "gauss48x96"): (0.014, 0.068),  # measured 8.81e-03, 4.48e-02
    ("harmonic_vorticity", "gauss48x96"): (0.0027, 0.0095),  # measured 1.74e-03, 6.28e-03
    ("continuity", "gauss48x96"): (0.013, 0.065),  # measured 8.48e-03, 4.31e-02
    ("geostrophic_rotation", "gauss48x96"): (0.0041, 0.0041),  # measured 2.68e-03, 2.68e-03
    ("geostrophic_harmonic", "gauss48x96"): (0.0092, 0.0092),  # measured 6.07e-03, 6.07e-03
    ("rotation_divergence", "gauss64x128"): (0.0002, 0.0058),  # measured 1.31e-04, 3.80e-03
    ("rotation_vorticity", "gauss64x128"): (0.00071, 0.0021),  # measured 4.71e-04, 1.40e-03
    ("harmonic_divergence", "gauss64x128"): (0.0078, 0.052),  # measured 5.18e-03, 3.45e-02
    ("harmonic_vorticity", "gauss64x128"): (0.0015, 0.0076),  # measured 9.88e-04, 5.02e-03
    ("continuity", "gauss64x128"): (0.0075, 0.05),  # measured 4.98e-03, 3.32e-02
    ("geostrophic_rotation", "gauss64x128"): (0.0023, 0.0023),  # measured 1.52e-03, 1.52e-03
    ("geostrophic_harmonic", "gauss64x128"): (0.0053, 0.0053),  # measured 3.50e-03, 3.50e-03
}
# fmt: on


def _errors(err, lat):
    """Max of ``err`` over |lat| <= 60 and over all rows."""
    mid = np.abs(lat) <= 60
    return float(np.nanmax(err[..., mid, :])), float(np.nanmax(err))


def _check(field, grid_name, err, lat):
    mid, every = _errors(err, lat)
    bound_mid, bound_all = BOUNDS[(field, grid_name)]
    assert mid <= bound_mid, f"{field} on {grid_name}: mid-latitude error {mid:.3e} > {bound_mid}"
    assert every <= bound_all, f"{field} on {grid_name}: error {every:.3e} (pole rows included) > {bound_all}"


@pytest.mark.parametrize("name", ALL_GRIDS)
def test_tilted_solid_body_rotation(analytic, name):
    lat, lon = analytic.grid_coords(name)
    g = SphereGrid(lat, lon)
    u, v, zeta = analytic.tilted_rotation(lat, lon)
    scale = 2 * U0 / A
    _check("rotation_divergence", name, np.abs(divergence(u, v, g)) / scale, lat)
    _check("rotation_vorticity", name, np.abs(vorticity(u, v, g) - zeta) / scale, lat)


def test_zonal_solid_body_rotation_is_exactly_non_divergent(analytic):
    # the finite-volume flux form makes div(U cos(phi), 0) zero to rounding, pole caps included
    for name in ALL_GRIDS:
        lat, lon = analytic.grid_coords(name)
        u, v, _ = analytic.tilted_rotation(lat, lon, alpha=0.0)
        d = divergence(u, v, SphereGrid(lat, lon))
        assert np.abs(d).max() < 1e-18, name


@pytest.mark.parametrize("name", ALL_GRIDS)
def test_harmonic_divergent_wind(analytic, name):
    lat, lon = analytic.grid_coords(name)
    g = SphereGrid(lat, lon)
    u, v, _, div = analytic.harmonic_wind(lat, lon)
    scale = np.abs(div).max()
    _check("harmonic_divergence", name, np.abs(divergence(u, v, g) - div) / scale, lat)
    _check("harmonic_vorticity", name, np.abs(vorticity(u, v, g)) / scale, lat)


@pytest.mark.parametrize("name", ALL_GRIDS)
def test_continuity_of_divergent_column(analytic, name):
    """omega = -div * p^2 / (2 p_s) balances V = (p / p_s) grad(chi): the layer form is exact in
    the vertical, so the residual is the horizontal truncation error."""
    lat, lon = analytic.grid_coords(name)
    g = SphereGrid(lat, lon)
    u, v, w, d = analytic.divergent_column(lat, lon)
    res = kernels.continuity(u, v, w, P_LEVELS, g)
    assert res.shape == (P_LEVELS.size - 1, lat.size, lon.size)
    _check("continuity", name, np.abs(res) / np.abs(d).max(), lat)


def test_continuity_vertical_truncation(analytic):
    # s(p) = sin(pi p / p_s): levels 25 to 200 hPa apart; the trapezoid rule costs at most 5 %
    lat, lon = analytic.grid_coords("reg180x360")
    u, v, w, d = analytic.divergent_column(lat, lon, profile="sine")
    res = kernels.continuity(u, v, w, P_LEVELS, SphereGrid(lat, lon))
    mid = np.abs(lat) <= 60
    assert np.abs(res[:, mid]).max() / np.abs(d).max() < 0.045  # measured 0.029


@pytest.mark.parametrize("name", ["reg32x64", "pole33x64", "gauss48x96"])
@pytest.mark.parametrize("flip", [False, True])
def test_omega_from_continuity_balances_exactly(analytic, name, flip):
    lat, lon = analytic.grid_coords(name)
    u, v, _, d = analytic.divergent_column(lat, lon, profile="sine")
    p = P_LEVELS[::-1] if flip else P_LEVELS
    if flip:
        u, v, d = u[::-1], v[::-1], d[::-1]
    w = omega_from_continuity(u, v, lat, lon, p)
    res = kernels.continuity(u, v, w, p, SphereGrid(lat, lon))
    assert np.abs(res).max() < 1e-13 * np.abs(d).max() * 10  # rounding only


@pytest.mark.parametrize("name", ALL_GRIDS)
def test_geostrophic_balance(analytic, name):
    lat, lon = analytic.grid_coords(name)
    g = SphereGrid(lat, lon)
    u, v, geo = analytic.balanced_rotation(lat, lon)
    res = kernels.geostrophic(u, v, geo, g)
    band = np.abs(lat) < kernels.GEOSTROPHIC_BAND
    assert np.isnan(res[band]).all() and np.isfinite(res[~band]).all()
    _check("geostrophic_rotation", name, res / U0, lat)
    ug, vg, geo = analytic.balanced_harmonic(lat, lon)
    _check("geostrophic_harmonic", name, kernels.geostrophic(ug, vg, geo, g) / 10.0, lat)


def test_geostrophic_band_zero_keeps_equator_finite_elsewhere(analytic):
    lat, lon = analytic.grid_coords("pole33x64")  # has a row at the equator, where f = 0
    u, v, geo = analytic.balanced_rotation(lat, lon)
    with np.errstate(all="raise"):
        res = kernels.geostrophic(u, v, geo, SphereGrid(lat, lon), band=0.0)
    assert np.isnan(res[lat == 0]).all()
    assert np.isfinite(res[lat != 0]).all()


@pytest.mark.parametrize("name", ["reg32x64", "pole181x360", "gauss48x96"])
def test_isothermal_atmosphere_is_hydrostatic(analytic, name):
    lat, lon = analytic.grid_coords(name)
    geo, t = analytic.isothermal(lat, lon)
    res = kernels.hydrostatic(geo, t, P_LEVELS)
    assert res.shape == (P_LEVELS.size - 1, lat.size, lon.size)
    assert np.abs(res).max() < 1e-8  # metres; measured 2.7e-12 (rounding)


def test_hydrostatic_exact_for_temperature_linear_in_log_p():
    from xphyda.physics.constants import constants

    c = constants()
    p = P_LEVELS
    x = np.log(p / 1.0e5)
    t = 288.0 + 40.0 * x  # linear in ln p: the layer mean of T is exact
    geo = -c.Rd * (288.0 * x + 40.0 * x**2 / 2)
    res = kernels.hydrostatic(geo[:, None, None], t[:, None, None], p)
    assert np.abs(res).max() < 1e-9


def test_hydrostatic_virtual_temperature():
    from xphyda.physics.constants import constants

    c = constants()
    p = P_LEVELS
    q = np.full(p.shape, 0.01)[:, None, None]
    t = np.full(p.shape, 280.0)[:, None, None]
    tv = kernels.virtual_temperature(t, q)
    assert np.allclose(tv, 280.0 * (1 + 0.01 * (1 - c.epsilon) / c.epsilon))
    geo = c.Rd * tv * np.log(1.0e5 / p)[:, None, None]
    assert np.abs(kernels.hydrostatic(geo, t, p, q=q)).max() < 1e-9
    dry = kernels.hydrostatic(geo, t, p)  # ignoring humidity: about 0.6 % of the thickness
    assert np.all(dry > 0)


# ----------------------------------------------------------------------------- convergence
def _order(e1, e2, n1, n2):
    return np.log(e1 / e2) / np.log(n2 / n1)


@pytest.mark.parametrize("family", [REGULAR, POLES])
def test_second_order_in_midlatitudes_first_order_at_pole_rows(analytic, family):
    mid_err, pole_err, n = [], [], []
    for name in family:
        lat, lon = analytic.grid_coords(name)
        u, v, _, div = analytic.harmonic_wind(lat, lon)
        err = np.abs(divergence(u, v, SphereGrid(lat, lon)) - div) / np.abs(div).max()
        mid_err.append(err[np.abs(lat) <= 60].max())
        pole_err.append(err[[0, -1]].max())
        n.append(lat.size)
    for i in range(len(n) - 1):
        mid_order = _order(mid_err[i], mid_err[i + 1], n[i], n[i + 1])
        pole_order = _order(pole_err[i], pole_err[i + 1], n[i], n[i + 1])
        assert 1.8 < mid_order < 2.3, (family, mid_err)  # measured 1.98 to 2.06
        assert 0.7 < pole_order < 1.3, (family, pole_err)  # measured 0.92 to 1.02


def test_gaussian_grids_converge(analytic):
    errs = []
    for name in GAUSSIAN:
        lat, lon = analytic.grid_coords(name)
        u, v, zeta = analytic.tilted_rotation(lat, lon)
        errs.append(np.abs(vorticity(u, v, SphereGrid(lat, lon)) - zeta)[np.abs(lat) <= 60].max())
    assert _order(errs[0], errs[1], 48, 64) > 1.8  # measured 2.0


# ----------------------------------------------------------------------------- periodicity
@pytest.mark.parametrize("shift", [1, 17, -5])
def test_rolling_in_longitude_rolls_the_output(analytic, shift):
    lat, lon = analytic.grid_coords("pole65x128")
    u, v, _, _ = analytic.harmonic_wind(lat, lon)
    g = SphereGrid(lat, lon)
    rolled = SphereGrid(lat, np.roll(lon, shift))  # e.g. 351.6, 354.4, ..., 0, 2.8, ...: unwrapped
    for op in (divergence, vorticity):  # bit for bit: the seam is like any other meridian
        ref = op(u, v, g)
        np.testing.assert_array_equal(op(np.roll(u, shift, -1), np.roll(v, shift, -1), rolled), np.roll(ref, shift, -1))
    for ref, out in zip(gradient(u, g), gradient(np.roll(u, shift, -1), rolled)):
        np.testing.assert_array_equal(out, np.roll(ref, shift, -1))


def test_uneven_longitudes_roll_to_rounding(analytic):
    lat, _ = analytic.grid_coords("reg32x64")
    lon = np.sort(np.random.default_rng(1).uniform(0, 360, 64))
    u, v, _ = analytic.tilted_rotation(lat, lon)
    g = SphereGrid(lat, lon, periodic=True)
    assert g.dlam is None
    ref = divergence(u, v, g)
    out = divergence(np.roll(u, 9, -1), np.roll(v, 9, -1), SphereGrid(lat, np.roll(lon, 9), periodic=True))
    np.testing.assert_allclose(out, np.roll(ref, 9, -1), rtol=0, atol=1e-10 * np.abs(ref).max())


def test_minus180_to_180_equals_0_to_360(analytic):
    lat, lon = analytic.grid_coords("pole181x360")
    u, v, _, _ = analytic.harmonic_wind(lat, lon)
    lon2 = np.where(lon >= 180, lon - 360, lon)
    order = np.argsort(lon2)
    d1 = divergence(u, v, SphereGrid(lat, lon))
    d2 = divergence(u[:, order], v[:, order], SphereGrid(lat, lon2[order]))
    np.testing.assert_array_equal(d2, d1[:, order])


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("name", ALL_GRIDS)
def test_cell_areas_tile_the_sphere(analytic, name):
    lat, lon = analytic.grid_coords(name)
    g = SphereGrid(lat, lon)
    assert g.global_lat and g.periodic
    np.testing.assert_allclose(g.cell_area.sum(), 4 * np.pi * A**2, rtol=1e-12)


def test_regional_grid_is_neither_global_nor_periodic():
    g = SphereGrid(np.linspace(20, 60, 21), np.linspace(-30, 30, 31))
    assert not g.global_lat and not g.periodic
    u = np.ones(g.shape) * 5.0
    assert np.abs(divergence(u, 0 * u, g)).max() < 1e-20  # uniform u has no zonal divergence
    assert np.isfinite(vorticity(u, u, g)).all()


def test_regional_grid_converges(analytic):
    """A 20-60 N, 0-60 E box: second order inside, first order on the boundary rows and columns
    (the outer cell edges lie half a spacing beyond the data, where v is extrapolated linearly)."""
    measured = {21: (2.8e-3, 2.6e-2), 41: (7.1e-4, 1.3e-2), 81: (1.8e-4, 6.2e-3)}  # (inside, boundary)
    for n, (inside, boundary) in measured.items():
        lat, lon = np.linspace(20, 60, n), np.linspace(0, 60, int(1.5 * (n - 1)) + 1)
        u, v, _, div = analytic.harmonic_wind(lat, lon)
        err = np.abs(divergence(u, v, SphereGrid(lat, lon)) - div) / np.abs(div).max()
        assert err[1:-1, 1:-1].max() < 1.5 * inside and err.max() < 1.5 * boundary, n


def test_ddp_and_layers():
    p = np.array([1000.0, 850.0, 700.0, 500.0, 300.0]) * 100
    f = (2.0 * p**2 + 3.0 * p)[:, None, None] * np.ones((1, 3, 4))
    np.testing.assert_allclose(ddp(f, p)[:, 0, 0], 4.0 * p + 3.0, rtol=1e-12)  # exact for quadratics
    assert layer_difference(f).shape == (4, 3, 4)
    np.testing.assert_allclose(layer_mean(f)[:, 0, 0], 0.5 * (f[1:, 0, 0] + f[:-1, 0, 0]))
    with pytest.raises(GridError, match="at least 3"):
        ddp(f[:2], p[:2])
    with pytest.raises(GridError, match="5 levels on axis -3 but 4 pressures"):
        kernels.hydrostatic(f, f, p[:4])
    with pytest.raises(GridError, match="monotonic"):
        kernels.continuity(f, f, f, p[[0, 2, 1, 3, 4]], SphereGrid(np.linspace(-10, 10, 3), np.arange(4) * 90.0))


def test_float32_stays_float32(analytic):
    lat, lon = analytic.grid_coords("reg32x64")
    u, v, _, _ = analytic.harmonic_wind(lat, lon)
    d = divergence(u.astype(np.float32), v.astype(np.float32), SphereGrid(lat, lon))
    assert d.dtype == np.float32


@pytest.mark.parametrize("name", ["pole33x64", "reg32x64", "gauss48x96"])
def test_kernels_never_write_to_their_inputs(analytic, name):
    """The operators update only their own temporaries in place: read-only inputs work."""
    lat, lon = analytic.grid_coords(name)
    g = SphereGrid(lat, lon)
    u, v, w, _ = analytic.divergent_column(lat, lon)
    geo, t = analytic.isothermal(lat, lon)
    q = np.full(t.shape, 0.005)
    for x in (u, v, w, geo, t, q):
        x.flags.writeable = False
    divergence(u, v, g), vorticity(u, v, g), gradient(geo, g), ddp(u, P_LEVELS)
    kernels.continuity(u, v, w, P_LEVELS, g)
    kernels.hydrostatic(geo, t, P_LEVELS, q=q)
    kernels.hydrostatic(geo, t, P_LEVELS)
    kernels.geostrophic(u, v, geo, g)
    omega_from_continuity(u, v, lat, lon, P_LEVELS)
    regional = SphereGrid(lat[2:-2], lon[:20])
    divergence(u[:, 2:-2, :20], v[:, 2:-2, :20], regional), gradient(geo[:, 2:-2, :20], regional)


def test_integer_input_is_promoted():
    g = SphereGrid(np.linspace(90, -90, 7), np.arange(8) * 45.0)
    u = np.arange(56).reshape(7, 8)
    assert divergence(u, u, g).dtype == np.float64
    assert gradient(u, g)[0].dtype == np.float64
