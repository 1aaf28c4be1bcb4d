"""The xarray plumbing behind :mod:`xphyda.metrics`: discovery, grid checks, weights, dispatch.

A score is a numpy kernel (:mod:`xphyda._metrics_kernels`) run by
:func:`score_da` through :func:`xarray.apply_ufunc`; this module finds the
reduced dims and the member dimension, checks that the inputs share a grid,
coordinates and units, builds the weights, and applies a score to each
variable of a Dataset (:func:`dispatch`).  Only :func:`member_dim_of` and
:func:`area_weights` are public, re-exported by :mod:`xphyda.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Literal, Optional, Union

import numpy as np
import xarray as xr

from .errors import CoordinateError, DataError, GridError, UnitsError, VariableError
from .grid import COORDINATES, find_coord

Dims = Union[Hashable, Sequence[Hashable], None]
Weighting = Optional[Literal["area", "cos"]]

COORD_TOLERANCE = 1e-6
"""Latitudes and longitudes closer than this (degrees) are the same grid."""


# --------------------------------------------------------------------------- discovery
def member_dim_of(obj, member_dim: str | None = None, *, role: str = "forecast") -> str:
    """Name of the ensemble member dimension of ``obj``.

    Found, in order, from ``member_dim``, the grid's member coordinate
    (:func:`xphyda.grid.find_coord` with ``"member"``: CF ``standard_name``
    ``realization`` or a name such as ``number`` or ``member``), or a dimension
    without coordinate that has one of those names.

    Raises
    ------
    CoordinateError
        When none is found (or ``member_dim`` is not a dimension).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> member_dim_of(xr.DataArray(np.zeros((3, 2)), dims=("number", "x")))
    'number'
    """
    names = COORDINATES["member"].names
    if member_dim is not None:
        if member_dim not in obj.dims:
            raise CoordinateError(
                f"member_dim={member_dim!r} is not a dimension of the {role}; its dims are {tuple(obj.dims)}"
            )
        return member_dim
    found = find_coord(obj, "member", required=False)
    if found is not None and found in obj.dims:
        return found
    by_name = [d for d in obj.dims if str(d) in names]
    if len(by_name) == 1:
        return by_name[0]
    raise CoordinateError(
        f"no ensemble member dimension found in the {role}: looked for a coordinate with standard_name "
        f"'realization' or a dimension named one of {names}; its dims are {tuple(obj.dims)}. "
        "Fix: pass member_dim='...' (an ensemble score needs the members along one dimension)"
    )


def _as_list(dim) -> list:
    if isinstance(dim, str) or not isinstance(dim, Sequence):
        return [dim]
    return list(dim)


def _resolve_dims(ref: xr.DataArray, others, dim, lat, lon, member, role: str):
    """The dims to reduce, and the latitude / longitude names (None when absent)."""
    latn = find_coord(ref, "latitude", lat, required=dim is None)
    lonn = find_coord(ref, "longitude", lon, required=dim is None)
    data_dims = set(ref.dims).union(*[o.dims for o in others]) - {member}
    if dim is None:
        core = [d for d in (latn, lonn) if d in ref.dims]
        if len(core) < 2:
            raise CoordinateError(
                f"the {role} {ref.name!r} must have latitude {latn!r} and longitude {lonn!r} as dimensions "
                f"to average over them; its dims are {tuple(ref.dims)}. Fix: pass dim=... to choose the dims"
            )
    else:
        core = _as_list(dim)
        missing = [d for d in core if d not in data_dims]
        if missing:
            raise CoordinateError(
                f"cannot reduce over {missing}: not a dimension of the {role} {ref.name!r} "
                f"(dims {tuple(ref.dims)}) or of the other inputs"
                + (f"; {member!r} is the member dimension, used by the score itself" if member in missing else "")
            )
    return core, latn, lonn


def _summary(v: np.ndarray) -> str:
    return f"{v.size} values from {v[0]:g} to {v[-1]:g}" if v.size else "no values"


def _conform(ref: xr.DataArray, other: xr.DataArray, names, ref_role: str, role: str) -> xr.DataArray:
    """Give ``other`` the latitude/longitude values of ``ref`` when they agree within tolerance."""
    for kind, n in zip(("latitude", "longitude"), names):
        if n is None or n not in ref.coords or n not in other.coords:
            continue
        desired = np.asarray(ref[n].values, dtype=np.float64)
        actual = np.asarray(other[n].values, dtype=np.float64)
        if desired.shape != actual.shape or not np.allclose(actual, desired, rtol=0, atol=COORD_TOLERANCE):
            hint = (
                f" (longitude conventions differ: use {role}.assign_coords({n}={role}[{n!r}] % 360).sortby({n!r}))"
                if kind == "longitude" and desired.shape == actual.shape
                and np.allclose(actual % 360, desired % 360, atol=COORD_TOLERANCE)
                else ""
            )
            raise GridError(
                f"{kind} mismatch between the {ref_role} and the {role} ({n!r}): "
                f"actual={_summary(actual)}, desired={_summary(desired)}{hint}. "
                f"Fix: put both on the same grid (regrid, or select the same points with .sel({n}=...))"
            )
        if not np.array_equal(actual, desired):
            other = other.assign_coords({n: ref[n]})
    return other


def _align(arrays: list[xr.DataArray], roles: list[str]) -> list[xr.DataArray]:
    try:
        arrays = list(xr.align(*arrays, join="exact"))
    except ValueError as exc:
        raise CoordinateError(
            f"the {', '.join(roles)} are not on the same coordinates ({exc}). "
            "Fix: select the common coordinates first, e.g. a, b = xr.align(a, b, join='inner'), "
            "or climatology.sel(level=forecast.level)"
        ) from None
    sizes: dict = {}
    for role, a in zip(roles, arrays):
        for d, s in a.sizes.items():
            if sizes.setdefault(d, (s, role))[0] != s:
                raise CoordinateError(
                    f"dimension {d!r} has size {s} in the {role} but {sizes[d][0]} in the {sizes[d][1]}"
                )
    return arrays


def _check_units(ref: xr.DataArray, other: xr.DataArray, ref_role: str, role: str) -> None:
    ua, ub = ref.attrs.get("units"), other.attrs.get("units")
    if ua is None or ub is None or str(ua) == str(ub):
        return
    from .units import parse_units

    try:
        same = parse_units(ua, name=str(ref.name)) == parse_units(ub, name=str(other.name))
    except UnitsError:
        same = False
    if not same:
        raise UnitsError(
            f"the {ref_role} {ref.name!r} has units {ua!r} but the {role} has {ub!r}; a score needs both "
            "in the same units. Fix: convert one (for example xphyda.units.to_si) or correct its units attribute"
        )


# --------------------------------------------------------------------------- weights
def _sphere(latv, lonv):
    """A SphereGrid for cell areas; a placeholder axis stands in for a missing one (areas factorise)."""
    from .physics.operators import SphereGrid

    lat = np.array([-60.0, 0.0, 60.0]) if latv is None else latv
    lon = np.array([0.0, 120.0, 240.0]) if lonv is None else lonv
    try:
        return SphereGrid(lat, lon)
    except GridError as exc:
        raise GridError(
            f"cannot compute finite-volume cell areas: {exc}. "
            "Fix: weighting='cos' works on any grid, or pass weights=..."
        ) from None


def _default_weights(ref: xr.DataArray, core, latn, lonn, weighting) -> tuple[xr.DataArray, str]:
    if weighting not in ("area", "cos", None):
        raise DataError(f"weighting must be 'area', 'cos' or None; got {weighting!r}")
    w = xr.DataArray(1.0)
    use_lat = weighting is not None and latn is not None and latn in core and latn in ref.coords
    use_lon = weighting == "area" and lonn is not None and lonn in core and lonn in ref.coords
    if use_lat:
        latv = np.asarray(ref[latn].values, dtype=np.float64)
        if weighting == "cos":
            if np.any(np.abs(latv) > 90):
                raise GridError(f"latitude {latn!r} has values outside [-90, 90]: {_summary(latv)}")
            f = np.clip(np.cos(np.deg2rad(latv)), 0.0, None)
        else:
            f = np.abs(_sphere(latv, None).dsin)
        w = w * xr.DataArray(f / f.mean(), dims=latn, coords={latn: ref[latn].values})
    if use_lon:
        lonv = np.asarray(ref[lonn].values, dtype=np.float64)
        f = _sphere(None, lonv).cell_area.sum(axis=0)
        w = w * xr.DataArray(f / f.mean(), dims=lonn, coords={lonn: ref[lonn].values})
    if not (use_lat or use_lon):
        return w, "equal"
    return w, {"area": "finite-volume cell area", "cos": "cos(latitude)"}[weighting]


def _user_weights(weights, data_dims: set) -> xr.DataArray:
    if not isinstance(weights, xr.DataArray):
        raise DataError(
            f"weights must be an xarray.DataArray with named dims; got {type(weights).__name__}. "
            "Fix: xr.DataArray(values, dims=('latitude',), coords=...)"
        )
    extra = [d for d in weights.dims if d not in data_dims]
    if extra:
        raise CoordinateError(
            f"weights have dims {extra} that the data do not have (data dims {sorted(map(str, data_dims))})"
        )
    if not isinstance(weights.data, np.ndarray) or weights.size == 0:
        return weights
    w = np.asarray(weights.values, dtype=np.float64)
    if np.isnan(w).any() or (w < 0).any():
        raise DataError(
            f"weights must be finite and non-negative; found {int(np.isnan(w).sum())} NaN and "
            f"{int((w < 0).sum())} negative values. Fix: weights.fillna(0).clip(min=0)"
        )
    return weights


def area_weights(
    obj, *, dim: Dims = None, weighting: Weighting = "area", lat: str | None = None, lon: str | None = None
) -> xr.DataArray:
    """The weights a score uses when reducing ``obj`` over ``dim`` (normalised to mean 1 per factor).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((3, 4)), {"lat": [60.0, 0.0, -60.0], "lon": [0.0, 90.0, 180.0, 270.0]},
    ...                   ("lat", "lon"))
    >>> area_weights(da, dim="lat").values  # polar caps 90-30 and 30-90, and the band 30S-30N
    array([0.75, 1.5 , 0.75])
    """
    if isinstance(obj, xr.Dataset):
        obj = obj[list(obj.data_vars)[0]] if obj.data_vars else xr.DataArray(coords=obj.coords)
    core, latn, lonn = _resolve_dims(obj, [], dim, lat, lon, None, "data")
    return _default_weights(obj, core, latn, lonn, weighting)[0]


# --------------------------------------------------------------------------- engine
def history(fname: str, detail: str) -> str:
    return f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} xphyda.metrics.{fname}({detail})"


def _expand(x: xr.DataArray, core, sizes) -> xr.DataArray:
    missing = {d: sizes[d] for d in core if d not in x.dims}
    return x.expand_dims(missing) if missing else x


def _with_tiebreak(kernel: Callable) -> Callable:
    """``kernel(ensemble, truth, weights, tiebreak=u)`` called with ``u`` as a fourth positional input."""

    def run(ensemble, truth, weights, u, **kwargs):
        return kernel(ensemble, truth, weights, tiebreak=u, **kwargs)

    return run


def score_da(
    fname: str,
    kernel: Callable,
    inputs: list[tuple[str, xr.DataArray]],
    *,
    dim,
    weights,
    weighting,
    skipna: bool,
    lat,
    lon,
    long_name: str,
    units: str | None,
    member_dim: str | None = None,
    ensemble: bool = False,
    tiebreak_seed=None,
    use_tiebreak: bool = False,
    out_dim: str | None = None,
    kwargs: Mapping | None = None,
    attrs: Mapping | None = None,
) -> xr.DataArray:
    """Run ``kernel`` on DataArrays ``inputs`` (role, array; the forecast or ensemble first).

    Finds the member dim (``ensemble``) and the reduced dims, puts the other
    inputs on the forecast's grid (within :data:`COORD_TOLERANCE`), checks
    units, aligns exactly, builds the weights, and calls the kernel with the
    reduced dims last (the member dim after them), ``axis`` and ``skipna``.
    """
    roles = [r for r, _ in inputs]
    arrays = [a for _, a in inputs]
    ref = arrays[0]
    member = member_dim_of(ref, member_dim, role=roles[0]) if ensemble else None
    for role, a in zip(roles[1:], arrays[1:]):
        if member is not None and member in a.dims:
            raise DataError(
                f"the {role} has the member dimension {member!r}; expected one state to score the ensemble "
                f"against. Fix: select one, e.g. {role}.isel({member}=0), or pass member_dim= if {member!r} "
                "is not the member dimension"
            )
    core, latn, lonn = _resolve_dims(ref, arrays[1:], dim, lat, lon, member, roles[0])
    arrays = [ref] + [_conform(ref, a, (latn, lonn), roles[0], r) for r, a in zip(roles[1:], arrays[1:])]
    for r, a in zip(roles[1:], arrays[1:]):
        _check_units(ref, a, roles[0], r)
    data_dims = set().union(*[a.dims for a in arrays])
    if weights is None:
        w, wdesc = _default_weights(ref, core, latn, lonn, weighting)
    else:
        w = _conform(ref, _user_weights(weights, data_dims), (latn, lonn), roles[0], "weights")
        wdesc = "user"
    if isinstance(w, xr.DataArray) and w.ndim:
        arrays = _align(arrays + [w], roles + ["weights"])
        arrays, w = arrays[:-1], arrays[-1]
    else:
        arrays = _align(arrays, roles)
    sizes = {}
    for a in arrays + [w]:
        sizes.update(a.sizes)
    args = [_expand(a, core, sizes) for a in arrays] + [_expand(w, core, sizes)]
    core_dims = [list(core) + ([member] if member is not None and i == 0 else []) for i in range(len(args))]
    kw = dict(kwargs or {})
    kw.update(axis=tuple(range(-len(core), 0)), skipna=skipna)
    if ensemble:
        kw["member_axis"] = -1
    if use_tiebreak:
        template = xr.broadcast(arrays[1], ref.isel({member: 0}, drop=True))[0]
        rng = np.random.default_rng(tiebreak_seed)
        u = xr.DataArray(rng.random(template.shape), dims=template.dims)
        args.append(u)
        core_dims.append(list(core))
        kernel = _with_tiebreak(kernel)
    out_core = [[out_dim]] if out_dim else [[]]
    gufunc = {"allow_rechunk": True}
    if out_dim:
        gufunc["output_sizes"] = {out_dim: ref.sizes[member] + 1}
    out = xr.apply_ufunc(
        kernel,
        *args,
        input_core_dims=core_dims,
        output_core_dims=out_core,
        kwargs=kw,
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs=gufunc,
        keep_attrs=False,
    )
    out.name = ref.name
    var = ref.attrs.get("long_name", ref.name)
    out_attrs = {"long_name": f"{long_name} of {var}" if var is not None else long_name}
    out_units = ref.attrs.get("units") if units is None else units
    if out_units is not None:
        out_attrs["units"] = out_units
    out_attrs.update(reduced_dims=" ".join(map(str, core)), weighting=wdesc)
    if member is not None:
        out_attrs["ensemble_size"] = int(ref.sizes[member])
    out_attrs.update(attrs or {})
    out_attrs["history"] = history(fname, f"dim={list(map(str, core))}, weighting={wdesc!r}, skipna={skipna}")
    out.attrs = out_attrs
    return out


def dispatch(fname: str, forecast, others: list[tuple[str, object]], score: Callable):
    """Apply ``score(forecast_da, *other_das)`` to DataArrays, or variable by variable to Datasets."""
    if isinstance(forecast, xr.DataArray):
        for role, o in others:
            if not isinstance(o, xr.DataArray):
                raise DataError(
                    f"{fname}: the forecast is a DataArray but the {role} is a {type(o).__name__}; "
                    f"pass both as DataArrays (e.g. {role}[name]) or both as Datasets"
                )
        return score(forecast, *[o for _, o in others])
    if not isinstance(forecast, xr.Dataset):
        raise DataError(f"{fname}: expected an xarray DataArray or Dataset; got {type(forecast).__name__}")
    for role, o in others:
        if not isinstance(o, xr.Dataset):
            raise DataError(
                f"{fname}: the forecast is a Dataset but the {role} is a {type(o).__name__}; pass both as Datasets"
            )
    names = list(forecast.data_vars)
    if not names:
        raise VariableError(f"{fname}: the forecast Dataset has no data variables")
    for role, o in others:
        missing = [n for n in names if n not in o.data_vars]
        if missing:
            common = [n for n in names if n in o.data_vars]
            raise VariableError(
                f"{fname}: the {role} lacks {missing}, which the forecast has; the {role} has "
                f"{sorted(map(str, o.data_vars))}. Fix: score the common variables, forecast[{common}]"
            )
    results = {n: score(forecast[n], *[o[n] for _, o in others]) for n in names}
    first = results[names[0]]
    return xr.Dataset(results, attrs={"title": f"xphyda {fname}", "history": first.attrs["history"]})
