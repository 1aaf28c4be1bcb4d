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

``sigma_data`` may be one number or one per channel, and the denoiser may be
*centred*: with a centre ``m`` (the background, for data assimilation) every
``x`` above is ``x - m`` and ``m`` is added back, so that ``D = m + c_skip (x - m)
+ c_out F(...)``.  With ``sigma_data`` the spread of ``truth - m`` this is the
EDM parameterisation of the *increment*: an untrained ``F = 0`` is already the
exact denoiser of the Gaussian prior ``N(m, sigma_data^2)`` (the background
with a diagonal error covariance), and training learns the increment's
structure.  :class:`BackgroundCentredDenoiser` reads ``m`` from the
conditioning.

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

__all__ = ["EDMDenoiser", "BackgroundCentredDenoiser", "GaussianDenoiser", "as_sigma", "denoising_loss"]


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
    sigma_data : float or sequence of float
        Standard deviation of the (normalised) data, one value or one per channel.

    Examples
    --------
    >>> from xphyda.model.unet import UNet
    >>> net = UNet(2, 2, cond_channels=1, widths=(8, 16), groups=4)
    >>> den = EDMDenoiser(net)
    >>> x, cond = torch.randn(3, 2, 8, 16), torch.randn(3, 1, 8, 16)
    >>> den(x, 0.5, cond).shape
    torch.Size([3, 2, 8, 16])
    """

    def __init__(self, net: nn.Module, *, sigma_data=1.0):
        super().__init__()
        sd = torch.as_tensor(sigma_data, dtype=torch.float32).reshape(-1)
        if sd.numel() == 0 or not bool((sd > 0).all()) or not bool(torch.isfinite(sd).all()):
            raise ModelError(f"sigma_data must be positive and finite, got {sigma_data}; normalised data use 1.0")
        self.net = net
        given = [float(v) for v in (sigma_data if isinstance(sigma_data, (list, tuple)) else [float(sigma_data)])]
        self.sigma_data = given[0] if sd.numel() == 1 else given  # as given (JSON in the model card)
        # configuration, not a trained weight: kept out of the state dict so checkpoints stay portable
        self.register_buffer("_sd", sd.reshape(1, -1, 1, 1) if sd.numel() > 1 else sd.reshape(()), persistent=False)

    def data_std(self, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``sigma_data`` as a tensor broadcastable to the state ``(B, C, H, W)``."""
        return self._sd

    def coefficients(self, sigma: torch.Tensor, sigma_data=None) -> tuple[torch.Tensor, ...]:
        """``(c_skip, c_out, c_in, c_noise)`` for noise levels ``sigma`` (broadcast with ``sigma_data``)."""
        sd = self._sd if sigma_data is None else sigma_data
        sd2 = sd**2
        total = sigma**2 + sd2
        c_skip = sd2 / total
        c_out = sigma * sd / total.sqrt()
        c_in = 1.0 / total.sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: torch.Tensor, sigma, cond: torch.Tensor | None = None, *,
                centre: torch.Tensor | None = None, sigma_data: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``x`` ``(B, C, H, W)`` at noise level(s) ``sigma`` given ``cond`` ``(B, Cc, H, W)``.

        ``centre`` (broadcastable to ``x``) centres the parameterisation and
        ``sigma_data`` overrides the configured one (see the module notes).
        """
        s = as_sigma(sigma, x)
        if bool((s <= 0).any()):
            raise ModelError(f"noise levels must be positive, got min(sigma)={float(s.min())}")
        sd = (self._sd if sigma_data is None else sigma_data).to(x.dtype)
        c_skip, c_out, c_in, c_noise = self.coefficients(s.reshape(-1, 1, 1, 1), sd)
        xc = x if centre is None else x - centre.to(x.dtype)
        inputs = c_in * xc
        if cond is not None:
            if cond.shape[0] != x.shape[0] or cond.shape[-2:] != x.shape[-2:]:
                raise ModelError(
                    f"cond has shape {tuple(cond.shape)} but the state has shape {tuple(x.shape)}; "
                    "expected (batch, cond_channels, lat, lon) with the state's batch and grid"
                )
            inputs = torch.cat([inputs, cond.to(x.dtype)], dim=1)
        out = self.net(inputs, c_noise.reshape(-1))
        d = c_skip * xc + c_out * out.to(x.dtype)
        return d if centre is None else d + centre.to(x.dtype)


class BackgroundCentredDenoiser(EDMDenoiser):
    """An :class:`EDMDenoiser` centred on the background, which leads its conditioning.

    The conditioning starts with ``[background * bmask, bmask]`` (``2 C``
    channels, as :class:`~xphyda.model.phyda.PhydaNet` builds it).  Where the
    background is available the centre is ``gain * background`` and
    ``sigma_data`` the configured spread of ``truth - gain * background``;
    where it is missing the centre is 0 (the climatological mean) and
    ``sigma_data`` is 1.

    Parameters
    ----------
    net : torch.nn.Module
        As for :class:`EDMDenoiser`.
    sigma_data : float or sequence of float
        Spread of ``truth - gain * background``, one or one per channel.
    gain : float or sequence of float
        Regression of the truth on the background, one or one per channel.
    recon_centre : bool
        Move the centre towards a reconstruction ``R`` that follows
        ``[background, mask]`` in the conditioning (channels ``2 C : 3 C``, the
        VRE's, as :class:`~xphyda.model.phyda.PhydaNet` builds it):
        ``m = gain b + alpha (R - gain b)`` with a learnable ``alpha`` per
        channel that starts at 0, so the denoiser computes the same function
        until trained.  ``alpha = RECON_RATE * recon_pull``: Adam's steps are
        about the learning rate whatever the gradient, and the factor lets a
        fine-tune of a few thousand steps at a learning rate of ``1e-4`` move
        ``alpha`` across ``[0, 1]``.  Where the background lacks a channel the
        centre stays 0 (training backgrounds are complete, so ``alpha`` never
        learned those), and ``sigma_data`` stays the configured spread of
        ``truth - gain b``, not re-measured around the moved centre.

    Examples
    --------
    >>> from xphyda.model.unet import UNet
    >>> den = BackgroundCentredDenoiser(UNet(1, 1, cond_channels=2, widths=(8, 16), groups=4), sigma_data=0.1)
    >>> b = torch.full((1, 1, 8, 16), 2.0)
    >>> cond = torch.cat([b, torch.ones_like(b)], 1)
    >>> with torch.no_grad():
    ...     round(float(den(torch.zeros_like(b), 100.0, cond).mean()), 3)  # untrained, pure noise: the background
    2.0
    """

    RECON_RATE = 10.0

    def __init__(self, net: nn.Module, *, sigma_data=1.0, gain=1.0, recon_centre: bool = False):
        super().__init__(net, sigma_data=sigma_data)
        given = torch.as_tensor(gain, dtype=torch.float64).reshape(-1)
        if not bool(torch.isfinite(given).all()):
            raise ModelError(f"gain must be finite, got {gain}")
        self.gain = float(given[0]) if given.numel() == 1 else given.tolist()  # as given, for the model card
        g = given.float()
        self.register_buffer("_gain", g.reshape(1, -1, 1, 1) if g.numel() > 1 else g.reshape(()), persistent=False)
        self.recon_pull = nn.Parameter(torch.zeros(net.config["out_channels"])) if recon_centre else None

    def recon_share(self) -> torch.Tensor | None:
        """``alpha`` per channel: how far the centre has moved from ``gain * background`` towards ``R`` (or None)."""
        return None if self.recon_pull is None else self.RECON_RATE * self.recon_pull

    def _centre(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.net.config["out_channels"]
        need = 3 * c if self.recon_pull is not None else 2 * c
        if cond is None or cond.shape[1] < need:
            what = "[background, mask, reconstruction]" if self.recon_pull is not None else "[background, mask]"
            raise ModelError(
                f"a background-centred denoiser needs conditioning that starts with {what} "
                f"({need} channels); got {None if cond is None else tuple(cond.shape)}. "
                "Fix: pass the conditioning PhydaNet.condition builds"
            )
        avail = cond[:, c : 2 * c]
        centre = self._gain * cond[:, :c]
        if self.recon_pull is not None:
            alpha = self.recon_share().to(cond.dtype).reshape(1, -1, 1, 1)
            centre = centre + alpha * avail * (cond[:, 2 * c : 3 * c] - centre)  # missing channels: 0
        return centre, avail * self._sd + (1.0 - avail)

    def data_std(self, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self._sd if cond is None else self._centre(cond)[1]

    def forward(self, x: torch.Tensor, sigma, cond: torch.Tensor | None = None) -> torch.Tensor:
        centre, sd = self._centre(cond)
        return super().forward(x, sigma, cond, centre=centre, sigma_data=sd)


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
    lam = loss_weight(sigma.reshape(-1, 1, 1, 1), sigma_data=denoiser.data_std(cond).to(x.dtype))
    err = (lam * (denoised - x).pow(2)).flatten(1).mean(1)
    return err, sigma, denoised
