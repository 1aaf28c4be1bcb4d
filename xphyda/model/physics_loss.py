"""The physics term of the training objective, on normalised model tensors.

The denoised state ``D`` (batch, channel, lat, lon), in the model's normalised
space, is mapped back to SI with the channel means and standard deviations,
and the residuals of :mod:`xphyda.physics.kernels` are computed with the same
finite-volume operators as the xarray residuals (one implementation; torch
tensors keep their gradients).  For each law the loss is the excess of the
denoised state's area-weighted RMS residual over the truth's own::

    L_k = relu(sqrt<r_k(D)^2> - sqrt<r_k(x)^2>) / s_k

so a law the training states satisfy exactly (continuity with the corpus'
own omega) is driven to zero, and an approximate balance (geostrophic, or
hydrostatic after interpolation to pressure levels) is only pushed back to the
level the real states have: the prior is not pushed towards over-balanced
states.  ``s_k`` is a fixed scale that makes the terms dimensionless.  The RMS
(not the mean square) keeps the gradient bounded while an untrained denoiser's
residuals are large: with the mean square the physics gradient was measured
400 times the denoising gradient at sigma = 0.5 after 600 steps
(``benchmarks/physics_gradient.py``), and it took over the updates.

The weight ``lambda(sigma) = lambda_0 * sigma_data^2 / (sigma^2 + sigma_data^2)``
favours low noise levels, where the denoised state is sharp enough for its
derivatives to mean something.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import ModelError
from ..physics import kernels
from ..physics.operators import SphereGrid

__all__ = ["PhysicsLoss", "physics_weight", "DEFAULT_SCALES", "LAWS"]

LAWS = ("continuity", "hydrostatic", "geostrophic")

DEFAULT_SCALES = {"continuity": 1e-5, "hydrostatic": 10.0, "geostrophic": 10.0}
"""Scales (s-1, m, m s-1) that make each residual dimensionless: typical divergence,
a tenth of a 500-850 hPa thickness error budget, a typical wind speed."""

_NEEDS = {"continuity": ("u", "v", "w"), "hydrostatic": ("z", "t"), "geostrophic": ("u", "v", "z")}


def physics_weight(sigma: torch.Tensor, *, sigma_data: float = 1.0) -> torch.Tensor:
    """``sigma_data^2 / (sigma^2 + sigma_data^2)``: 1 at zero noise, 1/2 at ``sigma_data``, -> 0 at high noise."""
    return sigma_data**2 / (sigma**2 + sigma_data**2)


@dataclass(frozen=True)
class _Layout:
    index: dict[str, list[int]]


class PhysicsLoss(torch.nn.Module):
    """Physics penalty of denoised states relative to the truth's own residuals.

    Parameters
    ----------
    lat, lon : array_like
        Model grid in degrees (data order).
    levels_hpa : sequence of float
        Pressure of the model levels, in the order of the channel indices.
    index : mapping of str to list of int
        For each variable key (``"u"``, ``"v"``, ``"w"``, ``"z"``, ``"t"``,
        optionally ``"q"``), the channel index of each level in ``levels_hpa``.
    mean, std : array_like
        Per-channel normalisation in SI (``x_si = x * std + mean``).
    laws : sequence of str
        Which laws to penalise; each needs its variables in ``index``.
    scales : mapping, optional
        Dimensionless scales per law (defaults: :data:`DEFAULT_SCALES`).
    band : float
        Equatorial band (degrees) excluded from the geostrophic residual.

    Examples
    --------
    >>> import numpy as np, torch
    >>> lat, lon = np.linspace(80, -80, 9), np.arange(0, 360, 22.5)
    >>> idx = {"u": [0, 1], "v": [2, 3], "w": [4, 5]}
    >>> loss = PhysicsLoss(lat=lat, lon=lon, levels_hpa=[500, 850], index=idx,
    ...                    mean=np.zeros(6), std=np.ones(6), laws=["continuity"])
    >>> x = torch.zeros(2, 6, 9, 16)
    >>> total, parts = loss(x, x)
    >>> float(total.sum())
    0.0
    """

    def __init__(
        self,
        *,
        lat,
        lon,
        levels_hpa: Sequence[float],
        index: Mapping[str, Sequence[int]],
        mean,
        std,
        laws: Sequence[str] = LAWS,
        scales: Mapping[str, float] | None = None,
        band: float = kernels.GEOSTROPHIC_BAND,
    ):
        super().__init__()
        self.grid = SphereGrid(lat, lon)
        self.p = np.asarray(levels_hpa, dtype=np.float64) * 100.0
        self.index = {k: [int(i) for i in v] for k, v in index.items()}
        for law in laws:
            if law not in _NEEDS:
                raise ModelError(f"unknown physics law {law!r}; expected some of {LAWS}")
            missing = [k for k in _NEEDS[law] if k not in self.index]
            if missing:
                raise ModelError(
                    f"the {law} term needs variables {_NEEDS[law]} but the model has no channels for {missing}; "
                    f"drop {law!r} from laws or add those variables"
                )
            if law != "geostrophic" and self.p.size < 2:
                raise ModelError(f"the {law} term needs at least two pressure levels, the model has {self.p.size}")
        for k, v in self.index.items():
            if len(v) != self.p.size:
                raise ModelError(f"variable {k!r} has {len(v)} channels but there are {self.p.size} levels")
        self.laws = tuple(laws)
        self.scales = dict(DEFAULT_SCALES, **(scales or {}))
        self.band = band
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)), persistent=False)
        self.register_buffer("std", torch.as_tensor(np.asarray(std, dtype=np.float32)), persistent=False)
        w = self.grid.cell_area
        self.register_buffer("area", torch.as_tensor(w / w.sum(), dtype=torch.float32), persistent=False)

    # ------------------------------------------------------------------ fields in SI
    def _field(self, x_si: torch.Tensor, key: str) -> torch.Tensor:
        return x_si[:, self.index[key]]  # (B, level, lat, lon)

    def residuals(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Residuals (SI) of a normalised batch ``x`` (B, C, lat, lon), computed in float64."""
        x_si = x.double() * self.std.double()[:, None, None] + self.mean.double()[:, None, None]
        f = {k: self._field(x_si, k) for k in self.index}
        out = {}
        if "continuity" in self.laws:
            out["continuity"] = kernels.continuity(f["u"], f["v"], f["w"], self.p, self.grid)
        if "hydrostatic" in self.laws:
            out["hydrostatic"] = kernels.hydrostatic(f["z"], f["t"], self.p, q=f.get("q"))
        if "geostrophic" in self.laws:
            du, dv, valid = kernels.ageostrophic(f["u"], f["v"], f["z"], self.grid, band=self.band)
            out["geostrophic"] = (du, dv, torch.as_tensor(valid, device=x.device))
        return out

    def _mean_square(self, r) -> torch.Tensor:
        """Area-weighted mean over lat, lon and levels of ``r**2`` (``r`` a tensor or ``(du, dv, valid)``)."""
        area = self.area.double()
        if isinstance(r, tuple):
            du, dv, valid = r
            area = area * valid.double()
            r2 = du**2 + dv**2
        else:
            r2 = r**2
        per_level = (r2 * area).sum((-2, -1)) / area.sum().clamp_min(1e-30)
        return per_level.mean(-1)

    def forward(self, denoised: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-sample physics loss (B,) and its parts per law (B,) each.

        ``denoised`` keeps its graph; ``truth`` is treated as a constant.
        """
        if denoised.shape != truth.shape:
            raise ModelError(f"denoised shape {tuple(denoised.shape)} != truth shape {tuple(truth.shape)}")
        r_d = self.residuals(denoised)
        with torch.no_grad():
            r_t = self.residuals(truth)
        parts = {}
        for law in self.laws:
            tiny = (1e-6 * self.scales[law]) ** 2  # keeps sqrt differentiable at zero
            rms_d = (self._mean_square(r_d[law]) + tiny).sqrt()
            rms_t = (self._mean_square(r_t[law]) + tiny).sqrt()
            parts[law] = (torch.relu(rms_d - rms_t) / self.scales[law]).to(denoised.dtype)
        total = sum(parts.values())
        return total, parts
