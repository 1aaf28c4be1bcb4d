"""A small U-Net for latitude-longitude fields, sized for the CPU.

Every 3x3 convolution pads its input on the sphere (:func:`sphere_pad`):

* longitude is periodic: the first columns continue the last ones;
* across a pole the neighbour of a row is the same row on the opposite
  meridian, so the rows padded beyond the first (last) latitude are the first
  (last) rows in mirror order, rolled by half the longitudes.  This assumes
  cell-centred latitudes (no point on the pole, e.g. 48 rows of 3.75 degrees),
  which average pooling by 2 preserves at every level, and needs an even number
  of longitudes at every level.

The noise level enters through Fourier features of ``c_noise`` and an MLP whose
output gives each residual block a per-channel scale and shift after its second
GroupNorm.  Down-sampling is a 2x2 average, up-sampling is nearest-neighbour;
the decoder concatenates the encoder's output at each level.  Self-attention
at the lowest resolution is off by default.  Output convolutions start at zero,
so an untrained :class:`~xphyda.model.precond.EDMDenoiser` returns
``c_skip x``.

With the defaults (``widths=(32, 64, 128)``, one block per level) the network
has about 1.3 million parameters; see ``benchmarks/bench_sampler.py`` for its
speed on a batch of 48 x 96 fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GridError, ModelError

__all__ = ["UNet", "check_grid", "sphere_pad"]


def check_grid(levels: int, nlat: int, nlon: int, *, poles: bool = True) -> None:
    """Raise :class:`~xphyda.errors.GridError` unless a U-Net of ``levels`` resolutions fits a ``nlat x nlon`` grid.

    Each of the ``levels - 1`` halvings needs even sizes, and padding across the
    poles an even number of longitudes at the coarsest level.

    Examples
    --------
    >>> check_grid(3, 48, 96)  # the bundled model's network on its grid
    >>> check_grid(6, 48, 96)
    Traceback (most recent call last):
        ...
    xphyda.errors.GridError: the grid has 48 latitudes x 96 longitudes but a U-Net with 6 levels needs latitudes divisible by 32 and longitudes divisible by 64; regrid (e.g. 48 x 96) or build the network with fewer widths
    """
    k = 2 ** (levels - 1)
    klon = 2 * k if poles else k
    if nlat % k or nlon % klon:
        raise GridError(
            f"the grid has {nlat} latitudes x {nlon} longitudes but a U-Net with {levels} levels "
            f"needs latitudes divisible by {k} and longitudes divisible by {klon}; "
            "regrid (e.g. 48 x 96) or build the network with fewer widths"
        )


def sphere_pad(x: torch.Tensor, p: int, *, periodic: bool = True, poles: bool = True) -> torch.Tensor:
    """Pad the last two axes (lat, lon) of ``x`` by ``p`` points on the sphere.

    Parameters
    ----------
    x : torch.Tensor
        ``(..., lat, lon)``; with ``poles=True`` the number of longitudes must be even.
    p : int
        Padding width on each side (at most the number of latitudes).
    periodic : bool
        Wrap longitude around (a global grid); otherwise repeat the edge columns.
    poles : bool
        Continue latitude across the poles; otherwise repeat the edge rows
        (a regional grid).

    Examples
    --------
    >>> x = torch.arange(8.0).reshape(1, 1, 2, 4)
    >>> sphere_pad(x, 1)[0, 0]
    tensor([[1., 2., 3., 0., 1., 2.],
            [3., 0., 1., 2., 3., 0.],
            [7., 4., 5., 6., 7., 4.],
            [5., 6., 7., 4., 5., 6.]])
    """
    if p == 0:
        return x
    nlat, nlon = x.shape[-2:]
    if poles and nlon % 2:
        raise GridError(
            f"padding across the poles needs an even number of longitudes, found {nlon}; "
            "regrid to an even count or build the network with poles=False"
        )
    if p > min(nlat, nlon):
        raise GridError(f"cannot pad {p} points around a grid of {nlat} latitudes x {nlon} longitudes")
    # one buffer: copy the interior once, then fill the borders from it
    out = x.new_empty(*x.shape[:-2], nlat + 2 * p, nlon + 2 * p)
    out[..., p : p + nlat, p : p + nlon] = x
    if poles:
        half = nlon // 2
        for rows, src in (
            (slice(0, p), x[..., :p, :]),
            (slice(nlat + p, nlat + 2 * p), x[..., nlat - p :, :]),
        ):
            src = src.flip(-2)
            out[..., rows, p : p + nlon - half] = src[..., half:]
            out[..., rows, p + nlon - half : p + nlon] = src[..., :half]
    else:
        out[..., :p, p : p + nlon] = x[..., :1, :]
        out[..., nlat + p :, p : p + nlon] = x[..., -1:, :]
    if periodic:
        out[..., :p] = out[..., nlon : nlon + p]
        out[..., nlon + p :] = out[..., p : 2 * p]
    else:
        out[..., :p] = out[..., p : p + 1]
        out[..., nlon + p :] = out[..., nlon + p - 1 : nlon + p]
    return out


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


class _SphereConv(nn.Conv2d):
    """Convolution with :func:`sphere_pad` instead of zero padding."""

    def __init__(self, cin: int, cout: int, kernel: int, *, periodic: bool, poles: bool, zero: bool = False):
        super().__init__(cin, cout, kernel, padding=0)
        self.pad, self.periodic, self.poles = kernel // 2, periodic, poles
        if zero:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(sphere_pad(x, self.pad, periodic=self.periodic, poles=self.poles))


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, *, groups: int, dropout: float, **pad):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), _SphereConv(cin, cout, 3, **pad)
        self.affine = nn.Linear(emb, 2 * cout)
        self.norm2, self.conv2 = _norm(cout, groups), _SphereConv(cout, cout, 3, zero=True, **pad)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = torch.addcmul(shift, self.norm2(h), scale + 1)
        h = self.conv2(self.dropout(F.silu(h)))
        return (h + self.skip(x)) * math.sqrt(0.5)


class _Attention(nn.Module):
    def __init__(self, channels: int, *, groups: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ModelError(f"attention over {channels} channels cannot use {heads} heads; pick a divisor")
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """U-Net ``(B, in_channels + cond_channels, H, W), c_noise (B,) -> (B, out_channels, H, W)``.

    Parameters
    ----------
    in_channels, out_channels : int
        State channels in and out (usually equal).
    cond_channels : int
        Extra conditioning channels concatenated after the state.
    widths : sequence of int
        Channels at each resolution; ``len(widths) - 1`` halvings, so ``H`` and
        ``W`` must be divisible by ``2 ** (len(widths) - 1)`` (and ``W`` by
        ``2 ** len(widths)`` with ``poles=True``).
    blocks : int
        Residual blocks per level in the encoder and in the decoder.
    emb_dim : int, optional
        Width of the noise embedding (default ``4 * widths[0]``).
    attention : bool
        Self-attention at the lowest resolution.
    heads : int
        Attention heads.
    groups : int
        GroupNorm groups (reduced to a divisor of the channel count).
    dropout : float
        Dropout inside residual blocks.
    periodic, poles : bool
        Sphere padding (see :func:`sphere_pad`); a regional grid uses ``False``.

    Examples
    --------
    >>> net = UNet(3, 3, cond_channels=2, widths=(8, 16), groups=4)
    >>> net(torch.randn(2, 5, 8, 16), torch.zeros(2)).shape
    torch.Size([2, 3, 8, 16])
    >>> UNet(**net.config).config == net.config
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        cond_channels: int = 0,
        widths: Sequence[int] = (32, 64, 128),
        blocks: int = 1,
        emb_dim: int | None = None,
        attention: bool = False,
        heads: int = 4,
        groups: int = 8,
        dropout: float = 0.0,
        periodic: bool = True,
        poles: bool = True,
    ):
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1 or blocks < 1 or min(in_channels, out_channels) < 1:
            raise ModelError(
                f"UNet needs positive channels, widths and blocks, got in={in_channels}, out={out_channels}, "
                f"widths={widths}, blocks={blocks}"
            )
        if poles and not periodic:
            raise ModelError("poles=True describes a global grid, which is periodic; pass periodic=True")
        emb_dim = int(emb_dim or 4 * widths[0])
        self.config: dict[str, Any] = {
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "cond_channels": int(cond_channels),
            "widths": widths,
            "blocks": int(blocks),
            "emb_dim": emb_dim,
            "attention": bool(attention),
            "heads": int(heads),
            "groups": int(groups),
            "dropout": float(dropout),
            "periodic": bool(periodic),
            "poles": bool(poles),
        }
        pad = {"periodic": periodic, "poles": poles}
        block = dict(groups=groups, dropout=dropout, **pad)
        half = emb_dim // 2
        self.register_buffer(
            "freqs", 2 * math.pi * torch.logspace(-1, math.log10(64.0), half), persistent=False
        )
        self.embed = nn.Sequential(
            nn.Linear(2 * half, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU()
        )
        self.stem = _SphereConv(in_channels + cond_channels, widths[0], 3, **pad)
        self.down = nn.ModuleList()
        ch = widths[0]
        for w in widths:
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(_ResBlock(ch, w, emb_dim, **block))
                ch = w
            self.down.append(level)
        self.mid = _ResBlock(ch, ch, emb_dim, **block)
        self.attn = _Attention(ch, groups=groups, heads=heads) if attention else None
        self.up = nn.ModuleList()
        for w in reversed(widths):
            level = nn.ModuleList()
            for b in range(blocks):
                level.append(_ResBlock(ch + w if b == 0 else ch, w, emb_dim, **block))
                ch = w
            self.up.append(level)
        self.head_norm = _norm(ch, groups)
        self.head = _SphereConv(ch, out_channels, 3, zero=True, **pad)

    @property
    def levels(self) -> int:
        """Number of resolutions (one more than the number of halvings)."""
        return len(self.config["widths"])

    def check_grid(self, nlat: int, nlon: int) -> None:
        """Raise :class:`~xphyda.errors.GridError` if a ``nlat x nlon`` grid does not fit the network."""
        check_grid(self.levels, nlat, nlon, poles=self.config["poles"])

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        expected = cfg["in_channels"] + cfg["cond_channels"]
        if x.ndim != 4 or x.shape[1] != expected:
            raise ModelError(
                f"UNet input has shape {tuple(x.shape)}, expected (batch, {expected}, lat, lon): "
                f"{cfg['in_channels']} state + {cfg['cond_channels']} conditioning channels"
            )
        self.check_grid(*x.shape[-2:])
        c = c_noise.reshape(-1, 1).to(x.dtype) * self.freqs.to(x.dtype)
        emb = self.embed(torch.cat([c.cos(), c.sin()], dim=1))
        h = self.stem(x)
        skips = []
        for i, level in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            for blk in level:
                h = blk(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        for i, level in enumerate(self.up):
            if i > 0:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = torch.cat([h, skips.pop()], dim=1)
            for blk in level:
                h = blk(h, emb)
        return self.head(F.silu(self.head_norm(h)))
