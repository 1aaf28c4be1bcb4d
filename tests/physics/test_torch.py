"""The torch backend: same numbers as numpy (float64), and differentiable."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import P_LEVELS

from xphyda.physics import kernels
from xphyda.physics.operators import SphereGrid, ddp, divergence, gradient, omega_from_continuity, vorticity

torch = pytest.importorskip("torch")

RTOL = 1e-6  # required; measured agreement is about 1e-15


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def _agree(out_torch, out_numpy):
    out_torch = out_torch.detach().numpy()
    scale = np.nanmax(np.abs(out_numpy))
    assert out_torch.shape == out_numpy.shape
    np.testing.assert_array_equal(np.isnan(out_torch), np.isnan(out_numpy))
    err = np.nanmax(np.abs(out_torch - out_numpy)) / scale
    assert err <= RTOL
    return err


@pytest.mark.parametrize("name", ["pole33x64", "reg32x64", "gauss48x96"])
def test_operators_agree_on_analytic_fields(analytic, name):
    lat, lon = analytic.grid_coords(name)
    g = SphereGrid(lat, lon)
    u, v, w, _ = analytic.divergent_column(lat, lon)
    ut, vt, wt = _t(u), _t(v), _t(w)
    _agree(divergence(ut, vt, g), divergence(u, v, g))
    _agree(vorticity(ut + vt, vt, g), vorticity(u + v, v, g))
    for a, b in zip(gradient(ut, g), gradient(u, g)):
        _agree(a, b)
    _agree(ddp(ut, P_LEVELS), ddp(u, P_LEVELS))
    _agree(kernels.continuity(ut, vt, wt, P_LEVELS, g), kernels.continuity(u, v, w, P_LEVELS, g))
    _agree(omega_from_continuity(ut, vt, lat, lon, P_LEVELS), omega_from_continuity(u, v, lat, lon, P_LEVELS))
    geo, t = analytic.isothermal(lat, lon)
    _agree(kernels.hydrostatic(_t(geo * 1.001), _t(t), P_LEVELS), kernels.hydrostatic(geo * 1.001, t, P_LEVELS))
    _agree(kernels.geostrophic(ut, vt, _t(geo), g), kernels.geostrophic(u, v, geo, g))


def test_kernels_agree_on_real_data(ecmwf):
    from xphyda.grid import discover_grid
    from xphyda.units import magnitude_si

    grid = discover_grid(ecmwf)
    g = grid.sphere()
    p = grid.level_pa
    u, v, z, t = (magnitude_si(ecmwf[k], kind) for k, kind in
                  (("u", "speed"), ("v", "speed"), ("z", "geopotential"), ("t", "temperature")))
    w = omega_from_continuity(u, v, grid.lat_values, grid.lon_values, p) * 1.1
    errs = [
        _agree(divergence(_t(u), _t(v), g), divergence(u, v, g)),
        _agree(vorticity(_t(u), _t(v), g), vorticity(u, v, g)),
        _agree(kernels.continuity(_t(u), _t(v), _t(w), p, g), kernels.continuity(u, v, w, p, g)),
        _agree(kernels.hydrostatic(_t(z), _t(t), p), kernels.hydrostatic(z, t, p)),
        _agree(kernels.geostrophic(_t(u), _t(v), _t(z), g), kernels.geostrophic(u, v, z, g)),
    ]
    assert max(errs) < 1e-12  # measured about 1e-16


def test_float32_tensor_keeps_dtype():
    g = SphereGrid(np.linspace(90, -90, 7), np.arange(8) * 45.0)
    u = torch.ones(2, 7, 8, dtype=torch.float32)
    assert divergence(u, u, g).dtype == torch.float32
    assert gradient(u, g)[0].dtype == torch.float32


TINY = SphereGrid(np.linspace(90, -90, 7), np.arange(8) * 45.0)  # pole rows, periodic
P3 = np.array([850.0, 700.0, 500.0]) * 100


def _rand(*shape, scale=1.0, offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (offset + scale * torch.rand(*shape, generator=g, dtype=torch.float64)).requires_grad_(True)


@pytest.mark.parametrize(
    "func, inputs",
    [
        (lambda u, v: divergence(u, v, TINY), lambda: (_rand(7, 8), _rand(7, 8, seed=1))),
        (lambda u, v: vorticity(u, v, TINY), lambda: (_rand(7, 8), _rand(7, 8, seed=1))),
        (lambda f: gradient(f, TINY), lambda: (_rand(7, 8),)),
        (lambda f: ddp(f, P3), lambda: (_rand(3, 7, 8),)),
        (
            lambda u, v, w: kernels.continuity(u, v, w, P3, TINY),
            lambda: (_rand(3, 7, 8), _rand(3, 7, 8, seed=1), _rand(3, 7, 8, seed=2)),
        ),
        (
            lambda z, t, q: kernels.hydrostatic(z, t, P3, q=q),
            lambda: (_rand(3, 7, 8, scale=100.0), _rand(3, 7, 8, offset=250.0), _rand(3, 7, 8, scale=0.01)),
        ),
        (
            # phi offset keeps |V - V_g| away from 0, where sqrt is not differentiable
            lambda u, v, z: kernels.geostrophic(u, v, z, TINY, band=10.0).nan_to_num(),
            lambda: (_rand(7, 8, offset=30.0), _rand(7, 8), _rand(7, 8, scale=10.0)),
        ),
        (
            lambda u, v: omega_from_continuity(u, v, TINY.lat, TINY.lon, P3),
            lambda: (_rand(3, 7, 8), _rand(3, 7, 8, seed=1)),
        ),
    ],
    ids=["divergence", "vorticity", "gradient", "ddp", "continuity", "hydrostatic", "geostrophic", "omega"],
)
def test_gradcheck(func, inputs):
    assert torch.autograd.gradcheck(func, inputs(), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradient_reaches_the_inputs_through_a_loss():
    u, v = _rand(3, 7, 8), _rand(3, 7, 8, seed=1)
    w = _rand(3, 7, 8, seed=2)
    loss = kernels.continuity(u, v, w, P3, TINY).pow(2).mean()
    loss.backward()
    for x in (u, v, w):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
