"""Copies of an adapted, fine-tuned model with one new part switched off, to measure each part's share.

    python benchmarks/probe_new_parts.py MODEL OUT_DIR

Writes ``OUT_DIR/no-static`` (the stem's weights on the static fields set to zero:
the same function as a network without those inputs) and ``OUT_DIR/no-attention``
(the attention block's output projection set to zero: the block becomes the
identity).  Evaluate them beside the model, e.g.

    python benchmarks/evaluate_model.py --data /work/corpus --model MODEL --cases 8 --members 8 \\
        --steps 16 --guidance diag-fwd --ablation no-static=OUT_DIR/no-static no-attention=OUT_DIR/no-attention
    python benchmarks/bootstrap_ratios.py OUT --reference no-static
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(model: str, out_dir: str) -> None:
    import torch

    from xphyda.model.checkpoint import RESERVED, load_checkpoint, save_checkpoint
    from xphyda.models import find

    states, card = load_checkpoint(find(model))
    arch = card["architecture"]
    n_static = len(arch.get("static") or [])
    for name, ok in (("no-static", n_static > 0), ("no-attention", bool(arch.get("attention")))):
        if not ok:
            print(f"{name}: the model has no such part; skipped")
            continue
        groups = {k: dict(v) for k, v in states.items()} if card.get("state_dicts") else {"ema": dict(states)}
        ema = groups["ema"]
        with torch.no_grad():
            if name == "no-static":
                ema["denoiser.net.stem.weight"] = ema["denoiser.net.stem.weight"].clone()
                ema["denoiser.net.stem.weight"][:, -n_static:] = 0.0
            else:
                for key in ("denoiser.net.attn.proj.weight", "denoiser.net.attn.proj.bias"):
                    ema[key] = torch.zeros_like(ema[key])
        out = Path(out_dir) / name
        save_checkpoint(out, groups, {**{k: v for k, v in card.items() if k not in RESERVED}, "name": name,
                                      "scores": {}}, overwrite=True)
        print(f"{name} written to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
