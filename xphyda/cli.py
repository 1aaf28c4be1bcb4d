"""The ``phyda`` command.

Every subcommand is a thin wrapper over a Python function.  Errors print one
line (``phyda: error: ...``) and exit with a non-zero code; ``--debug`` shows
the traceback.

Exit codes: 0 success, 1 an xphyda error (bad input, missing model...),
2 bad command-line usage, 3 an output exists (use ``--overwrite``),
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

__all__ = ["main", "open_any", "write_atomic"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_EXISTS, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class OutputExistsError(Exception):
    """The output path exists and ``--overwrite`` was not given."""


# --------------------------------------------------------------------------- file helpers
def open_any(path: str | os.PathLike):
    """Open a netCDF, Zarr or GRIB file as an xarray Dataset, by its suffix.

    Raises
    ------
    xphyda.errors.DataError
        If the file does not exist or its format is not recognised.
    """
    import xarray as xr

    from .errors import DataError

    p = Path(path)
    if not p.exists():
        raise DataError(f"file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".zarr" or (p.is_dir() and any((p / n).exists() for n in ("zarr.json", ".zgroup"))):
            return xr.open_zarr(p)
        if suffix in (".grib", ".grb", ".grib2", ".grb2"):
            return xr.open_dataset(p, engine="cfgrib")
        if suffix in (".nc", ".nc4", ".netcdf", ".cdf"):
            return xr.open_dataset(p, engine="netcdf4")
    except Exception as exc:
        raise DataError(f"could not read {str(p)!r} as {suffix[1:]}: {exc}") from None
    raise DataError(
        f"file {str(p)!r} has an unrecognised format (suffix {suffix!r}); expected .nc, .zarr or .grib"
    )


def write_atomic(ds, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``ds`` to netCDF (``.nc``) or Zarr (``.zarr``) under a temporary name, then rename.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    import shutil

    from .errors import DataError

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output {str(path)!r} exists; pass --overwrite to replace it")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        ds.to_zarr(tmp, mode="w")
    elif suffix in (".nc", ".nc4"):
        ds.to_netcdf(tmp, engine="netcdf4")
    else:
        raise DataError(f"output {str(path)!r}: expected a .nc or .zarr suffix")
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    tmp.rename(path)
    return path


# --------------------------------------------------------------------------- subcommands
def _cmd_residual(args) -> int:
    from .physics import physics_residual, residual_summary

    ds = open_any(args.file)
    overrides = dict(kv.split("=", 1) for kv in args.var)
    names = args.name or None
    summary = residual_summary(ds, names, **overrides)
    for name in sorted({str(v).rsplit("_", 1)[0] for v in summary.data_vars}):
        part = summary[[f"{name}_rms", f"{name}_relative"]]
        part = part.drop_vars([c for c in part.coords if c not in part.dims and part[c].ndim == 0])
        print(f"{name} ({summary[f'{name}_rms'].attrs['units']}):")
        print(part.to_dataframe().to_string(), end="\n\n")
    if args.output:
        import xarray as xr

        done = names or sorted({str(v).rsplit("_", 1)[0] for v in summary.data_vars})
        out = xr.Dataset({f"{n}_residual": physics_residual(ds, n, **overrides) for n in done})
        write_atomic(out, args.output, overwrite=args.overwrite)
        print(f"wrote {args.output}")
    return EXIT_OK


def _cmd_train(args) -> int:
    from .training import train_prior

    out = train_prior(
        args.data, preset=args.preset, out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        device=args.device, physics_lambda=0.0 if args.no_physics else args.physics_lambda,
        use_vre=not args.no_vre, seed=args.seed, num_workers=args.workers, progress=not args.quiet,
    )
    print(f"model written to {out}")
    return EXIT_OK


def _cmd_models(args) -> int:
    import json

    from .models import PRESETS, available, find, read_card

    if args.name:
        card = read_card(args.name)
        slim = {k: v for k, v in card.items() if k not in ("grid", "normalisation")}
        slim["path"] = str(find(args.name))
        print(json.dumps(slim, indent=2, default=str))
        return EXIT_OK
    names = available()
    print("available models:" if names else "no models available")
    for n in names:
        print(f"  {n}  ({find(n)})")
    print("presets (train with `phyda train --preset NAME --data STORE`):")
    for n, p in PRESETS.items():
        print(f"  {n}: {p['description']}")
    return EXIT_OK


def _cmd_simulate(args) -> int:
    from .data.simulate import main as simulate_main

    return int(simulate_main(args.args) or 0)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(output_dir=Path(args.output_dir), progress=not args.quiet)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phyda",
        description="Physics-guided diffusion data assimilation (xphyda).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the demo on the bundled ERA5 sample and write a figure")
    p.add_argument("--output-dir", default="phyda-demo", help="folder for the figure and tables (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train a prior on a store (jcm corpus or ERA5); resumes; torchrun-ready")
    p.add_argument("--data", required=True, help="training store: corpus folder, Zarr, netCDF or GRIB")
    p.add_argument("--preset", default="jcm-t31-v1", help="channel layout and grid (default: %(default)s)")
    p.add_argument("--out", help="model folder (default: ~/.cache/xphyda/models/PRESET)")
    p.add_argument("--steps", type=int, default=2000, help="total optimiser steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="global batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--physics-lambda", type=float, default=0.1, help="weight of the physics term")
    p.add_argument("--no-physics", action="store_true", help="ablation: train without the physics term")
    p.add_argument("--no-vre", action="store_true", help="ablation: condition on raw observations, no VRE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("simulate", help="make an Earth-like training corpus with the jcm GCM (needs xphyda[gcm])",
                       add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of `python -m xphyda.data.simulate --help`")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("models", help="list models and presets, or show a model card")
    p.add_argument("name", nargs="?", help="model name or path: show its card")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("residual", help="physics residuals of a dataset (netCDF, Zarr or GRIB)")
    p.add_argument("file", help="input dataset")
    p.add_argument("--name", action="append", help="residual to compute (repeatable); default: all possible")
    p.add_argument("--var", action="append", default=[], metavar="KEY=NAME", help="variable override, e.g. u=uwnd")
    p.add_argument("--output", help="write the residual fields to this .nc or .zarr")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_residual)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``phyda`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from .errors import PhydaError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("phyda: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OutputExistsError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"phyda: error: {exc}", file=sys.stderr)
        return EXIT_EXISTS
    except PhydaError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"phyda: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
