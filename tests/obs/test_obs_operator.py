"""The observation operator H: bilinear, periodic, polar, log-pressure; exact adjoint; torch."""

from __future__ import annotations

import numpy as np
import pytest

from xphyda.errors import ObservationError
from xphyda.obs.operator import build_operator, horizontal_weights, to_torch, vertical_weights

ERA5_LAT = np.linspace(90.0, -90.0, 181)  # pole rows, descending
ERA5_LON = np.arange(360.0)
COARSE_LAT = 90.0 - (np.arange(64) + 0.5) * 180.0 / 64  # no pole rows
COARSE_LON = np.arange(128) * 360.0 / 128
EDGE_LAT = np.array([89.9, -89.9, 0.0, 45.0, 90.0, -90.0, 89.0, COARSE_LAT[0], 88.0])
EDGE_LON = np.array([359.9, -0.1, 0.0, 359.0, 180.0, -180.0, 12.5, 357.1875, 0.0])


def field(lat, lon):
    """A smooth field on the sphere (a spherical harmonic plus a constant) at (lat, lon) in degrees."""
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return 3.0 + np.cos(phi) ** 2 * np.cos(2 * lam) + np.sin(phi)


def on_grid(glat, glon):
    la, lo = np.meshgrid(glat, glon, indexing="ij")
    return field(la, lo)


@pytest.mark.parametrize("glat,glon", [(ERA5_LAT, ERA5_LON), (COARSE_LAT, COARSE_LON)])
def test_adjoint_is_exact(glat, glon):
    rng = np.random.default_rng(0)
    n = 2000
    lat = np.concatenate([np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))), EDGE_LAT])
    lon = np.concatenate([rng.uniform(-180, 360, n), EDGE_LON])
    p = rng.uniform(500e2, 850e2, lat.size)
    H = build_operator(lat, lon, glat, glon, pressure=p, levels=[850e2, 500e2]).matrix
    x = rng.normal(size=H.shape[1])
    y = rng.normal(size=H.shape[0])
    lhs, rhs = float(np.dot(H @ x, y)), float(np.dot(x, H.T @ y))
    assert lhs == pytest.approx(rhs, rel=1e-13, abs=1e-12)


@pytest.mark.parametrize("glat,glon", [(ERA5_LAT, ERA5_LON), (COARSE_LAT, COARSE_LON)])
def test_rows_sum_to_one_and_interpolate_smooth_fields(glat, glon):
    rng = np.random.default_rng(1)
    lat = np.concatenate([np.rad2deg(np.arcsin(rng.uniform(-1, 1, 500))), EDGE_LAT])
    lon = np.concatenate([rng.uniform(0, 360, 500), EDGE_LON])
    op = build_operator(lat, lon, glat, glon)
    assert op.inside.all()
    np.testing.assert_allclose(np.asarray(op.matrix.sum(axis=1)).ravel(), 1.0, rtol=1e-12)
    spacing = abs(glat[1] - glat[0])
    err = op.matrix @ on_grid(glat, glon).ravel() - field(lat, lon)
    assert np.abs(err).max() < 2.0 * np.deg2rad(spacing) ** 2 * 4  # second order in the spacing


def test_station_on_a_node_and_on_grid_lines():
    op = build_operator([45.0, 45.0, 44.5, 90.0], [10.0, 10.5, 10.0, 123.0], ERA5_LAT, ERA5_LON)
    H = op.matrix
    assert H[0].nnz == 1 and H[0, 45 * 360 + 10] == 1.0  # exactly on a node
    assert H[1].nnz == 2  # on a parallel: two columns
    assert H[2].nnz == 2  # on a meridian: two rows
    assert H[3].nnz == 1 and H[3, 123] == 1.0  # the pole row


def test_longitude_wraps_and_conventions_agree():
    values = on_grid(ERA5_LAT, ERA5_LON).ravel()
    a = build_operator([30.0], [359.9], ERA5_LAT, ERA5_LON).matrix
    b = build_operator([30.0], [-0.1], ERA5_LAT, ERA5_LON).matrix
    assert (a != b).nnz == 0
    row = 60 * 360
    assert a[0, row + 359] == pytest.approx(0.1) and a[0, row + 0] == pytest.approx(0.9)
    # the same physical field on a -180..180 grid, ascending latitude
    lon2 = np.arange(-180.0, 180.0)
    lat2 = ERA5_LAT[::-1]
    values2 = on_grid(lat2, lon2).ravel()
    lat_o, lon_o = np.array([30.0, -89.9, 89.9, 0.0]), np.array([359.9, 179.5, -179.5, 180.0])
    v1 = build_operator(lat_o, lon_o, ERA5_LAT, ERA5_LON).matrix @ values
    v2 = build_operator(lat_o, lon_o - 360.0 * (lon_o > 180), lat2, lon2).matrix @ values2
    np.testing.assert_allclose(v1, v2, rtol=1e-12)


def test_beyond_the_last_row_without_pole_rows():
    top = COARSE_LAT[0]
    g = on_grid(COARSE_LAT, COARSE_LON)
    at = lambda lat, lon: float((build_operator([lat], [lon], COARSE_LAT, COARSE_LON).matrix @ g.ravel())[0])
    # at the pole: the mean of the last row whatever the longitude
    assert at(90.0, 10.0) == pytest.approx(g[0].mean()) == pytest.approx(at(90.0, 250.0))
    assert at(-90.0, 0.0) == pytest.approx(g[-1].mean())
    # continuous across the last row, and between the row and the pole
    assert at(top + 1e-9, 33.0) == pytest.approx(at(top, 33.0), abs=1e-6)
    s = (89.9 - top) / (90.0 - top)
    assert at(89.9, 33.0) == pytest.approx((1 - s) * at(top, 33.0) + s * g[0].mean())
    # and close to the field itself
    assert at(89.9, 33.0) == pytest.approx(field(89.9, 33.0), abs=0.01)


def test_regional_grid_flags_outside():
    lat, lon = np.arange(70.0, 29.0, -1.0), np.arange(-20.0, 41.0, 1.0)  # Europe
    op = build_operator([50.0, 50.0, 80.0, 50.0, 50.0], [10.0, 340.0, 10.0, 100.0, 40.0], lat, lon)
    assert op.inside.tolist() == [True, True, False, False, True]
    assert op.matrix[2].nnz == 0 and op.matrix[3].nnz == 0


def test_vertical_linear_in_log_pressure():
    levels = np.array([1000.0, 850.0, 700.0, 500.0, 300.0]) * 100
    p = np.array([925e2, 600e2, 500e2, 1000e2, 300e2, 250e2, 1050e2, np.nan])
    k0, k1, t, inside = vertical_weights(p, levels)
    assert inside.tolist() == [True] * 5 + [False] * 3
    f = 7.0 + 3.0 * np.log(levels)
    np.testing.assert_allclose(((1 - t) * f[k0] + t * f[k1])[:5], 7.0 + 3.0 * np.log(p[:5]))
    H = build_operator(
        np.full(p.size, 10.0), np.full(p.size, 20.0), ERA5_LAT, ERA5_LON, pressure=p, levels=levels
    ).matrix
    assert H[2].nnz == 1  # exactly on a level: one level, one node
    assert H[5].nnz == 0 and H[6].nnz == 0


def test_several_levels_need_a_pressure():
    with pytest.raises(ObservationError, match="pressure"):
        build_operator([0.0], [0.0], ERA5_LAT, ERA5_LON, levels=[500e2, 850e2])


def test_horizontal_weights_rejects_mismatched_coordinates():
    with pytest.raises(ObservationError, match="differ in length"):
        horizontal_weights([0.0, 1.0], [0.0], ERA5_LAT, ERA5_LON)


def test_torch_matches_numpy_and_backpropagates():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    lat = np.concatenate([rng.uniform(-90, 90, 300), EDGE_LAT])
    lon = np.concatenate([rng.uniform(0, 360, 300), EDGE_LON])
    p = rng.uniform(500e2, 850e2, lat.size)
    op = build_operator(lat, lon, COARSE_LAT, COARSE_LON, pressure=p, levels=[850e2, 500e2])
    H = to_torch(op, dtype=torch.float64)
    x = torch.tensor(rng.normal(size=(3, op.matrix.shape[1])), requires_grad=True)
    y = torch.tensor(rng.normal(size=(3, op.matrix.shape[0])))
    hx = H(x)
    np.testing.assert_allclose(hx.detach().numpy(), (op.matrix @ x.detach().numpy().T).T, rtol=1e-12)
    np.testing.assert_allclose(H.adjoint(y).numpy(), (op.matrix.T @ y.numpy().T).T, rtol=1e-12)
    (hx * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), (op.matrix.T @ y.numpy().T).T, rtol=1e-12)
    assert tuple(H(x[0]).shape) == (op.matrix.shape[0],)
    assert torch.allclose(torch.dot(H(x[0]), y[0]), torch.dot(x[0], H.adjoint(y[0])))
    with pytest.raises(ObservationError, match="shape"):
        H(torch.zeros(2, 5))
