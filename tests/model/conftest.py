"""Fixtures for the torch model tests: a small Gaussian prior and linear observations.

The prior lives on a (2, 4, 8) state (64 numbers): a squared-exponential
correlation in latitude and (periodic) longitude, two correlated channels and
a small nugget.  Its posterior given ``y = H x + e`` is known in closed form.
"""

from __future__ import annotations

import math

import pytest
import torch

from xphyda.model.guidance import ObsTerm
from xphyda.model.precond import GaussianDenoiser

SHAPE = (2, 4, 8)


def prior_moments(shape=SHAPE, *, length: float = 1.5, chan_corr: float = 0.6, nugget: float = 0.05):
    """Mean and covariance (float64) of a smooth Gaussian field on ``shape``."""
    c, h, w = shape
    i = torch.arange(h, dtype=torch.float64)
    j = torch.arange(w, dtype=torch.float64)
    dlat = i[:, None] - i[None, :]
    dlon = w / math.pi * torch.sin(math.pi * (j[:, None] - j[None, :]) / w)  # chord: PSD on the circle
    k_lat = torch.exp(-0.5 * (dlat / length) ** 2)
    k_lon = torch.exp(-0.5 * (dlon / length) ** 2)
    k_chan = torch.full((c, c), chan_corr, dtype=torch.float64).fill_diagonal_(1.0)
    std = torch.linspace(0.7, 1.3, c, dtype=torch.float64)
    k_chan = k_chan * std[:, None] * std[None, :]
    cov = torch.kron(k_chan, torch.kron(k_lat, k_lon))
    cov = cov + nugget * torch.eye(c * h * w, dtype=torch.float64)
    mean = 0.3 * torch.sin(torch.arange(c * h * w, dtype=torch.float64) * 2 * math.pi / (h * w)).reshape(
        shape
    )
    return mean, cov


def selection(shape, m: int, *, seed: int = 1):
    """Observe ``m`` random points of the flattened state: (matrix, H, HT)."""
    d = math.prod(shape)
    idx = torch.randperm(d, generator=torch.Generator().manual_seed(seed))[:m].sort().values
    mat = torch.zeros(m, d, dtype=torch.float64)
    mat[torch.arange(m), idx] = 1.0

    def H(x):
        return x.flatten(1)[:, idx]

    def HT(u):
        return (
            torch.zeros(u.shape[0], d, dtype=u.dtype, device=u.device)
            .index_add(1, idx, u)
            .reshape(-1, *shape)
        )

    return mat, H, HT


def posterior_moments(mean, cov, mat, r, y):
    """Closed-form Gaussian posterior with ``K = C H^T (H C H^T + R)^-1``."""
    mu = mean.flatten()
    s = mat @ cov @ mat.T + torch.diag(r)
    k = torch.linalg.solve(s, mat @ cov).T
    post_mean = mu + k @ (y - mat @ mu)
    post_cov = cov - k @ mat @ cov
    return post_mean, 0.5 * (post_cov + post_cov.T)


@pytest.fixture(scope="session")
def gaussian_prior():
    mean, cov = prior_moments()
    return mean, cov, GaussianDenoiser(mean, cov)


@pytest.fixture(scope="session")
def observed(gaussian_prior):
    """Twelve observed points with error variance 0.05, drawn from the prior."""
    mean, cov, _ = gaussian_prior
    mat, H, HT = selection(SHAPE, 12)
    r = torch.full((12,), 0.05, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    truth = mean.flatten() + torch.linalg.cholesky(cov) @ torch.randn(
        cov.shape[0], generator=g, dtype=torch.float64
    )
    y = mat @ truth + r.sqrt() * torch.randn(12, generator=g, dtype=torch.float64)
    post_mean, post_cov = posterior_moments(mean, cov, mat, r, y)
    term = ObsTerm(y.float(), H, HT, r.float())
    return term, post_mean, post_cov


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: these problems are small, and on a shared 2-core
    machine two threads spin against each other (measured: 5-20x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _z_scores(ens: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> dict[str, float]:
    """Ensemble mean error in units of the target standard deviation, and covariance errors."""
    e = ens.double().flatten(1)
    em, ec = e.mean(0), torch.cov(e.T)
    z = (em - mean.flatten()) / cov.diagonal().sqrt()
    return {
        "max_z": float(z.abs().max()),
        "rms_z": float(z.pow(2).mean().sqrt()),
        "cov_rel": float(torch.linalg.norm(ec - cov) / torch.linalg.norm(cov)),
        "var_ratio": float((ec.diagonal() / cov.diagonal()).mean()),
    }


@pytest.fixture(scope="session")
def oracle():
    """Helpers for the Gaussian oracle (fixtures rather than imports: every test folder has a conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        shape=SHAPE,
        z_scores=_z_scores,
        selection=selection,
        posterior_moments=posterior_moments,
        prior_moments=prior_moments,
    )
