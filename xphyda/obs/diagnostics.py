"""Per-observation diagnostics returned with an analysis: flag, O - B, O - A and the error used.

For each observation variable ``v`` the analysis Dataset gains, on the
observation's own dimensions (the station dimension for points, the analysis
grid for gridded observations):

``v_flag``
    CF flag (``flag_values``, ``flag_meanings``; see :mod:`xphyda.obs.qc`);
``v_innovation``
    observation minus background, ``O - B``;
``v_residual``
    observation minus analysis, ``O - A``;
``v_obs_error``
    the observation-error standard deviation used.

Values are in the units of the background variable that ``v`` observes; they
are NaN where the observation is missing or outside the grid.  Coordinates of
the observations that would clash with the background's (a ``latitude`` along
``station``, a ``time`` with other values) are renamed with an ``obs_`` prefix.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .problem import ObsProblem, Target
from .qc import FLAGS, flag_attributes

__all__ = ["diagnostics", "model_equivalent"]


def model_equivalent(target: Target, state: np.ndarray) -> np.ndarray:
    """``H x`` for every observation of ``target``, each at its own time (NaN where ``H`` is undefined)."""
    out = np.full(target.y.size, np.nan)
    for t in np.unique(target.time_index):
        rows = np.flatnonzero(target.time_index == t)
        out[rows] = target.H[rows] @ state[t].ravel()
    out[(target.flags == FLAGS["missing_value"]) | (target.flags == FLAGS["outside_grid"])] = np.nan
    return out


def _clashes(da: xr.DataArray, background: xr.Dataset) -> dict[str, str]:
    renames = {}
    names = set(map(str, background.variables)) | set(map(str, background.dims))
    for name in list(da.coords) + list(da.dims):
        name = str(name)
        if name not in names or name in renames:
            continue
        if name in background.coords and name in da.coords:
            a, b = da[name], background[name]
            if (
                a.dims == b.dims
                and a.shape == b.shape
                and np.array_equal(np.asarray(a.values), np.asarray(b.values))
            ):
                continue
        elif (
            name in background.dims
            and name in da.dims
            and name not in da.coords
            and name not in background.coords
            and da.sizes[name] == background.sizes[name]
        ):
            continue
        renames[name] = f"obs_{name}"
    return renames


def diagnostics(problem: ObsProblem, analysis: dict[str, np.ndarray], background: xr.Dataset) -> xr.Dataset:
    """Diagnostics Dataset of every observation variable (see the module notes).

    Parameters
    ----------
    problem : ObsProblem
        With final flags.
    analysis : dict
        Target name -> SI analysis shaped like ``target.background``.
    background : xarray.Dataset
        The background (for units, names and clash checks).
    """
    out = {}
    for target in problem.targets.values():
        hb = model_equivalent(target, target.background)
        ha = model_equivalent(target, analysis.get(target.name, target.background))
        fields = {
            "innovation": (
                target.from_si(target.y - hb, difference=True),
                "observation minus background (O - B)",
            ),
            "residual": (
                target.from_si(target.y - ha, difference=True),
                "observation minus analysis (O - A)",
            ),
            "obs_error": (
                target.from_si(target.sigma_o, difference=True),
                "observation-error standard deviation used",
            ),
        }
        for var, sl in target.pieces:
            tpl = var.template
            coords = {k: v for k, v in tpl.coords.items()}
            renames = _clashes(tpl, background)
            sn = tpl.attrs.get("standard_name") or background[target.name].attrs.get("standard_name")
            flag = xr.DataArray(
                target.flags[sl].reshape(tpl.shape),
                dims=tpl.dims,
                coords=coords,
                attrs=flag_attributes(var.name, sn),
            )
            out[f"{var.name}_flag"] = flag.rename(renames)
            for suffix, (values, long_name) in fields.items():
                attrs = {
                    "long_name": f"{long_name} of {var.name}, observing {target.name}",
                    "units": target.units,
                }
                da = xr.DataArray(values[sl].reshape(tpl.shape), dims=tpl.dims, coords=coords, attrs=attrs)
                out[f"{var.name}_{suffix}"] = da.rename(renames)
    return xr.Dataset(out)
