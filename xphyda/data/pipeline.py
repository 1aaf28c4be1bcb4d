"""The training-data pipeline in one place: store -> channels -> statistics -> split -> torch samples.

The pieces live in small modules (:mod:`~xphyda.data.store`,
:mod:`~xphyda.data.regrid`, :mod:`~xphyda.data.channels`,
:mod:`~xphyda.data.stats`, :mod:`~xphyda.data.splits`,
:mod:`~xphyda.data.torch_dataset`); this module re-exports them and adds
:func:`prepare`, which wires them together for training.

Examples
--------
>>> import numpy as np, xarray as xr, xphyda
>>> era5 = xphyda.tutorial.open_dataset("era5-z-t")
>>> times = era5.time.values[0] + np.arange(4) * np.timedelta64(6, "h")
>>> store = xr.concat([era5.assign_coords(time=[t]) for t in times], "time")
>>> data = prepare(store, grid=model_grid(16, 32), lead="6h")
>>> data.spec.names, len(data.dataset("train"))
(('z500', 'z850', 't500', 't850'), 3)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import DataError
from .channels import LEVEL_VARIABLES, SI_UNITS, SURFACE_VARIABLES, ChannelSpec, variable_attrs
from .regrid import model_grid, regrid, regrid_weights, same_grid
from .splits import SPLITS, TimeSplit, as_timedelta, default_split
from .stats import NormStats, area_weights, compute_stats, sample_pairs
from .store import StoreReader, open_store, resolve_variable, write_store
from .torch_dataset import StateDataset, time_features

__all__ = [
    "LEVEL_VARIABLES",
    "SI_UNITS",
    "SPLITS",
    "SURFACE_VARIABLES",
    "ChannelSpec",
    "NormStats",
    "StateDataset",
    "StoreReader",
    "TimeSplit",
    "TrainingData",
    "area_weights",
    "as_timedelta",
    "compute_stats",
    "default_split",
    "model_grid",
    "open_store",
    "prepare",
    "regrid",
    "regrid_weights",
    "resolve_variable",
    "same_grid",
    "sample_pairs",
    "time_features",
    "variable_attrs",
    "write_store",
]


@dataclass(frozen=True, eq=False)
class TrainingData:
    """A store with its channel layout, statistics and split: what training and the model card need.

    Build it with :func:`prepare`.  :meth:`dataset` gives the torch dataset of a
    split; :meth:`to_dict` the JSON-serialisable description for a checkpoint card.
    """

    source: object
    spec: ChannelSpec
    stats: NormStats
    split: TimeSplit | None
    lead: object
    open_kwargs: dict = field(default_factory=dict)

    def dataset(self, name: str = "train", **kwargs) -> StateDataset:
        """The :class:`StateDataset` of split ``name`` (``"train"``, ``"valid"``, ``"test"``)."""
        return StateDataset(
            self.source,
            spec=self.spec,
            stats=self.stats,
            split=self.split,
            name=name,
            lead=self.lead,
            **{**self.open_kwargs, **kwargs},
        )

    def to_dict(self) -> dict:
        """Channels, statistics, split, lead and grid as plain JSON types."""
        grid = self.open_kwargs.get("grid")
        out = {
            "channels": self.spec.to_dict(),
            "stats": self.stats.to_dict(),
            "split": None if self.split is None else self.split.to_dict(),
            "lead_hours": float(as_timedelta(self.lead) / as_timedelta("1h")),
        }
        if grid is not None:
            lat = grid["latitude"].values if hasattr(grid, "coords") else grid[0]
            lon = grid["longitude"].values if hasattr(grid, "coords") else grid[1]
            out["grid"] = {"latitude": [float(x) for x in lat], "longitude": [float(x) for x in lon]}
        return out


def prepare(
    source,
    *,
    variables=None,
    levels=None,
    grid=None,
    split: TimeSplit | str | None = "default",
    lead="24h",
    stats=None,
    max_times: int | None = None,
    weighting: str = "area",
    **open_kwargs,
) -> TrainingData:
    """Open a store, fix its channel layout and split, and load or compute its statistics.

    Parameters
    ----------
    source
        Anything :func:`open_store` accepts (prefer a path or URL).
    variables, levels, grid
        As in :func:`open_store`: what the model sees and on which grid.
    split : TimeSplit, "default" or None
        ``"default"``: :func:`default_split` (WeatherBench2 years for ERA5, last
        years for the jcm corpus; falls back to all times when the data are
        shorter than three years); ``None``: all times are training.
    lead : duration
        Background lead time.
    stats : NormStats, path or None
        Statistics to use; a path that exists is loaded, a path that does not is
        computed on the training split and written there; ``None`` computes them.
    max_times : int, optional
        Passed to :func:`compute_stats`.

    Returns
    -------
    TrainingData
    """
    kwargs = dict(open_kwargs, variables=variables, levels=levels, grid=grid)
    ds = open_store(source, **kwargs)
    spec = ChannelSpec.from_dataset(ds)
    if isinstance(split, str):
        if split != "default":
            raise DataError(f"split must be a TimeSplit, 'default' or None, got {split!r}")
        try:
            split = default_split(ds, gap=max(as_timedelta(lead), as_timedelta("24h")))
        except DataError:
            split = None  # fewer than three calendar years: everything is training
    if split is not None and as_timedelta(lead) > split.gap:
        raise DataError(
            f"lead {as_timedelta(lead)} exceeds the split gap {split.gap}; Fix: TimeSplit(..., gap={lead!r})"
        )
    path = None
    if isinstance(stats, (str, os.PathLike)):
        path = stats
        import fsspec

        fs, p = fsspec.core.url_to_fs(str(path))
        stats = NormStats.load(path) if fs.exists(p) else None
    if stats is None:
        stats = compute_stats(ds, spec, split=split, lead=lead, weighting=weighting, max_times=max_times)
        if path is not None:
            stats.save(path)
    elif isinstance(stats, Mapping):
        stats = NormStats.from_dict(stats)
    return TrainingData(
        source, spec, stats.select(spec), split, lead, {k: v for k, v in kwargs.items() if v is not None}
    )
