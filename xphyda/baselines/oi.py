"""Optimal interpolation (OI) / 3D-Var in observation space: the classical yardstick.

Numpy and scipy only.  For one variable the state ``x`` is ``(level, lat, lon)``
(or ``(lat, lon)``), ``H`` the sparse operator of :mod:`xphyda.obs.operator`,
and the analysis is the minimiser of the 3D-Var cost function,

    x_a = x_b + B H^T (H B H^T + R)^{-1} (y - H x_b),

computed globally from all observations at once (no data selection), so OI and
3D-Var coincide.  ``R`` is diagonal (``sigma_o^2``) and

    B = D (C_v kron C_h) D,

with ``D`` the background-error standard deviation per level, ``C_v`` the
vertical correlation between levels (identity by default: levels independent)
and ``C_h`` a horizontal correlation of the distance between grid points.

Distances are measured along the chord, ``2 a sin(theta / 2)``, which differs
from the great-circle distance ``a theta`` by less than 0.5 % below 2 000 km;
a correlation function of the chord that is positive definite in 3-D space is
positive definite on the sphere (Gaspari and Cohn 1999, section 2), so ``B`` is
a valid covariance whatever the grid.

``length_scale`` is Daley's length scale ``L = sqrt(-rho(0) / rho''(0))`` for
every function, so they are interchangeable:

* ``"gaspari-cohn"`` (default): the compactly supported fifth-order function of
  Gaspari and Cohn (1999, eq. 4.10) with half-width ``c = L sqrt(10/3)``;
  zero beyond ``2c``, which keeps ``H B H^T`` sparse;
* ``"soar"``: ``(1 + r/L) exp(-r/L)``;
* ``"gaussian"``: ``exp(-r^2 / (2 L^2))``.

The observation-space system ``(H B H^T + R) z = y - H x_b`` is solved exactly
(dense Cholesky) up to ``exact_max`` observations (2,000 by default) and by
Jacobi-preconditioned conjugate gradients above; with ``R`` on its diagonal
the system is well conditioned and CG converges in a few tens of iterations.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> lat, lon = np.linspace(60, -60, 13), np.arange(0.0, 360.0, 10.0)
>>> xb = np.zeros((13, 36))
>>> H = sp.csr_matrix(([1.0], ([0], [6 * 36 + 0])), shape=(1, xb.size))  # lat 0, lon 0
>>> res = oi_analysis(xb, H, [1.0], 1.0, lat=lat, lon=lon, sigma_b=1.0, length_scale=500e3)
>>> round(float(res.analysis[6, 0]), 6)  # sigma_b^2 / (sigma_b^2 + sigma_o^2) * innovation
0.5
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.spatial import cKDTree

from ..errors import ObservationError, PhydaError
from ..physics.constants import EARTH_RADIUS

__all__ = [
    "CORRELATIONS",
    "DEFAULT_LENGTH_SCALE",
    "MASS_LENGTH_SCALE",
    "OIResult",
    "correlation",
    "default_length_scale",
    "estimate_background_error",
    "oi_analysis",
    "support",
    "unit_vectors",
]

CORRELATIONS = ("gaspari-cohn", "soar", "gaussian")
"""Names of the horizontal correlation functions."""

DEFAULT_LENGTH_SCALE = 500e3
"""Default Daley length scale of the horizontal correlation, metres, except for mass fields.

Calibrated on ERA5 (``python benchmarks/bench_obs.py --calibrate``, see
``docs/observations.md``): analyses of 2-m temperature, 10-m winds and 500/850
hPa temperature are best with 500-600 km, those of geopotential and mean
sea-level pressure with 800 km (:data:`MASS_LENGTH_SCALE`).
"""

MASS_LENGTH_SCALE = 800e3
"""Default length scale (metres) for geopotential and pressure, whose errors are broader."""

_GC_HALF_WIDTH = np.sqrt(10.0 / 3.0)  # c / L for Gaspari-Cohn
_DENSE_MAX = 20_000  # largest dense correlation problem (memory)


def default_length_scale(quantity: str | None) -> float:
    """The calibrated default length scale (metres) for a kind of quantity (``"temperature"``...).

    Examples
    --------
    >>> default_length_scale("geopotential"), default_length_scale("speed")
    (800000.0, 500000.0)
    """
    return MASS_LENGTH_SCALE if quantity in ("geopotential", "pressure") else DEFAULT_LENGTH_SCALE


def _check_kind(kind: str) -> None:
    if kind not in CORRELATIONS:
        raise PhydaError(f"unknown correlation function {kind!r}; choose one of {CORRELATIONS}")


def _check_length(length_scale: float) -> float:
    value = float(length_scale)
    if not np.isfinite(value) or value <= 0:
        raise PhydaError(f"length scale must be a positive distance in metres; got {length_scale!r}")
    return value


def correlation(r, length_scale: float, *, kind: str = "gaspari-cohn") -> np.ndarray:
    """Correlation as a function of distance ``r`` (same unit as ``length_scale``).

    Parameters
    ----------
    r : array_like
        Non-negative distances.
    length_scale : float
        Daley length scale ``L`` (see the module notes).
    kind : {"gaspari-cohn", "soar", "gaussian"}

    Examples
    --------
    >>> correlation([0.0, 1.0], 1.0, kind="soar").round(4).tolist()
    [1.0, 0.7358]
    >>> float(correlation(2 * 1.826, 1.0))  # beyond 2c = 2 L sqrt(10/3)
    0.0
    """
    _check_kind(kind)
    length = _check_length(length_scale)
    r = np.abs(np.asarray(r, dtype=np.float64))
    if kind == "soar":
        q = r / length
        return (1.0 + q) * np.exp(-q)
    if kind == "gaussian":
        return np.exp(-0.5 * (r / length) ** 2)
    z = r / (_GC_HALF_WIDTH * length)
    out = np.zeros_like(z)
    near = z <= 1.0
    far = (z > 1.0) & (z < 2.0)
    a = z[near]
    out[near] = (((-0.25 * a + 0.5) * a + 0.625) * a - 5.0 / 3.0) * a**2 + 1.0
    b = z[far]
    out[far] = ((((b / 12.0 - 0.5) * b + 0.625) * b + 5.0 / 3.0) * b - 5.0) * b + 4.0 - 2.0 / (3.0 * b)
    return out


def support(length_scale: float, *, kind: str = "gaspari-cohn") -> float:
    """Distance beyond which the correlation is zero (``inf`` unless compactly supported)."""
    _check_kind(kind)
    return 2.0 * _GC_HALF_WIDTH * _check_length(length_scale) if kind == "gaspari-cohn" else np.inf


def unit_vectors(lat, lon) -> np.ndarray:
    """Cartesian unit vectors ``(n, 3)`` of points at ``lat, lon`` (degrees)."""
    phi, lam = np.deg2rad(np.asarray(lat, dtype=np.float64)), np.deg2rad(np.asarray(lon, dtype=np.float64))
    c = np.cos(phi)
    return np.stack([c * np.cos(lam), c * np.sin(lam), np.sin(phi)], axis=-1)


def _corr_matrix(xa: np.ndarray, xb: np.ndarray, length: float, kind: str):
    """Correlations between points ``xa`` and ``xb`` (scaled unit vectors, metres): sparse or dense."""
    reach = support(length, kind=kind)
    if np.isfinite(reach):
        # pairs within reach, zero distances included (coincident points such as a pole row)
        d = cKDTree(xa).sparse_distance_matrix(cKDTree(xb), reach, output_type="ndarray")
        vals = correlation(d["v"], length, kind=kind)
        return sp.csr_matrix((vals, (d["i"], d["j"])), shape=(xa.shape[0], xb.shape[0]))
    if xa.shape[0] * xb.shape[0] > _DENSE_MAX**2:
        raise PhydaError(
            f"a {kind!r} correlation between {xa.shape[0]} and {xb.shape[0]} points needs a dense "
            "matrix too large "
            "for memory; use the compactly supported correlation='gaspari-cohn' or fewer observations"
        )
    sq = (xa**2).sum(1)[:, None] + (xb**2).sum(1)[None, :] - 2.0 * xa @ xb.T
    return correlation(np.sqrt(np.maximum(sq, 0.0)), length, kind=kind)


def estimate_background_error(innovations, sigma_o, *, min_count: int = 20) -> float | None:
    """Background-error standard deviation from innovation statistics, or ``None`` with too few.

    With uncorrelated errors ``E[(O - B)^2] = sigma_b^2 + sigma_o^2``; the
    root-mean-square innovation is estimated robustly as 1.4826 times the median
    of ``|O - B|`` (so gross errors do not inflate it; a bias of the background
    counts as background error), and ``sigma_b^2`` is floored at a hundredth of
    it (the background is never taken as perfect).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = rng.normal(0.0, np.hypot(2.0, 1.0), 10_000)
    >>> round(estimate_background_error(d, np.ones(d.size)), 1)
    2.0
    """
    d = np.asarray(innovations, dtype=np.float64)
    so = np.broadcast_to(np.asarray(sigma_o, dtype=np.float64), d.shape)
    ok = np.isfinite(d) & np.isfinite(so)
    if ok.sum() < min_count:
        return None
    d, so = d[ok], so[ok]
    spread2 = (1.4826 * np.median(np.abs(d))) ** 2
    if not spread2 > 0:
        return None
    return float(np.sqrt(max(spread2 - np.median(so**2), 0.01 * spread2)))


def _blas_threads(n: int):
    """One BLAS thread for dense problems up to 4,000: threads gain little there and lose up to
    twenty-fold on a busy machine (OpenBLAS threads spin while they wait for a core)."""
    if n > 4000:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _vertical(nlev: int, sigma_b, log_p, vertical_length_scale) -> np.ndarray:
    """``D C_v D`` between levels: ``(nlev, nlev)``."""
    sigma = np.broadcast_to(np.asarray(sigma_b, dtype=np.float64), (nlev,)).copy()
    if np.any(~np.isfinite(sigma)) or np.any(sigma <= 0):
        raise ObservationError(
            f"background-error standard deviations must be positive and finite; got {sigma}"
        )
    if vertical_length_scale is None or nlev == 1:
        cv = np.eye(nlev)
    else:
        if log_p is None or np.size(log_p) != nlev:
            raise PhydaError(f"vertical correlation needs the log-pressure of the {nlev} levels")
        lp = np.asarray(log_p, dtype=np.float64)
        cv = correlation(np.abs(lp[:, None] - lp[None, :]), vertical_length_scale)
    return sigma[:, None] * cv * sigma[None, :]


@dataclass(frozen=True)
class OIResult:
    """What :func:`oi_analysis` returns."""

    analysis: np.ndarray
    """The analysis, shaped like the background."""
    increment: np.ndarray
    """``analysis - background``."""
    weights: np.ndarray
    """``(H B H^T + R)^{-1} (y - H x_b)``, one per observation."""
    solver: str
    """``"cholesky"`` or ``"cg"``."""
    iterations: int
    """Conjugate-gradient iterations (0 for Cholesky)."""


def oi_analysis(
    background,
    H,
    y,
    sigma_o,
    *,
    lat,
    lon,
    sigma_b,
    length_scale: float,
    kind: str = "gaspari-cohn",
    log_p=None,
    vertical_length_scale: float | None = None,
    solver: str = "auto",
    exact_max: int = 2000,
    rtol: float = 1e-8,
    radius: float = EARTH_RADIUS,
    chunk: int = 16384,
) -> OIResult:
    """Analyse one variable with optimal interpolation (3D-Var in observation space).

    Parameters
    ----------
    background : numpy.ndarray
        ``(nlat, nlon)`` or ``(nlev, nlat, nlon)`` background state.
    H : scipy.sparse matrix
        ``(n_obs, background.size)`` observation operator.
    y, sigma_o : array_like
        Observations and their error standard deviations (same units as the state).
    lat, lon : array_like
        1-D grid coordinates in degrees.
    sigma_b : float or array_like
        Background-error standard deviation, scalar or one per level.
    length_scale : float
        Daley length scale of the horizontal correlation, in metres.
    kind : {"gaspari-cohn", "soar", "gaussian"}
        Horizontal correlation function.
    log_p : array_like, optional
        ``log`` of the level pressures, for a vertical correlation.
    vertical_length_scale : float, optional
        Gaspari-Cohn length scale in ``log p`` between levels (``None``: levels independent).
    solver : {"auto", "cholesky", "cg"}
        ``"auto"`` uses Cholesky up to ``exact_max`` observations.
    exact_max : int
        Largest number of observations solved exactly by ``"auto"``.
    rtol : float
        Relative tolerance of conjugate gradients.
    radius : float
        Sphere radius in metres.
    chunk : int
        Grid points per block when spreading the increment (memory bound).

    Returns
    -------
    OIResult

    Raises
    ------
    ObservationError
        For shape mismatches or non-positive errors.
    """
    xb = np.asarray(background, dtype=np.float64)
    if xb.ndim not in (2, 3):
        raise ObservationError(f"background must be (lat, lon) or (level, lat, lon); got shape {xb.shape}")
    lat = np.asarray(lat, dtype=np.float64).ravel()
    lon = np.asarray(lon, dtype=np.float64).ravel()
    nlev = 1 if xb.ndim == 2 else xb.shape[0]
    nh = lat.size * lon.size
    if xb.shape[-2:] != (lat.size, lon.size):
        raise ObservationError(
            f"background shape {xb.shape} does not match the grid ({lat.size}, {lon.size})"
        )
    H = sp.csr_matrix(H)
    y = np.asarray(y, dtype=np.float64).ravel()
    so = np.broadcast_to(np.asarray(sigma_o, dtype=np.float64), y.shape)
    if H.shape != (y.size, xb.size):
        raise ObservationError(
            f"H has shape {H.shape}; expected ({y.size}, {xb.size}) for {y.size} observations"
        )
    if np.any(~np.isfinite(y)) or np.any(~np.isfinite(so)) or np.any(so <= 0):
        raise ObservationError(
            "observations must be finite with positive finite errors; flag the others out first"
        )
    if solver not in ("auto", "cholesky", "cg"):
        raise PhydaError(f"solver must be 'auto', 'cholesky' or 'cg'; got {solver!r}")
    length = _check_length(length_scale)
    _check_kind(kind)
    bv = _vertical(nlev, sigma_b, log_p, vertical_length_scale)
    if y.size == 0:
        return OIResult(xb.copy(), np.zeros_like(xb), y.copy(), "none", 0)

    # columns touched by H -> (level, unique horizontal point)
    Hc = H.tocoo()
    hcol = Hc.col % nh
    used, pos = np.unique(hcol, return_inverse=True)
    nu = used.size
    Hsub = sp.csr_matrix((Hc.data, (Hc.row, (Hc.col // nh) * nu + pos)), shape=(y.size, nlev * nu))
    ii, jj = np.divmod(used, lon.size)
    xu = radius * unit_vectors(lat[ii], lon[jj])
    cuu = _corr_matrix(xu, xu, length, kind)
    bsub = sp.kron(sp.csr_matrix(bv), sp.csr_matrix(cuu), format="csr")
    hbh = Hsub @ bsub @ Hsub.T
    d = y - H @ xb.ravel()

    method = solver if solver != "auto" else ("cholesky" if y.size <= exact_max else "cg")
    iterations = 0
    if method == "cholesky":
        a = hbh.toarray() if sp.issparse(hbh) else np.asarray(hbh)
        a[np.diag_indices_from(a)] += so**2
        with _blas_threads(y.size):
            z = la.cho_solve(la.cho_factor(a, lower=True, check_finite=False), d, check_finite=False)
    else:
        a = sp.csr_matrix(hbh) + sp.diags(so**2)
        count = [0]

        def callback(_):
            count[0] += 1

        precond = sp.diags(1.0 / a.diagonal())
        z, info = spla.cg(a, d, rtol=rtol, atol=0.0, M=precond, maxiter=10 * y.size, callback=callback)
        iterations = count[0]
        if info != 0:
            warnings.warn(
                f"conjugate gradients did not reach rtol={rtol} in {iterations} iterations; "
                "the analysis is approximate (try solver='cholesky' or a shorter length scale)",
                RuntimeWarning,
                stacklevel=2,
            )

    # increment = D (C_v kron C_h) D H^T z, spread to the grid block by block
    s = (Hsub.T @ z).reshape(nlev, nu)
    inc = np.empty((nlev, nh))
    gi, gj = np.divmod(np.arange(nh), lon.size)
    for start in range(0, nh, chunk):
        stop = min(start + chunk, nh)
        xg = radius * unit_vectors(lat[gi[start:stop]], lon[gj[start:stop]])
        cgu = _corr_matrix(xg, xu, length, kind)
        inc[:, start:stop] = bv @ np.asarray((cgu @ s.T).T)
    inc = inc.reshape(xb.shape)
    return OIResult(xb + inc, inc, z, method, iterations)
