"""Maps of one OSSE case for the report: truth, background, analyses, spread and observation positions."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ._setup import EvaluationError

MAPS = (("z", 500.0), ("t", 850.0))
"""Variables and levels mapped by default (the ones present)."""


def map_keys(truth: xr.Dataset, maps) -> list[tuple[str, float | None]]:
    from ..grid import discover_grid

    grid = discover_grid(truth)
    levels = [] if grid.level is None else [float(x) for x in truth[grid.level].values]
    wanted = MAPS if maps == "auto" else [(m, None) if isinstance(m, str) else tuple(m) for m in (maps or ())]
    out = []
    for var, lev in wanted:
        if var not in truth.data_vars:
            if maps != "auto":
                raise EvaluationError(
                    f"map variable {var!r} is not in the data; it has {sorted(map(str, truth.data_vars))}"
                )
            continue
        has_level = grid.level is not None and grid.level in truth[var].dims
        if has_level:
            lev = float(lev) if lev is not None else levels[len(levels) // 2]
            if not any(np.isclose(lev, levels)):
                if maps != "auto":
                    raise EvaluationError(
                        f"map level {lev:g} of {var!r} is not in the data's levels {levels}"
                    )
                lev = levels[int(np.argmin(np.abs(np.asarray(levels) - lev)))]
        out.append((var, lev if has_level else None))
    if not out:  # the first variable, at its middle level
        var = str(next(iter(truth.data_vars)))
        has_level = grid.level is not None and grid.level in truth[var].dims
        out.append((var, levels[len(levels) // 2] if has_level else None))
    return out


def _field_name(var: str, lev) -> str:
    return var if lev is None else f"{var}{lev:g}"


def _slice(da: xr.DataArray, lev, grid) -> xr.DataArray:
    da = da.isel({grid.time: 0}) if grid.time in da.dims else da
    return da.sel({grid.level: lev}, method="nearest") if lev is not None else da


def case_fields(truth, background, obs_by_setting, analyses, keys, settings, methods, case) -> xr.Dataset:
    """Maps of one case: truth, background, per setting and method the (mean) analysis and its spread."""
    from ..grid import discover_grid

    grid = discover_grid(truth)
    names = [m.name for m in methods if m.kind != "background"]
    data = {}
    for var, lev in keys:
        key = _field_name(var, lev)
        attrs = {
            "units": truth[var].attrs.get("units", ""),
            "variable": var,
            "level": "" if lev is None else lev,
        }
        drop = [c for c in (grid.level, grid.time) if c]
        tr = _slice(truth[var], lev, grid).drop_vars(drop, errors="ignore")
        data[f"truth_{key}"] = tr.astype(np.float32).assign_attrs(attrs, long_name=f"truth {key}")
        data[f"background_{key}"] = (
            _slice(background[var], lev, grid)
            .drop_vars(drop, errors="ignore")
            .astype(np.float32)
            .assign_attrs(attrs, long_name=f"background {key}")
        )
        shape = (len(settings), len(names)) + tr.shape
        mean, spread = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
        for i, s in enumerate(settings):
            for j, name in enumerate(names):
                ds = analyses.get((s.label, name))
                if ds is None:
                    continue
                a = _slice(ds[var], lev, grid)
                if "member" in a.dims:
                    spread[i, j] = a.std("member", ddof=1).transpose(*tr.dims).values
                    a = a.mean("member")
                mean[i, j] = a.transpose(*tr.dims).values
        dims = ("setting", "method") + tr.dims
        data[f"analysis_{key}"] = xr.DataArray(
            mean, dims=dims, attrs=dict(attrs, long_name=f"analysis {key} (ensemble mean)")
        )
        data[f"spread_{key}"] = xr.DataArray(
            spread,
            dims=dims,
            attrs=dict(
                attrs,
                long_name=f"ensemble spread of {key} (standard deviation; NaN for deterministic methods)",
            ),
        )
    # observation positions of each setting (padded with NaN)
    pos = []
    for s in settings:
        o = obs_by_setting[s.label]
        var0 = next(v for v in o.data_vars if not str(v).endswith("_error"))
        da = o[var0]
        if "station" in da.dims:
            pos.append((np.asarray(o["lat"].values, float), np.asarray(o["lon"].values, float)))
        else:
            seen = da.notnull()
            seen = seen.any([d for d in seen.dims if d not in (grid.lat, grid.lon)])
            la, lo = np.meshgrid(o[grid.lat].values, o[grid.lon].values, indexing="ij")
            m = np.asarray(seen.transpose(grid.lat, grid.lon).values)
            pos.append((la[m].astype(float), lo[m].astype(float)))
    n = max(p[0].size for p in pos)
    lat = np.full((len(settings), n), np.nan)
    lon = np.full((len(settings), n), np.nan)
    for i, (la, lo) in enumerate(pos):
        lat[i, : la.size], lon[i, : lo.size] = la, lo
    data["obs_lat"] = xr.DataArray(
        lat,
        dims=("setting", "obs"),
        attrs={"units": "degrees_north", "long_name": "latitude of the observations of the map case"},
    )
    data["obs_lon"] = xr.DataArray(
        lon,
        dims=("setting", "obs"),
        attrs={"units": "degrees_east", "long_name": "longitude of the observations of the map case"},
    )
    out = xr.Dataset(data).assign_coords(setting=[s.label for s in settings], method=names)
    out.attrs = {
        "title": "xphyda OSSE: fields of one case",
        "case": case.label,
        "maps": json.dumps([[v, lev] for v, lev in keys]),
    }
    return out
