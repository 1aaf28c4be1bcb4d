"""The balance step: residuals back to the truth's level, by the smallest change, in the right channels."""

import numpy as np
import pytest
import torch

from xphyda.errors import ModelError
from xphyda.model.balance import BALANCE_LAWS, Balance, balance_statistics
from xphyda.physics.operators import divergence, vorticity

from test_physics_loss import INDEX, LAT, LEV, balanced_state, make_loss, normalise

LAYERS = len(LEV) - 1


def hydrostatic_state():
    """``balanced_state`` with z integrated hydrostatically from t (so both laws hold)."""
    state = balanced_state()
    g, rd = 9.80665, 287.04749
    p = np.array(LEV) * 100
    t = state[INDEX["t"]]
    z = state[INDEX["z"]].copy()  # 300, 500, 850 hPa: integrate upward from 850 hPa
    for k in (1, 0):
        z[k] = z[k + 1] + rd * 0.5 * (t[k] + t[k + 1]) * np.log(p[k + 1] / p[k])
    state[INDEX["z"]] = z
    return state


def setup(laws=BALANCE_LAWS, divergence=True):
    state = hydrostatic_state()
    loss, mean, std = make_loss(("continuity", "hydrostatic"), state=state + 0.0)
    truth = normalise(state, mean, std).double()
    res = loss.residuals(truth)
    target = {law: res[law][0] for law in laws}  # the truth's own residual (rounding level)
    tol = {"continuity": [1e-8] * LAYERS, "hydrostatic": [0.5] * LAYERS}
    spread = np.ones(15)
    div = [2e-6] * len(LEV) if divergence else None
    return Balance(loss, target=target, tolerance=tol, spread=spread, laws=laws, divergence_spread=div), truth, loss


def noisy(truth, scale=0.05, seed=0):
    return truth + scale * torch.randn(truth.shape, generator=torch.Generator().manual_seed(seed), dtype=truth.dtype)


def test_the_analytic_truth_is_balanced_and_left_alone():
    bal, truth, _ = setup()
    out = bal(truth)
    assert torch.allclose(out, truth, atol=1e-9)


@pytest.mark.parametrize("law", BALANCE_LAWS)
def test_residual_falls_to_the_tolerance_and_only_its_channels_move(law):
    bal, truth, loss = setup(laws=(law,))
    x = noisy(truth)
    before = x.clone()
    out = bal(x)
    assert torch.equal(x, before)  # input untouched
    r_in, r_out = bal.rms(x)[law], bal.rms(out)[law]
    tol = torch.as_tensor([1e-8 if law == "continuity" else 0.5] * LAYERS, dtype=torch.float64)
    assert bool((r_out < 0.05 * r_in).all()), (r_in, r_out)
    assert bool((r_out < 3 * tol).all()), (r_out, tol)
    moved = (out - x).abs().amax((0, 2, 3)) > 0
    allowed = {"continuity": INDEX["u"] + INDEX["v"] + INDEX["w"], "hydrostatic": INDEX["z"] + INDEX["t"]}[law]
    assert set(np.flatnonzero(moved.numpy())) <= set(allowed)
    assert moved[allowed].any()


def test_the_wind_change_is_mostly_divergent():
    """The wind moves along the adjoint of the discrete divergence: a discrete gradient, curl-free up to the
    collocated finite-volume scheme (measured: rms vorticity 12 % of rms divergence here)."""
    bal, truth, loss = setup(laws=("continuity",))
    x = noisy(truth)
    out = bal(x)
    std = loss.std.double()
    du = (out - x)[0, INDEX["u"]] * std[INDEX["u"], None, None]
    dv = (out - x)[0, INDEX["v"]] * std[INDEX["v"], None, None]
    assert float(du.abs().max()) > 0
    zeta = vorticity(du.numpy(), dv.numpy(), loss.grid)
    delta = divergence(du.numpy(), dv.numpy(), loss.grid)
    assert np.sqrt(np.mean(zeta**2)) < 0.2 * np.sqrt(np.mean(delta**2))


def test_balancing_does_not_move_states_away_from_a_balanced_truth():
    """A projection onto constraints the truth satisfies: the S^-1-weighted error cannot grow."""
    bal, truth, _ = setup(laws=("hydrostatic",))
    for seed in range(3):
        x = noisy(truth, seed=seed)
        err_in = float(((x - truth) ** 2).sum())
        err_out = float(((bal(x) - truth) ** 2).sum())
        assert err_out < err_in


def test_statistics_round_trip():
    state = hydrostatic_state()
    loss, mean, std = make_loss(("continuity", "hydrostatic"), state=state + 0.0)
    batches = [noisy(normalise(state, mean, std).double(), seed=s) for s in range(3)]
    stats = balance_statistics(batches, loss)
    assert stats["continuity.target"].shape == (LAYERS, LAT.size, 72)
    assert stats["hydrostatic.tolerance"].shape == (LAYERS,)
    assert bool((stats["hydrostatic.tolerance"] > 0).all())
    assert stats["divergence_spread"].shape == (len(LEV),)
    bal = Balance.from_statistics(loss, stats, spread=np.ones(15), laws=BALANCE_LAWS)
    out = bal(batches[0])
    assert out.shape == batches[0].shape and bool(torch.isfinite(out).all())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"laws": ("geostrophic",)}, "geostrophic"),
        ({"laws": ()}, "non-empty"),
        ({"tolerance": {"continuity": [1.0], "hydrostatic": [1.0, 1.0]}}, "one per layer"),
        ({"spread": np.ones(3)}, "one per channel"),
        ({"spread": -np.ones(15)}, "positive"),
        ({"target": {"continuity": np.zeros((5, 5)), "hydrostatic": 0.0}}, "broadcast"),
        ({"divergence_spread": [1e-6]}, "per level"),
    ],
)
def test_bad_arguments_are_model_errors(kwargs, match):
    loss, _, _ = make_loss(("continuity", "hydrostatic"))
    args = dict(target={"continuity": 0.0, "hydrostatic": 0.0},
                tolerance={"continuity": [1e-8] * LAYERS, "hydrostatic": [1.0] * LAYERS}, spread=np.ones(15))
    args.update(kwargs)
    with pytest.raises(ModelError, match=match):
        Balance(loss, **args)


def test_wrong_state_shape_is_a_model_error():
    bal, truth, _ = setup()
    with pytest.raises(ModelError, match="expected"):
        bal(truth[:, :3])


def test_ensemble_balance_moves_the_uncertain_fields():
    bal, truth, _ = setup()
    g = torch.Generator().manual_seed(1)
    ens = truth.repeat(4, 1, 1, 1)
    ens[:, INDEX["t"]] += 0.5 * torch.randn(ens[:, INDEX["t"]].shape, generator=g, dtype=ens.dtype)  # t uncertain
    out = bal.ensemble(ens)
    dz = (out - ens)[:, INDEX["z"]].abs().max()
    dt = (out - ens)[:, INDEX["t"]].abs().max()
    assert float(dt) > 100 * float(dz)  # the members agree on z: t gives
    assert bool((bal.rms(out)["hydrostatic"] < 0.2 * bal.rms(ens)["hydrostatic"]).all())
    with pytest.raises(ModelError, match="members >= 2"):
        bal.ensemble(ens[:1])


@pytest.mark.parametrize("wind_iters", [10, 150, 600])
def test_continuity_reaches_the_tolerance_whatever_the_wind_iterations(wind_iters):
    """The wind takes what its solve gives; omega takes the rest, so the residual always ends at the tolerance."""
    state = hydrostatic_state()
    loss, mean, std = make_loss(("continuity", "hydrostatic"), state=state + 0.0)
    truth = normalise(state, mean, std).double()
    bal = Balance(loss, target={"continuity": loss.residuals(truth)["continuity"][0]},
                  tolerance={"continuity": [1e-8] * LAYERS}, spread=np.ones(15), laws=("continuity",),
                  divergence_spread=[2e-6] * len(LEV), wind_iters=wind_iters)
    x = noisy(truth)
    out = bal(x)
    assert bool(torch.isfinite(out).all())
    assert bool((bal.rms(out)["continuity"] < 3e-8).all()), bal.rms(out)["continuity"]
    moved_wind = (out - x)[:, INDEX["u"] + INDEX["v"]].abs().max()
    assert float(moved_wind) > 0


def test_a_per_point_spread_keeps_a_channel_the_prior_is_sure_of():
    bal, truth, _ = setup(laws=("hydrostatic",), divergence=False)
    x = noisy(truth)
    spread = torch.ones(1, 15, 1, 1, dtype=torch.float64)
    spread[:, INDEX["z"]] = 1e-6  # e.g. z given by the background, t filled by the prior
    out = bal(x, spread=spread)
    assert float((out - x)[:, INDEX["z"]].abs().max()) < 1e-4 * float((out - x)[:, INDEX["t"]].abs().max())
    with pytest.raises(ModelError, match="does not broadcast"):
        bal(x, spread=torch.ones(3))
