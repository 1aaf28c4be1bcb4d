"""The OI / 3D-Var kernel: correlation functions, known answers, exact against dense algebra, solvers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xphyda.baselines.oi import (
    CORRELATIONS,
    correlation,
    default_length_scale,
    estimate_background_error,
    oi_analysis,
    support,
    unit_vectors,
)
from xphyda.errors import ObservationError, PhydaError
from xphyda.obs.operator import build_operator
from xphyda.physics.constants import EARTH_RADIUS

LAT = 90.0 - (np.arange(32) + 0.5) * 180.0 / 32
LON = np.arange(64) * 360.0 / 64


def chord(lat0, lon0, lat, lon):
    return EARTH_RADIUS * np.linalg.norm(unit_vectors(lat, lon) - unit_vectors(lat0, lon0), axis=-1)


@pytest.mark.parametrize("kind", CORRELATIONS)
def test_correlation_functions(kind):
    L = 300e3
    assert correlation(0.0, L, kind=kind) == 1.0
    # Daley's length scale: rho''(0) = -1 / L^2
    h = 100.0
    second = (correlation(h, L, kind=kind) - 2 + correlation(-h, L, kind=kind)) / h**2
    assert -1.0 / second == pytest.approx(L**2, rel=1e-3)
    r = np.linspace(0, 5 * L, 200)
    assert np.all(np.diff(correlation(r, L, kind=kind)) <= 1e-15)  # decreasing
    if kind == "gaspari-cohn":
        assert support(L) == pytest.approx(2 * np.sqrt(10 / 3) * L)
        assert correlation(support(L) * 1.0001, L) == 0.0
        z = np.array([0.999999, 1.000001]) * np.sqrt(10 / 3) * L  # continuous at r = c
        assert abs(np.diff(correlation(z, L))[0]) < 1e-5
    else:
        assert support(L, kind=kind) == np.inf


@pytest.mark.parametrize("kind", CORRELATIONS)
def test_correlation_matrix_is_positive_definite_on_the_sphere(kind):
    rng = np.random.default_rng(0)
    lat = np.rad2deg(np.arcsin(rng.uniform(-1, 1, 250)))
    lon = rng.uniform(0, 360, 250)
    x = EARTH_RADIUS * unit_vectors(lat, lon)
    r = np.linalg.norm(x[:, None] - x[None], axis=-1)
    eig = np.linalg.eigvalsh(correlation(r, 2000e3, kind=kind))
    assert eig.min() > -1e-10


@pytest.mark.parametrize("kind", CORRELATIONS)
@pytest.mark.parametrize("where", [(16, 10), (0, 63), (31, 0)])
def test_single_observation_known_answer(kind, where):
    """increment = rho(distance) * sigma_b^2 / (sigma_b^2 + sigma_o^2) * (y - H x_b)."""
    i, j = where
    rng = np.random.default_rng(1)
    xb = rng.normal(280.0, 5.0, (32, 64))
    H = sp.csr_matrix(([1.0], ([0], [i * 64 + j])), shape=(1, xb.size))
    sb, so, L = 1.5, 0.8, 600e3
    y = xb[i, j] + 3.0
    res = oi_analysis(xb, H, [y], so, lat=LAT, lon=LON, sigma_b=sb, length_scale=L, kind=kind)
    la, lo = np.meshgrid(LAT, LON, indexing="ij")
    expected = correlation(chord(LAT[i], LON[j], la, lo), L, kind=kind) * sb**2 / (sb**2 + so**2) * 3.0
    np.testing.assert_allclose(res.increment, expected, atol=1e-12)
    assert res.solver == "cholesky"


def dense_oi(xb, H, y, so, sb, L, kind, lat, lon, cv=None):
    """The textbook formula with an explicit dense B."""
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    x = EARTH_RADIUS * unit_vectors(la.ravel(), lo.ravel())
    ch = correlation(np.linalg.norm(x[:, None] - x[None], axis=-1), L, kind=kind)
    nlev = xb.shape[0]
    s = np.broadcast_to(np.asarray(sb, dtype=float), (nlev,))
    cv = np.eye(nlev) if cv is None else cv
    B = np.kron(s[:, None] * cv * s[None], ch)
    Hd = H.toarray()
    K = B @ Hd.T @ np.linalg.inv(Hd @ B @ Hd.T + np.diag(np.broadcast_to(so, y.shape) ** 2))
    return xb.ravel() + K @ (y - Hd @ xb.ravel())


@pytest.mark.parametrize("kind", CORRELATIONS)
@pytest.mark.parametrize("vertical", [None, 0.6])
def test_matches_dense_textbook_formula(kind, vertical):
    rng = np.random.default_rng(2)
    lat, lon = np.linspace(80, -80, 9), np.arange(0, 360, 30.0)
    levels = np.array([300e2, 500e2, 850e2])
    xb = rng.normal(size=(3, lat.size, lon.size))
    n = 40
    olat, olon = rng.uniform(-85, 85, n), rng.uniform(-180, 180, n)
    p = rng.uniform(300e2, 850e2, n)
    H = build_operator(olat, olon, lat, lon, pressure=p, levels=levels).matrix
    y = rng.normal(size=n)
    so = rng.uniform(0.5, 1.0, n)
    sb = np.array([1.0, 2.0, 0.5])
    res = oi_analysis(
        xb,
        H,
        y,
        so,
        lat=lat,
        lon=lon,
        sigma_b=sb,
        length_scale=1500e3,
        kind=kind,
        log_p=np.log(levels),
        vertical_length_scale=vertical,
    )
    cv = (
        None
        if vertical is None
        else correlation(np.abs(np.log(levels)[:, None] - np.log(levels)[None]), vertical)
    )
    expected = dense_oi(xb, H, y, so, sb, 1500e3, kind, lat, lon, cv)
    np.testing.assert_allclose(res.analysis.ravel(), expected, rtol=1e-9, atol=1e-9)


def test_conjugate_gradients_agree_with_cholesky():
    rng = np.random.default_rng(3)
    xb = rng.normal(size=(32, 64))
    n = 600
    H = build_operator(rng.uniform(-90, 90, n), rng.uniform(0, 360, n), LAT, LON).matrix
    y = rng.normal(size=n)
    a = oi_analysis(xb, H, y, 0.5, lat=LAT, lon=LON, sigma_b=1.0, length_scale=500e3, solver="cholesky")
    b = oi_analysis(xb, H, y, 0.5, lat=LAT, lon=LON, sigma_b=1.0, length_scale=500e3, solver="cg", rtol=1e-12)
    assert b.solver == "cg" and b.iterations > 0
    np.testing.assert_allclose(b.analysis, a.analysis, atol=1e-8)


def test_two_equal_observations_are_one_better_observation():
    xb = np.zeros((32, 64))
    col = 10 * 64 + 5
    H1 = sp.csr_matrix(([1.0], ([0], [col])), shape=(1, xb.size))
    H2 = sp.csr_matrix(([1.0, 1.0], ([0, 1], [col, col])), shape=(2, xb.size))
    one = oi_analysis(xb, H1, [2.0], 1.0 / np.sqrt(2), lat=LAT, lon=LON, sigma_b=1.0, length_scale=400e3)
    two = oi_analysis(xb, H2, [2.0, 2.0], 1.0, lat=LAT, lon=LON, sigma_b=1.0, length_scale=400e3)
    np.testing.assert_allclose(two.analysis, one.analysis, atol=1e-12)


def test_no_observations_returns_the_background():
    xb = np.ones((32, 64))
    res = oi_analysis(
        xb, sp.csr_matrix((0, xb.size)), [], [], lat=LAT, lon=LON, sigma_b=1.0, length_scale=1e5
    )
    np.testing.assert_array_equal(res.analysis, xb)


def test_bad_inputs():
    xb = np.zeros((32, 64))
    H = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, xb.size))
    kw = {"lat": LAT, "lon": LON, "sigma_b": 1.0, "length_scale": 3e5}
    with pytest.raises(ObservationError, match="positive"):
        oi_analysis(xb, H, [1.0], 0.0, **kw)
    with pytest.raises(ObservationError, match="background-error"):
        oi_analysis(xb, H, [1.0], 1.0, **{**kw, "sigma_b": -1.0})
    with pytest.raises(PhydaError, match="length scale"):
        oi_analysis(xb, H, [1.0], 1.0, **{**kw, "length_scale": 0.0})
    with pytest.raises(PhydaError, match="correlation"):
        oi_analysis(xb, H, [1.0], 1.0, kind="exponential", **kw)
    with pytest.raises(ObservationError, match="H has shape"):
        oi_analysis(xb, H, [1.0, 2.0], 1.0, **kw)


def test_background_error_from_innovations():
    rng = np.random.default_rng(4)
    d = rng.normal(0.0, np.hypot(1.5, 0.5), 5000)
    d[:50] = 100.0  # gross errors do not matter
    assert estimate_background_error(d, 0.5) == pytest.approx(1.5, rel=0.05)
    assert estimate_background_error(d[:10], 0.5) is None
    assert estimate_background_error(np.zeros(100), 0.5) is None


def test_default_length_scales():
    assert default_length_scale("geopotential") == default_length_scale("pressure") == 800e3
    assert default_length_scale("temperature") == default_length_scale(None) == 500e3
