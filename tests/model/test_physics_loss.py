"""The physics term: correct residuals, relative to the truth's own, and gradients reach the weights."""

import numpy as np
import pytest
import torch

from xphyda.errors import ModelError
from xphyda.model.physics_loss import PhysicsLoss, physics_weight
from xphyda.physics.operators import omega_from_continuity

LAT = np.linspace(87.5, -87.5, 36)
LON = np.arange(0, 360, 5.0)
LEV = [300.0, 500.0, 850.0]


def balanced_state(seed=0):
    """u, v from a random smooth field, w from continuity, z and t hydrostatic-ish; in SI."""
    rng = np.random.default_rng(seed)
    phi, lam = np.meshgrid(np.deg2rad(LAT), np.deg2rad(LON), indexing="ij")
    u = np.stack([(10 + 5 * k) * np.cos(phi) + rng.normal() * np.sin(2 * lam) * np.cos(phi) ** 2 for k in range(3)])
    v = np.stack([3 * np.sin(lam + k) * np.cos(phi) ** 2 * np.sin(phi) for k in range(3)])
    w = omega_from_continuity(u, v, LAT, LON, np.array(LEV) * 100)
    t = np.stack([230.0, 255.0, 280.0])[:, None, None] + 0 * phi
    z = np.stack([9000.0, 5500.0, 1400.0])[:, None, None] * 9.80665 + 0 * phi
    return np.concatenate([u, v, w, z, t])  # 15 channels


INDEX = {"u": [0, 1, 2], "v": [3, 4, 5], "w": [6, 7, 8], "z": [9, 10, 11], "t": [12, 13, 14]}


def make_loss(laws=("continuity", "hydrostatic", "geostrophic"), state=None):
    state = balanced_state() if state is None else state
    mean = state.mean((1, 2))
    std = state.std((1, 2))
    std = np.where(std < 1e-9, 1.0, std)  # constant channels (z, t here)
    return PhysicsLoss(lat=LAT, lon=LON, levels_hpa=LEV, index=INDEX, mean=mean, std=std, laws=laws), mean, std


def normalise(state, mean, std):
    return torch.as_tensor(((state - mean[:, None, None]) / std[:, None, None])[None], dtype=torch.float32)


def test_truth_with_its_own_omega_has_zero_continuity_residual():
    loss, mean, std = make_loss(["continuity"])
    x = normalise(balanced_state(), mean, std)
    r = loss.residuals(x)["continuity"]
    scale = 1e-6  # typical divergence of this field is ~1e-6 s-1
    assert float(r.abs().max()) < 1e-4 * scale * 10  # float32 round trip of normalisation only


def test_loss_is_zero_at_the_truth_and_positive_when_perturbed():
    loss, mean, std = make_loss()
    x = normalise(balanced_state(), mean, std)
    total, parts = loss(x, x)
    assert float(total) == 0.0
    noisy = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    total, parts = loss(noisy, x)
    assert all(float(p) > 0 for p in parts.values()), parts


def test_only_excess_over_truth_is_penalised():
    """A state whose residual is below the truth's gets no push (no over-balancing)."""
    loss, mean, std = make_loss(["geostrophic"])
    truth = normalise(balanced_state(), mean, std)
    # the truth is far from geostrophic (z is flat): a more balanced candidate is not penalised
    candidate = truth.clone()
    candidate[:, INDEX["u"]] = candidate[:, INDEX["u"]] * 0.5
    _, parts = loss(candidate, truth)
    assert float(parts["geostrophic"]) == 0.0


def test_physics_gradient_reaches_network_weights():
    torch.manual_seed(0)
    loss, mean, std = make_loss()
    truth = normalise(balanced_state(), mean, std)
    net = torch.nn.Conv2d(15, 15, 3, padding=1)
    denoised = truth + net(truth)
    total, _ = loss(denoised, truth)
    total.sum().backward()
    g = net.weight.grad
    assert g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0


def test_weight_favours_low_noise():
    s = torch.tensor([0.0, 1.0, 10.0])
    w = physics_weight(s)
    assert w[0] == 1.0 and abs(float(w[1]) - 0.5) < 1e-7 and float(w[2]) < 0.01


def test_missing_variables_are_named():
    with pytest.raises(ModelError, match="w"):
        PhysicsLoss(lat=LAT, lon=LON, levels_hpa=LEV, index={"u": [0, 1, 2], "v": [3, 4, 5]},
                    mean=np.zeros(6), std=np.ones(6), laws=["continuity"])
