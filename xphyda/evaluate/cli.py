"""The ``phyda evaluate`` command: an OSSE from the command line (a thin wrapper over :func:`run_osse`).

Examples
--------
>>> parser = build_parser()
>>> args = parser.parse_args(["--data", "/work/corpus", "--fractions", "0.1", "0.01", "--stations", "500",
...                           "--methods", "background", "oi", "phyda", "no-vre=/models/no-vre"])
>>> methods = methods_option(args)
>>> methods["background"], methods["oi"], methods["no-vre"]
(None, {}, {'model': '/models/no-vre', 'members': 8, 'steps': 16})
>>> observations_option(args)
[{'fraction': 0.1}, {'fraction': 0.01}, {'n_stations': 500}]
>>> methods_option(parser.parse_args(["--data", "x", "--methods", "oi", "--oi-members", "8"]))
{'oi': {'members': 8}}
"""

from __future__ import annotations

import argparse
import sys

__all__ = [
    "add_arguments",
    "build_parser",
    "evaluate_main",
    "main",
    "methods_option",
    "observations_option",
    "run_cli",
]


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``phyda evaluate`` to a parser (the lead's ``build_parser`` calls this)."""
    p.add_argument("--data", required=True, help="truth: store folder (jcm corpus), Zarr or netCDF file")
    p.add_argument("--out", default="phyda-evaluation", help="output folder (default: %(default)s)")
    p.add_argument(
        "--methods",
        nargs="+",
        default=["background", "oi", "phyda"],
        metavar="METHOD",
        help="background, oi, phyda, or NAME=MODEL for a PhyDA variant (an ablation model name or "
        "folder); default: %(default)s",
    )
    p.add_argument("--model", default=None, help="model of the 'phyda' method (default: the bundled model)")
    p.add_argument("--members", type=int, default=8, help="PhyDA ensemble size (default: %(default)s)")
    p.add_argument("--steps", type=int, default=16, help="PhyDA sampling steps (default: %(default)s)")
    p.add_argument(
        "--oi-members",
        type=_positive_int,
        default=1,
        metavar="N",
        help="OI ensemble size: N > 1 runs a perturbed-observation OI ensemble, scored with CRPS and "
        "spread-skill like PhyDA (default: %(default)s, the deterministic OI)",
    )
    p.add_argument(
        "--fractions",
        nargs="*",
        type=float,
        default=None,
        metavar="F",
        help="observed fractions of the grid columns (default: 0.1 0.01, or none if --stations is given)",
    )
    p.add_argument(
        "--stations",
        nargs="*",
        default=None,
        metavar="N_OR_FILE",
        help="numbers of random stations, or CSV/netCDF files of station lat, lon (a CSV's other "
        "columns are ignored) (default: 500, or none if --fractions is given)",
    )
    p.add_argument(
        "--noise",
        default=None,
        help="observation noise: one number, or per variable 't=1,z=50' (default: "
        "xphyda.obs.uncertainty.default_obs_error, per level for specific humidity)",
    )
    p.add_argument(
        "--cases", default="8", help="number of cases, or comma-separated ISO times (default: %(default)s)"
    )
    p.add_argument("--split", default="test", help="test, valid, train or all (default: %(default)s)")
    p.add_argument("--lead", default="24h", help="background lead time (default: %(default)s)")
    p.add_argument(
        "--variables", nargs="*", default=None, help="variables to observe and score (default: all)"
    )
    p.add_argument(
        "--levels", nargs="*", type=float, default=None, help="pressure levels in hPa (default: all)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of observations and ensembles (default: %(default)s)"
    )
    p.add_argument("--device", default=None, help="PhyDA device: auto, cpu or cuda")
    p.add_argument("--no-report", action="store_true", help="write the tables only")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser of ``phyda evaluate``."""
    p = argparse.ArgumentParser(
        prog="phyda evaluate",
        description="Observing-system simulation experiment: every method on identical synthetic observations, "
        "scored against the truth; writes scores.csv, scores.nc, summary.csv and report.md.",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return add_arguments(p)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _noise(text):
    if text is None:
        return None
    if "=" not in text:
        return float(text)
    return {k.strip(): float(v) for k, v in (kv.split("=", 1) for kv in text.split(","))}


def methods_option(args) -> dict:
    """``--methods`` (with ``--model``, ``--members``, ``--steps``, ``--device``, ``--oi-members``) as
    ``run_osse``'s ``methods``."""
    phyda = {"members": args.members, "steps": args.steps}
    if args.device:
        phyda["device"] = args.device
    out = {}
    for item in args.methods:
        name, _, model = item.partition("=")
        if model:
            out[name] = {"model": model, **phyda}
        elif name == "phyda":
            out[name] = {"model": args.model, **phyda}
        elif name == "background":
            out[name] = None
        elif name == "oi" and args.oi_members > 1:
            out[name] = {"members": args.oi_members}
        else:
            out[name] = {}
    return out


def _stations(item: str):
    from pathlib import Path

    from ..errors import DataError

    try:
        return {"n_stations": int(item)}
    except ValueError:
        pass
    path = Path(item)
    if not path.exists():
        raise DataError(f"--stations {item!r} is neither a number nor an existing file of station positions")
    if path.suffix.lower() == ".csv":
        from ..obs.tables import read_positions

        table = read_positions(path)  # the lat and lon columns, read as phyda assimilate reads them
        return {
            "stations": {"lat": table["lat"].values, "lon": table["lon"].values},
            "label": path.stem,
        }
    from ..cli import open_any

    return {"stations": open_any(path).load(), "label": path.stem}


def observations_option(args) -> list[dict]:
    """``--fractions`` and ``--stations`` as ``run_osse``'s ``observations``."""
    fractions, stations = args.fractions, args.stations
    if fractions is None and stations is None:
        fractions, stations = [0.1, 0.01], ["500"]
    return [{"fraction": f} for f in fractions or []] + [_stations(s) for s in stations or []]


def run_cli(args, *, command: str | None = None) -> int:
    """Run ``phyda evaluate`` from parsed arguments; returns the exit code (0).

    Raises
    ------
    PhydaError
        For bad input (the ``phyda`` command prints it on one line and exits with 1).
    """
    from .osse import check_out_dir, run_osse

    check_out_dir(args.out, overwrite=args.overwrite)
    text = args.cases.strip()
    cases = int(text) if text.isdigit() else [c.strip() for c in text.split(",") if c.strip()]
    result = run_osse(
        args.data,
        cases=cases,
        split=None if args.split == "all" else args.split,
        lead=args.lead,
        observations=observations_option(args),
        noise=_noise(args.noise),
        methods=methods_option(args),
        variables=args.variables or None,
        levels=args.levels or None,
        seed=args.seed,
        progress=not args.quiet,
    )
    if command:
        result.config["command"] = command
    result.write(args.out, report=not args.no_report, overwrite=args.overwrite)
    print(result.summary().query("metric == 'rmse'").to_string(index=False, max_rows=60))
    written = (
        "report.md, figures/, " if not args.no_report else ""
    ) + "scores.csv, scores.nc, summary.csv, runs.csv"
    print(f"wrote {written} in {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``phyda evaluate ARGS``: parse ``argv`` and run; errors are raised (the ``phyda`` command reports them).

    This is the entry the ``phyda`` command forwards to (``xphyda.evaluate.main``).
    """
    import shlex

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return run_cli(args, command="phyda evaluate " + " ".join(shlex.quote(a) for a in argv))


def evaluate_main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m xphyda.evaluate.cli``): as :func:`main`, errors as one line and an exit code.

    Exit codes as ``phyda``: 0 success, 1 an xphyda error, 2 bad usage, 3 output exists, 130 interrupted.
    """
    from ..cli import EXIT_ERROR, EXIT_EXISTS, EXIT_INTERRUPTED, OutputExistsError
    from ..errors import PhydaError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("phyda: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OutputExistsError, PhydaError) as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"phyda: error: {exc}", file=sys.stderr)
        return EXIT_EXISTS if isinstance(exc, OutputExistsError) else EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(evaluate_main())
