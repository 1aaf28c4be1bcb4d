"""Is the ``diag-fwd`` guidance too weak or too strong?  A sweep of its covariance scale ``c``.

``diag-fwd`` solves ``(H Sigma H^T + R) u = y - H D`` with the isotropic
``Sigma = c sigma^2 s^2 / (sigma^2 + s^2)`` (``c = 1`` in the library, see
:mod:`xphyda.model.guidance`): a smaller ``c`` trusts the observations more.  This
probe runs the model with each ``c`` on the same test cases, observations and
member seeds (the library's ``GuidedDenoiser`` with ``diag_scale`` set), and
reports the ensemble-mean RMSE over the tuned OI's (``benchmarks/results/oi_tuning.json``)
per field, plus, for the humidity and ``w850``, the RMSE at the observed columns
only (the fit to the observations) beside the tuned OI's, the VRE
reconstruction's (``encode``) and the observations' own noise.

    python benchmarks/probe_guidance_scale.py --data /work/corpus --scales 0.1 0.3 1 3 10 --cases 4 --out F

RMSE per field is averaged over the cases, as :func:`xphyda.evaluate.run_osse` does.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

HERE = Path(__file__).parent
LEVELS = [200, 300, 500, 700, 850]
FIT_FIELDS = [("q", 200), ("q", 300), ("q", 500), ("w", 850)]


def _rmse(a: xr.DataArray, truth: xr.DataArray, w: xr.DataArray, where=None) -> xr.DataArray:
    """:func:`xphyda.metrics.rmse` with cos-latitude weights, over the ``where`` columns only if given."""
    from xphyda.metrics import rmse

    a = a if where is None else a.where(where)
    return rmse(a, truth, weights=w, skipna=where is not None).squeeze(drop=True)


def _fields(rm: xr.DataArray, name: str) -> dict:
    if "level" not in rm.dims:
        return {name: float(rm)}
    return {f"{name}{int(lev)}": float(rm.sel(level=lev)) for lev in rm.level.values}


def main(argv: list[str]) -> dict:
    import xphyda.model.sampler as sampler
    from xphyda.model.guidance import GuidedDenoiser

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=None, help="default: the bundled model")
    p.add_argument("--scales", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.01])
    p.add_argument("--cases", type=int, default=4, help="evenly spaced among the 24 cases of the accuracy table")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    scale = {"c": 1.0}

    class Scaled(GuidedDenoiser):  # the library's guidance with another covariance scale
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.diag_scale = scale["c"]

    sampler.GuidedDenoiser = Scaled
    try:
        return _run(a, scale, argv)
    finally:
        sampler.GuidedDenoiser = GuidedDenoiser


def _run(a, scale: dict, argv: list[str]) -> dict:
    from evaluate_model import _tuned
    from xphyda.assimilate import assimilate
    from xphyda.evaluate._setup import case_states, open_truth, resolve_split, select_cases, settings_from
    from xphyda.obs import simulate

    ds, tdim, _ = open_truth(a.data, variables=None, levels=LEVELS, store_kwargs=None)
    split, _ = resolve_split(ds, tdim, "test", "24h")
    cases = select_cases(ds, tdim, cases=24, split=split, split_name="test", lead="24h", background=None)
    picks = np.unique(np.linspace(0, len(cases) - 1, a.cases).round().astype(int))
    rows: dict = {}  # (fraction, method) -> list over cases of {field: rmse}
    fit: dict = {}
    for ci in picks:
        case = cases[int(ci)]
        truth, bg = case_states(ds, tdim, case, lead="24h")
        w = np.cos(np.deg2rad(truth.latitude)) * xr.ones_like(truth.longitude)
        for f in a.fractions:
            setting = settings_from([{"fraction": f}], None)[0]
            obs = simulate(truth, **setting.kwargs, seed=case.seed(0, setting.seed_key))
            tuned = _tuned(HERE / "results" / "oi_tuning.json", setting.label) or {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = {"oi-tuned": assimilate(bg, obs, method="oi", **tuned)}
                for c in a.scales:
                    scale["c"] = c
                    ens = assimilate(bg, obs, method="phyda", model=a.model, members=a.members, steps=a.steps,
                                     seed=case.seed(0), progress=False)
                    out[f"c={c:g}"] = ens.mean("member")
                enc = bg.phyda.encode(obs, model=a.model)
            for name, x in out.items():
                rows.setdefault((f, name), []).append(
                    {k: v for var in truth.data_vars for k, v in _fields(_rmse(x[var], truth[var], w), var).items()})
            for var, lev in FIT_FIELDS:
                seen = obs[var].sel(level=lev).notnull()
                t = truth[var].sel(level=lev)
                got = {name: float(_rmse(x[var].sel(level=lev), t, w, seen)) for name, x in out.items()}
                got["vre"] = float(_rmse(enc[f"{var}{lev}"], t, w, seen))
                got["observations"] = float(_rmse(obs[var].sel(level=lev), t, w, seen))
                fit.setdefault((f, f"{var}{lev}"), []).append(got)
            print(f"case {case.label}, fraction {f:g} done", flush=True)
    result = {"command": "python benchmarks/probe_guidance_scale.py " + shlex.join(argv),
              "cases": [cases[int(i)].label for i in picks], "settings": {}}
    for f in a.fractions:
        mean = {name: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
                for (ff, name), rs in rows.items() if ff == f}
        ref = mean["oi-tuned"]
        ratios = {name: {k: round(v / ref[k], 4) for k, v in m.items() if ref[k] > 0}
                  for name, m in mean.items() if name != "oi-tuned"}
        result["settings"][f"fraction={f:g}"] = {
            "rmse_ratio_to_oi_tuned": ratios,
            "mean_ratio": {name: round(float(np.mean(list(r.values()))), 4) for name, r in ratios.items()},
            "rmse_at_observed_columns": {field: {k: float(f"{np.mean([g[k] for g in gs]):.4g}") for k in gs[0]}
                                         for (ff, field), gs in fit.items() if ff == f},
        }
        s = result["settings"][f"fraction={f:g}"]
        print(f"fraction {f:g}: mean ratio {s['mean_ratio']}")
        print("  q200", {n: r["q200"] for n, r in ratios.items()}, " w850", {n: r["w850"] for n, r in ratios.items()})
        print("  at observed columns", json.dumps(s["rmse_at_observed_columns"]))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main(sys.argv[1:])
