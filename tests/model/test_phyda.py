"""The PhyDA network's conditioning, and adding observation inputs to a trained denoiser."""

import pytest
import torch

from xphyda.errors import ModelError
from xphyda.model.phyda import PhydaNet, with_observation_inputs

C = 3


def _net(**kw):
    torch.manual_seed(0)
    return PhydaNet(C, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, centred=True, **kw)


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x, b, y = (torch.randn(2, C, 8, 16, generator=g) for _ in range(3))
    mask = (torch.rand(2, C, 8, 16, generator=g) < 0.2).float()
    return x, b, y * mask, mask


def _perturb(net):
    """Random weights everywhere (a fresh U-Net's output convolutions are zero, which hides too much)."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def test_denoiser_obs_appends_y_and_mask_to_the_conditioning():
    x, b, y, m = _inputs()
    plain, seeing = _net(), _net(denoiser_obs=True)
    cond, recon = seeing.condition(b, y, m)
    cond0, recon0 = plain.condition(b, y, m)
    assert cond.shape[1] == cond0.shape[1] + 2 * C == 2 * C + C + 2 + 2 * C
    assert torch.equal(cond[:, -2 * C : -C], y) and torch.equal(cond[:, -C:], m)
    assert torch.equal(recon, recon0)  # same seed, same VRE


def test_denoiser_obs_needs_the_vre():
    with pytest.raises(ModelError, match=r"needs the VRE.*Fix"):
        _net(use_vre=False, denoiser_obs=True)


def test_with_observation_inputs_keeps_the_function_and_leaves_the_input_alone():
    net = _perturb(_net())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    wide = with_observation_inputs(net)
    assert wide.config == {**net.config, "denoiser_obs": True} and not net.config["denoiser_obs"]
    x, b, y, m = _inputs()
    sigma = torch.tensor([0.1, 2.0])
    with torch.no_grad():
        d0, r0 = net(x, sigma, b, y, m)
        d1, r1 = wide(x, sigma, b, y, m)
    assert torch.equal(d0, d1) and torch.equal(r0, r1)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the input network is unchanged
    # the new inputs are live: their weights get gradients, and once non-zero they change the output
    d1, _ = wide(x, sigma, b, y, m)
    ((d1 - x) ** 2).mean().backward()
    stem = wide.denoiser.net.stem.weight
    assert float(stem.grad[:, -2 * C :].abs().sum()) > 0
    with torch.no_grad():
        stem[:, -2 * C :].normal_(0, 0.1)
        d2, _ = wide(x, sigma, b, y, m)
    assert not torch.allclose(d2, d0)


def test_with_observation_inputs_refuses_what_it_cannot_do():
    with pytest.raises(ModelError, match="has no VRE"):
        with_observation_inputs(_net(use_vre=False))
    with pytest.raises(ModelError, match="sees the observations already"):
        with_observation_inputs(_net(denoiser_obs=True))


def test_a_checkpoint_rebuilds_a_network_that_sees_the_observations(tmp_path):
    from xphyda.model.checkpoint import architecture_card, load_model, save_checkpoint

    net = with_observation_inputs(_perturb(_net()))
    save_checkpoint(tmp_path / "m", {"net": net.state_dict()}, {"name": "m", **architecture_card(net)})
    twin, card = load_model(tmp_path / "m", device="cpu")
    assert card["architecture"]["denoiser_obs"] is True and twin.config == net.config
    x, b, y, m = _inputs()
    with torch.no_grad():
        assert torch.equal(twin(x, torch.ones(2), b, y, m)[0], net(x, torch.ones(2), b, y, m)[0])


def test_an_older_card_without_the_key_builds_the_plain_network():
    from xphyda.model.checkpoint import architecture_card, build_from_card

    card = architecture_card(_net())
    del card["architecture"]["denoiser_obs"]
    assert build_from_card(card).config["denoiser_obs"] is False
