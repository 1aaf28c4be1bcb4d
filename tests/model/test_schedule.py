"""Noise levels, training noise, preconditioning and devices."""

from __future__ import annotations

import pytest
import torch

from xphyda.errors import ModelError
from xphyda.model import EDMDenoiser, denoising_loss, edm_sigmas, evaluations, loss_weight, training_sigmas
from xphyda.model.device import resolve_device, resolve_dtype

pytestmark = pytest.mark.usefixtures("one_thread")


def test_edm_sigmas_grid():
    s = edm_sigmas(32, 0.002, 80.0)
    assert s.dtype == torch.float64 and s.shape == (33,)
    assert float(s[0]) == 80.0 and float(s[-2]) == 0.002 and float(s[-1]) == 0.0
    assert bool((s[1:] < s[:-1]).all())
    # rho-warped spacing: sigma^(1/rho) is evenly spaced
    r = s[:-1] ** (1 / 7)
    assert torch.allclose(r.diff(), r.diff()[0].expand(31), rtol=1e-9)
    assert edm_sigmas(1).tolist() == [80.0, 0.0]


@pytest.mark.parametrize(
    "kw", [dict(steps=0), dict(steps=2.5), dict(sigma_min=0.0), dict(sigma_min=90.0), dict(rho=0)]
)
def test_edm_sigmas_rejects(kw):
    args = dict(steps=8, sigma_min=0.002, sigma_max=80.0, rho=7.0) | kw
    with pytest.raises(ModelError):
        edm_sigmas(args.pop("steps"), args.pop("sigma_min"), args.pop("sigma_max"), **args)


def test_evaluations():
    assert (
        evaluations(32) == 32 and evaluations(16, solver="heun") == 31 and evaluations(5, solver="euler") == 5
    )
    with pytest.raises(ModelError, match="unknown solver"):
        evaluations(4, solver="rk4")


def test_training_sigmas_log_normal():
    g = torch.Generator().manual_seed(3)
    s = training_sigmas(20000, p_mean=-1.2, p_std=1.2, generator=g)
    assert s.dtype == torch.float32 and bool((s > 0).all())
    assert abs(float(s.log().mean()) + 1.2) < 0.03 and abs(float(s.log().std()) - 1.2) < 0.03
    again = training_sigmas(20000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s, again)


def test_loss_weight_unit_at_trivial_denoiser():
    # D = c_skip x has expected squared error c_out^2; the weight is 1 / c_out^2
    sigma = torch.tensor([0.01, 0.5, 1.0, 30.0], dtype=torch.float64)
    c_out2 = sigma**2 / (sigma**2 + 1)
    assert torch.allclose(loss_weight(sigma) * c_out2, torch.ones_like(sigma))


class _Probe(torch.nn.Module):
    """Records the network inputs and returns a constant."""

    def forward(self, x, c_noise):
        self.x, self.c_noise = x, c_noise
        return torch.ones(x.shape[0], 2, *x.shape[-2:], dtype=x.dtype)


def test_edm_preconditioning():
    net = _Probe()
    den = EDMDenoiser(net, sigma_data=0.5)
    x, cond = torch.randn(3, 2, 4, 8), torch.randn(3, 1, 4, 8)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    out = den(x, sigma, cond)
    sd = 0.5
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
    c_in = 1 / (sigma**2 + sd**2).sqrt()
    b = (-1, 1, 1, 1)
    assert torch.allclose(out, c_skip.reshape(b) * x + c_out.reshape(b))
    assert torch.allclose(net.c_noise, sigma.log() / 4)
    assert torch.allclose(net.x[:, :2], c_in.reshape(b) * x) and torch.equal(net.x[:, 2:], cond)
    assert torch.allclose(den(x, 1.0, cond), den(x, torch.ones(3), cond))


def test_edm_denoiser_rejects_bad_inputs():
    den = EDMDenoiser(_Probe())
    x = torch.randn(2, 2, 4, 8)
    with pytest.raises(ModelError, match="cond has shape"):
        den(x, 1.0, torch.randn(2, 1, 4, 4))
    with pytest.raises(ModelError, match="positive"):
        den(x, torch.tensor([1.0, 0.0]))
    with pytest.raises(ModelError, match="sigma has 3 values"):
        den(x, torch.ones(3))
    with pytest.raises(ModelError, match="sigma_data"):
        EDMDenoiser(_Probe(), sigma_data=0.0)


def test_denoising_loss_of_trivial_denoiser_is_one():
    class Zero(torch.nn.Module):
        def forward(self, x, c_noise):
            return torch.zeros(x.shape[0], 2, *x.shape[-2:])

    x = torch.randn(4096, 2, 2, 2)
    loss, sigma, d = denoising_loss(EDMDenoiser(Zero()), x, generator=torch.Generator().manual_seed(0))
    assert loss.shape == sigma.shape == (4096,) and d.shape == x.shape
    assert abs(float(loss.mean()) - 1.0) < 0.05  # E[loss] = 1 for D = c_skip x with unit-variance data


def test_resolve_device_and_dtype():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    )
    with pytest.raises(ModelError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="device='cpu'"):
            resolve_device("cuda")
    assert resolve_dtype("float64") is torch.float64 and resolve_dtype(None) is torch.float32
    with pytest.raises(ModelError, match="float32"):
        resolve_dtype(torch.bfloat16, device="cpu")
    with pytest.raises(ModelError):
        resolve_dtype(torch.int64)
    with pytest.raises(ModelError, match="not understood"):
        resolve_dtype("float8")
