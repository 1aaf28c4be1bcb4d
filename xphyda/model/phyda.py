"""The PhyDA network: a virtual reconstruction encoder (VRE) conditioning an EDM denoiser.

Inputs live on the model grid in normalised units, with channels as in the
model card:

* ``background`` (B, C, H, W) and its availability ``bmask`` (B, C, 1, 1) or
  (B, C, H, W): a channel the user's background lacks is zero with mask 0, and
  the prior fills it;
* observations gridded onto the model grid, ``y`` (B, C, H, W), zero where
  unobserved, and their ``mask`` (B, C, H, W), 1 where observed (any fraction,
  any subset of channels).

The VRE maps ``[background * bmask, bmask, y, mask]`` to a dense
reconstruction ``R = background * bmask + dR`` and ``features`` latent
channels.  The denoiser ``D(x_sigma; sigma, cond)`` is conditioned on
``cond = [background * bmask, bmask, R, features]``, followed by ``[y, mask]``
when built with ``denoiser_obs=True`` (the reconstruction is dense and smooth;
the raw observations let the denoiser fit the observed points themselves).
The ablation without VRE conditions directly on ``[background * bmask, bmask, y, mask]``.

:func:`with_observation_inputs` turns a trained network into one whose
denoiser also sees ``[y, mask]``, with zero weights on those inputs, so it
computes the same function until it is fine-tuned.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ModelError
from .precond import BackgroundCentredDenoiser, EDMDenoiser
from .unet import UNet

__all__ = ["VirtualReconstructionEncoder", "PhydaNet", "with_observation_inputs"]


def _one_or_each(value) -> float | list[float]:
    """A number, or a list of numbers (one per channel), as JSON-ready floats."""
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value)


def _expand(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones_like(like)
    return mask.to(like.dtype).expand_as(like)


class VirtualReconstructionEncoder(nn.Module):
    """Dense reconstruction and latent features from sparse observations and a background.

    Parameters
    ----------
    channels : int
        State channels ``C``.
    features : int
        Latent feature channels returned beside the reconstruction.
    widths : sequence of int
        U-Net widths (see :class:`~xphyda.model.unet.UNet`).

    Examples
    --------
    >>> vre = VirtualReconstructionEncoder(3, features=2, widths=(8, 16))
    >>> b = torch.zeros(1, 3, 8, 16)
    >>> rec, feat = vre(b, torch.ones(1, 3, 1, 1), b, torch.zeros_like(b))
    >>> rec.shape, feat.shape
    (torch.Size([1, 3, 8, 16]), torch.Size([1, 2, 8, 16]))
    """

    def __init__(self, channels: int, *, features: int = 8, widths: Sequence[int] = (32, 64, 128), groups: int = 8):
        super().__init__()
        self.channels, self.features = int(channels), int(features)
        self.net = UNet(4 * channels, channels + features, widths=widths, groups=groups)

    def forward(self, background, bmask, y, mask) -> tuple[torch.Tensor, torch.Tensor]:
        bm = _expand(bmask, background)
        b = background * bm
        out = self.net(torch.cat([b, bm, y, _expand(mask, y)], dim=1), torch.zeros(background.shape[0], device=background.device))
        return b + out[:, : self.channels], out[:, self.channels :]


class PhydaNet(nn.Module):
    """VRE + EDM denoiser; ``forward`` returns ``(denoised, reconstruction)``.

    Parameters
    ----------
    channels : int
        State channels.
    use_vre : bool
        Condition through the VRE (``False`` is the ablation: raw observations).
    features : int
        VRE latent channels.
    widths, vre_widths : sequence of int
        U-Net widths of the denoiser and of the VRE.
    sigma_data : float or sequence of float
        EDM's data standard deviation, one or one per channel: 1 for
        normalised data; with ``centred`` the spread of ``truth - background``.
    centred : bool
        Centre the denoiser on the (scaled) background
        (:class:`~xphyda.model.precond.BackgroundCentredDenoiser`): the
        diffusion then models the analysis increment.
    background_gain : float or sequence of float
        With ``centred``: the centre is ``background_gain * background``
        (per channel; see :func:`xphyda.training.background_regression`).
    denoiser_obs : bool
        With the VRE: condition the denoiser on the gridded observations
        ``[y, mask]`` too, not only on their reconstruction.

    Examples
    --------
    >>> net = PhydaNet(3, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4)
    >>> x = torch.randn(2, 3, 8, 16)
    >>> d, r = net(x, torch.ones(2), x, x, torch.ones_like(x))
    >>> d.shape == r.shape == x.shape
    True
    >>> PhydaNet(**net.config).config == net.config
    True
    """

    def __init__(
        self,
        channels: int,
        *,
        use_vre: bool = True,
        features: int = 8,
        widths: Sequence[int] = (32, 64, 128),
        vre_widths: Sequence[int] = (32, 64, 128),
        groups: int = 8,
        sigma_data: float | Sequence[float] = 1.0,
        centred: bool = False,
        background_gain: float | Sequence[float] = 1.0,
        denoiser_obs: bool = False,
    ):
        super().__init__()
        if channels < 1:
            raise ModelError(f"PhydaNet needs at least one channel, got {channels}")
        if denoiser_obs and not use_vre:
            raise ModelError("denoiser_obs=True needs the VRE: without it the denoiser is conditioned on [y, mask] "
                             "already. Fix: leave denoiser_obs False with use_vre=False")
        self.config: dict[str, Any] = dict(
            channels=int(channels), use_vre=bool(use_vre), features=int(features), widths=[int(w) for w in widths],
            vre_widths=[int(w) for w in vre_widths], groups=int(groups), centred=bool(centred),
            background_gain=_one_or_each(background_gain), sigma_data=_one_or_each(sigma_data),
            denoiser_obs=bool(denoiser_obs),
        )  # fmt: skip
        c = int(channels)
        self.vre = VirtualReconstructionEncoder(c, features=features, widths=vre_widths, groups=groups) if use_vre else None
        cond = 2 * c + (c + features if use_vre else 2 * c) + (2 * c if denoiser_obs else 0)
        if isinstance(sigma_data, (list, tuple)) and len(sigma_data) != c:
            raise ModelError(f"sigma_data has {len(sigma_data)} values for {c} channels; pass one, or one per channel")
        unet = UNet(c, c, cond_channels=cond, widths=widths, groups=groups)
        if centred:
            self.denoiser = BackgroundCentredDenoiser(unet, sigma_data=sigma_data, gain=background_gain)
        else:
            self.denoiser = EDMDenoiser(unet, sigma_data=sigma_data)

    def condition(self, background, y, mask, bmask=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Conditioning channels for the denoiser, and the VRE reconstruction (``None`` without VRE)."""
        c = self.config["channels"]
        for name, t in (("background", background), ("y", y), ("mask", mask)):
            if t.ndim != 4 or t.shape[1] != c:
                raise ModelError(f"{name} has shape {tuple(t.shape)}, expected (batch, {c}, lat, lon)")
        bm = _expand(bmask, background)
        b = background * bm
        if self.vre is None:
            return torch.cat([b, bm, y, _expand(mask, y)], dim=1), None
        recon, feats = self.vre(background, bm, y, mask)
        extra = [y, _expand(mask, y)] if self.config["denoiser_obs"] else []
        return torch.cat([b, bm, recon, feats, *extra], dim=1), recon

    def forward(self, x_noisy, sigma, background, y, mask, bmask=None):
        cond, recon = self.condition(background, y, mask, bmask)
        return self.denoiser(x_noisy, sigma, cond), recon


def with_observation_inputs(net: PhydaNet) -> PhydaNet:
    """A copy of ``net`` whose denoiser also sees ``[y, mask]``, computing the same function.

    The denoiser's first convolution gets zero weights on the ``2 C`` new input
    channels; every other weight is copied.  Fine-tuning then teaches the
    network to use the raw observations (``phyda train --init-from MODEL
    --denoiser-obs``).  ``net`` itself is not changed.

    Raises
    ------
    ModelError
        If ``net`` has no VRE or sees the observations already.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> net = PhydaNet(2, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, centred=True)
    >>> with torch.no_grad():  # an untrained U-Net's head is zero: give every weight a value first
    ...     for p in net.parameters():
    ...         _ = p.add_(0.1 * torch.randn_like(p))
    >>> wide = with_observation_inputs(net)
    >>> x, y = torch.randn(1, 2, 8, 16), torch.randn(1, 2, 8, 16)
    >>> m = (torch.rand(1, 2, 8, 16) < 0.3).float()
    >>> same = wide(x, torch.ones(1), x, y * m, m)[0]
    >>> bool(torch.equal(same, net(x, torch.ones(1), x, y * m, m)[0]))
    True
    >>> with torch.no_grad():  # once the new inputs have weight, the observations change the output
    ...     _ = wide.denoiser.net.stem.weight[:, -4:].fill_(0.5)
    >>> bool(torch.equal(same, wide(x, torch.ones(1), x, y * m, m)[0]))
    False
    """
    cfg = dict(net.config)
    if net.vre is None or cfg.get("denoiser_obs"):
        why, fix = (("has no VRE (its denoiser sees [y, mask] already)", "train a model with the VRE")
                    if net.vre is None else ("sees the observations already", "use the network as it is"))
        raise ModelError(f"with_observation_inputs: this network {why}; there is nothing to add. Fix: {fix}")
    wide = PhydaNet(**{**cfg, "denoiser_obs": True})
    ours, theirs = net.state_dict(), wide.state_dict()
    for key, value in theirs.items():
        old = ours[key]
        if old.shape == value.shape:
            value.copy_(old)
        else:  # the stem: new input channels (the last 2 C) start at zero
            value.zero_()
            value[:, : old.shape[1]].copy_(old)
    wide.load_state_dict(theirs)
    first = next(net.parameters())
    wide = wide.to(device=first.device, dtype=first.dtype).train(net.training)
    for new, old in zip(wide.parameters(), net.parameters()):
        new.requires_grad_(old.requires_grad)
    return wide
