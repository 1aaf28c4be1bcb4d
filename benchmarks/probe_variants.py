"""RMSE of PhyDA variants relative to the first one, per field, on a few corpus test states.

    python benchmarks/probe_variants.py --data /work/corpus --cases 4 \\
        --variant 'independent={"antithetic": false}' 'pairs={}' 'independent-32={"antithetic": false, "members": 32}' \\
        'encode=encode' --out probe.json

Each variant is ``NAME=JSON`` (options of ``assimilate(method="phyda")`` over the
defaults ``members=8``, the case's seed) or ``NAME=encode`` (the VRE
reconstruction, ``ds.phyda.encode(obs)``).  States evenly spaced over the test
split (background = the state 24 h earlier), observations of every variable at
``--fraction`` of the columns with the default errors (``xphyda.obs.simulate``,
the same for every variant).  Prints and writes the latitude-weighted RMSE of the
ensemble mean (the reconstruction for ``encode``) relative to the first variant:
the mean over the level fields and each field.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np
import xarray as xr

LEVELS = (200, 300, 500, 700, 850)


def _as_state(enc: xr.Dataset, like: xr.Dataset) -> xr.Dataset:
    out = {}
    for v in like.data_vars:
        if "level" in like[v].dims:
            out[v] = xr.concat([enc[f"{v}{int(p)}"].squeeze(drop=True).assign_coords(level=p)
                                for p in like.level.values], "level")
        elif v in enc:
            out[v] = enc[v].squeeze(drop=True)
    return xr.Dataset(out)


def main(argv: list[str]) -> dict:
    import xphyda  # noqa: F401 - the accessor
    from xphyda.evaluate._setup import case_states, open_truth, resolve_split, select_cases
    from xphyda.obs import simulate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--variant", nargs="+", required=True, metavar="NAME=JSON|encode")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    variants = dict(item.split("=", 1) for item in a.variant)
    ds, tdim, _ = open_truth(a.data, variables=None, levels=LEVELS, store_kwargs=None)
    split, _ = resolve_split(ds, tdim, "test", "24h")
    cases = select_cases(ds, tdim, cases=a.cases, split=split, split_name="test", lead="24h", background=None)
    mse: dict = {}
    for case in cases:
        truth, bg = (s.load() for s in case_states(ds, tdim, case, lead="24h"))
        obs = simulate(truth, fraction=a.fraction, seed=case.seed(0, 0))
        truth, w = truth.squeeze(drop=True), np.cos(np.deg2rad(truth["latitude"]))
        for name, spec in variants.items():
            if spec == "encode":
                state = _as_state(bg.phyda.encode(obs, model=a.model), truth)
            else:
                opts = {"members": 8, "seed": case.seed(0), "progress": False, "model": a.model, **json.loads(spec)}
                state = bg.phyda.assimilate(obs, method="phyda", **opts).mean("member").squeeze(drop=True)
            for v in state.data_vars:
                if v not in truth:
                    continue
                err = ((state[v] - truth[v]) ** 2).weighted(w).mean(("latitude", "longitude"))
                for lev in np.atleast_1d(err["level"].values) if "level" in err.dims else [None]:
                    key = v if lev is None else f"{v}{int(lev)}"
                    val = float(err if lev is None else err.sel(level=lev))
                    mse.setdefault(name, {}).setdefault(key, []).append(val)
        print("case", case.label, flush=True)
    ref = next(iter(variants))
    out = {"command": "python benchmarks/probe_variants.py " + shlex.join(argv), "reference": ref, "variants": {}}
    for name in variants:
        r = {k: round(float(np.sqrt(np.mean(v) / np.mean(mse[ref][k]))), 3) for k, v in mse[name].items()
             if k in mse[ref] and np.mean(mse[ref][k]) > 0}
        level = [v for k, v in r.items() if k[0] in "ztuvqw" and k[1:].isdigit()]  # the model's level fields
        out["variants"][name] = {"mean_level_fields": round(float(np.mean(level)), 4), "by_field": r}
        print(name, out["variants"][name]["mean_level_fields"], {k: r[k] for k in ("sp", "w850", "t300", "z500") if k in r})
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
