"""Numpy kernels of the skill scores in :mod:`xphyda.metrics`: arrays in, arrays out.

No xarray here.  Every kernel takes float arrays that broadcast against each
other, optional non-negative ``weights`` that broadcast against them, the
``axis`` (an int or a tuple of ints, ``None`` for all axes) to reduce over, and
``skipna``:

* ``skipna=False``: a NaN anywhere in the reduced points makes the result NaN.
* ``skipna=True``: a point is dropped when any input is NaN there (the inputs
  are masked jointly, so every score compares the same points), and the weights
  of the remaining points are renormalised.  If nothing is left, the result is
  NaN.

Ensemble kernels take the members on ``member_axis`` of the ensemble array; the
other inputs have the ensemble's shape without that axis, and ``axis`` counts
the axes of that shape.  The formulas are in ``docs/metrics.md``.

Examples
--------
>>> import numpy as np
>>> rmse(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
1.1547005383792515
>>> crps_ensemble(np.array([1.0, 2.0, 4.0]), np.array(3.0), fair=False)
0.6666666666666666
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

__all__ = [
    "weighted_mean",
    "mse",
    "rmse",
    "bias",
    "mae",
    "acc",
    "crps_ensemble",
    "crps",
    "spread_skill_ratio",
    "ensemble_rank",
    "rank_histogram",
    "rms_ratio",
]


# --------------------------------------------------------------------------- helpers
def _as_float(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _check_weights(w: np.ndarray) -> None:
    if w.size and (np.isnan(w).any() or (w < 0).any()):
        raise DataError(
            "weights must be finite and non-negative; found "
            f"{int(np.isnan(w).sum())} NaN and {int((w < 0).sum())} negative values. "
            "Fix: weights.fillna(0).clip(min=0), or check how the weights were built"
        )


def _joint(arrays, weights, skipna: bool):
    """Broadcast ``arrays`` and ``weights``; with ``skipna`` zero them where any array is NaN."""
    w = 1.0 if weights is None else _as_float(weights)
    *arrays, w = np.broadcast_arrays(*[_as_float(a) for a in arrays], w)
    _check_weights(w)
    if skipna:
        valid = np.logical_and.reduce([~np.isnan(a) for a in arrays])
        arrays = [np.where(valid, a, 0.0) for a in arrays]
        w = np.where(valid, w, 0.0)
    return arrays, w


def _ratio(num, den):
    num, den = np.asarray(num), np.asarray(den)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(den > 0, out, np.nan)


def _wmean(x: np.ndarray, w: np.ndarray, axis, keepdims: bool = False):
    """Weighted mean of already broadcast and masked arrays."""
    return _ratio(np.sum(w * x, axis=axis, keepdims=keepdims), np.sum(w, axis=axis, keepdims=keepdims))


def _scalar(x):
    """Return numpy scalars as Python floats so that 0-d results print plainly."""
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


def _members_last(ensemble, member_axis: int) -> np.ndarray:
    x = _as_float(ensemble)
    if x.ndim == 0:
        raise DataError("the ensemble must have a member axis; got a 0-d array")
    return np.moveaxis(x, member_axis, -1)


# --------------------------------------------------------------------------- deterministic
def weighted_mean(x, weights=None, *, axis=None, skipna: bool = False):
    """Weighted mean ``sum(w x) / sum(w)`` over ``axis``.

    Examples
    --------
    >>> weighted_mean(np.array([1.0, 4.0]), np.array([1.0, 0.5]))
    2.0
    """
    (x,), w = _joint([x], weights, skipna)
    return _scalar(_wmean(x, w, axis))


def mse(forecast, truth, weights=None, *, axis=None, skipna: bool = False):
    """Weighted mean squared error ``sum(w (f - t)^2) / sum(w)``.

    Examples
    --------
    >>> mse(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    5.0
    """
    (f, t), w = _joint([forecast, truth], weights, skipna)
    return _scalar(_wmean((f - t) ** 2, w, axis))


def rmse(forecast, truth, weights=None, *, axis=None, skipna: bool = False):
    """Weighted root mean squared error ``sqrt(sum(w (f - t)^2) / sum(w))``.

    Examples
    --------
    >>> rmse(np.array([1.0, 3.0]), np.array([1.0, 1.0]), np.array([1.0, 3.0]))
    1.7320508075688772
    """
    return _scalar(np.sqrt(mse(forecast, truth, weights, axis=axis, skipna=skipna)))


def bias(forecast, truth, weights=None, *, axis=None, skipna: bool = False):
    """Weighted mean error ``sum(w (f - t)) / sum(w)`` (positive when the forecast is too high).

    Examples
    --------
    >>> bias(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    2.0
    """
    (f, t), w = _joint([forecast, truth], weights, skipna)
    return _scalar(_wmean(f - t, w, axis))


def mae(forecast, truth, weights=None, *, axis=None, skipna: bool = False):
    """Weighted mean absolute error ``sum(w |f - t|) / sum(w)``.

    Examples
    --------
    >>> mae(np.array([1.0, -3.0]), np.array([0.0, 0.0]))
    2.0
    """
    (f, t), w = _joint([forecast, truth], weights, skipna)
    return _scalar(_wmean(np.abs(f - t), w, axis))


def acc(forecast, truth, climatology, weights=None, *, axis=None, skipna: bool = False, centered: bool = True):
    """Anomaly correlation coefficient of ``forecast - climatology`` with ``truth - climatology``.

    With ``centered=True`` each anomaly first has its weighted mean over
    ``axis`` removed (a weighted Pearson correlation of the anomalies);
    ``centered=False`` is the uncentred form used by WeatherBench 2.  NaN where
    either anomaly has zero variance.

    Examples
    --------
    >>> f, t, c = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0]), np.zeros(3)
    >>> round(acc(f, t, c, centered=False), 6)
    0.95119
    """
    (f, t, c), w = _joint([forecast, truth, climatology], weights, skipna)
    fa, ta = f - c, t - c
    if centered:
        fa = fa - _wmean(fa, w, axis, keepdims=True)
        ta = ta - _wmean(ta, w, axis, keepdims=True)
    num = np.sum(w * fa * ta, axis=axis)
    den = np.sqrt(np.sum(w * fa**2, axis=axis) * np.sum(w * ta**2, axis=axis))
    return _scalar(_ratio(num, den))


def rms_ratio(x, y, weights=None, *, axis=None, skipna: bool = False):
    """Ratio of weighted RMS values ``sqrt(sum(w x^2) / sum(w y^2))`` over the same points.

    Examples
    --------
    >>> rms_ratio(np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    0.5
    """
    (x, y), w = _joint([x, y], weights, skipna)
    return _scalar(np.sqrt(_ratio(np.sum(w * x**2, axis=axis), np.sum(w * y**2, axis=axis))))


# --------------------------------------------------------------------------- ensembles
def crps_ensemble(ensemble, truth, *, member_axis: int = -1, fair: bool = True):
    """Pointwise CRPS of an ensemble, ``mean|x_i - y| - sum_ij |x_i - x_j| / (2 M^2)`` (standard).

    The fair (unbiased) estimator divides the pair sum by ``2 M (M - 1)``
    instead.  The pair sum is computed from the sorted members as
    ``2 sum_i (2 i - M - 1) x_(i)``, in O(M log M).  NaN where a member or the
    truth is NaN.

    Examples
    --------
    >>> x = np.array([1.0, 2.0, 4.0])
    >>> crps_ensemble(x, np.array(3.0), fair=False), crps_ensemble(x, np.array(3.0), fair=True)
    (0.6666666666666666, 0.33333333333333326)
    """
    x = _members_last(ensemble, member_axis)
    y = _as_float(truth)
    m = x.shape[-1]
    if fair and m < 2:
        raise DataError(f"the fair CRPS needs at least 2 members; found {m}. Fix: use fair=False")
    skill = np.mean(np.abs(x - y[..., None]), axis=-1)
    coef = 2.0 * np.arange(1, m + 1) - m - 1
    pair_sum = 2.0 * np.sum(coef * np.sort(x, axis=-1), axis=-1)
    spread = pair_sum / (2.0 * m * (m - 1)) if fair else pair_sum / (2.0 * m * m)
    out = skill - spread
    bad = np.isnan(x).any(axis=-1) | np.isnan(y)
    return _scalar(np.where(bad, np.nan, out))


def crps(
    ensemble, truth, weights=None, *, member_axis: int = -1, axis=None, skipna: bool = False, fair: bool = True
):
    """Weighted mean over ``axis`` of :func:`crps_ensemble`.

    Examples
    --------
    >>> ens = np.array([[1.0, 2.0, 4.0], [0.0, 0.0, 0.0]])
    >>> crps(ens, np.array([3.0, 1.0]), fair=False)
    0.8333333333333333
    """
    point = crps_ensemble(ensemble, truth, member_axis=member_axis, fair=fair)
    (p,), w = _joint([point], weights, skipna)
    return _scalar(_wmean(p, w, axis))


def spread_skill_ratio(
    ensemble,
    truth,
    weights=None,
    *,
    member_axis: int = -1,
    axis=None,
    skipna: bool = False,
    corrected: bool = True,
):
    """Ensemble spread over the RMSE of the ensemble mean.

    ``sqrt(mean(s^2)) / sqrt(mean((xbar - y)^2))`` with ``s^2`` the unbiased
    member variance (ddof 1), both means weighted over ``axis``; multiplied by
    ``sqrt((M + 1) / M)`` when ``corrected`` (Fortin et al. 2014), so that a
    perfectly reliable ensemble scores 1 whatever its size.

    Examples
    --------
    >>> ens = np.array([[0.0, 2.0], [1.0, 3.0]])
    >>> spread_skill_ratio(ens, np.array([0.0, 3.0]), corrected=False)
    1.4142135623730951
    """
    x = _members_last(ensemble, member_axis)
    m = x.shape[-1]
    if m < 2:
        raise DataError(f"the spread-skill ratio needs at least 2 members; found {m}")
    mean = np.mean(x, axis=-1)
    var = np.var(x, axis=-1, ddof=1)
    (err2, var), w = _joint([(mean - _as_float(truth)) ** 2, var], weights, skipna)
    ratio = np.sqrt(_ratio(_wmean(var, w, axis), _wmean(err2, w, axis)))
    if corrected:
        ratio = ratio * np.sqrt((m + 1.0) / m)
    return _scalar(ratio)


def ensemble_rank(ensemble, truth, *, member_axis: int = -1, tiebreak=None, seed=None):
    """Rank (0 to M) of the truth among the members, ties broken at random.

    ``rank = #{x_i < y} + floor(u (#{x_i = y} + 1))`` with ``u`` uniform on
    [0, 1): the truth is placed uniformly among the members it ties with.

    Parameters
    ----------
    tiebreak : array_like, optional
        The uniforms ``u``, with the truth's (broadcast) shape.  Drawn from
        ``numpy.random.default_rng(seed)`` when not given.

    Returns
    -------
    numpy.ndarray
        Float ranks, NaN where a member or the truth is NaN.

    Examples
    --------
    >>> ensemble_rank(np.array([[1.0, 2.0, 4.0]]), np.array([3.0]))
    array([2.])
    """
    x = _members_last(ensemble, member_axis)
    y = _as_float(truth)[..., None]
    x, y = np.broadcast_arrays(x, y)
    below = np.sum(x < y, axis=-1)
    ties = np.sum(x == y, axis=-1)
    u = np.random.default_rng(seed).random(below.shape) if tiebreak is None else _as_float(tiebreak)
    u = np.broadcast_to(u, below.shape)
    if u.size and ((u < 0).any() or (u >= 1).any()):
        raise DataError("tiebreak uniforms must lie in [0, 1)")
    rank = below + np.floor(u * (ties + 1))
    bad = np.isnan(x).any(axis=-1) | np.isnan(y[..., 0])
    return np.where(bad, np.nan, rank)


def rank_histogram(
    ensemble,
    truth,
    weights=None,
    *,
    member_axis: int = -1,
    axis=None,
    skipna: bool = False,
    tiebreak=None,
    seed=None,
    normalize: bool = True,
):
    """Weighted histogram of :func:`ensemble_rank` over ``axis``, on a new last axis of size M + 1.

    With ``normalize`` the bins are relative frequencies summing to 1;
    otherwise each bin is the sum of the weights of the points with that rank
    (a count with unit weights).

    Examples
    --------
    >>> ens = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    >>> rank_histogram(ens, np.array([0.0, 1.5, 1.7, 3.0]), normalize=False)
    array([1., 2., 1.])
    """
    m = _members_last(ensemble, member_axis).shape[-1]
    r = ensemble_rank(ensemble, truth, member_axis=member_axis, tiebreak=tiebreak, seed=seed)
    (r,), w = _joint([r], weights, skipna)
    bins = [np.sum(w * (r == k), axis=axis) for k in range(m + 1)]
    hist = np.stack(bins, axis=-1)
    if not skipna:
        hist = np.where(np.isnan(r).any(axis=axis)[..., None], np.nan, hist)
    if normalize:
        hist = _ratio(hist, np.sum(hist, axis=-1, keepdims=True))
    return hist
