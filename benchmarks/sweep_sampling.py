"""PhyDA accuracy and cost against sampling steps and guidance, on identical OSSE cases.

Every variant is a PhyDA method of one :func:`xphyda.evaluate.run_osse` call (same
truths, backgrounds, observations and member seeds); for each it prints the median
seconds per analysis and the RMSE of the ensemble mean relative to the reference
variant (``--reference``, default the most steps of the first guidance), as the mean
and the maximum over variables and levels.

The ensemble mean of 8 members carries sampling noise, so two runs of the same
sampler differ too.  ``--reseed N`` adds a second run of the first guidance at
``N`` steps with other member seeds (one fixed seed, the same for every case;
``seed`` is a method option) and reports its RMSE ratio to the first run: the
noise floor that a difference between step counts has to exceed.

    python benchmarks/sweep_sampling.py --data /work/corpus --model /work/runs/jcm-t31-v1c \\
        --steps 4 8 16 32 256 --guidance diag-fwd mmps --cases 2
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

LEVELS = (200, 300, 500, 700, 850)


def main(argv: list[str]) -> dict:
    import torch

    from xphyda.evaluate import run_osse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--guidance", nargs="+", default=["diag-fwd"])
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--cases", type=int, default=2)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--reference", default=None, help="variant name, e.g. diag-fwd-256")
    p.add_argument("--reseed", type=int, default=None, metavar="N",
                   help="also run the first guidance at N steps with other member seeds (noise floor)")
    p.add_argument("--out", default=None, help="write the summary JSON here")
    a = p.parse_args(argv)
    methods = {f"{g}-{s}": {"model": a.model, "members": a.members, "steps": s, "guidance": g}
               for g in a.guidance for s in a.steps}
    ref = a.reference or f"{a.guidance[0]}-{max(a.steps)}"
    twin = None
    if a.reseed is not None:
        twin = (f"{a.guidance[0]}-{a.reseed}-reseeded", f"{a.guidance[0]}-{a.reseed}")
        base = {"model": a.model, "members": a.members, "steps": a.reseed, "guidance": a.guidance[0]}
        methods.setdefault(twin[1], base)
        methods[twin[0]] = {**base, "seed": 7_654_321}
    res = run_osse(a.data, cases=a.cases, split="test", observations=[{"fraction": a.fraction}], methods=methods,
                   levels=LEVELS, metrics=["rmse", "spread_skill_ratio"], residuals="auto", maps=None,
                   report=False, progress=False)
    s = res.summary()
    rm = s[s.metric == "rmse"].set_index(["method", "variable", "level"])["value"]
    seconds = res.runs.groupby("method")["seconds"].median()
    out = {"command": "python benchmarks/sweep_sampling.py " + shlex.join(argv), "reference": ref,
           "torch_threads": torch.get_num_threads(), "variants": {}}
    for name in methods:
        r = (rm.loc[name] / rm.loc[ref]).dropna()
        ss = s[(s.metric == "spread_skill_ratio") & (s.method == name)]["value"]
        out["variants"][name] = {"median_seconds": round(float(seconds[name]), 2),
                                 "rmse_ratio_mean": round(float(r.mean()), 4),
                                 "rmse_ratio_max": round(float(r.max()), 4),
                                 "rmse_ratio_min": round(float(r.min()), 4),
                                 "worst_field": _field(r.idxmax()), "best_field": _field(r.idxmin()),
                                 "spread_skill_mean": round(float(ss.mean()), 3)}
        print(name, out["variants"][name])
    if twin is not None:
        r = (rm.loc[twin[0]] / rm.loc[twin[1]]).dropna()
        out["noise_floor"] = {"variants": list(twin), "rmse_ratio_mean": round(float(r.mean()), 4),
                              "rmse_ratio_min": round(float(r.min()), 4), "rmse_ratio_max": round(float(r.max()), 4)}
        print("noise floor", out["noise_floor"])
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
    return out


def _field(key) -> str:
    """``("q", 200.0)`` as ``"q200"``, a surface field's NaN level as nothing."""
    var, level = key
    return f"{var}{'' if level != level else int(level)}"


if __name__ == "__main__":
    main(sys.argv[1:])
