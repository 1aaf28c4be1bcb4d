"""Spread calibration: a reliable ensemble keeps its spread, a wide one is shrunk, the mean never moves."""

import pytest
import torch

from xphyda.errors import ModelError
from xphyda.model.spread import apply_spread_factor, spread_factor


def ensembles(width: float, cases=300, members=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(cases, 2, 4, 8, generator=g)
    ens = width * torch.randn(cases, members, 2, 4, 8, generator=g)
    return ens, truth


@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
def test_factor_restores_a_spread_skill_ratio_of_one(width):
    ens, truth = ensembles(width)
    w = torch.ones(4)
    f = spread_factor(ens, truth, w)
    fixed = torch.stack([apply_spread_factor(e, f) for e in ens])
    again = spread_factor(fixed, truth, w)
    assert torch.allclose(again, torch.ones(2), atol=0.02), again
    # a reliable ensemble of iid members: factor near 1; a wide one: below
    if width == 1.0:
        assert torch.allclose(f, torch.ones(2), atol=0.05)
    else:
        assert bool(((f < 1) if width > 1 else (f > 1)).all())


def test_the_ensemble_mean_is_unchanged_and_input_untouched():
    ens, _ = ensembles(2.0)
    e = ens[0].clone()
    out = apply_spread_factor(e, torch.tensor([0.5, 0.8]))
    assert torch.equal(e, ens[0])
    assert torch.allclose(out.mean(0), e.mean(0), atol=1e-6)
    assert torch.allclose(out.std(0), e.std(0) * torch.tensor([0.5, 0.8]).reshape(2, 1, 1), rtol=1e-5)


def test_bad_shapes_and_factors_are_model_errors():
    ens, truth = ensembles(1.0, cases=3)
    with pytest.raises(ModelError, match="do not match"):
        spread_factor(ens, truth[:2], torch.ones(4))
    with pytest.raises(ModelError, match="at least 2 members"):
        spread_factor(ens[:, :1], truth, torch.ones(4))
    with pytest.raises(ModelError, match="one positive value"):
        apply_spread_factor(ens[0], torch.tensor([1.0]))
    with pytest.raises(ModelError, match="one positive value"):
        apply_spread_factor(ens[0], torch.tensor([1.0, -1.0]))


def test_degenerate_channels_keep_their_members_and_factors_are_bounded():
    truth = torch.zeros(4, 2, 4, 8)
    ens = torch.zeros(4, 3, 2, 4, 8)
    ens[:, :, 1] = 1e-3 * torch.randn(4, 3, 4, 8, generator=torch.Generator().manual_seed(0))
    truth[:, 1] = 5.0  # channel 1: a tiny spread, a huge error
    f = spread_factor(ens, truth, torch.ones(4))
    assert float(f[0]) == 1.0 and float(f[1]) == 10.0
