"""Give a trained model new inputs, attention or a movable centre, keeping its function, ready for a fine-tune.

    python scripts/adapt_model.py MODEL /work/runs/adapted --static-from /work/corpus/traj0.zarr \\
        --static lsm z_surface latitude --attention --drop-observation-inputs

Then ``phyda train --init-from /work/runs/adapted ...`` fine-tunes it.  What it does
(:func:`xphyda.model.phyda.adapt`):

* ``--static NAME ...`` appends time-invariant fields to the denoiser's
  conditioning, read from ``--static-from`` (any xarray-readable store on the
  model's grid or regridded to it, :func:`xphyda.data.static.static_fields`;
  ``latitude`` is the grid's latitude itself), standardised and stored with the
  weights (``phyda train --static`` does the same for a run from scratch or a fine-tune);
* ``--attention`` adds self-attention at the denoiser's coarsest level;
* ``--recon-centre`` lets the fine-tune move the denoiser's centre from the
  scaled background towards the VRE reconstruction, with a learnable share per
  channel that starts at 0;
* ``--drop-observation-inputs`` removes the ``[y, mask]`` inputs of a model
  trained with ``--denoiser-obs`` (the only change that alters the function: by
  what those inputs had learned).

New inputs and blocks start with zero weight on their way out, so the adapted
model computes the same analyses as the original until it is fine-tuned (the
script checks this on random inputs).  The card keeps the original's
normalisation and training history, records the change under ``adapted_from``
and drops the held-out scores, which a fine-tune invalidates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str]) -> Path:
    import torch

    from xphyda.model.checkpoint import (RESERVED, architecture_card, load_checkpoint, load_model, model_from_state,
                                         save_checkpoint)
    from xphyda.data.static import static_fields
    from xphyda.errors import DataError
    from xphyda.model.phyda import adapt
    from xphyda.models import find

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="registered name or folder")
    p.add_argument("out", type=Path)
    p.add_argument("--static", nargs="*", default=[], metavar="NAME")
    p.add_argument("--static-from", default=None, metavar="STORE")
    p.add_argument("--attention", action="store_true")
    p.add_argument("--recon-centre", action="store_true")
    p.add_argument("--drop-observation-inputs", action="store_true")
    a = p.parse_args(argv)
    if a.static and a.static != ["latitude"] and a.static_from is None:
        p.error("--static needs --static-from STORE (the store that holds the fields)")
    source = find(a.model)
    states, card = load_checkpoint(source)
    net = model_from_state(states, card, device="cpu")  # eval mode; the weights are read and hashed once
    try:
        fields = static_fields(a.static_from, a.static, card["grid"]["latitude"], card["grid"]["longitude"]) \
            if a.static else None
    except DataError as exc:  # a one-line message for a wrong name or store
        raise SystemExit(str(exc)) from None
    new = adapt(net, static=fields, lat=card["grid"]["latitude"], attention=a.attention or None,
                recon_centre=a.recon_centre or None,
                denoiser_obs=False if a.drop_observation_inputs else None)
    # the same function on random inputs (up to float rounding); with inputs dropped, the same function as
    # the original with zero weight on them
    reference = net
    if a.drop_observation_inputs:
        import copy

        reference = copy.deepcopy(net)
        stem = reference.denoiser.net.stem.weight
        end = stem.shape[1] - len(net.config.get("static") or [])  # [y, mask] come just before the static fields
        with torch.no_grad():
            stem[:, end - 2 * net.config["channels"] : end] = 0.0
    g = torch.Generator().manual_seed(0)
    c, (nlat, nlon) = net.config["channels"], (len(card["grid"]["latitude"]), len(card["grid"]["longitude"]))
    x, b = (torch.randn(2, c, nlat, nlon, generator=g) for _ in range(2))
    m = (torch.rand(2, c, nlat, nlon, generator=g) < 0.1).float()
    with torch.no_grad():
        sigma = torch.tensor([0.05, 1.0])
        d0, d1 = reference(x, sigma, b, x * m, m)[0], new(x, sigma, b, x * m, m)[0]
        dropped = float((net(x, sigma, b, x * m, m)[0] - d0).abs().max()) if a.drop_observation_inputs else 0.0
    change = float((d1 - d0).abs().max())
    print(f"largest change of the denoised state on random inputs: {change:.3g}"
          + (f" (against the original with zero weight on [y, mask]; dropping them changed it by {dropped:.3g})"
             if a.drop_observation_inputs else ""))
    if change > 1e-4:
        raise SystemExit("the adapted network does not compute the original's function; not saved")
    groups = dict(states) if card.get("state_dicts") else {"ema": states}
    groups["ema"] = new.state_dict()
    if a.drop_observation_inputs:  # spread factors describe the old function: bundle_model.py --calibrate redoes them
        groups.pop("calibration", None)
    written = (*RESERVED, "architecture", "preconditioning")  # save_checkpoint and architecture_card's
    out_card = {k: v for k, v in card.items() if k not in written}
    out_card.update(architecture_card(new))
    out_card["scores"] = {}
    out_card["name"] = a.out.name
    out_card["adapted_from"] = {"model": str(a.model), "sha256": card.get("sha256"),
                                "static": list(a.static), "attention": bool(a.attention),
                                "recon_centre": bool(a.recon_centre),
                                "dropped_observation_inputs": bool(a.drop_observation_inputs),
                                "static_from": a.static_from, "largest_change": change}
    save_checkpoint(a.out, groups, out_card, overwrite=True)
    load_model(a.out, device="cpu")  # loads back
    print(f"adapted model written to {a.out}")
    return a.out


if __name__ == "__main__":
    main(sys.argv[1:])
