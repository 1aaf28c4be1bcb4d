"""Normalisation statistics per channel, computed by streaming with dask, saved as JSON.

For each channel of a :class:`~xphyda.data.ChannelSpec` the training split gives

* ``mean`` and ``std`` of the state (used to normalise truth and background);
* ``diff_mean`` and ``diff_std`` of the ``lead``-hour difference ``x(t) - x(t - lead)``
  (the typical background error of persistence; used to scale increments).

Both are area-weighted by default (cell areas on the sphere, so a regular grid's
crowded polar rows do not dominate), skip NaNs, and are computed in float64 from
sums accumulated chunk by chunk through dask: the store is never loaded whole.
A channel with zero spread gets ``std = 1`` so normalisation never divides by zero.

Examples
--------
>>> import numpy as np
>>> s = NormStats(channels=("t850",), mean=[270.0], std=[10.0], diff_mean=[0.0], diff_std=[2.0], lead_hours=24)
>>> float(s.normalize(np.full((1, 2, 2), 280.0))[0, 0, 0])
1.0
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import DataError
from ..grid import discover_grid
from .channels import ChannelSpec
from .splits import TimeSplit, as_timedelta

__all__ = ["NormStats", "area_weights", "compute_stats", "sample_pairs"]

_SCHEMA = "xphyda.NormStats/1"


def area_weights(obj, *, kind: str = "area", normalize: bool = True) -> xr.DataArray:
    """Horizontal weights of a latitude-longitude grid.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        Anything with latitude and longitude coordinates.
    kind : {"area", "cos"}
        ``"area"``: cell areas (m2) from :class:`~xphyda.physics.operators.SphereGrid`
        (polar caps and Gaussian rows handled), dims ``(latitude, longitude)``;
        ``"cos"``: ``cos(latitude)``, dims ``(latitude,)``.
    normalize : bool
        Scale to mean 1 (so a weighted mean is ``(w * x).mean()``).

    Examples
    --------
    >>> from xphyda.data.pipeline import model_grid
    >>> w = area_weights(model_grid(4, 8))
    >>> w.dims, round(float(w.mean()), 6)
    (('latitude', 'longitude'), 1.0)
    """
    g = discover_grid(obj)
    if kind == "area":
        values = g.sphere().cell_area
        dims = (g.lat, g.lon)
        coords = {g.lat: g.lat_values, g.lon: g.lon_values}
        attrs = {"long_name": "cell area weight", "units": "1" if normalize else "m2"}
    elif kind == "cos":
        values = np.cos(np.deg2rad(g.lat_values))
        dims, coords = (g.lat,), {g.lat: g.lat_values}
        attrs = {"long_name": "cosine of latitude", "units": "1"}
    else:
        raise DataError(f"unknown weight kind {kind!r}; expected 'area' or 'cos'")
    if normalize:
        values = values / values.mean()
    return xr.DataArray(values, dims=dims, coords=coords, name="area_weight", attrs=attrs)


@dataclass(frozen=True, eq=False)
class NormStats:
    """Per-channel mean and standard deviation of states and of ``lead``-hour differences.

    Arrays are float64 of shape ``(C,)`` in the order of ``channels``.
    """

    channels: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    diff_mean: np.ndarray
    diff_std: np.ndarray
    lead_hours: float = 24.0
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "channels", tuple(str(c) for c in self.channels))
        n = len(self.channels)
        for name in ("mean", "std", "diff_mean", "diff_std"):
            a = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if a.size != n:
                raise DataError(
                    f"NormStats.{name} has {a.size} values for {n} channels {list(self.channels)}"
                )
            set_(self, name, a)
        if np.any(~(self.std > 0)) or np.any(~(self.diff_std > 0)):
            raise DataError("NormStats standard deviations must be positive and finite")
        set_(self, "lead_hours", float(self.lead_hours))

    # ------------------------------------------------------------------ use
    def _pair(self, x, diff: bool):
        mean, std = (self.diff_mean, self.diff_std) if diff else (self.mean, self.std)
        if isinstance(x, xr.DataArray):
            if "channel" not in x.dims:
                raise DataError(f"expected a 'channel' dimension, found dims {x.dims}")
            sel = self.select(list(map(str, x["channel"].values)))
            m, s = (sel.diff_mean, sel.diff_std) if diff else (sel.mean, sel.std)
            return xr.DataArray(m, dims="channel"), xr.DataArray(s, dims="channel")
        if x.shape[-3] != len(self.channels):
            raise DataError(
                f"array has {x.shape[-3]} channels on axis -3, the statistics have {len(self.channels)}"
            )
        m, s = mean[:, None, None], std[:, None, None]
        if type(x).__module__.startswith("torch"):
            import torch

            return torch.as_tensor(m, dtype=x.dtype, device=x.device), torch.as_tensor(
                s, dtype=x.dtype, device=x.device
            )
        dtype = x.dtype if np.issubdtype(np.asarray(x).dtype, np.floating) else np.float64
        return m.astype(dtype), s.astype(dtype)

    def normalize(self, x, *, diff: bool = False):
        """``(x - mean) / std`` with channels on axis ``-3`` (numpy, torch) or a ``channel`` dim (xarray).

        ``diff=True`` uses the difference statistics (for increments ``truth - background``).
        """
        m, s = self._pair(x, diff)
        return (x - m) / s

    def denormalize(self, x, *, diff: bool = False):
        """Inverse of :meth:`normalize`."""
        m, s = self._pair(x, diff)
        return x * s + m

    def select(self, channels: Sequence[str] | ChannelSpec) -> NormStats:
        """The statistics of ``channels`` (a list of names or a spec), in that order."""
        names = list(channels.names if isinstance(channels, ChannelSpec) else channels)
        missing = [c for c in names if c not in self.channels]
        if missing:
            raise DataError(
                f"no statistics for channels {missing}; these statistics cover {list(self.channels)}. "
                "Fix: recompute with compute_stats(ds, spec) for this spec"
            )
        idx = [self.channels.index(c) for c in names]
        return NormStats(
            tuple(names),
            self.mean[idx],
            self.std[idx],
            self.diff_mean[idx],
            self.diff_std[idx],
            self.lead_hours,
            dict(self.info),
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "schema": _SCHEMA,
            "lead_hours": self.lead_hours,
            "channels": {
                c: {
                    "mean": float(self.mean[i]),
                    "std": float(self.std[i]),
                    "diff_mean": float(self.diff_mean[i]),
                    "diff_std": float(self.diff_std[i]),
                }
                for i, c in enumerate(self.channels)
            },
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> NormStats:
        """Inverse of :meth:`to_dict`."""
        try:
            ch = d["channels"]
            names = list(ch)
            return cls(
                tuple(names),
                *([ch[c][k] for c in names] for k in ("mean", "std", "diff_mean", "diff_std")),
                lead_hours=d.get("lead_hours", 24.0),
                info=dict(d.get("info", {})),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"not a NormStats dict (missing {exc}); expected the output of NormStats.to_dict()"
            ) from None

    def save(self, path) -> None:
        """Write JSON to ``path`` (local or fsspec URL)."""
        import fsspec

        with fsspec.open(str(path), "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path) -> NormStats:
        """Read JSON written by :meth:`save`."""
        import fsspec

        with fsspec.open(str(path), "r") as f:
            return cls.from_dict(json.load(f))


# --------------------------------------------------------------------------- sample pairs
def sample_pairs(
    ds: xr.Dataset, *, split: TimeSplit | None = None, name: str = "train", lead="24h"
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``[(trajectory position, truth indices, background indices), ...]`` of the valid (background, truth) pairs.

    A pair needs both states present in the same trajectory, the truth in the
    split's truth window and the background ``lead`` earlier (inside the split,
    which the split's gap guarantees).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> t = np.arange("2000-01-01", "2000-01-03", np.timedelta64(6, "h"), dtype="datetime64[ns]")
    >>> [(k, ti.tolist(), bi.tolist()) for k, ti, bi in sample_pairs(xr.Dataset(coords={"time": t}), lead="12h")]
    [(0, [2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5])]
    """
    lead = as_timedelta(lead)
    times = ds["time"].values.astype("datetime64[s]")
    n_traj = ds.sizes.get("trajectory", 1) if "trajectory" in ds.dims else 1
    avail = ds["available"].values if "available" in ds.coords else np.ones((n_traj, times.size), bool)
    avail = np.atleast_2d(avail)
    window = split.truth_mask(times, name, lead=lead) if split is not None else np.ones(times.size, bool)
    out = []
    for k in range(n_traj):
        ti = np.flatnonzero(window & avail[k])
        bi = np.searchsorted(times, times[ti] - lead)
        ok = (bi < times.size) & (bi >= 0)
        ok[ok] &= times[bi[ok]] == times[ti[ok]] - lead
        ok[ok] &= avail[k][bi[ok]]
        if split is not None:
            ok[ok] &= split.state_mask(times[bi[ok]], name)
        out.append((k, ti[ok], bi[ok]))
    return out


# --------------------------------------------------------------------------- computing
def _take(a, idx: np.ndarray):
    if idx.size and np.all(np.diff(idx) == 1):
        return a[int(idx[0]) : int(idx[-1]) + 1]
    return a[idx]


def _sums(a, w, ref):
    import dask.array as dsa

    a = a.astype(np.float64) - ref[:, None, None]
    good = dsa.isfinite(a)
    a = dsa.where(good, a, 0.0)
    wm = good * w
    axes = (0, 2, 3)
    return (wm.sum(axis=axes), (wm * a).sum(axis=axes), (wm * a * a).sum(axis=axes))


def _finish(s0, s1, s2, ref):
    with np.errstate(invalid="ignore", divide="ignore"):
        m = s1 / s0
        var = np.maximum(s2 / s0 - m * m, 0.0)
    std = np.sqrt(var)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return m + ref, std


def compute_stats(
    ds: xr.Dataset,
    spec: ChannelSpec | None = None,
    *,
    split: TimeSplit | None = None,
    lead="24h",
    weighting: str = "area",
    max_times: int | None = None,
) -> NormStats:
    """Per-channel statistics of the training split of a canonical Dataset, streamed with dask.

    Parameters
    ----------
    ds : xarray.Dataset
        Canonical layout (from :func:`~xphyda.data.open_store`), on the model grid.
    spec : ChannelSpec, optional
        The channels (default: :meth:`ChannelSpec.from_dataset`).
    split : TimeSplit, optional
        Statistics use its ``train`` range only (default: all times).
    lead : duration
        Lead of the differences (default 24 h).
    weighting : {"area", "cos", "none"}
        Horizontal weighting (see :func:`area_weights`).
    max_times : int, optional
        Use at most this many evenly spaced states (and pairs) per trajectory, for
        a quick estimate on a large store.

    Returns
    -------
    NormStats

    Examples
    --------
    >>> import xphyda
    >>> from xphyda.data.pipeline import open_store
    >>> ds = open_store(xphyda.tutorial.open_dataset("era5-z-t"), variables=["t"], levels=[850])
    >>> s = compute_stats(ds)
    >>> s.channels, bool(250 < s.mean[0] < 290)
    (('t850',), True)
    """
    import dask
    import dask.array as dsa

    spec = spec or ChannelSpec.from_dataset(ds)
    lead_td = as_timedelta(lead)
    x = spec.stack(ds)
    if "trajectory" not in x.dims:
        x = x.expand_dims("trajectory")
    x = x.transpose("trajectory", "time", "channel", "latitude", "longitude")
    data = x.data if isinstance(x.data, dsa.Array) else dsa.from_array(x.data, chunks=(1, 8, -1, -1, -1))
    if weighting == "none":
        w = np.ones(x.shape[-2:])
    else:
        w = np.broadcast_to(area_weights(ds, kind=weighting).values.reshape(x.shape[-2], -1), x.shape[-2:])
    w = np.ascontiguousarray(w, dtype=np.float64)[None, None]
    times = ds["time"].values
    avail = (
        np.atleast_2d(ds["available"].values)
        if "available" in ds.coords
        else np.ones((x.shape[0], times.size), bool)
    )
    in_split = split.state_mask(times, "train") if split is not None else np.ones(times.size, bool)
    pairs = sample_pairs(ds, split=split, name="train", lead=lead_td)

    def thin(idx, *more):
        if max_times is None or idx.size <= max_times:
            return (idx, *more)
        keep = np.unique(np.linspace(0, idx.size - 1, int(max_times)).round().astype(int))
        return (idx[keep], *(m[keep] for m in more))

    state_idx = [thin(np.flatnonzero(in_split & avail[k]))[0] for k in range(x.shape[0])]
    if not any(i.size for i in state_idx):
        raise DataError(
            f"no states in the training range {split.train if split else ''} of the data "
            f"(times {times.min()} to {times.max()}). Fix: choose a split that overlaps the data"
        )
    k0 = next(k for k, i in enumerate(state_idx) if i.size)
    with dask.config.set(scheduler="synchronous"):
        first = np.asarray(data[k0, int(state_idx[k0][0])].astype(np.float64).compute())
    ref = np.nanmean(first.reshape(first.shape[0], -1), axis=1)
    ref = np.where(np.isfinite(ref), ref, 0.0)
    zero = np.zeros_like(ref)
    lazy_state, lazy_diff, n_pairs = [], [], 0
    for k, idx in enumerate(state_idx):
        if idx.size:
            lazy_state.append(_sums(_take(data[k], idx), w[0], ref))
    for k, ti, bi in pairs:
        ti, bi = thin(ti, bi)
        if ti.size:
            n_pairs += ti.size
            lazy_diff.append(_sums(_take(data[k], ti) - _take(data[k], bi), w[0], zero))
    state_sums, diff_sums = dask.compute(lazy_state, lazy_diff)
    s = [np.sum([t[i] for t in state_sums], axis=0) for i in range(3)]
    mean, std = _finish(*s, ref)
    full = float(sum(i.size for i in state_idx)) * float(w[0].sum())  # the weight of every sampled value
    missing = 1.0 - np.asarray(s[0], dtype=np.float64) / full
    if diff_sums:
        d = [np.sum([t[i] for t in diff_sums], axis=0) for i in range(3)]
        dmean, dstd = _finish(*d, zero)
    else:
        dmean, dstd = np.zeros_like(mean), np.ones_like(mean)
    info = {
        "n_states": int(sum(i.size for i in state_idx)),
        "n_pairs": int(n_pairs),
        "weighting": weighting,
        "period": [str(times[np.concatenate(state_idx)].min()), str(times[np.concatenate(state_idx)].max())],
        "grid": [int(x.shape[-2]), int(x.shape[-1])],
        "spec": spec.to_dict(),
    }
    if np.any(missing > 1e-12):  # NaN or infinite values (area-weighted share of the sampled states'), per channel
        info["nonfinite"] = {n: float(f) for n, f in zip(spec.names, missing) if f > 1e-12}
    if split is not None:
        info["split"] = split.to_dict()
    if not n_pairs:
        info["note"] = f"no {lead_td} pairs in the data: difference statistics set to mean 0, std 1"
    return NormStats(
        spec.names, mean, std, dmean, dstd, lead_hours=float(lead_td / np.timedelta64(1, "h")), info=info
    )
