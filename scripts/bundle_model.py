"""Copy a trained model folder into the package as the bundled model, with its held-out scores.

    python scripts/bundle_model.py /work/runs/jcm-t31-v1c --scores phyda-accuracy/summary.json \\
        --corpus /work/corpus --name jcm-t31-v1

The weights are copied unchanged (their sha256 stays valid) unless
``--balance-from RUN/work`` adds the balance statistics
(:func:`xphyda.training.balance_group`, from that run's training cache) as a
``"balance"`` tensor group beside the weights; the card gains
``scores`` (the ``benchmarks/evaluate_model.py`` summary: RMSE, ratios, CRPS,
spread-skill, residual ratios, seconds) and the corpus provenance
(``corpus.json`` written by ``phyda simulate``).  The result is loaded back
with :func:`xphyda.model.checkpoint.load_model` before the script returns.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _balance(work: Path, card: dict, model: Path | None, cases: int = 8) -> tuple[dict, dict | None]:
    """Balance statistics from the run's training split (the preset's variables and levels), and the spread
    factors of ``model`` on the validation split."""
    import numpy as np

    from xphyda.data.pipeline import prepare
    from xphyda.model.checkpoint import load_model
    from xphyda.training import balance_group, calibration_group, preset_config

    cfg = preset_config(card["preset"])
    td = prepare(work / "cache.zarr", variables=list(cfg["variables"]) + list(cfg.get("surface", [])),
                 levels=cfg["levels_hpa"], stats=work / "stats.json")
    ds = td.dataset("train")
    co = ds._reader.coords()
    out = balance_group(ds, td.spec, td.stats, np.asarray(co["latitude"]), np.asarray(co["longitude"]))
    if out is None:
        raise SystemExit(f"the preset {card['preset']} lacks the variables the balance needs")
    if model is None:
        return out, None
    from xphyda.model.balance import BALANCE_LAWS, Balance
    from xphyda.model.physics_loss import PhysicsLoss
    from xphyda.training import channel_index

    net, _ = load_model(model, device="cpu")
    physics = PhysicsLoss(lat=np.asarray(co["latitude"]), lon=np.asarray(co["longitude"]), levels_hpa=td.spec.levels,
                          index=channel_index(td.spec), mean=td.stats.mean, std=td.stats.std, laws=BALANCE_LAWS)
    bal = Balance.from_statistics(physics, out, spread=net.denoiser.data_std().reshape(-1).tolist(), laws=BALANCE_LAWS)
    calibration = calibration_group(net, td.dataset("valid"), np.asarray(co["latitude"]), cases=cases,
                                    balance=bal.ensemble)
    for key, f in calibration.items():
        print(key, [round(float(v), 3) for v in f])
    return out, calibration


def main(argv: list[str]) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="trained model folder (model.safetensors + card.json)")
    p.add_argument("--scores", required=True, help="summary.json of benchmarks/evaluate_model.py")
    p.add_argument("--corpus", help="corpus folder whose corpus.json describes the training data")
    p.add_argument("--name", default="jcm-t31-v1")
    p.add_argument("--status", default=None, help="one line on what the model is fit for")
    p.add_argument("--balance-from", default=None, help="training run's work/ folder (cache.zarr, stats.json)")
    p.add_argument("--calibrate", action="store_true",
                   help="with --balance-from: also the spread factors on validation cases (xphyda.training.calibration_group)")
    p.add_argument("--calibration-cases", type=int, default=8, metavar="N",
                   help="validation cases the spread factors are fitted on (default 8)")
    a = p.parse_args(argv)
    if a.calibrate and not a.balance_from:
        p.error("--calibrate needs --balance-from RUN/work (the validation split is read from that run's cache)")
    src, dst = Path(a.model), ROOT / "xphyda" / "models" / a.name
    card = json.loads((src / "card.json").read_text())
    scores = json.loads(Path(a.scores).read_text())
    card["name"] = a.name
    card["scores"] = {"status": a.status, **scores} if a.status else scores
    if a.corpus:
        corpus = json.loads((Path(a.corpus) / "corpus.json").read_text())
        card["training"]["data_attrs"] = {k: str(v) for k, v in corpus.get("attrs", {}).items()}
    dst.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from xphyda.model.checkpoint import RESERVED, load_checkpoint, load_model, save_checkpoint

    if a.balance_from:
        state, _ = load_checkpoint(src)
        groups = dict(state) if card.get("state_dicts") else {"ema": state}
        groups["balance"], calibration = _balance(Path(a.balance_from), card, src if a.calibrate else None,
                                                   a.calibration_cases)
        if calibration is not None:
            groups["calibration"] = calibration
        save_checkpoint(dst, groups, {k: v for k, v in card.items() if k not in RESERVED}, overwrite=True)
    else:
        shutil.copyfile(src / "model.safetensors", dst / "model.safetensors")
        (dst / "card.json").write_text(json.dumps(card, indent=1) + "\n")

    load_model(dst, device="cpu")
    print(f"bundled {src} as {dst} ({(dst / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")
    return dst


if __name__ == "__main__":
    main(sys.argv[1:])
