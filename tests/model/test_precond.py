"""EDM preconditioning: per-channel sigma_data and the background-centred denoiser.

An untrained network (the U-Net head is zero-initialised, so ``F = 0``) makes the
centred denoiser the exact denoiser of ``N(gain * background, sigma_data^2)``;
:class:`GaussianDenoiser` is the oracle.
"""

from __future__ import annotations

import pytest
import torch

from xphyda.errors import ModelError
from xphyda.model import UNet
from xphyda.model.guidance import GuidedDenoiser, ObsTerm
from xphyda.model.phyda import PhydaNet
from xphyda.model.precond import BackgroundCentredDenoiser, EDMDenoiser, GaussianDenoiser

C, H, W = 3, 8, 16
SD = [0.1, 0.5, 2.0]
GAIN = [1.0, 0.5, 0.0]


def _centred():
    torch.manual_seed(0)
    return BackgroundCentredDenoiser(UNet(C, C, cond_channels=2 * C, widths=(8, 16), groups=4),
                                     sigma_data=SD, gain=GAIN).double()


def _oracle(background, avail):
    """N(gain * b, sd^2) on available channels, N(0, 1) elsewhere, as a GaussianDenoiser."""
    gain = torch.tensor(GAIN, dtype=torch.float64)[:, None, None]
    sd = torch.tensor(SD, dtype=torch.float64)[:, None, None]
    a = avail.double()[:, None, None]
    mean = (gain * background * a).expand(C, H, W)
    var = (sd**2 * a + (1 - a)).expand(C, H, W).reshape(-1)
    return GaussianDenoiser(mean, torch.diag(var))


@pytest.mark.parametrize("avail", [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
@pytest.mark.parametrize("sigma", [0.01, 0.3, 5.0, 80.0])
def test_untrained_centred_denoiser_is_the_gaussian_prior_around_the_background(avail, sigma):
    den = _centred()
    g = torch.Generator().manual_seed(1)
    b = torch.randn(C, H, W, generator=g, dtype=torch.float64)
    av = torch.tensor(avail, dtype=torch.float64)
    cond = torch.cat([(b * av[:, None, None])[None], av[:, None, None].expand(C, H, W)[None]], 1)
    x = torch.randn(2, C, H, W, generator=g, dtype=torch.float64) * sigma
    with torch.no_grad():
        got = den(x, sigma, cond.expand(2, -1, -1, -1))
    want = _oracle(b, av)(x, sigma)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # sigma_data and gain are float32 buffers


def test_diag_guidance_uses_the_per_channel_spread():
    """F = 0 is Gaussian, so "diag" (per-channel sigma_data) must equal "mmps" (exact Tweedie covariance)."""
    den = _centred()
    g = torch.Generator().manual_seed(2)
    b = torch.randn(1, C, H, W, generator=g, dtype=torch.float64)
    cond = torch.cat([b, torch.ones_like(b)], 1)
    idx = torch.tensor([0, 5, 130, 200, 300])
    H_ = lambda x: x.flatten(1)[:, idx]  # noqa: E731

    def HT(u):
        out = torch.zeros(u.shape[0], C * H * W, dtype=u.dtype)
        out[:, idx] = u
        return out.reshape(u.shape[0], C, H, W)

    term = ObsTerm(torch.randn(5, generator=g, dtype=torch.float64), H_, HT, torch.full((5,), 0.01, dtype=torch.float64))
    x = torch.randn(1, C, H, W, generator=g, dtype=torch.float64)
    diag = GuidedDenoiser(den, [term], method="diag", cg_iters=30)(x, 0.7, cond)
    mmps = GuidedDenoiser(den, [term], method="mmps", cg_iters=30)(x, 0.7, cond)
    torch.testing.assert_close(diag, mmps, rtol=1e-7, atol=1e-7)
    flat = GuidedDenoiser(den, [term], method="diag", cg_iters=30, sigma_data=1.0)(x, 0.7, cond)
    assert float((flat - mmps).abs().max()) > 1e-3  # a scalar sigma_data is measurably different


def test_centred_phydanet_round_trips_its_config():
    net = PhydaNet(C, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, centred=True, sigma_data=SD,
                   background_gain=GAIN)
    again = PhydaNet(**net.config)
    assert again.config == net.config and isinstance(again.denoiser, BackgroundCentredDenoiser)
    assert set(net.state_dict()) == set(PhydaNet(C, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4).state_dict())


@pytest.mark.parametrize("kw, match", [
    ({"sigma_data": [0.1, -1.0]}, "positive"),
    ({"sigma_data": float("nan")}, "positive"),
])
def test_bad_sigma_data_is_refused(kw, match):
    with pytest.raises(ModelError, match=match):
        EDMDenoiser(UNet(2, 2, widths=(8, 16), groups=4), **kw)


def test_centred_denoiser_needs_background_conditioning():
    den = _centred()
    with pytest.raises(ModelError, match=r"\[background, mask\]"):
        den(torch.zeros(1, C, H, W, dtype=torch.float64), 1.0, torch.zeros(1, C, H, W, dtype=torch.float64))
    with pytest.raises(ModelError, match="3 channels"):
        PhydaNet(C, sigma_data=[1.0, 1.0], widths=(8, 16), vre_widths=(8, 16), groups=4)


# --- a centre that moves towards the reconstruction ----------------------------------------------------------


@pytest.mark.parametrize("avail", [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
@pytest.mark.parametrize("share", [[0.0, 0.0, 0.0], [0.0, 0.4, 1.0], [1.0, 0.7, 0.2]])
def test_an_untrained_recon_centred_denoiser_is_the_gaussian_prior_around_its_blended_centre(share, avail):
    """F = 0: D is exact for N(m, sd^2) with m = gain b + alpha (R - gain b), R the channels after [b, mask];
    where the background lacks a channel, N(0, 1) as without the reconstruction."""
    torch.manual_seed(0)
    den = BackgroundCentredDenoiser(UNet(C, C, cond_channels=3 * C, widths=(8, 16), groups=4), sigma_data=SD,
                                    gain=GAIN, recon_centre=True).double()
    assert torch.equal(den.recon_share(), torch.zeros(C, dtype=torch.float64))  # starts on the background
    alpha = torch.tensor(share, dtype=torch.float64)
    with torch.no_grad():
        den.recon_pull.copy_(alpha / den.RECON_RATE)
    g = torch.Generator().manual_seed(4)
    b, r = (torch.randn(C, H, W, generator=g, dtype=torch.float64) for _ in range(2))
    a = torch.tensor(avail, dtype=torch.float64)[:, None, None]
    cond = torch.cat([b * a, a.expand(C, H, W), r])[None]
    gain = torch.tensor(GAIN, dtype=torch.float64)[:, None, None]
    mean = (gain * b + alpha[:, None, None] * (r - gain * b)) * a
    sd = torch.tensor(SD, dtype=torch.float64)[:, None, None] * a + (1 - a)
    oracle = GaussianDenoiser(mean.expand(C, H, W), torch.diag((sd.expand(C, H, W) ** 2).reshape(-1)))
    x = torch.randn(1, C, H, W, generator=g, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(den(x, 0.7, cond), oracle(x, 0.7), rtol=1e-6, atol=1e-6)


def test_a_recon_centred_denoiser_needs_the_reconstruction_and_learns_its_share():
    den = BackgroundCentredDenoiser(UNet(C, C, cond_channels=3 * C, widths=(8, 16), groups=4), sigma_data=SD,
                                    gain=GAIN, recon_centre=True)
    x = torch.randn(2, C, H, W)
    with pytest.raises(ModelError, match=r"\[background, mask, reconstruction\] \(9 channels\)"):
        den(x, 1.0, torch.randn(2, 2 * C, H, W))
    cond = torch.cat([x, torch.ones_like(x), x + 1.0], 1)
    den(x, 1.0, cond).pow(2).sum().backward()
    assert float(den.recon_pull.grad.abs().min()) > 0  # the loss reaches the share of every channel
    assert BackgroundCentredDenoiser(UNet(C, C, cond_channels=2 * C, widths=(8, 16), groups=4)).recon_share() is None
