"""A torch map-style dataset of (background, truth, time) samples, streamed from a store.

torch is imported only when a sample is built, so this module imports without it.
Each sample is read from the store on demand (two states), converted to SI,
regridded, stacked into channels and normalised; nothing else is held in memory.
The dataset pickles to small arrays plus the store's address, so it works with
``DataLoader(num_workers > 0)`` (fork or spawn) and with ``DistributedSampler``:
every worker process reopens the store on first use.

Sample layout (a dict of tensors; the default collate stacks them into a batch)
-------------------------------------------------------------------------------
``truth``
    float32 ``(C, lat, lon)``: the true state at time ``t``, normalised with the state
    statistics (``(x - mean) / std``).
``background``
    float32 ``(C, lat, lon)``: the state ``lead`` earlier in the same trajectory
    (24 h by default), normalised the same way.
``time``
    int64: ``t`` in seconds since 1970-01-01 (UTC).
``time_features``
    float32 ``(4,)``: ``sin, cos`` of the fraction of the year, ``sin, cos`` of the
    hour of day (``2 pi * fraction``).
``trajectory``
    int64: the trajectory number (0 for a single store).

Examples
--------
>>> import numpy as np, xphyda
>>> era5 = xphyda.tutorial.open_dataset("era5-z-t")
>>> times = era5.time.values[0] + np.arange(3) * np.timedelta64(12, "h")
>>> ds = xr.concat([era5.assign_coords(time=[t]) for t in times], "time")
>>> data = StateDataset(ds, lead="12h", grid=model_grid(16, 32))
>>> len(data), tuple(data[0]["truth"].shape)
(2, (4, 16, 32))
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr  # noqa: F401  (examples)

from ..errors import DataError
from .channels import ChannelSpec
from .regrid import model_grid  # noqa: F401  (examples)
from .splits import TimeSplit, as_timedelta
from .stats import NormStats, sample_pairs
from .store import StoreReader

__all__ = ["StateDataset", "time_features"]


def time_features(times) -> np.ndarray:
    """``(n, 4)`` float32: sin/cos of the fraction of the year and of the hour of day.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array(["2001-01-01T00", "2001-01-01T06"], dtype="datetime64[h]")
    >>> np.round(time_features(t), 2).tolist()
    [[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]
    """
    t = np.asarray(times).astype("datetime64[s]").reshape(-1)
    year = t.astype("datetime64[Y]")
    year_len = ((year + 1).astype("datetime64[s]") - year.astype("datetime64[s]")) / np.timedelta64(1, "s")
    frac_year = (t - year.astype("datetime64[s]")) / np.timedelta64(1, "s") / year_len
    frac_day = ((t - t.astype("datetime64[D]").astype("datetime64[s]")) / np.timedelta64(1, "s")) / 86400.0
    a, b = 2 * np.pi * frac_year, 2 * np.pi * frac_day
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=-1).astype(np.float32)


class StateDataset:
    """Samples (background, truth, time) of one split, for ``torch.utils.data.DataLoader``.

    Parameters
    ----------
    source : str, os.PathLike, list of paths, or xarray.Dataset
        Anything :func:`~xphyda.data.open_store` accepts.  Prefer a path or URL: the
        workers reopen it and read only the states they need.
    spec : ChannelSpec, optional
        Channels (default: every variable and level of the opened store).
    stats : NormStats or path, optional
        Normalisation statistics (a JSON path is loaded); default none (SI values).
    split : TimeSplit, optional
        Time split (default: all times form one split).
    name : {"train", "valid", "test"}
        Which split.
    lead : duration
        Background lead time (default ``"24h"``); must not exceed the split's gap.
    dtype : str
        Tensor dtype (default ``"float32"``).
    **open_kwargs
        Passed to :func:`~xphyda.data.open_store` (``variables``, ``levels``, ``grid``,
        ``regrid_method``, ``time``, ``names``, ``engine``, ``storage_options``).
        ``variables`` and ``levels`` default to those of ``spec``.

    Raises
    ------
    DataError
        When the split has no (background, truth) pair, or ``stats`` do not cover the channels.
    """

    def __init__(
        self,
        source,
        *,
        spec: ChannelSpec | None = None,
        stats: NormStats | str | None = None,
        split: TimeSplit | None = None,
        name: str = "train",
        lead="24h",
        dtype: str = "float32",
        **open_kwargs,
    ):
        if spec is not None:
            open_kwargs.setdefault("variables", list(spec.variables))
            if spec.levels:
                open_kwargs.setdefault("levels", list(spec.levels))
        self._reader = StoreReader(source, **open_kwargs)
        ds = self._reader.dataset()  # validates the store once, in the main process
        self.spec = spec or ChannelSpec.from_dataset(ds)
        if isinstance(stats, (str, os.PathLike)):
            stats = NormStats.load(stats)
        self.stats = stats.select(self.spec) if stats is not None else None
        self.split, self.name, self.lead = split, name, as_timedelta(lead)
        self.dtype = dtype
        pairs = sample_pairs(ds, split=split, name=name, lead=self.lead)
        self._traj = np.concatenate([np.full(ti.size, k) for k, ti, _ in pairs]).astype(np.int64)
        self._truth = np.concatenate([ti for _, ti, _ in pairs]).astype(np.int64)
        self._background = np.concatenate([bi for _, _, bi in pairs]).astype(np.int64)
        self.times = ds["time"].values.astype("datetime64[ns]")
        self.trajectories = (
            ds["trajectory"].values.astype(np.int64) if "trajectory" in ds.dims else np.zeros(1, np.int64)
        )
        self.latitude = ds["latitude"].values
        self.longitude = ds["longitude"].values
        levels = ds["level"].values if "level" in ds.coords else np.zeros(0)
        self._level_idx = [int(np.flatnonzero(np.isclose(levels, p, atol=1e-6))[0]) for p in self.spec.levels]
        if not len(self):
            where = f"split {name!r} {split.range(name)}" if split is not None else "the store"
            raise DataError(
                f"no (background, truth) pairs {self.lead} apart in {where}; the store has {self.times.size} times "
                f"from {self.times.min()} to {self.times.max()}. Fix: a split that overlaps the data, or a lead "
                "that is a multiple of the time step"
            )

    def __len__(self) -> int:
        return int(self._truth.size)

    def sample_times(self) -> np.ndarray:
        """Truth time of every sample (datetime64[ns])."""
        return self.times[self._truth]

    def _stack(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        parts = [arrays[v][:, self._level_idx] for v in self.spec.level_variables]
        parts += [arrays[v][:, None] for v in self.spec.surface_variables]
        return np.concatenate(parts, axis=1)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.datetime64, int]:
        """``(truth, background, time, trajectory)`` of sample ``index`` as SI numpy arrays ``(C, lat, lon)``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample {index} out of range for {n} samples")
        index %= n
        k = int(self._traj[index])
        tb, tt = self.times[self._background[index]], self.times[self._truth[index]]
        x = self._stack(self._reader.read(k, np.array([tb, tt])))
        return x[1], x[0], tt, int(self.trajectories[k])

    def __getitem__(self, index: int) -> dict:
        import torch

        truth, background, t, traj = self.read(int(index))
        if self.stats is not None:
            truth, background = self.stats.normalize(truth), self.stats.normalize(background)
        dtype = getattr(torch, self.dtype)
        return {
            "truth": torch.from_numpy(np.ascontiguousarray(truth)).to(dtype),
            "background": torch.from_numpy(np.ascontiguousarray(background)).to(dtype),
            "time": torch.tensor(int(t.astype("datetime64[s]").astype(np.int64)), dtype=torch.int64),
            "time_features": torch.from_numpy(time_features(t)[0]),
            "trajectory": torch.tensor(traj, dtype=torch.int64),
        }

    def __repr__(self) -> str:
        return (
            f"StateDataset({len(self)} samples, split={self.name!r}, lead={self.lead}, "
            f"channels={self.spec.n_channels}, grid={self.latitude.size}x{self.longitude.size})"
        )
