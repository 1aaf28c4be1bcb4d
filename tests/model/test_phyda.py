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
    for key in ("denoiser_obs", "static", "grid", "attention", "recon_centre"):
        del card["architecture"][key]
    net = build_from_card(card)
    assert net.config["denoiser_obs"] is False and net.config["static"] == [] and net.config["attention"] is False
    assert net.config["recon_centre"] is False and net.denoiser.recon_share() is None


# --- adapt: static fields, attention, dropping the observation inputs ---------------------------------------


def _lsm(seed=3):
    return (torch.rand(8, 16, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_adapt_adds_static_fields_and_attention_keeping_the_function():
    from xphyda.model.phyda import adapt

    net = _perturb(_net())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lat = torch.linspace(80, -80, 8)
    big = adapt(net, static={"lsm": _lsm(), "latitude": lat[:, None].expand(8, 16)}, lat=lat, attention=True)
    assert big.config == {**net.config, "static": ["lsm", "latitude"], "grid": [8, 16], "attention": True}
    x, b, y, m = _inputs()
    sigma = torch.tensor([0.1, 2.0])
    with torch.no_grad():
        d0, r0 = net(x, sigma, b, y, m)
        d1, r1 = big(x, sigma, b, y, m)
    assert torch.allclose(d0, d1, atol=1e-6) and torch.equal(r0, r1)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    cond, _ = big.condition(b, y, m)  # the standardised fields are the last conditioning channels
    assert torch.allclose(cond[0, -1].mean(dim=1), torch.linspace(1, -1, 8) * cond[0, -1, 0, 0], atol=1e-5)
    assert torch.equal(cond[0, -2] > 0, _lsm() > 0)
    # everything new is trainable: gradients reach the new stem columns and the attention block
    ((big(x, sigma, b, y, m)[0] - x) ** 2).mean().backward()
    assert float(big.denoiser.net.stem.weight.grad[:, -2:].abs().sum()) > 0
    assert float(big.denoiser.net.attn.proj.weight.grad.abs().sum()) > 0


def test_adapt_drops_the_observation_inputs_as_if_their_weights_were_zero():
    from xphyda.model.phyda import adapt

    net = _perturb(_net(denoiser_obs=True))
    zeroed = _perturb(_net(denoiser_obs=True))
    zeroed.load_state_dict(net.state_dict())
    with torch.no_grad():
        zeroed.denoiser.net.stem.weight[:, -2 * C :] = 0
    small = adapt(net, denoiser_obs=False)
    assert small.config["denoiser_obs"] is False and net.config["denoiser_obs"] is True
    assert small.denoiser.net.stem.weight.shape[1] == net.denoiser.net.stem.weight.shape[1] - 2 * C
    x, b, y, m = _inputs()
    with torch.no_grad():
        assert torch.allclose(small(x, torch.ones(2), b, y, m)[0], zeroed(x, torch.ones(2), b, y, m)[0], atol=1e-6)
        assert not torch.allclose(small(x, torch.ones(2), b, y, m)[0], net(x, torch.ones(2), b, y, m)[0], atol=1e-4)


def test_adapt_keeps_the_static_fields_it_has_when_adding_more():
    from xphyda.model.phyda import adapt

    net = adapt(_perturb(_net()), static={"lsm": _lsm()})
    more = adapt(net, static={"orography": _lsm(5) * 3.0}, denoiser_obs=True)
    assert more.config["static"] == ["lsm", "orography"]
    assert torch.equal(more.static_fields[0], net.static_fields[0])
    x, b, y, m = _inputs()
    with torch.no_grad():
        assert torch.allclose(more(x, torch.ones(2), b, y, m)[0], net(x, torch.ones(2), b, y, m)[0], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"static": {"lsm": torch.ones(8, 16)}}, r"constant over the grid.*Fix"),
        ({"static": {"lsm": torch.rand(4, 16)}}, r"shape \(4, 16\).*model grid is \(8, 16\)"),
        ({"static": {"lsm": torch.full((8, 16), float("nan"))}}, r"non-finite.*Fix"),
        ({"denoiser_obs": "yes"}, r"denoiser_obs must be True or False; got .yes.. Fix"),
        ({"attention": "no"}, r"attention must be True or False; got .no.. Fix"),
        ({"static": ["lsm"]}, r"static must map field names.*got list.*Fix"),
        ({"static": {"lsm": torch.rand(2, 8, 16)}}, r"static field 'lsm' has shape \(2, 8, 16\).*Fix"),
        ({"static": {"lsm": torch.rand(8, 16)}, "lat": [0.0, 1.0]}, r"8 rows but 2 latitudes.*Fix"),
        ({"denoiser_obs": False}, r"does not see the observations already.*Fix"),
    ],
)
def test_adapt_explains_bad_requests(kwargs, match):
    from xphyda.model.phyda import adapt

    net = adapt(_net(), static={"other": _lsm()})  # fixes the grid at 8 x 16
    with pytest.raises(ModelError, match=match):
        adapt(net, **kwargs)


@pytest.mark.parametrize("flag", ["use_vre", "centred", "denoiser_obs", "attention", "recon_centre"])
def test_network_flags_must_be_booleans(flag):
    # "False" is truthy: taken as given it would silently build the other architecture
    with pytest.raises(ModelError, match=rf"PhydaNet: {flag} must be True or False; got 'False'. Fix"):
        PhydaNet(C, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, **{flag: "False"})


def test_adapt_refuses_what_it_cannot_do():
    from xphyda.model.phyda import adapt

    with pytest.raises(ModelError, match=r"static fields \['lsm'\] already.*Fix"):
        adapt(adapt(_net(), static={"lsm": _lsm()}), static={"lsm": _lsm(4)})
    with pytest.raises(ModelError, match=r"cannot remove.*Fix"):
        adapt(adapt(_net(), attention=True), attention=False)
    with pytest.raises(ModelError, match=r"needs the VRE.*Fix"):
        adapt(_net(use_vre=False), denoiser_obs=True)
    with pytest.raises(ModelError, match=r"grid=\(nlat, nlon\).*Fix"):
        _net(static=["lsm"])
    with pytest.raises(ModelError, match=r"the string 'lsm'.*Fix: static=\['lsm'\]"):
        _net(static="lsm", grid=(8, 16))
    with pytest.raises(ModelError, match=r"has attention already.*Fix"):
        adapt(adapt(_net(), attention=True), attention=True)
    with pytest.raises(ModelError, match=r"sees the observations already.*Fix"):
        adapt(_net(denoiser_obs=True), denoiser_obs=True)
    with pytest.raises(ModelError, match=r"\(5, 16\) grid, which the denoiser cannot run on.*Fix"):
        adapt(_net(), static={"lsm": _lsm()[:5]})


def test_adapt_adds_a_movable_centre_keeping_the_function_and_the_fine_tune_can_move_it(tmp_path):
    from xphyda.model.checkpoint import architecture_card, load_model, save_checkpoint
    from xphyda.model.phyda import adapt

    net = _perturb(_net(static=["lsm"], grid=(8, 16)))
    moved = adapt(net, recon_centre=True)
    assert moved.config == {**net.config, "recon_centre": True}
    x, b, y, m = _inputs()
    sigma = torch.tensor([0.1, 2.0])
    with torch.no_grad():
        assert torch.equal(moved(x, sigma, b, y, m)[0], net(x, sigma, b, y, m)[0])
    ((moved(x, sigma, b, y, m)[0] - x) ** 2).mean().backward()
    assert float(moved.denoiser.recon_pull.grad.abs().min()) > 0
    with torch.no_grad():  # a share of 1 puts the centre on the reconstruction: at huge noise D is it, plus F
        moved.denoiser.recon_pull.fill_(1 / moved.denoiser.RECON_RATE)
        for p in moved.denoiser.net.head.parameters():
            p.zero_()
        d, r = moved(x, torch.full((2,), 1e6), b, y, m)
    assert torch.allclose(d, r, atol=1e-3)
    save_checkpoint(tmp_path / "m", {"net": moved.state_dict()}, {"name": "m", **architecture_card(moved)})
    twin, card = load_model(tmp_path / "m", device="cpu")
    assert card["architecture"]["recon_centre"] is True
    assert torch.equal(twin.denoiser.recon_share(), moved.denoiser.recon_share().detach())


def test_adapt_keeps_a_trained_centre_share_when_adding_other_parts():
    from xphyda.model.phyda import adapt

    net = adapt(_perturb(_net()), recon_centre=True)
    with torch.no_grad():
        net.denoiser.recon_pull.copy_(torch.tensor([0.02, 0.05, 0.09]))
    more = adapt(net, static={"lsm": _lsm()}, attention=True, denoiser_obs=True)
    assert torch.equal(more.denoiser.recon_pull, net.denoiser.recon_pull) and more.config["recon_centre"]
    x, b, y, m = _inputs()
    with torch.no_grad():
        assert torch.allclose(more(x, torch.ones(2), b, y, m)[0], net(x, torch.ones(2), b, y, m)[0], atol=1e-6)


def test_adapt_refuses_a_movable_centre_it_cannot_add():
    from xphyda.model.phyda import adapt

    with pytest.raises(ModelError, match=r"has a movable centre already.*Fix"):
        adapt(adapt(_net(), recon_centre=True), recon_centre=True)
    with pytest.raises(ModelError, match=r"not remove one \(and the network has none\)\. Fix"):
        adapt(_net(), recon_centre=False)
    with pytest.raises(ModelError, match=r"use_vre=False, centred=True.*Fix"):
        adapt(_net(use_vre=False), recon_centre=True)
    with pytest.raises(ModelError, match=r"recon_centre must be True or False.*Fix"):
        adapt(_net(), recon_centre=1)
    with pytest.raises(ModelError, match=r"use_vre=True, centred=False.*Fix"):
        PhydaNet(C, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, recon_centre=True)


def test_adapt_keeps_the_precision_of_a_double_network():
    from xphyda.model.phyda import adapt

    net = _perturb(_net()).double()
    big = adapt(net, static={"lsm": _lsm()}, attention=True, denoiser_obs=True)
    assert next(big.parameters()).dtype == torch.float64 and big.static_fields.dtype == torch.float64
    assert torch.equal(big.denoiser.net.stem.weight[:, : net.denoiser.net.stem.weight.shape[1]],
                       net.denoiser.net.stem.weight)  # copied in float64, not through float32
    x, b, y, m = (t.double() for t in _inputs())
    with torch.no_grad():
        assert torch.allclose(big(x, torch.ones(2), b, y, m)[0], net(x, torch.ones(2), b, y, m)[0], atol=1e-12)


def test_a_checkpoint_keeps_the_static_fields_and_checks_the_grid(tmp_path):
    from xphyda.model.checkpoint import architecture_card, load_model, save_checkpoint
    from xphyda.model.phyda import adapt

    net = adapt(_perturb(_net()), static={"lsm": _lsm()}, attention=True)
    save_checkpoint(tmp_path / "m", {"net": net.state_dict()}, {"name": "m", **architecture_card(net)})
    twin, card = load_model(tmp_path / "m", device="cpu")
    assert card["architecture"]["static"] == ["lsm"] and torch.equal(twin.static_fields, net.static_fields)
    x, b, y, m = _inputs()
    with torch.no_grad():
        assert torch.equal(twin(x, torch.ones(2), b, y, m)[0], net(x, torch.ones(2), b, y, m)[0])
    wide = torch.zeros(2, C, 8, 32)
    with pytest.raises(ModelError, match=r"\(8, 32\) grid.*static fields \['lsm'\].*\(8, 16\).*Fix"):
        twin.condition(wide, wide, wide)


def test_standardise_static_weights_by_area():
    from xphyda.model.phyda import standardise_static

    f = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    even = standardise_static(f)
    polar = standardise_static(f, lat=[89.0, 0.0])  # the first row's cells are tiny: the mean is near 0
    assert torch.allclose(even, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    assert float(polar[1, 0]) > -0.2 and float(polar[0, 0]) > 5
