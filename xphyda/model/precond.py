"""EDM preconditioning, kept apart from the network.

The denoiser is ``D(x, sigma, cond) = c_skip x + c_out F(c_in x (+) cond, c_noise)``
with (Karras et al. 2022, table 1)

* ``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``,
* ``c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)``,
* ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)``,
* ``c_noise = ln(sigma) / 4``,

where ``(+)`` concatenates the conditioning channels (background, features of a
reconstruction...) after the scaled noisy state.  The conditioning is clean
data in the model's normalised space and is not scaled.

Any callable ``denoiser(x, sigma, cond) -> D`` with these shapes can be given to
the sampler; :class:`EDMDenoiser` is the one built on a network and
:class:`GaussianDenoiser` is the exact denoiser of a Gaussian prior, the
oracle against which samplers and guidance are tested.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from .schedule import loss_weight, training_sigmas

__all__ = ["EDMDenoiser", "GaussianDenoiser", "as_sigma", "denoising_loss"]


def as_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """Noise levels as a ``(B,)`` tensor of ``x``'s dtype and device.

    ``sigma`` may be a number, a 0-d tensor, or a tensor with ``B`` entries.

    Examples
    --------
    >>> as_sigma(2.0, torch.zeros(3, 1, 2, 2)).tolist()
    [2.0, 2.0, 2.0]
    """
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.numel() == 1:
        return s.reshape(1).expand(x.shape[0])
    if s.numel() != x.shape[0]:
        raise ModelError(
            f"sigma has {s.numel()} values but the batch has {x.shape[0]} states; "
            "pass one noise level, or one per state"
        )
    return s.reshape(x.shape[0])


class EDMDenoiser(nn.Module):
    """EDM-preconditioned denoiser around a network ``net(inputs, c_noise)``.

    Parameters
    ----------
    net : torch.nn.Module
        Maps ``(B, C + Cc, H, W)`` and ``c_noise`` ``(B,)`` to ``(B, C, H, W)``.
    sigma_data : float
        Standard deviation of the (normalised) data.

    Examples
    --------
    >>> from xphyda.model.unet import UNet
    >>> net = UNet(2, 2, cond_channels=1, widths=(8, 16), groups=4)
    >>> den = EDMDenoiser(net)
    >>> x, cond = torch.randn(3, 2, 8, 16), torch.randn(3, 1, 8, 16)
    >>> den(x, 0.5, cond).shape
    torch.Size([3, 2, 8, 16])
    """

    def __init__(self, net: nn.Module, *, sigma_data: float = 1.0):
        super().__init__()
        if not sigma_data > 0:
            raise ModelError(f"sigma_data must be positive, got {sigma_data}; normalised data use 1.0")
        self.net = net
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(c_skip, c_out, c_in, c_noise)`` for noise levels ``sigma`` (any shape)."""
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2
        c_skip = sd2 / total
        c_out = sigma * self.sigma_data / total.sqrt()
        c_in = 1.0 / total.sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: torch.Tensor, sigma, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``x`` ``(B, C, H, W)`` at noise level(s) ``sigma`` given ``cond`` ``(B, Cc, H, W)``."""
        s = as_sigma(sigma, x)
        if bool((s <= 0).any()):
            raise ModelError(f"noise levels must be positive, got min(sigma)={float(s.min())}")
        c_skip, c_out, c_in, c_noise = (c.reshape(-1, 1, 1, 1) for c in self.coefficients(s))
        inputs = c_in * x
        if cond is not None:
            if cond.shape[0] != x.shape[0] or cond.shape[-2:] != x.shape[-2:]:
                raise ModelError(
                    f"cond has shape {tuple(cond.shape)} but the state has shape {tuple(x.shape)}; "
                    "expected (batch, cond_channels, lat, lon) with the state's batch and grid"
                )
            inputs = torch.cat([inputs, cond.to(x.dtype)], dim=1)
        out = self.net(inputs, c_noise.reshape(-1))
        return c_skip * x + c_out * out.to(x.dtype)


class GaussianDenoiser(nn.Module):
    """Exact denoiser ``E[x | x + sigma eps]`` of a Gaussian prior ``N(mean, cov)``.

    ``D(x, sigma) = mean + cov (cov + sigma^2 I)^-1 (x - mean)``, evaluated
    through the eigendecomposition of ``cov`` (computed once in float64).
    Differentiable, so its Jacobian gives the exact Tweedie covariance.

    Parameters
    ----------
    mean : torch.Tensor
        Prior mean with the state's shape ``(C, H, W)``.
    cov : torch.Tensor
        ``(d, d)`` symmetric positive semi-definite covariance of the
        flattened state, ``d = C H W``.

    Examples
    --------
    >>> den = GaussianDenoiser(torch.zeros(1, 1, 2), torch.eye(2))
    >>> den(torch.ones(1, 1, 1, 2), 1.0)
    tensor([[[[0.5000, 0.5000]]]])
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        super().__init__()
        mean = torch.as_tensor(mean)
        d = mean.numel()
        cov = torch.as_tensor(cov, dtype=torch.float64)
        if cov.shape != (d, d):
            raise ModelError(
                f"cov has shape {tuple(cov.shape)}, expected ({d}, {d}) for a mean of shape {tuple(mean.shape)}"
            )
        if not torch.allclose(cov, cov.T, atol=1e-10 * float(cov.abs().max())):
            raise ModelError("cov is not symmetric; pass (cov + cov.T) / 2")
        lam, vec = torch.linalg.eigh(cov)
        if float(lam.min()) < -1e-8 * float(lam.max()):
            raise ModelError(
                f"cov is not positive semi-definite (smallest eigenvalue {float(lam.min()):.3g})"
            )
        self.register_buffer("mean", mean.to(torch.float64))
        self.register_buffer("eigval", lam.clamp_min(0))
        self.register_buffer("eigvec", vec)

    def forward(self, x: torch.Tensor, sigma, cond: torch.Tensor | None = None) -> torch.Tensor:
        s = as_sigma(sigma, x).reshape(-1, 1)
        lam, vec, mean = (t.to(x.dtype) for t in (self.eigval, self.eigvec, self.mean))
        z = (x - mean).flatten(1) @ vec
        z = z * lam / (lam + s**2)
        return mean + (z @ vec.T).reshape(x.shape)


def denoising_loss(
    denoiser: EDMDenoiser,
    x: torch.Tensor,
    *,
    cond: torch.Tensor | None = None,
    sigma: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    p_mean: float = -1.2,
    p_std: float = 1.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM denoising loss per sample, with the noise levels and denoised states.

    Noise levels are drawn with :func:`~xphyda.model.schedule.training_sigmas`
    unless given; the Gaussian noise is drawn on the CPU with ``generator``.

    Returns
    -------
    loss : torch.Tensor
        ``(B,)`` weighted mean-square error.
    sigma : torch.Tensor
        ``(B,)`` noise levels used.
    denoised : torch.Tensor
        ``(B, C, H, W)``, with its graph (for a physics term on it).

    Examples
    --------
    >>> from xphyda.model.unet import UNet
    >>> den = EDMDenoiser(UNet(2, 2, widths=(8, 16), groups=4))
    >>> loss, sigma, d = denoising_loss(den, torch.randn(4, 2, 8, 16), generator=torch.Generator().manual_seed(0))
    >>> loss.shape, bool(torch.isfinite(loss).all())
    (torch.Size([4]), True)
    """
    if sigma is None:
        sigma = training_sigmas(
            x.shape[0], p_mean=p_mean, p_std=p_std, generator=generator, device=x.device, dtype=x.dtype
        )
    sigma = as_sigma(sigma, x)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    denoised = denoiser(x + sigma.reshape(-1, 1, 1, 1) * noise, sigma, cond)
    err = (denoised - x).pow(2).flatten(1).mean(1)
    return loss_weight(sigma, sigma_data=denoiser.sigma_data) * err, sigma, denoised
