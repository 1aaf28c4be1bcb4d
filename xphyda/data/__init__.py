"""Training and evaluation data for xphyda.

:func:`simulate` writes the GCM training corpus (needs the ``xphyda[gcm]`` extra,
imported only when called).
"""

from __future__ import annotations

from xphyda.data.simulate import simulate

__all__ = ["simulate"]
