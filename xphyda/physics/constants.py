"""Physical constants in SI units, taken from :mod:`metpy.constants`.

The one exception is the Earth radius: ERA5 and the ECMWF IFS use a sphere of
radius 6 371 229 m (MetPy's ``earth_avg_radius`` is the mean radius
6 371 008.8 m).  Every operator accepts ``radius=`` to choose another value.

The values are read from MetPy once, the first time they are needed, so that
``import xphyda`` stays fast.
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

EARTH_RADIUS = 6_371_229.0
"""Radius of the sphere used by ERA5 / the ECMWF IFS, in metres."""


@cache
def constants() -> SimpleNamespace:
    """Return the constants used by the physics residuals, as plain floats in SI.

    Returns
    -------
    types.SimpleNamespace
        ``g`` (standard gravity, m s-2), ``Rd`` (dry-air gas constant, J kg-1 K-1),
        ``Rv`` (water-vapour gas constant), ``epsilon`` (Rd / Rv), ``omega``
        (Earth's angular velocity, rad s-1), ``radius`` (m).

    Examples
    --------
    >>> from xphyda.physics.constants import constants
    >>> round(constants().Rd, 2)
    287.05
    """
    import metpy.constants as mc

    return SimpleNamespace(
        g=float(mc.earth_gravity.m_as("m s**-2")),
        Rd=float(mc.dry_air_gas_constant.m_as("J kg**-1 K**-1")),
        Rv=float(mc.water_gas_constant.m_as("J kg**-1 K**-1")),
        epsilon=float(mc.epsilon.m_as("")),
        omega=float(mc.earth_avg_angular_vel.m_as("rad s**-1")),
        radius=EARTH_RADIUS,
    )
