"""Physics residuals of an xarray Dataset, with units and CF attributes.

This is the xarray front of :mod:`xphyda.physics.kernels`: it discovers the grid
and variables, converts them to SI at the boundary, runs the array kernel
through :func:`xarray.apply_ufunc` (lazily for dask data), and returns a
DataArray with ``units``, ``long_name`` and attributes stating the formula.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import xarray as xr

from ..errors import GridError, ResidualNameError, VariableError
from ..grid import Grid, discover_grid, find_variable
from ..units import to_si
from . import kernels

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


def _field(ds: xr.Dataset, key: str, override, grid: Grid, *, required=True) -> xr.DataArray | None:
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
    # checked only for data in memory: the check would compute a dask array (keep it lazy)
    if da.chunks is None and da.size and bool(da.isnull().all()):
        raise VariableError(f"variable {name!r} ({key}) is all NaN; nothing to compute")
    return to_si(da, _kind(key), name=name)


def _humidity(ds, grid: Grid, t_si: xr.DataArray, overrides) -> xr.DataArray | None:
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
    return xr.apply_ufunc(kernel, t_si, r, pressure, dask="parallelized", output_dtypes=[np.float64])


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
        for k, da in fields.items():
            if grid.level not in da.dims:
                raise VariableError(f"variable for {k!r} has no level dimension {grid.level!r}; its dims are {da.dims}")
    p = grid.level_pa
    core = [grid.level, grid.lat, grid.lon] if spec.on_layers else [grid.lat, grid.lon]
    out_core = ["layer", grid.lat, grid.lon] if spec.on_layers else [grid.lat, grid.lon]
    sizes = {"layer": p.size - 1} if spec.on_layers else {}

    if name == "continuity":
        args = [fields["u"], fields["v"], fields["w"]]
        func: Callable = lambda u, v, w: kernels.continuity(u, v, w, p, sphere)  # noqa: E731
    elif name == "hydrostatic":
        q = _humidity(ds, grid, fields["t"], variables)
        args = [fields["z"], fields["t"]] + ([q] if q is not None else [])
        func = lambda z, t, q=None: kernels.hydrostatic(z, t, p, q=q)  # noqa: E731
    else:
        args = [fields["u"], fields["v"], fields["z"]]
        func = lambda u, v, z: kernels.geostrophic(u, v, z, sphere, band=band)  # noqa: E731

    args = xr.broadcast(*args)
    out = xr.apply_ufunc(
        func,
        *args,
        input_core_dims=[core] * len(args),
        output_core_dims=[out_core],
        exclude_dims=set(core[:1]) if spec.on_layers else set(),
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": sizes, "allow_rechunk": True},
        keep_attrs=False,
    )
    order = [("layer" if d == grid.level and spec.on_layers else d) for d in args[0].dims]
    out = out.transpose(*order)
    if spec.on_layers:
        out = out.assign_coords(_layer_coords(grid, ds))
    out.name = f"{name}_residual"
    used = ", ".join(f"{k}={str(da.name)!r}" for k, da in zip(spec.needs, args))
    out.attrs = {
        "units": spec.units,
        "long_name": spec.long_name,
        "formula": spec.formula,
        "discretisation": spec.discretisation,
        "radius_m": sphere.radius,
        "history": f"xphyda.physics.physics_residual(ds, {name!r}) with {used}"
        + (" and humidity" if name == "hydrostatic" and len(args) > 2 else ""),
    }
    if name == "geostrophic":
        out.attrs["equatorial_band_deg"] = band
    return out


def _natural_scale(name: str, ds: xr.Dataset, res: xr.DataArray, grid: Grid, variables, radius=None) -> xr.DataArray:
    """A scale to divide the residual by, so that values read as fractions."""
    sphere = grid.sphere(radius)
    if name == "continuity":
        u = _field(ds, "u", variables.get("u"), grid)
        v = _field(ds, "v", variables.get("v"), grid)
        from .operators import divergence

        d = xr.apply_ufunc(
            lambda a, b: divergence(a, b, sphere), u, v,
            input_core_dims=[[grid.lat, grid.lon]] * 2, output_core_dims=[[grid.lat, grid.lon]],
            dask="parallelized", output_dtypes=[np.float64],
        )
        return d
    if name == "hydrostatic":
        z = _field(ds, "z", variables.get("z"), grid)
        from ..physics.constants import constants

        thick = z.diff(grid.level) / constants().g
        return thick.rename({grid.level: "layer"}).assign_coords(layer=res["layer"])
    u = _field(ds, "u", variables.get("u"), grid)
    v = _field(ds, "v", variables.get("v"), grid)
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
        rel = (rms / scale).assign_attrs(units="1", long_name=f"RMS {name} residual / {RESIDUALS[name].scale}")
        out[f"{name}_rms"] = rms
        out[f"{name}_relative"] = rel
    if not out:
        raise VariableError(
            f"no residual could be computed: each of {available()} needs variables "
            f"{ {n: RESIDUALS[n].needs for n in available()} }; the dataset has {sorted(map(str, ds.data_vars))}"
        )
    return xr.Dataset(out, attrs={"title": "xphyda physics residual summary"})
