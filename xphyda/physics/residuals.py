"""Physics residuals of an xarray Dataset, with units and CF attributes.

This is the xarray front of :mod:`xphyda.physics.kernels`: it discovers the grid
and variables, converts them to SI at the boundary, runs the array kernel
through :func:`xarray.apply_ufunc` (lazily for dask data), and returns a
DataArray with ``units``, ``long_name`` and attributes stating the formula.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import GridError, ResidualNameError, VariableError
from ..grid import Grid, discover_grid, find_variable
from ..units import si_conversion
from . import kernels
from .operators import SphereGrid

__all__ = ["available", "physics_residual", "residual_summary"]


@dataclass(frozen=True)
class ResidualSpec:
    needs: tuple[str, ...]
    optional: tuple[str, ...]
    units: str
    long_name: str
    formula: str
    discretisation: str
    on_layers: bool
    scale: str  # natural scale used by the summary


_FV = (
    "finite volume on the sphere: divergence as the flux out of each cell over its area, "
    "cells bounded half-way between grid points and by the poles on global grids, "
    "periodic in longitude"
)

RESIDUALS: dict[str, ResidualSpec] = {
    "continuity": ResidualSpec(
        ("u", "v", "w"),
        (),
        "s-1",
        "mass continuity residual div(V) + d(omega)/dp",
        "(omega[k+1] - omega[k]) / (p[k+1] - p[k]) + (D[k] + D[k+1]) / 2, D = div(V) on pressure levels",
        _FV + "; vertical: layer between adjacent levels (Lorenz staggering)",
        True,
        "rms horizontal divergence",
    ),
    "hydrostatic": ResidualSpec(
        ("z", "t"),
        ("q", "r"),
        "m",
        "hydrostatic (hypsometric) residual",
        "(Phi_top - Phi_bottom) / g - (Rd / g) * (Tv_top + Tv_bottom) / 2 * ln(p_bottom / p_top)",
        "per layer between adjacent pressure levels; Tv from q (or from r via MetPy) when present",
        True,
        "rms geopotential thickness (m)",
    ),
    "geostrophic": ResidualSpec(
        ("u", "v", "z"),
        (),
        "m s-1",
        "magnitude of the ageostrophic wind |V - V_g|",
        "|V - k x grad(Phi) / f|, f = 2 Omega sin(lat)",
        _FV.split(":")[0] + " grid; centred differences of Phi, periodic in longitude; "
        f"NaN where |lat| < band (default {kernels.GEOSTROPHIC_BAND} degrees)",
        False,
        "rms wind speed",
    ),
}


def available() -> list[str]:
    """Names of the physics residuals.

    Examples
    --------
    >>> available()
    ['continuity', 'geostrophic', 'hydrostatic']
    """
    return sorted(RESIDUALS)


def _spec(name: str) -> ResidualSpec:
    if name in RESIDUALS:
        return RESIDUALS[name]
    close = difflib.get_close_matches(str(name), available(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ResidualNameError(f"unknown physics residual {name!r}; available: {available()}.{hint}")


def _kind(key: str) -> str:
    from ..grid import VARIABLES

    return VARIABLES[key].kind


@dataclass(frozen=True)
class _Input:
    """A variable as given, and how to convert it to SI (done slab by slab, see :func:`_by_slabs`)."""

    da: xr.DataArray
    scale: float = 1.0
    offset: float = 0.0

    def si(self) -> xr.DataArray:
        """The whole variable in SI, float64 (lazily for dask)."""
        out = self.da.astype(np.float64)
        return out * self.scale + self.offset if (self.scale, self.offset) != (1.0, 0.0) else out


def _first_is_number(da: xr.DataArray) -> bool:
    data = da.data
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "fc":
        return False
    return not np.isnan(data.flat[0])


def _field(ds: xr.Dataset, key: str, override, grid: Grid, *, required=True) -> _Input | None:
    name = find_variable(ds, key, override, required=required)
    if name is None:
        return None
    da = ds[name]
    missing = [d for d in (grid.lat, grid.lon) if d not in da.dims]
    if missing:
        raise VariableError(
            f"variable {name!r} ({key}) lacks dimension(s) {missing}; its dims are {da.dims}. "
            "Fix: pass a variable on the horizontal grid"
        )
    scale, offset = si_conversion(da.attrs.get("units"), _kind(key), name=name)
    # checked only for data in memory: the check would compute a dask array (keep it lazy);
    # a first value that is not NaN settles it without a pass over the data
    if da.chunks is None and da.size and not _first_is_number(da) and bool(da.isnull().all()):
        raise VariableError(f"variable {name!r} ({key}) is all NaN; nothing to compute")
    return _Input(da, scale, offset)


def _humidity(ds, grid: Grid, t: _Input, overrides) -> _Input | None:
    q = _field(ds, "q", overrides.get("q"), grid, required=False)
    if q is not None:
        return q
    r = _field(ds, "r", overrides.get("r"), grid, required=False)
    if r is None:
        return None
    from metpy.calc import mixing_ratio_from_relative_humidity, specific_humidity_from_mixing_ratio
    from metpy.units import units

    def kernel(t, rh, p):
        mr = mixing_ratio_from_relative_humidity(p * units.Pa, t * units.K, rh * units(""))
        return np.asarray(specific_humidity_from_mixing_ratio(mr).m_as(""))

    pressure = xr.DataArray(grid.level_pa, dims=grid.level)
    q = xr.apply_ufunc(kernel, t.si(), r.si(), pressure, dask="parallelized", output_dtypes=[np.float64])
    return _Input(q.rename(f"q from {r.da.name}"))


_SLAB_BYTES = 2 * 2**20
"""Bytes of one input field per kernel call in :func:`_by_slabs` (a band of rows, all levels),
so that the kernels' temporaries stay in cache and reuse freed memory instead of faulting in
new pages (measured on a 0.25-degree, 13-level float64 state, the three residuals: 0.25 s CPU
with bands of 0.5 to 4 MB, 0.43 s with 8 MB; 0.63 s before, in 32 MB blocks of levels)."""

_MIN_ROWS = 8
"""Rows of a band at least (the halo rows on either side are computed and discarded; at least 4,
so that a band and its halo have the 3 rows the operators need)."""

_COLUMN_BYTES = 32 * 2**20
"""Above this many bytes in a band of ``_MIN_ROWS`` rows of all levels, the levels are split
in blocks that overlap by one level."""


def compute_dtype(*dtypes) -> np.dtype:
    """The floating type residuals are computed in: the inputs' own precision, at least float32.

    float32 data (as ERA5 files hold) are computed in float32, which carries all the
    precision they have and is three to four times faster than float64 on large grids;
    float64 data stay float64; integers become float64.

    Examples
    --------
    >>> compute_dtype(np.float32, np.float32), compute_dtype(np.float32, np.float64), compute_dtype(np.int16)
    (dtype('float32'), dtype('float64'), dtype('float64'))
    """
    floats = [np.dtype(d) for d in dtypes if np.issubdtype(d, np.floating)]
    if len(floats) != len(dtypes) or not floats:
        return np.dtype(np.float64)
    return np.result_type(np.float32, *floats)


def _lead_slabs(lead: tuple[int, ...], item: int, budget: int):
    """Index tuples (of slices) covering the leading dims in pieces of at most ``budget`` bytes."""
    if not lead:
        yield ()
        return
    rest = item * int(np.prod(lead[1:], dtype=np.int64))
    if rest <= budget:
        step = max(1, budget // max(rest, 1))
        for i in range(0, lead[0], step):
            yield (slice(i, i + step),)
    else:
        for i in range(lead[0]):
            for sub in _lead_slabs(lead[1:], item, budget):
                yield (slice(i, i + 1),) + sub


def _bands(nlat: int, rows: int, halo: int):
    """Bands of about ``rows`` rows covering ``nlat``: (rows computed, part kept of them, rows kept)."""
    count = max(1, -(-nlat // max(rows, 4)))  # bands of at least 2 rows: 3 with the halo at an end
    bounds = [(i * nlat) // count for i in range(count + 1)]
    for j0, j1 in itertools.pairwise(bounds):
        a, b = max(0, j0 - halo), min(nlat, j1 + halo)
        yield slice(a, b), slice(j0 - a, j1 - a), slice(j0, j1)


def _by_slabs(
    kernel: Callable,
    inputs: list[_Input],
    *,
    p: np.ndarray | None = None,
    sphere: SphereGrid | None = None,
    budget: int | None = None,
):
    """Wrap ``kernel`` for :func:`xarray.apply_ufunc`: convert to SI and evaluate slab by slab.

    Arrays arrive with their core dims last: ``(..., lat, lon)``, or ``(..., level, lat, lon)``
    when ``p`` (the level pressures) is given; then ``kernel(*fields, p=p)`` returns one layer
    fewer, and level blocks (only for very many levels) overlap by one level.  Large fields are
    cut in bands of rows of about ``budget`` bytes each; with ``sphere`` (the kernel then takes
    ``grid=``, the band's rows of ``sphere``) a band carries one halo row on either side, whose
    results are discarded, so that every row kept is computed with its neighbours, exactly as on
    the whole grid.  The kernel sees only SI copies (or the inputs themselves when they are
    already SI in the compute type: the kernels never write to their inputs).  The arithmetic is
    in :func:`compute_dtype` of the inputs.
    """

    def convert(a, index, inp, dtype):
        if a.dtype == dtype and (inp.scale, inp.offset) == (1.0, 0.0):
            return a[index]  # already SI in the compute type: the kernels never write to their inputs
        x = np.array(a[index], dtype=dtype)  # a copy, ours to scale in place
        if inp.scale != 1.0:
            x *= inp.scale
        if inp.offset != 0.0:
            x += inp.offset
        return x

    budget = budget or _SLAB_BYTES
    halo = 1 if sphere is not None else 0

    def run(*arrays):
        dtype = compute_dtype(*(a.dtype for a in arrays))
        shape = arrays[0].shape
        nlat = shape[-2]
        row = dtype.itemsize * shape[-1]  # bytes of one row of one level
        layered = p is not None
        nlev = shape[-3] if layered else 1
        lead = shape[:-3] if layered else shape[:-2]
        out = np.empty(lead + ((nlev - 1,) if layered else ()) + shape[-2:], dtype)
        levels_all = (slice(0, nlev),) if layered else ()
        if row * nlev * nlat <= budget:  # small fields: several leading indices at once, whole
            blocks = [
                (index + (slice(None),) * (len(lead) - len(index)) + levels_all, None)  # all of the other dims
                for index in _lead_slabs(lead, row * nlev * nlat, budget)
            ]
        elif not layered or row * nlev * _MIN_ROWS <= _COLUMN_BYTES:  # bands of rows of all levels
            rows = max(_MIN_ROWS, budget // (row * nlev))
            blocks = [(tuple(slice(i, i + 1) for i in index) + levels_all, rows) for index in np.ndindex(*lead)]
        else:  # very many levels: blocks of levels overlapping by one, each in bands of rows
            step = max(1, _COLUMN_BYTES // (row * _MIN_ROWS) - 1)
            rows = max(_MIN_ROWS, budget // (row * (step + 1)))
            blocks = [
                (tuple(slice(i, i + 1) for i in index) + (slice(k, min(k + step, nlev - 1) + 1),), rows)
                for index in np.ndindex(*lead)
                for k in range(0, nlev - 1, step)
            ]
        bands = {}
        for index, rows in blocks:
            if rows is None:
                pieces = [(slice(0, nlat), slice(None), slice(None))]
            else:
                pieces = bands.setdefault(rows, list(_bands(nlat, rows, halo)))
            extra = {}
            if layered:
                levels = index[-1]
                extra["p"] = p[levels]
                target = index[:-1] + (slice(levels.start, levels.stop - 1),)
            else:
                target = index
            for computed, kept, rows_kept in pieces:
                fields = [convert(a, index + (computed,), i, dtype) for a, i in zip(arrays, inputs)]
                if sphere is not None:
                    extra["grid"] = sphere._rows(computed.start, computed.stop)
                out[target + (rows_kept,)] = kernel(*fields, **extra)[..., kept, :]
        return out

    return run


def _layer_coords(grid: Grid, ds: xr.Dataset) -> dict:
    lev = ds[grid.level]
    vals = np.asarray(lev.values)
    units = lev.attrs.get("units", "hPa")
    labels = [f"{a:g}-{b:g} {units}" for a, b in zip(vals[:-1], vals[1:])]
    p = grid.level_pa
    top = np.where(p[:-1] < p[1:], vals[:-1], vals[1:])  # the lower pressure of each pair
    bottom = np.where(p[:-1] < p[1:], vals[1:], vals[:-1])
    return {
        "layer": ("layer", labels, {"long_name": "layer between adjacent pressure levels"}),
        "level_upper": ("layer", top, {"units": units, "long_name": "pressure at the top of the layer"}),
        "level_lower": ("layer", bottom, {"units": units, "long_name": "pressure at the bottom of the layer"}),
    }


def physics_residual(
    ds: xr.Dataset,
    name: str,
    *,
    lat: str | None = None,
    lon: str | None = None,
    level: str | None = None,
    radius: float | None = None,
    band: float = kernels.GEOSTROPHIC_BAND,
    **variables: str,
) -> xr.DataArray:
    """Residual of a physical law in ``ds``, as a DataArray with units.

    Parameters
    ----------
    ds : xarray.Dataset
        State on pressure levels (``continuity`` and ``hydrostatic`` need at least
        two levels; ``geostrophic`` works on one).
    name : {"continuity", "hydrostatic", "geostrophic"}
        See :func:`available` and :mod:`xphyda.physics.kernels` for the formulas.
    lat, lon, level : str, optional
        Coordinate names, when discovery needs help.
    radius : float, optional
        Earth radius in metres (default 6 371 229 m, as ERA5).
    band : float
        Equatorial band half-width (degrees) where the geostrophic residual is NaN.
    **variables : str
        Variable overrides, e.g. ``u="uwnd"``, ``z="hgt"``, ``w="omega"``.

    Returns
    -------
    xarray.DataArray
        On a ``layer`` dimension (labelled by its bounding pressures) for
        continuity and hydrostatic, on the input levels for geostrophic.

    Examples
    --------
    >>> import xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> res = physics_residual(ds, "hydrostatic")
    >>> res.attrs["units"], res.dims[-3:]
    ('m', ('layer', 'latitude', 'longitude'))
    """
    spec = _spec(name)
    unknown = set(variables) - set(spec.needs) - set(spec.optional)
    if unknown:
        raise VariableError(
            f"the {name} residual takes variable overrides {spec.needs + spec.optional}, "
            f"got unknown {sorted(unknown)}; coordinates are named with lat=, lon=, level="
        )
    for key, value in variables.items():
        if not isinstance(value, str):
            raise VariableError(
                f"override {key}= must be the name of a variable in the dataset (a str), got {type(value).__name__}; "
                f"to use another array, add it first: ds.assign({key}=...)"
            )
    grid = discover_grid(ds, lat=lat, lon=lon, level=level, need_levels=spec.on_layers)
    sphere = grid.sphere(radius)
    fields = {k: _field(ds, k, variables.get(k), grid) for k in spec.needs}
    if spec.on_layers:
        nlev = grid.level_pa.size
        if nlev < 2:
            raise GridError(f"the {name} residual needs at least two pressure levels; found {nlev} in {grid.level!r}")
        for k, inp in fields.items():
            if grid.level not in inp.da.dims:
                raise VariableError(
                    f"variable {str(inp.da.name)!r} ({k}) has no level dimension {grid.level!r}; "
                    f"its dims are {inp.da.dims}"
                )
    p = grid.level_pa
    core = [grid.level, grid.lat, grid.lon] if spec.on_layers else [grid.lat, grid.lon]
    out_core = ["layer", grid.lat, grid.lon] if spec.on_layers else [grid.lat, grid.lon]
    sizes = {"layer": p.size - 1} if spec.on_layers else {}

    if name == "continuity":
        inputs = [fields["u"], fields["v"], fields["w"]]
        kernel: Callable = lambda u, v, w, *, p, grid: kernels.continuity(u, v, w, p, grid)
        on_sphere = True
    elif name == "hydrostatic":
        q = _humidity(ds, grid, fields["t"], variables)
        inputs = [fields["z"], fields["t"]] + ([q] if q is not None else [])

        def kernel(z, t, *q, p):
            return kernels.hydrostatic(z, t, p, q=q[0] if q else None)

        on_sphere = False
    else:
        inputs = [fields["u"], fields["v"], fields["z"]]
        kernel = lambda u, v, z, *, grid: kernels.geostrophic(u, v, z, grid, band=band)
        on_sphere = True

    args = xr.broadcast(*(i.da for i in inputs))
    out = xr.apply_ufunc(
        _by_slabs(kernel, inputs, p=p if spec.on_layers else None, sphere=sphere if on_sphere else None),
        *args,
        input_core_dims=[core] * len(args),
        output_core_dims=[out_core],
        exclude_dims=set(core[:1]) if spec.on_layers else set(),
        dask="parallelized",
        output_dtypes=[compute_dtype(*(a.dtype for a in args))],
        dask_gufunc_kwargs={"output_sizes": sizes, "allow_rechunk": True},
        keep_attrs=False,
    )
    order = [("layer" if d == grid.level and spec.on_layers else d) for d in args[0].dims]
    out = out.transpose(*order)
    if spec.on_layers:
        out = out.assign_coords(_layer_coords(grid, ds))
    out.name = f"{name}_residual"
    used = ", ".join(f"{k}={str(i.da.name)!r}" for k, i in zip(spec.needs, inputs))
    out.attrs = {
        "units": spec.units,
        "long_name": spec.long_name,
        "formula": spec.formula,
        "discretisation": spec.discretisation,
        "radius_m": sphere.radius,
        "history": f"xphyda.physics.physics_residual(ds, {name!r}) with {used}"
        + (f" and humidity from {str(inputs[2].da.name)!r}" if name == "hydrostatic" and len(inputs) > 2 else ""),
    }
    if name == "geostrophic":
        out.attrs["equatorial_band_deg"] = band
    return out


def _natural_scale(name: str, ds: xr.Dataset, res: xr.DataArray, grid: Grid, variables, radius=None) -> xr.DataArray:
    """A scale to divide the residual by, so that values read as fractions."""
    sphere = grid.sphere(radius)
    if name == "continuity":
        u = _field(ds, "u", variables.get("u"), grid).si()
        v = _field(ds, "v", variables.get("v"), grid).si()
        from .operators import divergence

        d = xr.apply_ufunc(
            lambda a, b: divergence(a, b, sphere), u, v,
            input_core_dims=[[grid.lat, grid.lon]] * 2, output_core_dims=[[grid.lat, grid.lon]],
            dask="parallelized", output_dtypes=[np.float64], dask_gufunc_kwargs={"allow_rechunk": True},
        )
        # on the residual's layers: the mean of the two levels (lazily for dask)
        upper = d.isel({grid.level: slice(1, None)}).drop_vars(grid.level, errors="ignore")
        lower = d.isel({grid.level: slice(None, -1)}).drop_vars(grid.level, errors="ignore")
        return (0.5 * (upper + lower)).rename({grid.level: "layer"}).assign_coords(layer=res["layer"])
    if name == "hydrostatic":
        z = _field(ds, "z", variables.get("z"), grid).si()
        from ..physics.constants import constants

        thick = z.diff(grid.level) / constants().g
        return thick.rename({grid.level: "layer"}).assign_coords(layer=res["layer"])
    u = _field(ds, "u", variables.get("u"), grid).si()
    v = _field(ds, "v", variables.get("v"), grid).si()
    return np.sqrt(u**2 + v**2).where(res.notnull())


def _area_rms(da: xr.DataArray, grid: Grid) -> xr.DataArray:
    weights = xr.DataArray(np.abs(grid.sphere().dsin), dims=grid.lat, coords={grid.lat: da[grid.lat]})
    return np.sqrt((da**2).weighted(weights).mean([grid.lat, grid.lon], skipna=True))


def residual_summary(ds: xr.Dataset, names=None, **kwargs) -> xr.Dataset:
    """Area-weighted RMS of each residual per level/layer, in physical units and relative to a natural scale.

    Parameters
    ----------
    ds : xarray.Dataset
    names : list of str, optional
        Residuals to summarise (default: every residual whose variables are present).
    **kwargs
        Passed to :func:`physics_residual` (coordinate and variable overrides).

    Returns
    -------
    xarray.Dataset
        ``{name}_rms`` (units of the residual) and ``{name}_relative`` (RMS
        residual divided by the RMS of the natural scale: horizontal divergence
        for continuity, geopotential thickness for hydrostatic, wind speed for
        geostrophic), reduced over latitude and longitude only.

    Examples
    --------
    >>> import xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> summary = residual_summary(ds)
    >>> list(summary.data_vars)
    ['hydrostatic_rms', 'hydrostatic_relative']
    """
    explicit = names is not None
    names = list(names) if explicit else available()
    coords = {k: kwargs[k] for k in ("lat", "lon", "level", "radius", "band") if k in kwargs}
    overrides = {k: v for k, v in kwargs.items() if k not in coords}
    out = {}
    grid = discover_grid(ds, lat=kwargs.get("lat"), lon=kwargs.get("lon"), level=kwargs.get("level"))
    unknown = set(overrides) - {k for n in names for k in _spec(n).needs + _spec(n).optional}
    if unknown:
        raise VariableError(f"unknown variable override(s) {sorted(unknown)} for the residuals {names}")
    for name in names:
        spec = _spec(name)
        own = {k: v for k, v in overrides.items() if k in spec.needs + spec.optional}
        if not explicit:  # by default, summarise the residuals whose variables are all present
            present = [find_variable(ds, k, own.get(k), required=False) for k in spec.needs]
            levels = grid.level_pa.size if grid.level_pa is not None else 0
            if None in present or (spec.on_layers and levels < 2):
                continue
        res = physics_residual(ds, name, **coords, **own)
        rms = _area_rms(res, grid)
        scale = _area_rms(_natural_scale(name, ds, res, grid, overrides, kwargs.get("radius")), grid)
        rms.attrs = {"units": res.attrs["units"], "long_name": f"area-weighted RMS of the {res.attrs['long_name']}"}
        rel = rms / scale
        rel.attrs = {"units": "1", "long_name": f"RMS {name} residual / {RESIDUALS[name].scale}"}
        out[f"{name}_rms"] = rms
        out[f"{name}_relative"] = rel
    if not out:
        raise VariableError(
            f"no residual could be computed: each of {available()} needs variables "
            f"{ {n: RESIDUALS[n].needs for n in available()} }; the dataset has {sorted(map(str, ds.data_vars))}"
        )
    return xr.Dataset(out, attrs={"title": "xphyda physics residual summary"})
