"""Physics residuals on arrays in SI units (numpy or torch, differentiable).

These are the array back end of :mod:`xphyda.physics.residuals` and of the
physics term of the diffusion model's training loss.  Fields have shape
``(..., level, lat, lon)`` with the level on ``axis``; pressures are in Pa.

* :func:`continuity` -- layer form of ``div(V) + d(omega)/dp`` (s-1):
  ``(omega[k+1] - omega[k]) / (p[k+1] - p[k]) + (D[k] + D[k+1]) / 2``.
* :func:`hydrostatic` -- hypsometric residual per layer (m), measured upward:
  ``(Phi_top - Phi_bottom) / g - (Rd / g) * (Tv_top + Tv_bottom) / 2 * ln(p_bottom / p_top)``.
  The arithmetic mean of Tv is the exact log-pressure mean for Tv linear in
  ln p, and is exact for an isothermal layer.
* :func:`geostrophic` -- ``|V - V_g|`` (m s-1) with ``V_g = k x grad(Phi) / f``,
  ``f = 2 Omega sin(lat)``; NaN where ``|lat| < band`` degrees.
"""

from __future__ import annotations

import numpy as np

from .constants import constants
from .operators import (
    SphereGrid,
    _add_,
    _check_levels,
    _divergence,
    _fast,
    _layer_sum,
    _like,
    _scale_,
    gradient,
    layer_difference,
)

__all__ = ["GEOSTROPHIC_BAND", "ageostrophic", "continuity", "geostrophic", "hydrostatic", "virtual_temperature"]

GEOSTROPHIC_BAND = 15.0
"""Half-width in degrees of the equatorial band where the geostrophic residual is NaN."""


def _sqrt(x):
    return x.sqrt() if type(x).__module__.startswith("torch") else np.sqrt(x)


def _layer_view(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis % ndim] = values.size
    return values.reshape(shape)


def virtual_temperature(t, q=None):
    """Virtual temperature ``T (1 + q (1 - eps) / eps)`` (K) from specific humidity ``q`` (kg kg-1)."""
    if q is None:
        return t
    eps = constants().epsilon
    factor = _add_(q * ((1.0 - eps) / eps), 1.0)
    if _fast(factor) and _fast(t) and factor.shape == t.shape and factor.dtype == t.dtype:
        factor *= t  # numpy: in place, the same numbers as t * factor
        return factor
    return t * factor


def continuity(u, v, w, p, grid: SphereGrid, *, axis: int = -3):
    """Mass-continuity residual on the layers between adjacent pressure levels (s-1).

    Parameters
    ----------
    u, v : array
        Horizontal wind (m s-1).
    w : array
        Vertical velocity omega (Pa s-1).
    p : array_like
        Pressure of each level (Pa), monotonic.
    grid : SphereGrid

    Returns
    -------
    array
        Shape of ``u`` with one fewer level.
    """
    p = _check_levels(p, u, axis)
    # (D[k] + D[k+1]) / 2 as D[k] / 2 + D[k+1] / 2: halving is exact, so the numbers are the same
    half = _divergence(u, v, grid, 0.5)
    dp = _layer_view(np.diff(p), u.ndim, axis)
    tendency = _scale_(layer_difference(w, axis=axis), _like(1.0 / dp, w))
    return _add_(tendency, _layer_sum(half, axis))


def hydrostatic(phi, t, p, *, q=None, axis: int = -3):
    """Hypsometric residual on the layers between adjacent pressure levels (m).

    The residual is the geopotential thickness of the layer minus the thickness the
    hypsometric equation gives for the layer's mean virtual temperature, both
    measured upward (from the higher to the lower pressure), so its sign does not
    depend on the order in which the levels are stored: positive when the layer is
    thicker than its temperature says.

    Parameters
    ----------
    phi : array
        Geopotential (m2 s-2).
    t : array
        Temperature (K).
    p : array_like
        Pressure of each level (Pa).
    q : array, optional
        Specific humidity (kg kg-1) for the virtual temperature.
    """
    c = constants()
    p = _check_levels(p, phi, axis)
    up = np.sign(p[:-1] - p[1:])  # +1 where level k + 1 is above level k
    log_ratio = _layer_view(np.abs(np.log(p[:-1] / p[1:])), phi.ndim, axis)
    thickness = _scale_(layer_difference(phi, axis=axis), _like(_layer_view(up / c.g, phi.ndim, axis), phi))
    # (Tv[k] + Tv[k+1]) / 2 * F as (Tv[k] + Tv[k+1]) * (F / 2): halving is exact, the numbers are the same
    hypsometric = _scale_(_layer_sum(virtual_temperature(t, q), axis), _like(-c.Rd / c.g * log_ratio * 0.5, phi))
    return _add_(thickness, hypsometric)


def ageostrophic(u, v, phi, grid: SphereGrid, *, band: float = GEOSTROPHIC_BAND):
    """Ageostrophic wind ``(u - u_g, v - v_g)`` (m s-1) and the mask of rows outside the band.

    Inside the equatorial band ``|lat| < band`` the geostrophic wind is set to
    zero (not NaN), so gradients stay finite for torch; use the returned
    boolean ``valid`` (shape ``(nlat, 1)``) to mask those rows.
    """
    c = constants()
    f = 2.0 * c.omega * np.sin(grid.phi)
    valid = ((np.abs(grid.lat) >= band) & (f != 0.0))[:, None]  # f = 0 on an equator row even if band = 0
    inv_f = np.where(valid[:, 0], 1.0 / np.where(valid[:, 0], f, 1.0), 0.0)[:, None]
    dphidx, dphidy = gradient(phi, grid)
    inv_f = _like(inv_f, phi)
    du = _add_(_scale_(dphidy, inv_f), u)  # u - u_g = u + (dPhi/dy) / f
    dv = _add_(_scale_(dphidx, -inv_f), v)  # v - v_g = v - (dPhi/dx) / f
    return du, dv, valid


def geostrophic(u, v, phi, grid: SphereGrid, *, band: float = GEOSTROPHIC_BAND):
    """Magnitude of the ageostrophic wind ``|V - V_g|`` (m s-1); NaN where ``|lat| < band``."""
    du, dv, valid = ageostrophic(u, v, phi, grid, band=band)
    if _fast(du) and _fast(dv) and du.shape == dv.shape and du.dtype == dv.dtype:
        # numpy: the same numbers in place (du and dv are ours); x + 0 is x for x = sqrt(...) >= +0
        np.multiply(du, du, out=du)
        np.multiply(dv, dv, out=dv)
        du += dv
        np.sqrt(du, out=du)
        du[..., ~valid[:, 0], :] = np.nan
        return du
    nan = np.where(valid, 0.0, np.nan)
    return _sqrt(_add_(du * du, dv * dv)) + _like(nan, du)
