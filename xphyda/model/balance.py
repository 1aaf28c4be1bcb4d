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

Only channels that keep the problem local to a column move: ``z`` and ``t``
for the hydrostatic balance (humidity, hence the virtual-temperature factor,
held fixed) and, for continuity, omega (``w``) and the divergence of the wind
at each level.  Both residuals are then affine in the unknowns with no
horizontal coupling, so each column is a small linear least-squares problem
solved exactly: its Jacobian ``J`` (layers x unknowns) is read off by
perturbing whole channels, and ``z = -A^T (I + A A^T)^-1 a0`` with
``A = diag(1/tau) J S``, ``a0 = (r_k(x) - t_k) / tau``.  The divergence change
asked of each level is then made by the smallest wind change whose discrete
divergence it is (``(du, dv) = D^T lambda``, ``lambda`` from a regularised
conjugate-gradient solve of ``(D D^T + eps) lambda = delta``, after removing
the area mean no wind can change), and whatever that leaves of the continuity
residual is put into omega by a second, omega-only column solve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
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
    divergence_spread : sequence of float, optional
        Per level (s-1): the spread of the wind's divergence.  With it the
        continuity balance also moves the divergent wind; without it only omega.
    wind_iters : int
        Conjugate-gradient iterations of the divergent-wind solve.

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
        wind_iters: int = 50,
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
        self.spread_all = s
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

        Parameters
        ----------
        x : torch.Tensor
            Normalised states ``(B, C, lat, lon)``.
        spread : torch.Tensor, optional
            Normalised spread per channel (and grid point), broadcasting to
            ``(B, C, lat, lon)``; replaces the fixed spread (e.g. the denoiser's
            ``data_std(cond)``, which knows which channels the background lacks).
        divergence_spread : torch.Tensor, optional
            Spread of the divergence (s-1) broadcasting to ``(B, levels, lat, lon)``.

        Returns
        -------
        torch.Tensor
        """
        c = self.physics.mean.numel()
        if x.ndim != 4 or x.shape[1] != c:
            raise ModelError(f"states have shape {tuple(x.shape)}, expected (batch, {c}, lat, lon)")
        dev = x.device
        self.physics.to(dev)
        x64 = x.detach().double()
        full = (x.shape[0], c, *x.shape[2:])
        try:
            s = self.spread_all.to(dev).reshape(1, -1, 1, 1) if spread is None else \
                torch.as_tensor(spread, dtype=torch.float64, device=dev)
            s = s.broadcast_to(full)
            sd_div = None
            if self.sd_div is not None:
                sd_div = self.sd_div.to(dev).reshape(1, -1, 1, 1) if divergence_spread is None else \
                    torch.as_tensor(divergence_spread, dtype=torch.float64, device=dev)
                sd_div = sd_div.broadcast_to((x.shape[0], self.sd_div.numel(), *x.shape[2:]))
        except RuntimeError as err:
            raise ModelError(
                f"spread {tuple(torch.as_tensor(spread).shape) if spread is not None else None} or divergence_spread "
                f"does not broadcast to the states {full}: {err}"
            ) from None
        out = x64.clone()
        z = self._column_solve(out, self.laws, self.moving, s, sd_div)
        if sd_div is not None:
            nm = len(self.moving)
            self._add_divergent_wind(out, z[:, nm:] * sd_div)
            w = self.physics.index["w"]
            self._column_solve(out, ("continuity",), w, s, None)  # what the wind could not take goes into omega
        return out.to(x.dtype)

    def _column_solve(self, out, laws, moving, s, sd_div):
        """Solve every column for ``laws`` moving channels ``moving`` (and divergence); update ``out`` in place."""
        with torch.no_grad():
            res = self.physics.residuals(out)
            dev = out.device
            a0 = torch.cat([(res[law] - self.target[law].to(dev)) / self.tau[law].to(dev) for law in laws], 1)
            cols = []
            for c in moving:  # affine and local to a column: one step of a whole channel
                step = out.clone()
                step[:, c] += s[:, c]
                r = self.physics.residuals(step)
                cols.append(torch.cat([(r[law] - self.target[law].to(dev)) / self.tau[law].to(dev)
                                       for law in laws], 1) - a0)
            if sd_div is not None:  # divergence of each level as an unknown of the continuity rows
                nl = sd_div.shape[1]
                first = list(laws).index("continuity") * (nl - 1)
                tau = self.tau["continuity"].flatten().to(dev)
                for k in range(nl):
                    col = torch.zeros_like(a0)
                    for layer in (k - 1, k):
                        if 0 <= layer < nl - 1:
                            col[:, first + layer] = 0.5 * sd_div[:, k] / tau[layer]
                    cols.append(col)
            A = torch.stack(cols, -1).permute(0, 2, 3, 1, 4)  # (B, lat, lon, rows, unknowns)
            a = a0.permute(0, 2, 3, 1).unsqueeze(-1)
            eye = torch.eye(A.shape[-2], dtype=A.dtype, device=dev)
            z = -A.transpose(-1, -2) @ torch.linalg.solve(eye + A @ A.transpose(-1, -2), a)
            z = z.squeeze(-1).permute(0, 3, 1, 2)  # (B, unknowns, lat, lon)
            out[:, moving] += z[:, : len(moving)] * s[:, moving]
        return z

    def ensemble(self, ens: torch.Tensor) -> torch.Tensor:
        """Balance the members of ``ens`` ``(members, C, lat, lon)`` with the ensemble's own spread.

        Each grid point's change is weighted by the members' standard deviation
        there (of every moving channel, and of the divergence for continuity)
        instead of the fixed prior spread: where the ensemble agrees, a field
        stays; where it is uncertain, it gives.  Measured on the corpus
        (``benchmarks/probe_balance.py``, docs/benchmarks.md): with the fixed
        spread the continuity balance put the wind's divergence errors into
        omega (w RMSE x 2.2 to 2.6); with the ensemble's, w is unchanged and v a
        few per cent worse, while the continuity residual comes to the truth's.

        Examples
        --------
        >>> import numpy as np
        >>> lat, lon = np.linspace(80, -80, 9), np.arange(0, 360, 22.5)
        >>> idx = {"z": [0, 1], "t": [2, 3]}
        >>> phys = PhysicsLoss(lat=lat, lon=lon, levels_hpa=[500, 850], index=idx, mean=[5.5e4, 1.4e4, 255, 275],
        ...                    std=[1e3, 1e3, 5, 5], laws=["hydrostatic"])
        >>> bal = Balance(phys, target={"hydrostatic": 0.0}, tolerance={"hydrostatic": [1.0]}, spread=[0.1] * 4,
        ...               laws=["hydrostatic"])
        >>> ens = torch.randn(3, 4, 9, 16, generator=torch.Generator().manual_seed(0))
        >>> bool((bal.rms(bal.ensemble(ens))["hydrostatic"] < 2.0).all())
        True
        """
        if ens.ndim != 4 or ens.shape[0] < 2:
            raise ModelError(f"an ensemble (members >= 2, C, lat, lon) is needed, got shape {tuple(ens.shape)}")
        from ..physics import operators as ops

        e64 = ens.detach().double()
        floor = 1e-3 * float(self.spread_all.min())
        spread = e64.std(0, keepdim=True).clamp_min(floor)
        div = None
        if self.sd_div is not None:
            phys = self.physics.to(ens.device)
            xs = e64 * phys.std.double()[:, None, None] + phys.mean.double()[:, None, None]
            d = ops.divergence(xs[:, phys.index["u"]], xs[:, phys.index["v"]], phys.grid)
            div = d.std(0, keepdim=True).clamp_min(1e-3 * float(self.sd_div.min()))
        return self(ens, spread=spread, divergence_spread=div)

    def _add_divergent_wind(self, out: torch.Tensor, change: torch.Tensor) -> None:
        """Add the smallest wind ``(du, dv)`` (m s-1) per level whose divergence is ``change`` (s-1), in place.

        The area mean of ``change`` is removed (no wind on the sphere changes it), and
        ``(D D^T + eps I) lambda = change`` is solved by conjugate gradients with ``eps`` a
        thousandth of ``D D^T``'s scale ``1 / (a dlat)^2``: the checkerboard modes of the
        collocated divergence are nearly in its null space and would make the plain solve diverge.
        """
        from ..physics import operators as ops

        phys = self.physics
        grid = phys.grid
        iu, iv = phys.index["u"], phys.index["v"]
        std = phys.std.double().to(out.device)
        area = phys.area.double().to(out.device)
        change = change - (change * area).sum((-2, -1), keepdim=True) / area.sum()
        dlat = abs(float(np.deg2rad(np.diff(grid.lat)).mean()))
        eps = 1e-3 / (6.371e6 * dlat) ** 2

        def D(uv):
            return ops.divergence(uv[:, 0], uv[:, 1], grid)

        def DT(lam):
            with torch.enable_grad():
                uv = torch.zeros((lam.shape[0], 2, *lam.shape[1:]), dtype=lam.dtype, device=lam.device,
                                 requires_grad=True)
                (g,) = torch.autograd.grad((D(uv) * lam).sum(), uv)
            return g

        shape = change.shape
        lam, _ = conjugate_gradient(lambda p: ((D(DT(p.reshape(shape))) + eps * p.reshape(shape)).flatten(1), p),
                                    change.flatten(1), iters=self.wind_iters, tol=1e-6)
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
