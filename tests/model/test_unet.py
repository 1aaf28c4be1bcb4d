"""The sphere-aware U-Net: padding, shapes, symmetry and grid checks."""

from __future__ import annotations

import pytest
import torch

from xphyda.errors import GridError, ModelError
from xphyda.model import EDMDenoiser, UNet, sphere_pad

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace the zero-initialised output layers so the network computes something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return net


def test_sphere_pad_periodic_and_across_pole():
    x = torch.randn(2, 3, 6, 8)
    p = sphere_pad(x, 2)
    assert p.shape == (2, 3, 10, 12)
    inner = p[..., 2:-2, :]
    assert torch.equal(inner[..., :2], x[..., -2:]) and torch.equal(inner[..., -2:], x[..., :2])
    # the row beyond the first latitude is the first row on the opposite meridian
    assert torch.equal(p[..., 1, 2:-2], x[..., 0, :].roll(4, -1))
    assert torch.equal(p[..., 0, 2:-2], x[..., 1, :].roll(4, -1))
    assert torch.equal(p[..., -1, 2:-2], x[..., -2, :].roll(4, -1))
    # corners continue periodically too
    assert torch.equal(p[..., 1, :2], p[..., 1, -4:-2])


def test_sphere_pad_regional_and_odd_longitudes():
    x = torch.randn(1, 1, 3, 5)
    p = sphere_pad(x, 1, periodic=False, poles=False)
    assert torch.equal(p[..., 0, 1:-1], x[..., 0, :]) and torch.equal(p[..., 1:-1, 0], x[..., :, 0])
    with pytest.raises(GridError, match="even number of longitudes"):
        sphere_pad(x, 1)


def test_unet_shapes_and_size():
    net = UNet(26, 26, cond_channels=4)
    nparam = sum(p.numel() for p in net.parameters())
    assert 1_000_000 < nparam < 2_000_000
    out = net(torch.randn(1, 30, 48, 96), torch.zeros(1))
    assert out.shape == (1, 26, 48, 96) and out.dtype == torch.float32
    assert torch.count_nonzero(out) == 0  # zero-initialised head: an untrained denoiser returns c_skip x


def test_unet_longitude_roll_equivariance():
    net = _randomise(UNet(2, 3, cond_channels=1, widths=(8, 16, 16), groups=4)).eval()
    x, c = torch.randn(2, 3, 8, 16), torch.tensor([0.3, -1.0])
    with torch.no_grad():
        out = net(x, c)
        for shift in (4, 8):  # multiples of 2**(levels - 1) keep the pooling cells aligned
            rolled = net(x.roll(shift, -1), c)
            assert torch.allclose(rolled, out.roll(shift, -1), atol=1e-5)
    assert out.abs().mean() > 0.01


def test_unet_uses_noise_level_and_backpropagates():
    net = _randomise(UNet(2, 2, widths=(8, 16), groups=4, attention=True, heads=2))
    x = torch.randn(2, 2, 8, 16, requires_grad=True)
    a, b = net(x, torch.zeros(2)), net(x, torch.ones(2))
    assert not torch.allclose(a, b)
    (g,) = torch.autograd.grad(a.square().sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("shape", [(1, 2, 10, 16), (1, 2, 8, 12)])
def test_unet_grid_divisibility(shape):
    net = UNet(2, 2, widths=(8, 16, 16), groups=4)  # needs lat % 4, lon % 8
    with pytest.raises(GridError, match="divisible"):
        net(torch.randn(*shape), torch.zeros(1))


def test_unet_channel_mismatch_and_bad_config():
    net = UNet(2, 2, cond_channels=1, widths=(8, 16), groups=4)
    with pytest.raises(ModelError, match="2 state \\+ 1 conditioning"):
        net(torch.randn(1, 2, 8, 16), torch.zeros(1))
    with pytest.raises(ModelError):
        UNet(2, 2, widths=())
    with pytest.raises(ModelError, match="periodic"):
        UNet(2, 2, periodic=False, poles=True)


def test_regional_unet_accepts_odd_lon_multiples():
    net = UNet(1, 1, widths=(4, 8), groups=2, periodic=False, poles=False)
    assert net(torch.randn(1, 1, 6, 10), torch.zeros(1)).shape == (1, 1, 6, 10)


def test_config_round_trip_and_denoiser():
    net = UNet(3, 3, cond_channels=2, widths=(8, 16), groups=4, blocks=2)
    twin = UNet(**net.config)
    twin.load_state_dict(net.state_dict())
    den = EDMDenoiser(net)
    x = torch.randn(1, 3, 8, 16)
    assert torch.allclose(den(x, 2.0, torch.zeros(1, 2, 8, 16)), x / 5)  # c_skip = 1 / (1 + 4)
