"""The OI / 3D-Var kernel: correlation functions, known answers, exact against dense algebra, solvers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xphyda.baselines.oi import (
    CORRELATIONS,
    ENSEMBLE_MAX_POINTS,
    correlation,
    default_length_scale,
    estimate_background_error,
    oi_analysis,
    support,
    unit_vectors,
    unresolved,
)
from xphyda.errors import GridError, ObservationError, PhydaError
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


def dense_b(sb, L, kind, lat, lon, nlev, cv=None):
    """``B = D (C_v kron C_h) D`` as a dense matrix."""
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    x = EARTH_RADIUS * unit_vectors(la.ravel(), lo.ravel())
    ch = correlation(np.linalg.norm(x[:, None] - x[None], axis=-1), L, kind=kind)
    s = np.broadcast_to(np.asarray(sb, dtype=float), (nlev,))
    cv = np.eye(nlev) if cv is None else cv
    return np.kron(s[:, None] * cv * s[None], ch)


def dense_oi(xb, H, y, so, sb, L, kind, lat, lon, cv=None):
    """The textbook formula with an explicit dense B."""
    B = dense_b(sb, L, kind, lat, lon, xb.shape[0], cv)
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
    assert not unresolved(estimate_background_error(d, 0.5), d)


def test_background_error_unresolved_when_observation_errors_dominate():
    """sigma_o 30x sigma_b: the innovations cannot resolve sigma_b, and say so; with 3x, 5000 of them can."""
    rng = np.random.default_rng(5)
    d = rng.normal(0.0, 0.1, 500) + rng.normal(0.0, 3.0, 500)
    est = estimate_background_error(d, 3.0)
    assert unresolved(est, d)
    assert est > 2 * 0.1  # far above the true background error: why the front warns
    d = rng.normal(0.0, 1.0, 5000) + rng.normal(0.0, 3.0, 5000)
    assert not unresolved(estimate_background_error(d, 3.0), d)


def test_default_length_scales():
    assert default_length_scale("geopotential") == default_length_scale("pressure") == 800e3
    assert default_length_scale("temperature") == default_length_scale(None) == 500e3


# ------------------------------------------------------------------ the perturbed-observation ensemble
def small_problem(seed=5):
    """Two correlated levels on a 7 x 12 grid, 12 observations between them with unequal errors."""
    rng = np.random.default_rng(seed)
    lat, lon = np.linspace(75, -75, 7), np.arange(0, 360, 30.0)
    levels = np.array([500e2, 850e2])
    xb = rng.normal(size=(2, lat.size, lon.size))
    n = 12
    p = rng.uniform(500e2, 850e2, n)
    H = build_operator(
        rng.uniform(-70, 70, n), rng.uniform(0, 360, n), lat, lon, pressure=p, levels=levels
    ).matrix
    y, so = rng.normal(size=n), rng.uniform(0.4, 1.0, n)
    kw = {
        "lat": lat,
        "lon": lon,
        "sigma_b": np.array([1.0, 2.0]),
        "length_scale": 1500e3,
        "log_p": np.log(levels),
        "vertical_length_scale": 0.6,
    }
    cv = correlation(np.abs(np.log(levels)[:, None] - np.log(levels)[None]), 0.6)
    return xb, H, y, so, kw, cv


def sampled(ens, members):
    """Sample covariance and mean of the members, on the flattened state."""
    x = ens.analysis.reshape(members, -1)
    return np.cov(x, rowvar=False), x.mean(0)


@pytest.mark.parametrize("kind", CORRELATIONS)
def test_ensemble_samples_the_analysis_error_covariance(kind):
    """Linear-Gaussian: the members sample P_a = B - B H^T (H B H^T + R)^-1 H B, centred on the OI analysis.

    With 2,000 members a variance is known to sqrt(2 / 1999) = 3 %; the ratios are allowed 5 standard
    errors.  Missing either perturbation, or perturbing the background with another length scale (0.7 L
    or 2 L), another correlation function or without the vertical correlation, moves some ratios by 25 %
    or more (checked against the closed form), and the whole matrix by 30 % or more.
    """
    xb, H, y, so, kw, cv = small_problem()
    M = 2000
    B = dense_b(kw["sigma_b"], kw["length_scale"], kind, kw["lat"], kw["lon"], 2, cv)
    band = 5 * np.sqrt(2 / (M - 1))

    # no observations: the members are the background plus draws of B
    empty = oi_analysis(xb, sp.csr_matrix((0, xb.size)), [], [], kind=kind, members=M, seed=2, **kw)
    S, mean = sampled(empty, M)
    np.testing.assert_array_less(np.abs(np.diag(S) / np.diag(B) - 1), band)
    assert np.linalg.norm(S - B) / np.linalg.norm(B) < 0.2
    assert empty.solver == "none" and empty.weights.shape == (M, 0)

    ens = oi_analysis(xb, H, y, so, kind=kind, members=M, seed=1, **kw)
    det = oi_analysis(xb, H, y, so, kind=kind, **kw)
    Hd = H.toarray()
    P = B - B @ Hd.T @ np.linalg.solve(Hd @ B @ Hd.T + np.diag(so**2), Hd @ B)
    assert (np.diag(P) < 0.6 * np.diag(B)).sum() >= 10  # the observations matter at enough points
    S, mean = sampled(ens, M)
    np.testing.assert_array_less(np.abs(np.diag(S) / np.diag(P) - 1), band)
    assert np.linalg.norm(S - P) / np.linalg.norm(P) < 0.25  # the covariances too, not only the variances
    np.testing.assert_array_less(np.abs(mean - det.analysis.ravel()), 5 * np.sqrt(np.diag(P) / M))
    assert ens.analysis.shape == (M, *xb.shape) and ens.weights.shape == (M, y.size)
    np.testing.assert_allclose(ens.increment, ens.analysis - xb, atol=1e-12)


def test_ensemble_is_reproducible_and_member_k_does_not_depend_on_the_ensemble_size():
    xb, H, y, so, kw, _ = small_problem()
    xb0, y0 = xb.copy(), y.copy()
    three = oi_analysis(xb, H, y, so, members=3, seed=7, **kw)
    np.testing.assert_array_equal(oi_analysis(xb, H, y, so, members=3, seed=7, **kw).analysis, three.analysis)
    five = oi_analysis(xb, H, y, so, members=5, seed=7, **kw)
    np.testing.assert_allclose(five.analysis[:3], three.analysis, rtol=0, atol=1e-12)
    for other in (8, (7, 1)):  # another seed, or another stream of the same seed: other draws
        diff = oi_analysis(xb, H, y, so, members=3, seed=other, **kw).analysis - three.analysis
        assert np.abs(diff).min(axis=(1, 2, 3)).max() > 0 and np.abs(diff).mean() > 0.1
    assert np.abs(np.diff(three.analysis, axis=0)).mean() > 0.1  # members differ from each other
    cg = oi_analysis(xb, H, y, so, members=3, seed=7, solver="cg", rtol=1e-12, **kw)
    assert cg.solver == "cg" and cg.iterations > 0
    np.testing.assert_allclose(cg.analysis, three.analysis, atol=1e-8)
    np.testing.assert_array_equal(xb, xb0)  # inputs untouched
    np.testing.assert_array_equal(y, y0)


def test_ensemble_beyond_the_grid_limit_is_a_clear_error():
    n = int(np.sqrt(ENSEMBLE_MAX_POINTS)) + 1  # a square grid just above the limit
    lat, lon = np.linspace(89, -89, n), np.arange(n) * 360.0 / n
    xb = np.zeros((n, n))
    H = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, xb.size))
    kw = {"lat": lat, "lon": lon, "sigma_b": 1.0, "length_scale": 5e5}
    with pytest.raises(
        GridError,
        match=rf"{n} x {n} = {n * n} points .*limit is {ENSEMBLE_MAX_POINTS}.*coarser by 2 .*"
        r"coarsen\(latitude=2.*members=None",
    ):
        oi_analysis(xb, H, [1.0], 1.0, members=2, **kw)
    assert oi_analysis(xb, H, [1.0], 1.0, **kw).analysis.shape == (n, n)  # the deterministic OI is fine


def test_ensemble_bad_inputs():
    xb, H, y, so, kw, _ = small_problem()
    for members in (0, -2, 2.5, True, "8"):
        with pytest.raises(PhydaError, match="members must be a positive integer"):
            oi_analysis(xb, H, y, so, members=members, **kw)
    for seed in (-1, 1.5, "a", ()):
        with pytest.raises(PhydaError, match="seed must be a non-negative integer"):
            oi_analysis(xb, H, y, so, members=2, seed=seed, **kw)
