"""Weak-constraint balance of analysed states: mass continuity and hydrostatic balance.

A diffusion analysis is a sample from a learned prior nudged by observations;
nothing forces it to satisfy the laws the true atmosphere satisfies to within
the discretisation.  :class:`Balance` changes each state ``x`` (normalised,
``(B, C, lat, lon)``) as little as it can so that its residuals come back to the
truth's own: in every column, independently,

    ``min_z 1/2 |z|^2 + 1/2 sum_(k, layer) ((r_k(x + S z) - t_k) / tau_k)^2``,  ``delta = S z``,

with ``r_k`` the residual of law ``k`` in SI (the functions of
:mod:`xphyda.physics.kernels`, through
:class:`~xphyda.model.physics_loss.PhysicsLoss`), ``t_k`` the truth's mean
residual there (per layer and grid point, measured on the training states:
on a model's few pressure levels even the truth has a systematic
discretisation residual), ``tau_k`` per layer the truth's RMS departure from
``t_k``, and ``S = diag(s)`` the per-channel prior spread (the denoiser's
``sigma_data``: a channel the prior knows well moves less).

Only channels that keep the problem local to a column move: omega (``w``) for
continuity -- the divergence of the analysed wind is kept, as in the kinematic
method of diagnosing omega -- and ``z`` and ``t`` for the hydrostatic balance,
with humidity (virtual temperature) held fixed.  Both residuals are then affine
in the moving channels with no horizontal coupling, so each column is a small
linear least-squares problem solved exactly: its Jacobian ``J`` (layers x moving
channels) is read off by perturbing whole channels, and
``z = -A^T (I + A A^T)^-1 a0`` with ``A = diag(1/tau) J S``, ``a0 = (r_k(x) - t_k) / tau``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..errors import ModelError
from .guidance import conjugate_gradient
from .physics_loss import PhysicsLoss

__all__ = ["BALANCE_LAWS", "Balance", "balance_statistics"]

BALANCE_LAWS = ("continuity", "hydrostatic")
_MOVES = {"continuity": ("w",), "hydrostatic": ("z", "t")}
_FLOOR = {"continuity": 1e-9, "hydrostatic": 1e-2}  # s-1, m: a tolerance exists even where the truth is exact


class Balance:
    """Bring continuity and hydrostatic residuals of states back to the truth's.

    Parameters
    ----------
    physics : PhysicsLoss
        Carries the grid, levels, channel layout and normalisation; it must
        compute every law in ``laws``.
    target : mapping of str to array_like
        Per law, the truth's mean residual in SI (s-1 or m), shape
        ``(layers, lat, lon)`` or anything that broadcasts to it (0 for none).
    tolerance : mapping of str to sequence of float
        Per law, the truth's RMS departure from ``target``, one value per layer
        (SI).  Values below a floor (1e-9 s-1, 1 cm) are raised to it.
    spread : sequence of float
        Per-channel prior spread ``s`` in normalised units (``C`` values).
    laws : sequence of str
        Some of :data:`BALANCE_LAWS`.

    Examples
    --------
    >>> import numpy as np
    >>> lat, lon = np.linspace(80, -80, 9), np.arange(0, 360, 22.5)
    >>> phys = PhysicsLoss(lat=lat, lon=lon, levels_hpa=[500, 850], index={"u": [0, 1], "v": [2, 3], "w": [4, 5]},
    ...                    mean=np.zeros(6), std=np.ones(6), laws=["continuity"])
    >>> bal = Balance(phys, target={"continuity": 0.0}, tolerance={"continuity": [1e-7]}, spread=[1.0] * 6,
    ...               laws=["continuity"])
    >>> x = torch.randn(2, 6, 9, 16, generator=torch.Generator().manual_seed(0))
    >>> before, after = bal.rms(x)["continuity"], bal.rms(bal(x))["continuity"]
    >>> bool((after < 1e-3 * before).all())
    True
    """

    def __init__(
        self,
        physics: PhysicsLoss,
        *,
        target: Mapping[str, object],
        tolerance: Mapping[str, Sequence[float]],
        spread: Sequence[float],
        laws: Sequence[str] = BALANCE_LAWS,
        divergence_spread: Sequence[float] | None = None,
        wind_iters: int = 150,
    ):
        laws = tuple(laws)
        bad = [law for law in laws if law not in BALANCE_LAWS]
        if bad or not laws:
            raise ModelError(f"balance laws {list(laws)}: expected a non-empty subset of {BALANCE_LAWS}")
        missing = [law for law in laws if law not in physics.laws]
        if missing:
            raise ModelError(f"the physics operator does not compute {missing}; build it with laws={list(laws)}")
        layers, (nlat, nlon) = physics.p.size - 1, physics.area.shape
        self.tau, self.target = {}, {}
        for law in laws:
            tau = torch.as_tensor(list(tolerance.get(law, [])), dtype=torch.float64)
            if tau.numel() != layers or not bool(torch.isfinite(tau).all()):
                raise ModelError(
                    f"balance tolerance for {law!r} has {tau.numel()} finite values, expected one per layer "
                    f"({layers}); take them from the model's balance statistics"
                )
            self.tau[law] = tau.clamp_min(_FLOOR[law]).reshape(1, -1, 1, 1)
            try:
                t = torch.as_tensor(target[law], dtype=torch.float64).broadcast_to((layers, nlat, nlon))
            except (KeyError, RuntimeError) as err:
                raise ModelError(
                    f"balance target for {law!r} must broadcast to (layers, lat, lon) = {(layers, nlat, nlon)}; "
                    f"got {None if law not in target else tuple(torch.as_tensor(target[law]).shape)}"
                ) from err
            self.target[law] = t[None]
        s = torch.as_tensor(list(spread), dtype=torch.float64)
        if s.numel() != physics.mean.numel() or not bool((s > 0).all()):
            raise ModelError(
                f"spread has {s.numel()} values; expected {physics.mean.numel()} positive values, one per channel"
            )
        self.moving = sorted({i for law in laws for key in _MOVES[law] for i in physics.index[key]})
        self.spread = s[self.moving]
        self.physics, self.laws = physics, laws
        self.sd_div, self.wind_iters = None, int(wind_iters)
        if divergence_spread is not None and "continuity" in laws:
            sd = torch.as_tensor(list(divergence_spread), dtype=torch.float64)
            if sd.numel() != layers + 1 or not bool((sd > 0).all()):
                raise ModelError(
                    f"divergence_spread has {sd.numel()} values; expected {layers + 1} positive values (s-1), one per level"
                )
            self.sd_div = sd

    @classmethod
    def from_statistics(
        cls, physics: PhysicsLoss, stats: Mapping[str, torch.Tensor], *, spread, laws: Sequence[str] = ("hydrostatic",)
    ) -> Balance:
        """Build from :func:`balance_statistics`; the wind moves (continuity) when ``divergence_spread`` is there."""
        missing = [f"{law}.{k}" for law in laws for k in ("target", "tolerance") if f"{law}.{k}" not in stats]
        if missing:
            raise ModelError(f"the model's balance statistics lack {missing}; recompute them with balance_statistics")
        return cls(physics, target={law: stats[f"{law}.target"] for law in laws},
                   tolerance={law: stats[f"{law}.tolerance"].tolist() for law in laws}, spread=spread, laws=laws,
                   divergence_spread=stats["divergence_spread"].tolist() if "divergence_spread" in stats else None)

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        """``(r_k(x) - t_k) / tau_k`` of every law, ``(B, rows, lat, lon)``."""
        res = self.physics.residuals(x)
        dev = x.device
        return torch.cat([(res[law] - self.target[law].to(dev)) / self.tau[law].to(dev) for law in self.laws], 1)

    def rms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Area-weighted RMS residual per law, ``(B, layers)`` in SI."""
        res = self.physics.residuals(x)
        area = self.physics.area.double().to(x.device)
        return {law: ((res[law] ** 2) * area).sum((-2, -1)).div(area.sum()).sqrt() for law in self.laws}

    def __call__(self, x: torch.Tensor, *, spread: torch.Tensor | None = None,
                 divergence_spread: torch.Tensor | None = None) -> torch.Tensor:
        """The balanced states, same shape and dtype as ``x`` (a new tensor).

        ``spread`` (normalised, broadcasting to ``(B, C, lat, lon)``) and
        ``divergence_spread`` (s-1, to ``(B, levels, lat, lon)``) replace the
        fixed spreads, e.g. by an ensemble's own spread per grid point.
        """
        if x.ndim != 4 or x.shape[1] != self.physics.mean.numel():
            raise ModelError(
                f"states have shape {tuple(x.shape)}, expected (batch, {self.physics.mean.numel()}, lat, lon)"
            )
        x64 = x.detach().double()
        dev = x.device
        s = self.spread.to(dev).reshape(1, -1, 1, 1) if spread is None else \
            torch.as_tensor(spread, dtype=torch.float64, device=dev).broadcast_to(x.shape)[:, self.moving]
        s = s.broadcast_to((x.shape[0], len(self.moving), *x.shape[2:]))
        sd_div = None
        if self.sd_div is not None:
            sd_div = self.sd_div.to(dev).reshape(1, -1, 1, 1) if divergence_spread is None else \
                torch.as_tensor(divergence_spread, dtype=torch.float64, device=dev)
            sd_div = sd_div.broadcast_to((x.shape[0], self.sd_div.numel(), *x.shape[2:]))
        with torch.no_grad():
            a0 = self._scaled(x64)
            cols = []
            for j, c in enumerate(self.moving):  # affine and local to a column: one step of a whole channel
                step = torch.zeros_like(x64)
                step[:, c] = s[:, j]
                cols.append(self._scaled(x64 + step) - a0)
            if sd_div is not None:  # divergence of each level as an unknown of the continuity rows
                nl, rows = sd_div.shape[1], a0.shape[1]
                first = list(self.laws).index("continuity") * (nl - 1)
                tau = self.tau["continuity"].flatten().to(dev)
                for k in range(nl):
                    col = torch.zeros_like(a0)
                    for layer in (k - 1, k):
                        if 0 <= layer < nl - 1:
                            col[:, first + layer] = 0.5 * sd_div[:, k] / tau[layer]
                    cols.append(col)
            A = torch.stack(cols, -1).permute(0, 2, 3, 1, 4)  # (B, lat, lon, rows, unknowns)
            a = a0.permute(0, 2, 3, 1).unsqueeze(-1)
            eye = torch.eye(A.shape[-2], dtype=A.dtype, device=A.device)
            z = -A.transpose(-1, -2) @ torch.linalg.solve(eye + A @ A.transpose(-1, -2), a)
            z = z.squeeze(-1).permute(0, 3, 1, 2)  # (B, unknowns, lat, lon)
            nm = len(self.moving)
            out = x64.clone()
            out[:, self.moving] += z[:, :nm] * s
        if sd_div is not None:
            self._add_divergent_wind(out, z[:, nm:] * sd_div)
        return out.to(x.dtype)

    def ensemble(self, ens: torch.Tensor) -> torch.Tensor:
        """Balance the members of ``ens`` ``(members, C, lat, lon)`` with the ensemble's own spread.

        Each grid point's change is weighted by the members' standard deviation
        there (of every moving channel, and of the divergence for continuity)
        instead of the fixed prior spread: where the ensemble agrees, a field
        stays; where it is uncertain, it gives.  Measured on the corpus (4 test
        states, 10 % observed, 8 members): with the fixed spread the continuity
        balance put the wind's divergence errors into omega (w RMSE x 2.2 to
        2.6); with the ensemble's spread, w is unchanged and v 2 to 6 % worse,
        while the continuity residual of the mean comes to the truth's.
        """
        if ens.ndim != 4 or ens.shape[0] < 2:
            raise ModelError(f"an ensemble (members >= 2, C, lat, lon) is needed, got shape {tuple(ens.shape)}")
        from ..physics import operators as ops

        e64 = ens.detach().double()
        floor = 1e-3 * self.spread.to(ens.device).min()
        spread = e64.std(0, keepdim=True).clamp_min(floor)
        div = None
        if self.sd_div is not None:
            phys = self.physics
            xs = e64 * phys.std.double().to(ens.device)[:, None, None] + phys.mean.double().to(ens.device)[:, None, None]
            d = ops.divergence(xs[:, phys.index["u"]], xs[:, phys.index["v"]], phys.grid)
            div = d.std(0, keepdim=True).clamp_min(1e-3 * float(self.sd_div.min()))
        return self(ens, spread=spread, divergence_spread=div)

    def _add_divergent_wind(self, out: torch.Tensor, change: torch.Tensor) -> None:
        """Add the smallest wind ``(du, dv)`` (m s-1) per level whose divergence is ``change`` (s-1), in place."""
        from ..physics import operators as ops

        grid, phys = self.physics.grid, self.physics
        iu, iv = phys.index["u"], phys.index["v"]
        std = phys.std.double().to(out.device)

        def D(uv):
            return ops.divergence(uv[:, 0], uv[:, 1], grid)

        def DT(lam):
            with torch.enable_grad():
                uv = torch.zeros((lam.shape[0], 2, *lam.shape[1:]), dtype=lam.dtype, device=lam.device,
                                 requires_grad=True)
                (g,) = torch.autograd.grad((D(uv) * lam).sum(), uv)
            return g

        b = change.flatten(1)
        shape = change.shape
        lam, _ = conjugate_gradient(lambda p: (D(DT(p.reshape(shape))).flatten(1), p), b, iters=self.wind_iters,
                                    tol=1e-6)
        duv = DT(lam.reshape(shape))
        out[:, iu] += duv[:, 0] / std[iu].reshape(1, -1, 1, 1)
        out[:, iv] += duv[:, 1] / std[iv].reshape(1, -1, 1, 1)


def balance_statistics(batches, physics: PhysicsLoss) -> dict[str, torch.Tensor]:
    """What :class:`Balance` needs from the training truth, as tensors for a checkpoint's ``"balance"`` group.

    Parameters
    ----------
    batches : iterable of torch.Tensor
        Normalised true states, ``(B, C, lat, lon)`` each (e.g. 200 training samples in batches).
    physics : PhysicsLoss
        Built with the laws ``"continuity"`` and ``"hydrostatic"`` (and the ``u``, ``v`` channels).

    Returns
    -------
    dict
        ``"<law>.target"`` ``(layers, lat, lon)``: the mean residual (SI);
        ``"<law>.tolerance"`` ``(layers,)``: the area-weighted RMS departure from it;
        ``"divergence_spread"`` ``(levels,)``: the area-weighted RMS divergence (s-1).

    Examples
    --------
    >>> import numpy as np
    >>> lat, lon = np.linspace(80, -80, 9), np.arange(0, 360, 22.5)
    >>> idx = {"u": [0, 1], "v": [2, 3], "w": [4, 5], "z": [6, 7], "t": [8, 9]}
    >>> phys = PhysicsLoss(lat=lat, lon=lon, levels_hpa=[500, 850], index=idx, mean=np.zeros(10), std=np.ones(10),
    ...                    laws=BALANCE_LAWS)
    >>> stats = balance_statistics([torch.randn(3, 10, 9, 16)], phys)
    >>> sorted(stats), tuple(stats["hydrostatic.target"].shape)
    (['continuity.target', 'continuity.tolerance', 'divergence_spread', 'hydrostatic.target', 'hydrostatic.tolerance'], (1, 9, 16))
    """
    from ..physics import operators as ops

    area = physics.area.double()
    res: dict[str, list] = {law: [] for law in BALANCE_LAWS}
    div2, n = None, 0
    for x in batches:
        with torch.no_grad():
            r = physics.residuals(x)
            for law in BALANCE_LAWS:
                res[law].append(r[law].cpu())
            xs = x.double() * physics.std.double()[:, None, None] + physics.mean.double()[:, None, None]
            d = ops.divergence(xs[:, physics.index["u"]], xs[:, physics.index["v"]], physics.grid)
            s = ((d**2) * area).sum((-2, -1)).div(area.sum()).sum(0)
            div2, n = (s if div2 is None else div2 + s), n + x.shape[0]
    if not n:
        raise ModelError("balance_statistics needs at least one batch of true states")
    out = {"divergence_spread": (div2 / n).sqrt().float()}
    for law, parts in res.items():
        r = torch.cat(parts)
        target = r.mean(0)
        out[f"{law}.target"] = target.float()
        out[f"{law}.tolerance"] = (((r - target) ** 2 * area).sum((-2, -1)) / area.sum()).mean(0).sqrt().float()
    return out
