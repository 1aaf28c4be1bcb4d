"""Copy a trained model folder into the package as the bundled model, with its held-out scores.

    python scripts/bundle_model.py /work/runs/jcm-t31-v1c --scores phyda-accuracy/summary.json \\
        --corpus /work/corpus --name jcm-t31-v1

The weights are copied unchanged (their sha256 stays valid); the card gains
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


def main(argv: list[str]) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="trained model folder (model.safetensors + card.json)")
    p.add_argument("--scores", required=True, help="summary.json of benchmarks/evaluate_model.py")
    p.add_argument("--corpus", help="corpus folder whose corpus.json describes the training data")
    p.add_argument("--name", default="jcm-t31-v1")
    p.add_argument("--status", default=None, help="one line on what the model is fit for")
    a = p.parse_args(argv)
    src, dst = Path(a.model), ROOT / "xphyda" / "models" / a.name
    card = json.loads((src / "card.json").read_text())
    scores = json.loads(Path(a.scores).read_text())
    card["name"] = a.name
    card["scores"] = {"status": a.status, **scores} if a.status else scores
    if a.corpus:
        corpus = json.loads((Path(a.corpus) / "corpus.json").read_text())
        card["training"]["data_attrs"] = {k: str(v) for k, v in corpus.get("attrs", {}).items()}
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "model.safetensors", dst / "model.safetensors")
    (dst / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    sys.path.insert(0, str(ROOT))
    from xphyda.model.checkpoint import load_model

    load_model(dst, device="cpu")
    print(f"bundled {src} as {dst} ({(dst / 'model.safetensors').stat().st_size / 1e6:.1f} MB)")
    return dst


if __name__ == "__main__":
    main(sys.argv[1:])
