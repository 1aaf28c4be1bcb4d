"""EDM noise levels for sampling and training (Karras et al. 2022, arXiv 2206.00364).

The state is ``x_t = x + sigma * eps`` with ``eps ~ N(0, I)``; the data are
normalised per channel, so ``sigma_data = 1`` by default.

* Sampling visits ``sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) -
  sigma_max^(1/rho)))^rho`` for ``i = 0 .. N-1`` and then 0, computed in float64
  (the last steps are tiny differences of large numbers).
* Training draws ``ln sigma ~ N(P_mean, P_std^2)`` and weights the squared
  error by ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2``, which gives unit
  loss at every noise level for a denoiser that is as good as ``c_skip x``.
"""

from __future__ import annotations

import torch

from ..errors import ModelError

__all__ = ["edm_sigmas", "evaluations", "loss_weight", "training_sigmas"]


def edm_sigmas(
    steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    *,
    rho: float = 7.0,
) -> torch.Tensor:
    """Decreasing EDM noise levels, ``steps`` of them followed by a final 0 (float64).

    Parameters
    ----------
    steps : int
        Number of noise levels ``N >= 1`` (solver steps).
    sigma_min, sigma_max : float
        Smallest and largest noise level, ``0 < sigma_min <= sigma_max``.
    rho : float
        Warping exponent; larger values spend more steps at low noise.

    Returns
    -------
    torch.Tensor
        Shape ``(steps + 1,)``, float64, last entry 0.

    Examples
    --------
    >>> s = edm_sigmas(4, 0.002, 80.0)
    >>> s.shape, s.dtype, float(s[0]), float(s[-2]), float(s[-1])
    (torch.Size([5]), torch.float64, 80.0, 0.002, 0.0)
    """
    if int(steps) != steps or steps < 1:
        raise ModelError(f"steps must be a positive integer, got {steps!r}; pass e.g. steps=16")
    if not (0 < sigma_min <= sigma_max):
        raise ModelError(
            f"noise levels need 0 < sigma_min <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )
    if rho <= 0:
        raise ModelError(f"rho must be positive, got {rho}; EDM uses rho=7")
    steps = int(steps)
    if steps == 1:
        sig = torch.tensor([float(sigma_max)], dtype=torch.float64)
    else:
        i = torch.arange(steps, dtype=torch.float64) / (steps - 1)
        a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
        sig = (a + i * (b - a)) ** rho
        sig[0], sig[-1] = sigma_max, sigma_min  # exact end points despite rounding
    return torch.cat([sig, sig.new_zeros(1)])


def evaluations(steps: int, *, solver: str = "dpmpp_2m") -> int:
    """Denoiser evaluations per member of a deterministic solve with ``steps`` levels.

    Heun takes a second-order correction on every step except the last (to
    sigma = 0), so it costs ``2 steps - 1``; DPM-Solver++(2M) and Euler cost
    ``steps``.

    Examples
    --------
    >>> evaluations(32), evaluations(16, solver="heun"), evaluations(32, solver="euler")
    (32, 31, 32)
    """
    if solver == "heun":
        return 2 * steps - 1
    if solver in ("euler", "dpmpp_2m"):
        return steps
    raise ModelError(f"unknown solver {solver!r}; expected 'dpmpp_2m', 'heun' or 'euler'")


def training_sigmas(
    n: int,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw ``n`` training noise levels with ``ln sigma ~ N(p_mean, p_std^2)``.

    The normal draws are made on the CPU with ``generator`` (so a seed gives the
    same levels on every device) and then moved.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> s = training_sigmas(1000, generator=g)
    >>> bool((s > 0).all()), round(float(s.log().mean()), 1)
    (True, -1.2)
    """
    if p_std < 0:
        raise ModelError(f"p_std must be non-negative, got {p_std}")
    z = torch.randn(int(n), generator=generator, dtype=torch.float64)
    return torch.exp(p_mean + p_std * z).to(device=device, dtype=dtype)


def loss_weight(sigma: torch.Tensor, *, sigma_data: float = 1.0) -> torch.Tensor:
    """EDM loss weight ``(sigma^2 + sigma_data^2) / (sigma * sigma_data)^2``.

    Examples
    --------
    >>> float(loss_weight(torch.tensor(1.0)))
    2.0
    """
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
