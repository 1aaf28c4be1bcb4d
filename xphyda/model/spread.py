"""Ensemble spread calibration: one factor per channel, measured on held-out data.

A diffusion ensemble is reliable only if the learned prior is: after a few
thousand CPU training steps the bundled model's members spread 1.2 to 1.9
times more than the error of their mean (``docs/benchmarks.md``).  The
calibration scales each member's departure from the ensemble mean,

    ``x_k <- xbar + f_c (x_k - xbar)``,

with ``f_c`` per channel chosen on validation cases so that the corrected
spread-skill ratio (:func:`xphyda.metrics.spread_skill_ratio`) is 1 there.  The
ensemble mean is unchanged, so the RMSE of the mean is too; CRPS and the
spread-skill ratio change.  The factors are stored with the model (checkpoint
group ``"calibration"``) and applied by ``assimilate(..., calibrate="auto")``.
"""

from __future__ import annotations

import torch

from ..errors import ModelError

__all__ = ["apply_spread_factor", "spread_factor"]


def spread_factor(ensembles: torch.Tensor, truths: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-channel factor ``1 / SSR`` from ensembles and the truths they estimate.

    Parameters
    ----------
    ensembles : torch.Tensor
        ``(cases, members, C, lat, lon)``, at least 2 members.
    truths : torch.Tensor
        ``(cases, C, lat, lon)``.
    weights : torch.Tensor
        ``(lat,)`` area weights (e.g. cos latitude).

    Returns
    -------
    torch.Tensor
        ``(C,)``: ``sqrt(mean squared error of the mean) / (sqrt((M + 1) / M) sqrt(mean variance))``,
        clipped to [0.1, 10]; 1 for a channel with neither spread nor error.

    Examples
    --------
    Members and truth drawn from the same distribution are reliable (factor 1);
    members twice as wide need shrinking:

    >>> g = torch.Generator().manual_seed(0)
    >>> truth = torch.randn(400, 1, 4, 8, generator=g)
    >>> ens = torch.randn(400, 4, 1, 4, 8, generator=g)
    >>> round(float(spread_factor(ens, truth, torch.ones(4))), 1), round(float(spread_factor(2 * ens, truth, torch.ones(4))), 1)
    (1.0, 0.6)
    """
    if ensembles.ndim != 5 or truths.ndim != 4 or ensembles.shape[0] != truths.shape[0] \
            or ensembles.shape[2:] != truths.shape[1:]:
        raise ModelError(
            f"ensembles {tuple(ensembles.shape)} and truths {tuple(truths.shape)} do not match; expected "
            "(cases, members, C, lat, lon) and (cases, C, lat, lon)"
        )
    m = ensembles.shape[1]
    if m < 2:
        raise ModelError(f"a spread needs at least 2 members, got {m}")
    w = (weights / weights.sum()).to(device=ensembles.device, dtype=ensembles.dtype).reshape(1, 1, -1, 1)
    mean = ensembles.mean(1)
    mse = (((mean - truths) ** 2) * w).sum(-2).mean((0, -1))
    var = ((ensembles.var(1, unbiased=True)) * w).sum(-2).mean((0, -1))
    spread = ((m + 1) / m) ** 0.5 * var.sqrt()
    factor = mse.sqrt() / spread.clamp_min(1e-30)
    # a channel with neither spread nor error (e.g. constant) keeps its members; others within [0.1, 10]
    tiny = (spread < 1e-12) & (mse.sqrt() < 1e-12)
    return torch.where(tiny, torch.ones_like(factor), factor.clamp(0.1, 10.0))


def apply_spread_factor(ens: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``xbar + f (x_k - xbar)`` per channel; ``ens`` is ``(members, C, lat, lon)``.

    Examples
    --------
    >>> ens = torch.tensor([[[[0.0]]], [[[2.0]]]])
    >>> apply_spread_factor(ens, torch.tensor([0.5])).flatten().tolist()
    [0.5, 1.5]
    """
    factor = torch.as_tensor(factor, dtype=ens.dtype, device=ens.device).reshape(1, -1, 1, 1)
    if factor.shape[1] != ens.shape[1] or not bool((factor > 0).all()):
        raise ModelError(
            f"spread factor has {factor.shape[1]} values for {ens.shape[1]} channels; expected one positive value each"
        )
    mean = ens.mean(0, keepdim=True)
    return mean + factor * (ens - mean)
