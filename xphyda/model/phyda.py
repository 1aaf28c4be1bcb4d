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
A network built with ``static`` fields (e.g. the land-sea mask and the
orography on the model grid) appends them, standardised, to the denoiser's
conditioning: a convolution cannot tell one place from another, and these
fields tell it where land, mountains and latitudes are.  They are stored with
the weights.

:func:`adapt` turns a trained network into one with more inputs (observations,
static fields), self-attention at the denoiser's coarsest level, or a centre
that can move towards the reconstruction, with zero weights on everything new,
so it computes the same function until it is fine-tuned;
:func:`with_observation_inputs` is its special case for ``[y, mask]``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import GridError, ModelError, require_bool
from .precond import BackgroundCentredDenoiser, EDMDenoiser
from .unet import UNet

__all__ = ["VirtualReconstructionEncoder", "PhydaNet", "adapt", "standardise_static", "with_observation_inputs"]


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
    static : sequence of str
        Names of time-invariant fields on the model grid appended to the
        denoiser's conditioning (the values are a buffer saved with the
        weights, zero until loaded or set by :func:`adapt`).
    grid : (int, int), optional
        ``(nlat, nlon)`` of the model grid; needed with ``static``.
    attention : bool
        Self-attention at the denoiser U-Net's coarsest level.
    recon_centre : bool
        With ``centred`` and the VRE: a learnable share ``alpha`` per channel
        moves the denoiser's centre from ``gain * background`` towards the VRE
        reconstruction (``alpha = 0`` at the start; see
        :class:`~xphyda.model.precond.BackgroundCentredDenoiser`).

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
        static: Sequence[str] = (),
        grid: Sequence[int] | None = None,
        attention: bool = False,
        recon_centre: bool = False,
    ):
        super().__init__()
        flags = dict(use_vre=use_vre, centred=centred, denoiser_obs=denoiser_obs, attention=attention,
                     recon_centre=recon_centre)
        use_vre, centred, denoiser_obs, attention, recon_centre = (
            require_bool(f"PhydaNet: {k}", v, fix=f"pass {k}=True or {k}=False") for k, v in flags.items())
        if isinstance(static, str):
            raise ModelError(f"static must be a sequence of field names; got the string {static!r}. "
                             f"Fix: static=[{static!r}]")
        static = [str(n) for n in static]
        if static and (grid is None or len(grid) != 2 or min(int(g) for g in grid) < 1):
            raise ModelError(f"static fields {static} need the model grid as grid=(nlat, nlon); got grid={grid!r}. "
                             "Fix: pass the grid the network runs on, e.g. grid=(48, 96)")
        if len(set(static)) != len(static):
            raise ModelError(f"static field names must be unique; got {static}. Fix: name each field once")
        if channels < 1:
            raise ModelError(f"PhydaNet needs at least one channel, got {channels}")
        if denoiser_obs and not use_vre:
            raise ModelError("denoiser_obs=True needs the VRE: without it the denoiser is conditioned on [y, mask] "
                             "already. Fix: leave denoiser_obs False with use_vre=False")
        if recon_centre and not (use_vre and centred):
            raise ModelError(f"recon_centre=True moves a background-centred denoiser's centre towards the VRE's "
                             f"reconstruction; this network has use_vre={use_vre}, centred={centred}. "
                             "Fix: use recon_centre with use_vre=True and centred=True")
        self.config: dict[str, Any] = dict(
            channels=int(channels), use_vre=bool(use_vre), features=int(features), widths=[int(w) for w in widths],
            vre_widths=[int(w) for w in vre_widths], groups=int(groups), centred=bool(centred),
            background_gain=_one_or_each(background_gain), sigma_data=_one_or_each(sigma_data),
            denoiser_obs=bool(denoiser_obs), static=static,
            grid=[int(g) for g in grid] if static else None, attention=bool(attention),
            recon_centre=bool(recon_centre),
        )  # fmt: skip
        c = int(channels)
        self.vre = VirtualReconstructionEncoder(c, features=features, widths=vre_widths, groups=groups) if use_vre else None
        cond = 2 * c + (c + features if use_vre else 2 * c) + (2 * c if denoiser_obs else 0) + len(static)
        shape = (len(static), *self.config["grid"]) if static else (0, 1, 1)
        self.register_buffer("static_fields", torch.zeros(shape), persistent=bool(static))
        if isinstance(sigma_data, (list, tuple)) and len(sigma_data) != c:
            raise ModelError(f"sigma_data has {len(sigma_data)} values for {c} channels; pass one, or one per channel")
        unet = UNet(c, c, cond_channels=cond, widths=widths, groups=groups, attention=attention)
        if centred:
            self.denoiser = BackgroundCentredDenoiser(unet, sigma_data=sigma_data, gain=background_gain,
                                                      recon_centre=recon_centre)
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
        static = []
        if self.config["static"]:
            if tuple(background.shape[-2:]) != tuple(self.static_fields.shape[-2:]):
                raise ModelError(
                    f"the fields are on a {tuple(background.shape[-2:])} grid but the network's static fields "
                    f"{self.config['static']} are on {tuple(self.static_fields.shape[-2:])}. "
                    "Fix: regrid to the model grid first (assimilate and encode do)")
            static = [self.static_fields.to(b.dtype).expand(b.shape[0], -1, -1, -1)]
        if self.vre is None:
            return torch.cat([b, bm, y, _expand(mask, y), *static], dim=1), None
        recon, feats = self.vre(background, bm, y, mask)
        extra = [y, _expand(mask, y)] if self.config["denoiser_obs"] else []
        return torch.cat([b, bm, recon, feats, *extra, *static], dim=1), recon

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
    if net.vre is None or net.config.get("denoiser_obs"):
        why, fix = (("has no VRE (its denoiser sees [y, mask] already)", "train a model with the VRE")
                    if net.vre is None else ("sees the observations already", "use the network as it is"))
        raise ModelError(f"with_observation_inputs: this network {why}; there is nothing to add. Fix: {fix}")
    return adapt(net, denoiser_obs=True)


def standardise_static(values, lat=None, *, name: str = "a static field") -> torch.Tensor:
    """A static field as the network sees it: minus its (area-weighted) mean, over its standard deviation.

    Parameters
    ----------
    values : array-like
        ``(nlat, nlon)`` field on the model grid, e.g. the land-sea mask or the
        surface geopotential.
    lat : array-like, optional
        Latitudes (degrees) for cos-latitude area weights; equal weights without.
    name : str
        What the field is, for error messages.

    Raises
    ------
    ModelError
        If the field is not 2-D, is not finite, is constant, or ``lat`` does
        not have one value per row.

    Examples
    --------
    >>> f = standardise_static(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    >>> round(float(f.mean()), 6), round(float(f.std(unbiased=False)), 6)
    (0.0, 1.0)
    """
    v = torch.as_tensor(values, dtype=torch.float64)
    if v.ndim != 2:
        raise ModelError(f"{name} has shape {tuple(v.shape)}; expected a (lat, lon) array on the model grid. "
                         "Fix: select one time and level, e.g. field.isel(time=0).squeeze()")
    if not bool(torch.isfinite(v).all()):
        raise ModelError(f"{name} has {int((~torch.isfinite(v)).sum())} non-finite values; expected finite values "
                         "everywhere. Fix: fill the gaps (e.g. field.fillna(0)) first")
    w = torch.ones_like(v)
    if lat is not None:
        lat = torch.as_tensor(lat, dtype=torch.float64).reshape(-1)
        if lat.numel() != v.shape[0]:
            raise ModelError(f"{name} has {v.shape[0]} rows but {lat.numel()} latitudes were given; expected one "
                             "latitude per row. Fix: pass the model grid's latitudes")
        w = torch.cos(torch.deg2rad(lat))[:, None].expand_as(v)
    mean = (v * w).sum() / w.sum()
    std = (((v - mean) ** 2 * w).sum() / w.sum()).sqrt()
    if not float(std) > 0:
        raise ModelError(f"{name} is constant over the grid, so it cannot tell one place from another. "
                         "Fix: leave it out")
    return ((v - mean) / std).float()


def adapt(net: PhydaNet, *, denoiser_obs: bool | None = None, static=None, lat=None,
          attention: bool | None = None, recon_centre: bool | None = None) -> PhydaNet:
    """A copy of ``net`` with more inputs, attention or a movable centre, computing its function until fine-tuned.

    Everything new starts with zero weight on its way out: the first
    convolution's columns for new inputs are zero, a new attention block's
    output projection is zero (the block is then the identity), and a new
    share of the reconstruction in the centre is zero.  Every other weight is
    copied.  ``net`` itself is not changed.

    Parameters
    ----------
    net : PhydaNet
        A trained network.
    denoiser_obs : bool, optional
        ``True`` adds ``[y, mask]`` to the denoiser's inputs (needs the VRE);
        ``False`` removes them, which changes the function by what the
        fine-tune taught them (measure it).  ``None`` keeps what ``net`` has.
    static : mapping of str to array, optional
        Static fields to add, name to ``(nlat, nlon)`` values on the model grid,
        standardised by :func:`standardise_static`; a name ``net`` has already
        is an error.
    lat : array-like, optional
        The model grid's latitudes, for area weights in the standardisation.
    attention : bool, optional
        ``True`` adds self-attention at the denoiser's coarsest level.
    recon_centre : bool, optional
        ``True`` lets the fine-tune move the denoiser's centre towards the VRE
        reconstruction, channel by channel (see ``PhydaNet``).

    Raises
    ------
    ModelError
        If asked to add what ``net`` has or to remove what it lacks, to remove
        attention or the movable centre, for observation inputs or a movable
        centre without the VRE, or for static fields that are not finite 2-D
        arrays on the model grid.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> net = PhydaNet(2, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, centred=True)
    >>> with torch.no_grad():  # give every weight a value (an untrained U-Net's head is zero)
    ...     for p in net.parameters():
    ...         _ = p.add_(0.1 * torch.randn_like(p))
    >>> lsm = (torch.rand(8, 16) < 0.3).float()
    >>> big = adapt(net, static={"lsm": lsm}, attention=True)
    >>> big.config["static"], big.config["attention"]
    (['lsm'], True)
    >>> x = torch.randn(1, 2, 8, 16)
    >>> m = (torch.rand(1, 2, 8, 16) < 0.3).float()
    >>> same = big(x, torch.ones(1), x, x * m, m)[0]
    >>> bool(torch.allclose(same, net(x, torch.ones(1), x, x * m, m)[0], atol=1e-6))
    True
    >>> with torch.no_grad():  # once the new input has weight, the output changes
    ...     _ = big.denoiser.net.stem.weight[:, -1:].fill_(0.5)
    >>> bool(torch.allclose(same, big(x, torch.ones(1), x, x * m, m)[0], atol=1e-6))
    False
    """
    cfg = dict(net.config)
    c = cfg["channels"]
    if static is not None and not hasattr(static, "items"):
        raise ModelError(f"adapt: static must map field names to (lat, lon) arrays; got {type(static).__name__}. "
                         "Fix: e.g. static={'lsm': land_sea_mask}")
    static = dict(static or {})
    new = {**cfg}
    if denoiser_obs is not None:
        denoiser_obs = require_bool("adapt: denoiser_obs", denoiser_obs,
                                    fix="pass True or False, or None to keep the network's")
        if denoiser_obs and net.vre is None:
            raise ModelError("adapt: denoiser_obs=True needs the VRE; this network has none (its denoiser sees "
                             "[y, mask] already). Fix: leave denoiser_obs unset")
        if denoiser_obs == bool(cfg.get("denoiser_obs")):
            raise ModelError(f"adapt: denoiser_obs={denoiser_obs}, but the network's denoiser "
                             f"{'sees' if denoiser_obs else 'does not see'} the observations already. "
                             "Fix: leave denoiser_obs unset")
        new["denoiser_obs"] = denoiser_obs
    if attention is not None:
        attention = require_bool("adapt: attention", attention, fix="pass attention=True to add it, or leave it unset")
        if bool(cfg.get("attention")) == attention:
            raise ModelError(f"adapt: attention={attention}, but the network {'has' if attention else 'has no'} "
                             "attention already. Fix: leave attention unset")
        if not attention:
            raise ModelError("adapt: attention=False, but adapt cannot remove a trained attention block. "
                             "Fix: leave attention unset")
        new["attention"] = True
    if recon_centre is not None:
        recon_centre = require_bool("adapt: recon_centre", recon_centre,
                                    fix="pass recon_centre=True to add it, or leave it unset")
        if not recon_centre:
            raise ModelError("adapt: recon_centre=False, but adapt can only add a movable centre, not remove one"
                             + ("" if cfg.get("recon_centre") else " (and the network has none)")
                             + ". Fix: leave recon_centre unset")
        if cfg.get("recon_centre"):
            raise ModelError("adapt: recon_centre=True, but the network has a movable centre already. "
                             "Fix: leave recon_centre unset")
        if net.vre is None or not cfg.get("centred"):
            raise ModelError("adapt: recon_centre=True needs a background-centred network with the VRE; this one has "
                             f"use_vre={net.vre is not None}, centred={bool(cfg.get('centred'))}. "
                             "Fix: leave recon_centre unset")
        new["recon_centre"] = True
    have = list(cfg.get("static") or [])
    twice = sorted(set(static) & set(have))
    if twice:
        raise ModelError(f"adapt: the network has static fields {twice} already. Fix: give only new fields")
    fields = {name: standardise_static(v, lat, name=f"static field {name!r}") for name, v in static.items()}
    grid = cfg.get("grid") or (list(next(iter(fields.values())).shape) if fields else None)
    for name, f in fields.items():
        if list(f.shape) != list(grid):
            raise ModelError(f"adapt: static field {name!r} has shape {tuple(f.shape)} but the model grid is "
                             f"{tuple(grid)}. Fix: regrid it to the model grid")
    new["static"], new["grid"] = have + list(fields), grid if (have or fields) else None
    if fields and not have:  # the first static fields fix the grid: it must be one the denoiser can run on
        try:
            net.denoiser.net.check_grid(*grid)
        except GridError as exc:
            raise ModelError(f"adapt: the static fields are on a {tuple(grid)} grid, which the denoiser cannot run "
                             f"on ({exc}). Fix: pass the fields on the model grid") from exc
    first = next(net.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # new blocks (attention) start from the same weights every time
        out = PhydaNet(**new).to(device=first.device, dtype=first.dtype)
    # where each of the denoiser's old conditioning columns goes in the new one
    head = 3 * c + (c + cfg["features"] if net.vre is not None else 2 * c)  # state, background, mask, R/feats
    old_cols = list(range(head))
    new_cols = list(range(head))
    pos_old, pos_new = head, head
    if cfg.get("denoiser_obs"):
        if new["denoiser_obs"]:
            old_cols += range(pos_old, pos_old + 2 * c)
            new_cols += range(pos_new, pos_new + 2 * c)
            pos_new += 2 * c
        pos_old += 2 * c
    elif new["denoiser_obs"]:
        pos_new += 2 * c
    old_cols += range(pos_old, pos_old + len(have))
    new_cols += range(pos_new, pos_new + len(have))
    ours, theirs = net.state_dict(), out.state_dict()
    for key, value in theirs.items():
        if key == "denoiser.net.stem.weight":
            value.zero_()
            value[:, new_cols] = ours[key][:, old_cols].to(value)
        elif key == "static_fields":
            if have:
                value[: len(have)] = ours[key].to(value)
            for k, f in enumerate(fields.values()):
                value[len(have) + k] = f.to(value)
        elif key in ours:
            value.copy_(ours[key])
        # else: a new part keeps its initial weights: attention with a zero output projection, a zero recon_pull
    out.load_state_dict(theirs)
    out = out.train(net.training)
    named = dict(net.named_parameters())
    for key, p in out.named_parameters():
        if key in named:
            p.requires_grad_(named[key].requires_grad)
    return out
