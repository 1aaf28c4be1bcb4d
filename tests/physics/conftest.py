"""Analytic fields and grids for the physics tests (oracles with known answers).

Everything here is plain numpy in SI units; the xarray fixtures wrap them.
Grid names are strings so that tests can be parametrised over them:

* ``"reg32x64"``, ``"reg64x128"``, ``"reg180x360"``: regular, offset by half a
  spacing (no pole rows), ascending latitude;
* ``"pole33x64"``, ``"pole65x128"``, ``"pole181x360"``: regular with pole rows,
  descending latitude (as ERA5);
* ``"gauss48x96"``, ``"gauss64x128"``: Gaussian latitudes (no pole rows), as T31 / T42.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from xphyda.physics.constants import EARTH_RADIUS, constants

A = EARTH_RADIUS
U0 = 20.0  # m s-1, solid-body rotation speed at the equator
ALPHA = np.deg2rad(30.0)  # tilt of the rotation axis
P_LEVELS = np.array([1000.0, 925.0, 850.0, 700.0, 500.0, 300.0, 250.0, 200.0]) * 100.0  # Pa

REGULAR = ["reg32x64", "reg64x128", "reg180x360"]
POLES = ["pole33x64", "pole65x128", "pole181x360"]
GAUSSIAN = ["gauss48x96", "gauss64x128"]
ALL_GRIDS = REGULAR + POLES + GAUSSIAN


def grid_coords(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes (degrees) of the named test grid."""
    kind, size = name[:-len(name.lstrip("abcdefghijklmnopqrstuvwxyz"))], name.lstrip("abcdefghijklmnopqrstuvwxyz")
    nlat, nlon = (int(n) for n in size.split("x"))
    lon = np.arange(nlon) * 360.0 / nlon
    if kind == "reg":
        lat = -90.0 + (np.arange(nlat) + 0.5) * 180.0 / nlat
    elif kind == "pole":
        lat = np.linspace(90.0, -90.0, nlat)
    elif kind == "gauss":
        x, _ = np.polynomial.legendre.leggauss(nlat)
        lat = np.rad2deg(np.arcsin(x))[::-1]  # north to south, as GRIB Gaussian grids
    else:  # pragma: no cover
        raise ValueError(name)
    return lat, lon


def mesh(lat, lon):
    phi, lam = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    return phi, lam


# ----------------------------------------------------------------------------- fields
def tilted_rotation(lat, lon, *, u0=U0, alpha=ALPHA):
    """Solid-body rotation about an axis tilted by ``alpha``: (u, v, vorticity); divergence is 0."""
    phi, lam = mesh(lat, lon)
    u = u0 * (np.cos(phi) * np.cos(alpha) + np.sin(phi) * np.cos(lam) * np.sin(alpha))
    v = -u0 * np.sin(lam) * np.sin(alpha)
    zeta = 2 * u0 / A * (np.sin(phi) * np.cos(alpha) - np.cos(phi) * np.cos(lam) * np.sin(alpha))
    return u, v, zeta


def _legendre_parts(l, m, phi):
    """``P_l^m(sin phi) = (-1)^m cos^m(phi) Q(sin phi)`` with ``Q = d^m P_l / dx^m``: returns
    ``P``, ``P / cos(phi)`` and ``dP/dphi``, all exact at the poles (no division by cos)."""
    leg = np.polynomial.legendre.Legendre.basis(l)
    q, dq = leg.deriv(m), leg.deriv(m + 1)
    x, c = np.sin(phi), np.cos(phi)
    sign = (-1.0) ** m
    p = sign * c**m * q(x)
    p_over_cos = sign * c ** (m - 1) * q(x) if m >= 1 else None
    dp = sign * (-m * c ** max(m - 1, 0) * x * q(x) * (m > 0) + c ** (m + 1) * dq(x))
    return p, p_over_cos, dp


def harmonic_wind(lat, lon, *, l=4, m=1, amp=None):
    """Irrotational wind V = grad(chi), chi = amp P_l^m(sin phi) cos(m lambda): (u, v, chi, div).

    ``div = -l (l + 1) chi / a^2``.  With m = 1 the wind is finite and
    direction-dependent at the poles (a true vector field through the pole).
    """
    phi, lam = mesh(lat, lon)
    p, p_over_cos, dp = _legendre_parts(l, m, phi)
    if amp is None:  # about 10 m s-1 peak wind
        _, _, dp_line = _legendre_parts(l, m, np.linspace(-np.pi / 2, np.pi / 2, 721))
        amp = 10.0 * A / np.abs(dp_line).max()
    chi = amp * p * np.cos(m * lam)
    u = -amp * m * p_over_cos * np.sin(m * lam) / A  # (1 / (a cos phi)) dchi/dlambda
    v = amp * dp * np.cos(m * lam) / A  # (1 / a) dchi/dphi
    div = -l * (l + 1) * chi / A**2
    return u, v, chi, div


def pressure_profile(p, kind="linear"):
    """Vertical shape ``s(p)`` of the divergent wind and its integral ``int_0^p s dp'`` (p in Pa).

    ``"linear"``: ``s = p / p_s``; the layer (trapezoid) form of continuity is then
    exact in the vertical, so the residual measures the horizontal operator alone.
    ``"sine"``: ``s = sin(pi p / p_s)``; adds the vertical truncation error.
    """
    ps = 1.0e5
    if kind == "linear":
        return p / ps, p**2 / (2 * ps)
    return np.sin(np.pi * p / ps), ps / np.pi * (1.0 - np.cos(np.pi * p / ps))


def divergent_column(lat, lon, p=P_LEVELS, *, profile="linear", **kw):
    """(u, v, omega, div) on levels: V = s(p) grad(chi), omega = -div_h int_0^p s dp, so D + domega/dp = 0."""
    u, v, _, div = harmonic_wind(lat, lon, **kw)
    s, integral = pressure_profile(p, profile)
    u3 = s[:, None, None] * u
    v3 = s[:, None, None] * v
    omega = -integral[:, None, None] * div
    return u3, v3, omega, s[:, None, None] * div


def balanced_rotation(lat, lon, *, u0=U0, phi0=5.0e4):
    """Zonal solid-body rotation u = U cos(phi) with its geostrophically balanced geopotential."""
    phi, _ = mesh(lat, lon)
    c = constants()
    u = u0 * np.cos(phi)
    v = np.zeros_like(u)
    geo = phi0 - A * c.omega * u0 * np.sin(phi) ** 2
    return u, v, geo


def balanced_harmonic(lat, lon, *, l=3, m=1, amp=600.0, phi0=5.0e4):
    """Geopotential phi0 + amp P_l^m(sin phi) cos(m lambda) and its exact geostrophic wind (u_g, v_g)."""
    phi, lam = mesh(lat, lon)
    c = constants()
    f = 2 * c.omega * np.sin(phi)
    p, p_over_cos, dp = _legendre_parts(l, m, phi)
    geo = phi0 + amp * p * np.cos(m * lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        ug = -amp * dp * np.cos(m * lam) / (A * f)
        vg = -amp * m * p_over_cos * np.sin(m * lam) / (A * f)
    return ug, vg, geo


def isothermal(lat, lon, p=P_LEVELS, *, t0=250.0, phi_surface=0.0, p0=1.0e5):
    """Isothermal atmosphere: T = t0 + (a horizontal pattern), Phi = Rd T ln(p0 / p)."""
    phi, lam = mesh(lat, lon)
    c = constants()
    t = t0 + 20.0 * np.cos(phi) ** 2 + 5.0 * np.sin(2 * lam) * np.cos(phi)
    t3 = np.broadcast_to(t, (p.size,) + t.shape).copy()
    geo = phi_surface + c.Rd * t3 * np.log(p0 / p)[:, None, None]
    return geo, t3


# ----------------------------------------------------------------------------- xarray
def to_dataset(lat, lon, p=None, *, descending=None, **fields):
    """Wrap arrays of shape (level, lat, lon) or (lat, lon) as an ERA5-like Dataset."""
    units = {"u": "m s-1", "v": "m s-1", "w": "Pa s-1", "z": "m2 s-2", "t": "K", "q": "kg kg-1"}
    coords = {
        "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
        "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    dims = ("latitude", "longitude")
    if p is not None:
        coords["level"] = ("level", p / 100.0, {"units": "hPa", "standard_name": "air_pressure"})
        dims = ("level",) + dims
    data = {k: (dims, np.asarray(v), {"units": units[k]}) for k, v in fields.items()}
    return xr.Dataset(data, coords=coords)


@pytest.fixture
def analytic():
    """The analytic fields of this module, as one namespace."""
    return SimpleNamespace(
        grid_coords=grid_coords,
        tilted_rotation=tilted_rotation,
        harmonic_wind=harmonic_wind,
        divergent_column=divergent_column,
        balanced_rotation=balanced_rotation,
        balanced_harmonic=balanced_harmonic,
        isothermal=isothermal,
        to_dataset=to_dataset,
        P_LEVELS=P_LEVELS,
        U0=U0,
        A=A,
    )
