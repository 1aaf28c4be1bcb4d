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

With ``members=N`` the analysis is the textbook stochastic (perturbed
observation) OI ensemble: member ``k`` is

    x_a^k = (x_b + eps_b^k) + K (y + eps_o^k - H (x_b + eps_b^k)),

``K = B H^T (H B H^T + R)^{-1}``, with ``eps_o^k ~ N(0, R)`` and
``eps_b^k ~ N(0, B)`` for the same ``B`` as the analysis (``sigma_b``,
correlation function and length scale, vertical correlation), sampled as
``L_v W L_h^T`` with ``W`` white noise and ``L_v``, ``L_h`` the Cholesky factors
of ``D C_v D`` and of ``C_h`` on the whole grid (dense, so at most
:data:`ENSEMBLE_MAX_POINTS` grid points; a relative jitter of up to 1e-4 is put
on the diagonal of a numerically singular ``C_h``).  For a linear-Gaussian
problem the members sample the analysis-error covariance ``(I - K H) B``.
``H B H^T + R`` is factorised once for all members, which differ only in their
innovations.  Member ``k`` is drawn from its own generator, seeded with
``(seed, k)``, so it does not depend on the ensemble size.

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
from functools import partial

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.spatial import cKDTree

from ..errors import GridError, ObservationError, PhydaError
from ..physics.constants import EARTH_RADIUS

__all__ = [
    "CORRELATIONS",
    "DEFAULT_LENGTH_SCALE",
    "ENSEMBLE_MAX_POINTS",
    "MASS_LENGTH_SCALE",
    "OIResult",
    "check_members",
    "correlation",
    "default_length_scale",
    "estimate_background_error",
    "innovation_spread",
    "oi_analysis",
    "support",
    "unit_vectors",
    "unresolved",
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

ENSEMBLE_MAX_POINTS = 12_000
"""Largest grid (latitudes times longitudes) of an OI ensemble (``members`` of :func:`oi_analysis`).

Its background perturbations need the dense Cholesky factor of the horizontal
correlation matrix of the grid: ``8 n^2`` bytes (1.2 GB at 12,000 points, so
the 2.5-degree 73 x 144 grid fits) and ``n^3 / 3`` operations (about 1 s on
one core for the 48 x 96 grid).
"""

_JITTERS = (0.0, 1e-10, 1e-8, 1e-6, 1e-4)  # relative diagonal jitters tried by _cholesky, in turn


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
    spread2 = innovation_spread(d) ** 2
    if not spread2 > 0:
        return None
    return float(np.sqrt(max(spread2 - np.median(so**2), 0.01 * spread2)))


def innovation_spread(innovations) -> float:
    """Robust root-mean-square of innovations: 1.4826 times the median of ``|O - B|`` (NaN ignored)."""
    d = np.asarray(innovations, dtype=np.float64)
    d = d[np.isfinite(d)]
    return float(1.4826 * np.median(np.abs(d))) if d.size else float("nan")


def unresolved(sigma_b: float, innovations) -> bool:
    """Whether the innovations cannot tell ``sigma_b`` (from :func:`estimate_background_error`) from zero.

    True when ``sigma_b^2`` is below one standard error of the innovation
    variance it was taken from (for the median-based estimate about
    ``2.3 s^2 / sqrt(n)``, ``s`` the innovation spread, ``n`` the count): the
    observation errors dominate and ``sigma_b`` may be far too large (the floor,
    or sampling noise).  Give it from past background errors instead.

    Parameters
    ----------
    sigma_b : float
        The estimate, in the innovations' units.
    innovations : array_like
        The observation-minus-background values it was estimated from (NaN ignored).

    Returns
    -------
    bool

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = rng.normal(0.0, 0.1, 500) + rng.normal(0.0, 3.0, 500)  # sigma_b 0.1, sigma_o 3
    >>> unresolved(estimate_background_error(d, 3.0), d)
    True
    """
    n = int(np.isfinite(np.asarray(innovations, dtype=np.float64)).sum())
    return bool(sigma_b**2 < 2.32 * innovation_spread(innovations) ** 2 / np.sqrt(max(n, 1)))


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


def _grid_points(lat: np.ndarray, lon: np.ndarray, radius: float) -> np.ndarray:
    """Scaled unit vectors ``(nlat * nlon, 3)`` of the grid points, latitude-major."""
    gi, gj = np.divmod(np.arange(lat.size * lon.size), lon.size)
    return radius * unit_vectors(lat[gi], lon[gj])


class _Gain:
    """The gain ``K = B H^T (H B H^T + R)^{-1}`` of one analysis: set up once, applied to any innovations.

    ``H B H^T + R`` is factorised (Cholesky) or preconditioned (conjugate
    gradients) once; the correlations between the grid and the observed
    columns are computed once per block of grid points for all innovation
    vectors together (the members of an ensemble).
    """

    def __init__(self, H, so, *, nlev, xg, bv, length, kind, solver, exact_max, rtol, chunk):
        nh, n = xg.shape[0], H.shape[0]
        # columns touched by H -> (level, unique horizontal point)
        Hc = H.tocoo()
        used, pos = np.unique(Hc.col % nh, return_inverse=True)
        self.nlev, self.nu, self.xg, self.xu = nlev, used.size, xg, xg[used]
        self.bv, self.length, self.kind, self.rtol, self.chunk = bv, length, kind, rtol, chunk
        self.Hsub = sp.csr_matrix(
            (Hc.data, (Hc.row, (Hc.col // nh) * self.nu + pos)), shape=(n, nlev * self.nu)
        )
        cuu = _corr_matrix(self.xu, self.xu, length, kind)
        hbh = self.Hsub @ sp.kron(sp.csr_matrix(bv), sp.csr_matrix(cuu), format="csr") @ self.Hsub.T
        self.method = solver if solver != "auto" else ("cholesky" if n <= exact_max else "cg")
        if self.method == "cholesky":
            a = hbh.toarray() if sp.issparse(hbh) else np.asarray(hbh)
            a[np.diag_indices_from(a)] += so**2
            with _blas_threads(n):
                self._factor = la.cho_factor(a, lower=True, check_finite=False)
        else:
            self._a = sp.csr_matrix(hbh) + sp.diags(so**2)
            self._precond = sp.diags(1.0 / self._a.diagonal())

    def weights(self, d: np.ndarray) -> tuple[np.ndarray, int]:
        """``(H B H^T + R)^{-1} d`` for ``d`` of shape ``(n_obs,)`` or ``(n_obs, m)``; CG iterations."""
        if self.method == "cholesky":
            with _blas_threads(d.shape[0]):
                return la.cho_solve(self._factor, d, check_finite=False), 0
        cols = d.reshape(d.shape[0], -1)
        z, most, failed = np.empty_like(cols), 0, 0
        for k in range(cols.shape[1]):
            count = [0]

            def callback(_, count=count):
                count[0] += 1

            z[:, k], info = spla.cg(
                self._a,
                cols[:, k],
                rtol=self.rtol,
                atol=0.0,
                M=self._precond,
                maxiter=10 * d.shape[0],
                callback=callback,
            )
            most, failed = max(most, count[0]), failed + (info != 0)
        if failed:
            warnings.warn(
                f"conjugate gradients did not reach rtol={self.rtol} in {most} iterations "
                f"({failed} of {cols.shape[1]} systems); the analysis is approximate (try solver='cholesky' "
                "or a shorter length scale)",
                RuntimeWarning,
                stacklevel=3,
            )
        return z.reshape(d.shape), most

    def increment(self, z: np.ndarray) -> np.ndarray:
        """``D (C_v kron C_h) D H^T z`` on the grid: ``(nlev, nh)``; ``(m, nlev, nh)`` for ``(n_obs, m)``."""
        m = 1 if z.ndim == 1 else z.shape[1]
        s = (self.Hsub.T @ z.reshape(z.shape[0], m)).reshape(self.nlev, self.nu, m)
        s = s.transpose(1, 0, 2).reshape(self.nu, self.nlev * m)
        nh = self.xg.shape[0]
        inc = np.empty((m, self.nlev, nh))
        for start in range(0, nh, self.chunk):  # block by block (memory bound)
            stop = min(start + self.chunk, nh)
            cgu = _corr_matrix(self.xg[start:stop], self.xu, self.length, self.kind)
            g = np.asarray(cgu @ s).reshape(stop - start, self.nlev, m)
            inc[:, :, start:stop] = self.bv @ g.transpose(2, 1, 0)
        return inc[0] if z.ndim == 1 else inc


# --------------------------------------------------------------------------- the ensemble
def check_members(members) -> int | None:
    """``members`` as ``None`` (the deterministic analysis) or a positive integer, else ``PhydaError``.

    Examples
    --------
    >>> check_members(None), check_members(8)
    (None, 8)
    """
    if members is None:
        return None
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
        raise PhydaError(
            f"members must be a positive integer (the ensemble size) or None (the deterministic "
            f"analysis); got {members!r}"
        )
    return int(members)


def _member_rngs(seed, members: int) -> list[np.random.Generator]:
    """One generator per member from ``(*seed, k)``: member ``k`` does not depend on the ensemble size."""
    entropy = list(np.atleast_1d(np.asarray(seed, dtype=object)))
    if not entropy or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in entropy
    ):
        raise PhydaError(f"seed must be a non-negative integer or a sequence of them; got {seed!r}")
    return [np.random.default_rng([*map(int, entropy), k]) for k in range(members)]


def _cholesky(build, n: int) -> np.ndarray:
    """Lower Cholesky factor of the symmetric positive definite matrix ``build()``.

    A correlation matrix of a grid is positive definite but may be numerically
    singular (Gaussian correlations, coincident points of a pole row): the
    smallest relative jitter of :data:`_JITTERS` on the diagonal that lets the
    factorisation succeed is added (the sampled covariance is ``C + jitter I``).
    """
    for jitter in _JITTERS:
        a = build()
        a[np.diag_indices(n)] += jitter * np.trace(a) / n
        try:  # symmetric, so a.T is the same matrix in Fortran order: factorised in place
            with _blas_threads(n):
                return la.cholesky(a.T, lower=True, overwrite_a=True, check_finite=False)
        except la.LinAlgError:
            continue
    raise PhydaError(
        f"a {n} x {n} background-error correlation matrix is not positive definite even with a relative "
        f"jitter of {_JITTERS[-1]:g} on its diagonal; use correlation='gaspari-cohn' or a shorter "
        "length scale"
    )


def _dense_correlation(xg: np.ndarray, length: float, kind: str, block: int = 1024) -> np.ndarray:
    """The dense correlation matrix between all grid points, built block by block (few temporaries)."""
    n = xg.shape[0]
    c = np.empty((n, n))
    for start in range(0, n, block):
        part = _corr_matrix(xg[start : start + block], xg, length, kind)
        c[start : start + block] = part.toarray() if sp.issparse(part) else part
    return c


@dataclass(frozen=True)
class OIResult:
    """What :func:`oi_analysis` returns (with a leading member axis for an ensemble)."""

    analysis: np.ndarray
    """The analysis, shaped like the background; ``(members, *background.shape)`` for an ensemble."""
    increment: np.ndarray
    """``analysis - background``."""
    weights: np.ndarray
    """``(H B H^T + R)^{-1} d`` for the innovations ``d``: ``(n_obs,)``, or ``(members, n_obs)``."""
    solver: str
    """``"cholesky"``, ``"cg"``, or ``"none"`` without observations."""
    iterations: int
    """Conjugate-gradient iterations (0 for Cholesky; the most of any member for an ensemble)."""


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
    members: int | None = None,
    seed=0,
    solver: str = "auto",
    exact_max: int = 2000,
    rtol: float = 1e-8,
    radius: float = EARTH_RADIUS,
    chunk: int = 16384,
) -> OIResult:
    """Analyse one variable with optimal interpolation (3D-Var in observation space), or an OI ensemble.

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
    members : int, optional
        ``None`` (default): the deterministic analysis.  An integer: that many
        members of the perturbed-observation ensemble (see the module notes),
        on grids of at most :data:`ENSEMBLE_MAX_POINTS` points.
    seed : int or sequence of int
        Ensemble: member ``k`` is drawn from ``numpy.random.default_rng([*seed, k])``,
        so it does not depend on the ensemble size.
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
        For an ensemble, ``analysis`` and ``increment`` have a leading member
        axis and ``weights`` is ``(members, n_obs)``.

    Raises
    ------
    ObservationError
        For shape mismatches or non-positive errors.
    GridError
        For an ensemble on a grid of more than :data:`ENSEMBLE_MAX_POINTS` points.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> lat, lon = np.linspace(60, -60, 13), np.arange(0.0, 360.0, 10.0)
    >>> H = sp.csr_matrix(([1.0], ([0], [6 * 36])), shape=(1, 13 * 36))  # lat 0, lon 0
    >>> kw = dict(lat=lat, lon=lon, sigma_b=1.0, length_scale=500e3)
    >>> ens = oi_analysis(np.zeros((13, 36)), H, [1.0], 1.0, members=400, seed=0, **kw)
    >>> ens.analysis.shape
    (400, 13, 36)
    >>> var = ens.analysis[:, 6, 0].var(ddof=1)  # analysis-error variance 1 - 1 / (1 + 1) = 0.5
    >>> bool(abs(var - 0.5) < 0.1)
    True
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
    members = check_members(members)
    if members is not None and nh > ENSEMBLE_MAX_POINTS:
        k = int(np.ceil(np.sqrt(nh / ENSEMBLE_MAX_POINTS)))
        raise GridError(
            f"an OI ensemble samples background errors with the dense Cholesky factor of the correlation "
            f"between all grid points; this grid has {lat.size} x {lon.size} = {nh} points "
            f"({8 * nh**2 / 1e9:.1f} GB), the limit is {ENSEMBLE_MAX_POINTS}. Fix: analyse a grid coarser "
            f"by {k} or more in latitude and longitude (background.coarsen(latitude={k}, longitude={k}, "
            "boundary='trim').mean(keep_attrs=True)), or use the deterministic OI (members=None or 1)"
        )
    xg = _grid_points(lat, lon, radius)
    gain = partial(
        _Gain,
        H,
        so,
        nlev=nlev,
        xg=xg,
        bv=bv,
        length=length,
        kind=kind,
        solver=solver,
        exact_max=exact_max,
        rtol=rtol,
        chunk=chunk,
    )
    if members is None:
        if y.size == 0:
            return OIResult(xb.copy(), np.zeros_like(xb), y.copy(), "none", 0)
        K = gain()
        z, iterations = K.weights(y - H @ xb.ravel())
        inc = K.increment(z).reshape(xb.shape)
        return OIResult(xb + inc, inc, z, K.method, iterations)

    # member k analyses x_b + eps_b^k and y + eps_o^k, with eps_b ~ N(0, B) and eps_o ~ N(0, R)
    rngs = _member_rngs(seed, members)
    lh = _cholesky(lambda: _dense_correlation(xg, length, kind), nh)  # C_h = lh lh^T
    lv = _cholesky(bv.copy, nlev)  # D C_v D = lv lv^T
    w = np.stack([r.standard_normal((nlev, nh)) for r in rngs])
    xp = xb.reshape(nlev, nh) + lv @ (w.reshape(-1, nh) @ lh.T).reshape(members, nlev, nh)
    yp = y + np.stack([r.standard_normal(y.size) for r in rngs]) * so
    shape = (members, *xb.shape)
    if y.size == 0:
        xa = xp.reshape(shape)
        return OIResult(xa, xa - xb, np.zeros((members, 0)), "none", 0)
    K = gain()
    z, iterations = K.weights((yp - (H @ xp.reshape(members, -1).T).T).T)
    xa = (xp + K.increment(z)).reshape(shape)
    return OIResult(xa, xa - xb, z.T, K.method, iterations)
