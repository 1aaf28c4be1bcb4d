"""The channel layout: how (variable, level) pairs and surface fields become model channels.

A :class:`ChannelSpec` is the contract between the data, the model, its checkpoint
card and the assimilation front.  Channels are ordered

1. pressure-level variables in the order of ``level_variables``, each over
   ``levels`` in the order given (the canonical order is ascending pressure, top
   of the atmosphere first, as in WeatherBench2), named ``f"{variable}{level:g}"``
   (``z500``, ``t850``, ``q92.5``);
2. then the surface variables in the order of ``surface_variables`` (``sp``, ``msl``).

Variables are the short keys of :data:`xphyda.grid.VARIABLES` (``z t u v q w r``
on levels; ``sp msl t2m u10 v10`` at the surface).  Values are in SI units, which
the spec records with the CF standard names so a ``(C, lat, lon)`` array can be
turned back into a CF Dataset.

Examples
--------
>>> spec = ChannelSpec(level_variables=("z", "t"), levels=(500, 850), surface_variables=("sp",))
>>> spec.names
('z500', 'z850', 't500', 't850', 'sp')
>>> ChannelSpec.from_dict(spec.to_dict()) == spec
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import xarray as xr

from ..errors import DataError, GridError, VariableError
from ..grid import VARIABLES

__all__ = ["LEVEL_VARIABLES", "SI_UNITS", "SURFACE_VARIABLES", "ChannelSpec", "variable_attrs"]

LEVEL_VARIABLES = ("z", "t", "u", "v", "q", "w", "r")
"""Pressure-level variables xphyda knows, in their canonical channel order."""
SURFACE_VARIABLES = ("sp", "msl", "t2m", "u10", "v10")
"""Surface variables xphyda knows, in their canonical channel order."""

SI_UNITS = {
    "geopotential": "m2 s-2",
    "temperature": "K",
    "speed": "m s-1",
    "pressure": "Pa",
    "omega": "Pa s-1",
    "specific_humidity": "kg kg-1",
    "relative_humidity": "1",
}
"""CF (UDUNITS) spelling of the SI unit of each kind of quantity in :data:`xphyda.units.QUANTITIES`."""

_EXTRA_STANDARD_NAMES = {"t2m": "air_temperature", "u10": "eastward_wind", "v10": "northward_wind"}
_SCHEMA = "xphyda.ChannelSpec/1"


def variable_attrs(key: str) -> dict[str, str]:
    """CF attributes (SI ``units``, ``standard_name``, ``long_name``) of the variable ``key``.

    Examples
    --------
    >>> variable_attrs("z")["units"]
    'm2 s-2'
    """
    if key not in VARIABLES or key == "gh":
        raise VariableError(
            f"unknown variable {key!r}; xphyda knows {list(LEVEL_VARIABLES + SURFACE_VARIABLES)} "
            "(geopotential height 'gh' is stored as geopotential 'z')"
        )
    alias = VARIABLES[key]
    attrs = {"units": SI_UNITS[alias.kind], "long_name": alias.long_name}
    standard_name = alias.standard_names[0] if alias.standard_names else _EXTRA_STANDARD_NAMES.get(key)
    if standard_name:
        attrs["standard_name"] = standard_name
    return attrs


def _level_name(level: float) -> str:
    return f"{float(level):g}"


@dataclass(frozen=True)
class ChannelSpec:
    """Which variables and levels a model sees, and in which channel order.

    Parameters
    ----------
    level_variables : sequence of str
        Pressure-level variables (keys of :data:`LEVEL_VARIABLES`), in channel order.
    levels : sequence of float
        Pressure levels in hPa, in channel order (all level variables share them).
    surface_variables : sequence of str
        2-D variables (keys of :data:`SURFACE_VARIABLES`), placed after the level channels.

    Examples
    --------
    >>> spec = ChannelSpec(("t",), (850,), ("msl",))
    >>> spec.n_channels, spec.index("msl")
    (2, 1)
    """

    level_variables: tuple[str, ...] = ()
    levels: tuple[float, ...] = ()
    surface_variables: tuple[str, ...] = ()

    def __post_init__(self):
        set_ = object.__setattr__
        for field_name in ("level_variables", "surface_variables", "levels"):
            value = getattr(self, field_name)
            if isinstance(value, (str, int, float)):
                value = (value,)
            set_(self, field_name, tuple(value))
        set_(self, "levels", tuple(float(x) for x in self.levels))
        for name, allowed, what in (
            (self.level_variables, LEVEL_VARIABLES, "level_variables"),
            (self.surface_variables, SURFACE_VARIABLES, "surface_variables"),
        ):
            unknown = [v for v in name if v not in allowed]
            if unknown:
                raise VariableError(
                    f"{what} has unknown entries {unknown}; expected short names from {list(allowed)}. "
                    "Fix: use short names (open_store maps ERA5 / WeatherBench2 names such as 'temperature' to 't')"
                )
            if len(set(name)) != len(name):
                raise DataError(f"{what} has duplicates: {list(name)}")
        if self.level_variables and not self.levels:
            raise DataError(
                f"level_variables {list(self.level_variables)} need at least one pressure level; "
                "Fix: ChannelSpec(..., levels=(500, 850))"
            )
        if any(not np.isfinite(p) or p <= 0 for p in self.levels) or len(set(self.levels)) != len(
            self.levels
        ):
            raise DataError(f"levels must be distinct positive pressures in hPa, got {list(self.levels)}")
        if not self.level_variables and self.levels:
            set_(self, "levels", ())
        if not self.names:
            raise DataError("a ChannelSpec needs at least one variable")

    # ------------------------------------------------------------------ layout
    @cached_property
    def names(self) -> tuple[str, ...]:
        """Channel names, in channel order (``z500``, ..., ``sp``)."""
        out = [f"{v}{_level_name(p)}" for v in self.level_variables for p in self.levels]
        return tuple(out + list(self.surface_variables))

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.names)

    def __len__(self) -> int:
        return self.n_channels

    @property
    def variables(self) -> tuple[str, ...]:
        """All variables, level variables first."""
        return self.level_variables + self.surface_variables

    def index(self, name: str) -> int:
        """Channel index of ``name`` (``"z500"``)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise VariableError(f"no channel {name!r}; the channels are {list(self.names)}") from None

    def channel(self, i: int) -> tuple[str, float | None]:
        """``(variable, level_hPa)`` of channel ``i`` (level ``None`` for a surface variable)."""
        n_lev = len(self.level_variables) * len(self.levels)
        if i < n_lev:
            return self.level_variables[i // len(self.levels)], self.levels[i % len(self.levels)]
        return self.surface_variables[i - n_lev], None

    @property
    def units(self) -> tuple[str, ...]:
        """SI units of each channel."""
        return tuple(variable_attrs(self.channel(i)[0])["units"] for i in range(self.n_channels))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(
        cls, ds: xr.Dataset, *, variables: Sequence[str] | None = None, levels: Sequence[float] | None = None
    ) -> ChannelSpec:
        """The spec of a canonical Dataset (from :func:`~xphyda.data.open_store`).

        Variables with a ``level`` dimension become level variables, the others
        surface variables; the default order is canonical (:data:`LEVEL_VARIABLES`
        then :data:`SURFACE_VARIABLES`) and levels are in the Dataset's order.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> ds = xr.Dataset({"t": (("level", "latitude", "longitude"), np.zeros((2, 3, 4))),
        ...                  "sp": (("latitude", "longitude"), np.zeros((3, 4)))},
        ...                 coords={"level": [500.0, 850.0]})
        >>> ChannelSpec.from_dataset(ds).names
        ('t500', 't850', 'sp')
        """
        names = (
            list(variables)
            if variables is not None
            else [v for v in LEVEL_VARIABLES + SURFACE_VARIABLES if v in ds]
        )
        missing = [v for v in names if v not in ds.data_vars]
        if missing:
            raise VariableError(
                f"variables {missing} are not in the dataset; it has {sorted(map(str, ds.data_vars))}"
            )
        lev = [v for v in names if "level" in ds[v].dims]
        sfc = [v for v in names if "level" not in ds[v].dims]
        if levels is None:
            levels = [float(x) for x in ds["level"].values] if lev else []
        return cls(tuple(lev), tuple(float(x) for x in levels), tuple(sfc))

    def to_dict(self) -> dict:
        """A JSON-serialisable description (the derived ``names`` and ``units`` are included for readers)."""
        return {
            "schema": _SCHEMA,
            "level_variables": list(self.level_variables),
            "levels_hPa": list(self.levels),
            "surface_variables": list(self.surface_variables),
            "names": list(self.names),
            "units": list(self.units),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ChannelSpec:
        """Rebuild a spec from :meth:`to_dict`; checks the recorded channel names if present."""
        try:
            spec = cls(
                tuple(d.get("level_variables", ())),
                tuple(d.get("levels_hPa", d.get("levels", ()))),
                tuple(d.get("surface_variables", ())),
            )
        except AttributeError:
            raise DataError(f"a ChannelSpec dict must be a mapping, got {type(d).__name__}") from None
        if "names" in d and tuple(d["names"]) != spec.names:
            raise DataError(
                f"channel names in the dict {list(d['names'])} do not match the layout they describe "
                f"{list(spec.names)}; the dict was edited by hand or comes from an incompatible version"
            )
        return spec

    # ------------------------------------------------------------------ xarray <-> arrays
    def stack(self, ds: xr.Dataset) -> xr.DataArray:
        """Stack the channels of a canonical Dataset into one DataArray (lazily for dask).

        Returns
        -------
        xarray.DataArray
            Dims ``(..., channel, latitude, longitude)`` (leading dims such as
            ``trajectory`` and ``time`` kept), ``channel`` labelled by :attr:`names`.
        """
        missing = [v for v in self.variables if v not in ds.data_vars]
        if missing:
            raise VariableError(
                f"the dataset lacks variables {missing} needed by the channels; it has {sorted(map(str, ds.data_vars))}. "
                "Fix: open_store(..., variables=[...]) with these variables, or use a spec without them"
            )
        parts = []
        if self.level_variables:
            have = np.asarray(ds["level"].values, dtype=np.float64)
            idx = []
            for p in self.levels:
                hit = np.flatnonzero(np.isclose(have, p, rtol=0, atol=1e-6))
                if not hit.size:
                    raise GridError(
                        f"level {p:g} hPa of the channel spec is not in the dataset; it has levels {have.tolist()} hPa. "
                        "Fix: open_store(..., levels=[...]) with these levels"
                    )
                idx.append(int(hit[0]))
            for v in self.level_variables:
                da = ds[v].isel(level=idx).transpose(..., "level", "latitude", "longitude")
                da = da.drop_vars("level").rename(level="channel")
                parts.append(da.assign_coords(channel=[f"{v}{_level_name(p)}" for p in self.levels]))
        for v in self.surface_variables:
            da = ds[v]
            if "level" in da.dims:
                raise GridError(
                    f"surface variable {v!r} has a level dimension; expected dims without 'level'"
                )
            parts.append(da.expand_dims(channel=[v]).transpose(..., "channel", "latitude", "longitude"))
        parts = [p.copy(deep=False) for p in parts]
        for p in parts:
            p.attrs = {}
        out = xr.concat(parts, dim="channel", coords="minimal", compat="override", join="exact")
        return out.rename("state")

    def to_dataset(
        self, x, *, latitude, longitude, leading_dims: Sequence[str] = (), coords: Mapping | None = None
    ) -> xr.Dataset:
        """Turn a ``(..., C, lat, lon)`` array (numpy or torch, SI units) into a CF Dataset.

        Parameters
        ----------
        x : array_like
            Channels on axis ``-3`` in the order of :attr:`names`, SI units
            (de-normalise first with :meth:`NormStats.denormalize`).
        latitude, longitude : array_like
            Degrees, in the array's order.
        leading_dims : sequence of str
            Names of the axes before the channel axis (for example ``("member",)``).
        coords : mapping, optional
            Extra coordinates, for example ``{"time": times}``.

        Examples
        --------
        >>> import numpy as np
        >>> spec = ChannelSpec(("t",), (500, 850), ("sp",))
        >>> ds = spec.to_dataset(np.zeros((3, 2, 4)), latitude=[10, -10], longitude=[0, 90, 180, 270])
        >>> ds["t"].dims, ds["t"].attrs["units"], ds["sp"].attrs["standard_name"]
        (('level', 'latitude', 'longitude'), 'K', 'surface_air_pressure')
        """
        if type(x).__module__.startswith("torch"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        lat = np.asarray(latitude, dtype=np.float64)
        lon = np.asarray(longitude, dtype=np.float64)
        lead = tuple(leading_dims)
        if x.ndim != 3 + len(lead) or x.shape[-3:] != (self.n_channels, lat.size, lon.size):
            raise GridError(
                f"array of shape {x.shape} does not match the channel layout: expected "
                f"(*{lead or '()'}, {self.n_channels} channels, {lat.size} latitudes, {lon.size} longitudes). "
                "Fix: pass leading_dims=(...) naming every axis before the channel axis"
            )
        data = {}
        n_lev = len(self.levels)
        for k, v in enumerate(self.level_variables):
            block = x[..., k * n_lev : (k + 1) * n_lev, :, :]
            data[v] = (lead + ("level", "latitude", "longitude"), block, variable_attrs(v))
        base = len(self.level_variables) * n_lev
        for k, v in enumerate(self.surface_variables):
            data[v] = (lead + ("latitude", "longitude"), x[..., base + k, :, :], variable_attrs(v))
        all_coords = {
            "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
        if self.level_variables:
            all_coords["level"] = (
                "level",
                np.asarray(self.levels),
                {"units": "hPa", "standard_name": "air_pressure", "positive": "down"},
            )
        all_coords.update(coords or {})
        return xr.Dataset(
            data,
            coords=all_coords,
            attrs={"Conventions": "CF-1.8", "history": "built by xphyda ChannelSpec.to_dataset"},
        )
