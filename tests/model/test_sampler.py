"""Ensemble sampling: the Gaussian oracle, reproducibility, shapes, devices."""

from __future__ import annotations

import pytest
import torch

from xphyda.errors import ModelError
from xphyda.model import EDMDenoiser, UNet, member_generator, sample

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (2, 4, 8)  # the Gaussian prior of conftest.py


def test_unguided_ensemble_matches_gaussian_prior(gaussian_prior, oracle):
    """2000 members of the default solver (dpmpp_2m, 32 evaluations) reproduce N(mean, cov).

    Sampling error: the mean's z-scores are N(0, 1/2000), so max |z| over 64 values
    is ~0.07; the solver's own error inflates the variance by 2-4 % (measured per
    mode on this grid), which the variance bound allows.
    """
    mean, cov, den = gaussian_prior
    ens = sample(den, shape=SHAPE, members=2000)
    s = oracle.z_scores(ens, mean, cov)
    assert s["max_z"] < 0.12 and s["rms_z"] < 0.045
    assert s["cov_rel"] < 0.12
    assert 0.96 < s["var_ratio"] < 1.07


def test_heun_and_euler_run(gaussian_prior, oracle):
    mean, cov, den = gaussian_prior
    heun = oracle.z_scores(sample(den, shape=SHAPE, members=500, steps=16, solver="heun"), mean, cov)
    euler = oracle.z_scores(sample(den, shape=SHAPE, members=500, steps=32, solver="euler"), mean, cov)
    assert (
        heun["var_ratio"] > 1.0 > euler["var_ratio"]
    )  # Heun over-, Euler under-disperses at ~32 evaluations


def test_member_is_independent_of_ensemble_size_and_batch(gaussian_prior):
    _, _, den = gaussian_prior
    a = sample(den, shape=SHAPE, members=3, seed=11)
    b = sample(den, shape=SHAPE, members=5, seed=11, batch_size=2)
    c = sample(den, shape=SHAPE, members=5, seed=11, batch_size=1)
    torch.testing.assert_close(a, b[:3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(b[0], b[1])
    assert not torch.allclose(a, sample(den, shape=SHAPE, members=3, seed=12))


def test_member_is_independent_of_batch_with_a_network():
    net = UNet(2, 2, cond_channels=1, widths=(8, 16), groups=4)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    den = EDMDenoiser(net).eval()
    cond = torch.randn(4, 1, 8, 16, generator=torch.Generator().manual_seed(1))
    kw = dict(shape=(2, 8, 16), steps=6, seed=5)
    a = sample(den, members=4, cond=cond, batch_size=4, **kw)
    b = sample(den, members=4, cond=cond, batch_size=3, **kw)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    shared = sample(den, members=2, cond=cond[0], **kw)  # one cond for all members
    assert shared.shape == (2, 2, 8, 16) and torch.isfinite(shared).all()


def test_member_generators_are_distinct_and_stable():
    draws = [torch.randn(4, generator=member_generator(0, k)) for k in range(3)]
    assert not torch.equal(draws[0], draws[1])
    assert torch.equal(draws[2], torch.randn(4, generator=member_generator(0, 2)))
    assert not torch.equal(draws[0], torch.randn(4, generator=member_generator(1, 0)))
    with pytest.raises(ModelError):
        member_generator(-1, 0)


def test_shared_generator_is_deterministic(gaussian_prior):
    _, _, den = gaussian_prior
    a = sample(den, shape=SHAPE, members=3, generator_per_member=False, steps=8)
    b = sample(den, shape=SHAPE, members=3, generator_per_member=False, steps=8)
    assert torch.equal(a, b)


def test_shapes_dtype_device_and_progress(gaussian_prior, capsys):
    _, _, den = gaussian_prior
    ens = sample(den, shape=SHAPE, members=2, steps=4, dtype=torch.float64, device="auto", progress=True)
    assert ens.shape == (2, *SHAPE) and ens.dtype == torch.float64 and torch.isfinite(ens).all()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert ens.device.type == expected
    assert "sampling" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(shape=(4, 8)), "channels, lat, lon"),
        (dict(members=0), "members"),
        (dict(solver="rk4"), "unknown solver"),
        (dict(guidance="ddrm"), "unknown guidance"),
        (dict(batch_size=-1), "batch_size"),
        (dict(dtype=torch.bfloat16), "float32"),
        (dict(cond=torch.zeros(3, 1, 4, 8), members=2), "cond has 3 rows"),
    ],
)
def test_sample_rejects_bad_arguments(gaussian_prior, kw, match):
    _, _, den = gaussian_prior
    args = dict(shape=SHAPE, members=2, steps=2) | kw
    with pytest.raises(ModelError, match=match):
        sample(den, **args)


def test_training_mode_dropout_warns():
    net = UNet(1, 1, widths=(4, 8), groups=2, dropout=0.1)
    with pytest.warns(UserWarning, match="eval"):
        sample(EDMDenoiser(net), shape=(1, 4, 8), steps=2)


@pytest.mark.parametrize("guidance", [None, "diag-fwd", "mmps"])
def test_antithetic_pairs_mirror_and_cancel_the_noise_for_a_gaussian(gaussian_prior, observed, guidance):
    """Gaussian prior, linear H: the sampler is affine in its starting noise, so every antithetic pair has the
    same mean whatever the seed (the sampler's own mean), while independent members scatter.  (MMPS's
    truncated conjugate gradients make it slightly non-linear: its pairs agree to a few hundredths.)"""
    _, _, den = gaussian_prior
    terms = [observed[0]] if guidance else []
    kw = dict(shape=SHAPE, terms=terms, guidance=guidance, members=4, steps=16)
    a = sample(den, seed=1, antithetic=True, **kw).double()
    b = sample(den, seed=2, antithetic=True, **kw).double()
    pair_means = torch.stack([a[0:2].mean(0), a[2:4].mean(0), b[0:2].mean(0), b[2:4].mean(0)])
    indep = sample(den, seed=1, **kw).double()
    scatter = float((indep[0:2].mean(0) - indep[2:4].mean(0)).abs().max())
    assert scatter > 0.1
    assert float((pair_means - pair_means[0]).abs().max()) < (0.1 * scatter if guidance == "mmps" else 1e-4)
    # member 2j is the independent run's member 2j; member 2j + 1 its mirror: reproducible by construction
    assert torch.allclose(a[0], indep[0]) and torch.allclose(a[2], indep[2])
    one = sample(den, seed=1, antithetic=True, **{**kw, "members": 3}).double()
    assert torch.allclose(one, a[:3], atol=1e-5)  # independent of the ensemble size (an odd last member is unpaired)


def test_antithetic_needs_per_member_generators(gaussian_prior):
    _, _, den = gaussian_prior
    with pytest.raises(ModelError, match="antithetic=True needs generator_per_member=True"):
        sample(den, shape=SHAPE, members=2, steps=2, antithetic=True, generator_per_member=False)
    with pytest.raises(ModelError, match="antithetic must be True or False; got .no.. Fix"):
        sample(den, shape=SHAPE, members=2, steps=2, antithetic="no")
