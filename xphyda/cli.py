"""The ``phyda`` command.

Every subcommand is a thin wrapper over a Python function; ``phyda COMMAND --help``
lists its options.  Results go to standard output; progress and notes go to
standard error (``--quiet`` silences them).  An error prints one line,
``phyda: error: ...``, saying what was found and the fix; ``phyda --debug
COMMAND ...`` adds the traceback.

Exit codes
----------
0
    success
1
    an xphyda error: a missing or unreadable file, a missing variable or model,
    bad observations...; also a missing optional package or a file-system error
2
    bad command-line usage (unknown option, malformed ``VAR=VALUE``...)
3
    the output exists and ``--overwrite`` was not given
4
    an unexpected internal error (a bug: rerun with ``--debug`` and report it)
130
    interrupted (Ctrl-C)

Examples
--------
In a shell::

    phyda demo
    phyda assimilate background.nc obs.nc --output analysis.nc --obs-error t=0.5
    phyda assimilate background.nc stations.csv --output analysis.nc
    phyda --debug residual state.nc

From Python, ``main`` returns the exit code instead of exiting::

    from xphyda.cli import main
    code = main(["residual", "state.nc", "--name", "hydrostatic"])
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["OutputExistsError", "build_parser", "main", "open_any", "write_atomic"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_EXISTS, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

OUTPUT_SUFFIXES = (".nc", ".nc4", ".zarr")


class OutputExistsError(Exception):
    """The output path exists and ``--overwrite`` was not given."""


class UsageError(Exception):
    """A command-line argument is malformed (exit code 2)."""


# --------------------------------------------------------------------------- file helpers
def open_any(path: str | os.PathLike):
    """Open a netCDF, Zarr, GRIB or CSV file as an xarray Dataset, by its suffix.

    Parameters
    ----------
    path : str or path
        ``.nc``/``.nc4``/``.netcdf``/``.cdf`` (netCDF4 engine), ``.zarr`` (or a
        folder holding Zarr metadata), ``.grib``/``.grb``/``.grib2``/``.grb2`` (cfgrib),
        or ``.csv``: a table of station observations, read by :func:`xphyda.obs.read_csv`
        (header ``lat,lon,pressure [hPa],time,t [K],...``).

    Returns
    -------
    xarray.Dataset
        Opened lazily (a CSV table is read into memory).

    Raises
    ------
    xphyda.errors.DataError
        If the file does not exist, cannot be read, or its format is not recognised.
    xphyda.errors.PhydaError
        For a CSV table that :func:`xphyda.obs.read_csv` rejects (no units, no latitude...).
    """
    import xarray as xr

    from .errors import DataError

    p = Path(path)
    if not p.exists():
        raise DataError(f"file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        from .obs.tables import read_csv

        return read_csv(p)  # its errors name the column and line already
    try:
        if suffix == ".zarr" or (p.is_dir() and any((p / n).exists() for n in ("zarr.json", ".zgroup"))):
            return xr.open_zarr(p)
        if suffix in (".grib", ".grb", ".grib2", ".grb2"):
            return xr.open_dataset(p, engine="cfgrib")
        if suffix in (".nc", ".nc4", ".netcdf", ".cdf"):
            return xr.open_dataset(p, engine="netcdf4")
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one message
        what = {".zarr": "Zarr"}.get(suffix, "GRIB" if suffix.startswith((".gr",)) else "netCDF")
        raise DataError(f"could not read {str(p)!r} as {what}: {exc}") from None
    raise DataError(
        f"file {str(p)!r} has an unrecognised format (suffix {suffix!r}); expected .nc, .zarr, .grib or .csv"
    )


def _check_output(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Fail early, before any long work, on an output that exists or has an unknown suffix."""
    from .errors import DataError

    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DataError(f"output {str(path)!r}: expected a .nc or .zarr suffix, e.g. {path.stem}.nc")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output {str(path)!r} exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise DataError(f"the folder of the output {str(path)!r} does not exist; create it first")
    return path


def _zarr_ready(ds):
    """A copy whose encodings are ones the Zarr writer accepts (netCDF inputs carry others)."""
    out = ds.copy(deep=False)
    for name in list(out.variables):
        keep = {k: v for k, v in out[name].encoding.items() if k in ("dtype", "_FillValue", "units", "calendar")}
        out[name].encoding = keep
    return out


def write_atomic(ds, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``ds`` to netCDF (``.nc``) or Zarr (``.zarr``) under a temporary name, then rename.

    A reader never sees a half-written file, and an interrupted or failed write
    leaves no partial output behind.

    Parameters
    ----------
    ds : xarray.Dataset
    path : str or path
        The output; its suffix chooses the format.
    overwrite : bool
        Replace an existing output.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    xphyda.errors.DataError
        For an unknown suffix.
    """
    import shutil

    path = _check_output(path, overwrite=overwrite)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if path.suffix.lower() == ".zarr":
            import warnings

            with warnings.catch_warnings():  # zarr 3 on consolidated metadata: not the user's concern
                warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
                _zarr_ready(ds).to_zarr(tmp, mode="w")
        else:
            ds.to_netcdf(tmp, engine="netcdf4")
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return path


# --------------------------------------------------------------------------- argument helpers
def _value(text: str):
    """A number when it parses as one, else the text (``"0.5 K"`` keeps its units)."""
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _pairs(items: list[str] | None, option: str, example: str = "t=0.5") -> dict:
    """``["t=0.5", "z=10 m"]`` -> ``{"t": 0.5, "z": "10 m"}``; a malformed item is a usage error."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UsageError(f"{option} expects VAR=VALUE (e.g. {option} {example}); got {item!r}")
        out[key.strip()] = _value(value)
    return out


def _note(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _stamp(ds, argv_text: str):
    """Prepend the command line to the ``history`` attribute (CF convention: newest first)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    old = ds.attrs.get("history")
    ds.attrs["history"] = f"{stamp}: {argv_text}" + (f"\n{old}" if old else "")
    return ds


def _rms(values, mask) -> float:
    import numpy as np

    keep = mask & np.isfinite(values)
    return float(np.sqrt(np.mean(values[keep] ** 2))) if keep.any() else float("nan")


def _obs_summary(analysis) -> list[str]:
    """One line per observation variable: how many were used, and RMS O-B and O-A of those."""
    import numpy as np

    from .obs.qc import FLAGS

    lines = []
    for name in map(str, analysis.data_vars):
        if not name.endswith("_flag") or f"{name[:-5]}_innovation" not in analysis:
            continue
        var = name[:-5]
        flag = np.asarray(analysis[name].values)
        used = flag == FLAGS["used"]
        given = flag != FLAGS["missing_value"]
        omb = np.asarray(analysis[f"{var}_innovation"].values, dtype=float)
        oma = np.asarray(analysis[f"{var}_residual"].values, dtype=float)
        units = str(analysis[f"{var}_innovation"].attrs.get("units", "")).replace("**", "")
        if not used.any():  # every one rejected or left out: no RMS to give (it printed 'nan')
            lines.append(f"  {var}: 0 of {int(given.sum())} observations used (see {var}_flag)")
            continue
        lines.append(f"  {var}: {int(used.sum())} of {int(given.sum())} observations used; "
                     f"RMS O-B {_rms(omb, used):.4g} -> O-A {_rms(oma, used):.4g} {units}".rstrip())
    return lines


# --------------------------------------------------------------------------- subcommands
def _cmd_demo(args) -> int:
    from .demo import run_demo

    if args.model is not None and not args.oi_only:
        from .models import find

        find(args.model)  # a missing model fails now, before the output folder is made
    run_demo(output_dir=Path(args.output_dir), model=args.model, phyda=not args.oi_only, n_stations=args.stations,
             members=args.members, steps=args.steps, guidance=args.guidance, seed=args.seed, device=args.device,
             progress=not args.quiet)
    return EXIT_OK


_OI_OPTIONS = ("background_error", "length_scale")
_PHYDA_OPTIONS = ("model", "steps", "device", "guidance", "balance", "no_calibrate", "independent")
# --members and --seed serve both methods: PhyDA's ensemble, and OI's perturbed-observation ensemble


def _cmd_assimilate(args) -> int:
    unused = _PHYDA_OPTIONS if args.method == "oi" else _OI_OPTIONS
    wrong = [f"--{n.replace('_', '-')}" for n in unused if getattr(args, n) not in (None, [], False)]
    if wrong:
        other = "phyda" if args.method == "oi" else "oi"
        raise UsageError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} used by --method {other} only "
                         f"(the method here is {args.method!r})")
    if args.method == "oi" and args.seed is not None and (args.members or 1) == 1:
        raise UsageError("--seed with --method oi needs --members N with N > 1 (a perturbed-observation OI "
                         "ensemble); the deterministic OI draws no random numbers: drop --seed or add --members")
    obs_error = _pairs(args.obs_error, "--obs-error") or None
    background_error = _pairs(args.background_error, "--background-error") or None
    length_scale = None
    if args.length_scale:
        per_var = [s for s in args.length_scale if "=" in s]
        if per_var and len(per_var) != len(args.length_scale):
            raise UsageError("--length-scale takes either one VALUE for all variables or VAR=VALUE items, not both")
        length_scale = _pairs(per_var, "--length-scale") if per_var else _value(args.length_scale[-1])
    output = _check_output(args.output, overwrite=args.overwrite)
    if args.method == "phyda":
        from .models import find

        find(args.model)  # a missing model fails now, not after reading the files

    from .assimilate import assimilate

    _note(args, f"reading background {args.background} and observations {args.obs}")
    background = open_any(args.background)
    obs = open_any(args.obs)
    options = {"method": args.method, "variables": args.variable or None, "obs_error": obs_error,
                   "qc": None if args.no_qc else args.qc}
    if args.method == "oi":
        ensemble = f" (a {args.members}-member perturbed-observation ensemble)" if (args.members or 1) > 1 else ""
        _note(args, f"analysing with optimal interpolation{ensemble} ...")
        options.update(background_error=background_error, length_scale=length_scale, members=args.members,
                       seed=args.seed)
    else:
        balance = {None: None, "auto": "auto", "none": (), "both": ("hydrostatic", "continuity")}.get(
            args.balance, (args.balance,))
        options.update(model=args.model, members=args.members, steps=args.steps, seed=args.seed,
                       device=args.device, guidance=args.guidance, progress=not args.quiet, balance=balance,
                       calibrate=False if args.no_calibrate else None,
                       antithetic=False if args.independent else None)
        _note(args, f"analysing with PhyDA (model {args.model or 'bundled'}) ...")
    analysis = assimilate(background, obs, **{k: v for k, v in options.items() if v is not None or k == "qc"})
    _stamp(analysis, args.command_line)
    for line in _obs_summary(analysis):
        print(line)
    write_atomic(analysis, output, overwrite=args.overwrite)
    print(f"wrote {output}")
    return EXIT_OK


def _cmd_encode(args) -> int:
    output = _check_output(args.output, overwrite=args.overwrite)
    from .diffusion import encode
    from .models import find

    find(args.model)  # a missing model fails now, not after reading the files
    _note(args, f"reading {args.background}" + (f" and {args.obs}" if args.obs else ""))
    background = open_any(args.background)
    obs = open_any(args.obs) if args.obs else None
    _note(args, f"encoding with the VRE of model {args.model or 'bundled'} ...")
    rec = encode(background, obs, model=args.model, device=args.device)
    _stamp(rec, args.command_line)
    write_atomic(rec, output, overwrite=args.overwrite)
    print(f"wrote {output}: {len(rec.data_vars) - 1} reconstructed channels and {rec.sizes['feature']} features")
    return EXIT_OK


def _cmd_residual(args) -> int:
    from .physics import physics_residual, residual_summary

    overrides = {k: str(v) for k, v in _pairs(args.var, "--var", "u=uwnd").items()}
    output = _check_output(args.output, overwrite=args.overwrite) if args.output else None
    ds = open_any(args.file)
    names = args.name or None
    summary = residual_summary(ds, names, **overrides)
    for name in sorted({str(v).rsplit("_", 1)[0] for v in summary.data_vars}):
        part = summary[[f"{name}_rms", f"{name}_relative"]]
        part = part.drop_vars([c for c in part.coords if c not in part.dims and part[c].ndim == 0])
        print(f"{name} ({summary[f'{name}_rms'].attrs['units']}):")
        print(part.to_dataframe().to_string(), end="\n\n")
    if output is not None:
        import xarray as xr

        done = names or sorted({str(v).rsplit("_", 1)[0] for v in summary.data_vars})
        out = xr.Dataset({f"{n}_residual": physics_residual(ds, n, **overrides) for n in done})
        _stamp(out, args.command_line)
        write_atomic(out, output, overwrite=args.overwrite)
        print(f"wrote {output}")
    return EXIT_OK


def _cmd_train(args) -> int:
    from .training import train_prior

    out = train_prior(
        args.data, preset=args.preset, out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        lr_decay_steps=args.lr_decay_steps,
        device=args.device, physics_lambda=0.0 if args.no_physics else args.physics_lambda,
        channel_weights=_pairs(args.channel_weight, "--channel-weight", "q200=4"),
        use_vre=not args.no_vre, seed=args.seed, num_workers=args.workers, progress=not args.quiet,
        init_from=args.init_from, widths=args.widths, vre_widths=args.vre_widths, features=args.features,
        denoiser_obs=args.denoiser_obs, static=args.static, static_from=args.static_from,
        attention=args.attention or None, stats_from=args.stats_from,
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
    from .errors import PhydaError
    from .models import search_path

    names = available()
    print("available models:" if names else "no models available")
    for n in names:
        try:
            read_card(n)
            state = ""
        except PhydaError as exc:  # listed because its files exist; say now that it cannot be loaded
            state = f"  UNREADABLE: {_one_line(exc)}"
        hidden = [str(d / n) for d in search_path() if (d / n).is_dir() and d / n != find(n)]
        print(f"  {n}  ({find(n)}){state}" + (f"  (hides {', '.join(hidden)})" if hidden else ""))
    print("presets (train with `phyda train --preset NAME --data STORE`):")
    for n, p in PRESETS.items():
        print(f"  {n}: {p['description']}")
    return EXIT_OK


def _cmd_simulate(args) -> int:
    from .data.simulate import main as simulate_main

    return int(simulate_main(args.args) or 0)


# ------------------------------------------------------------------ phyda evaluate (xphyda/evaluate.py)
# >>> EVALUATE: the spot for `phyda evaluate`, whose code lives in xphyda/evaluate.py (another engineer's).
# Contract, as for `phyda simulate`: ``xphyda.evaluate.main(argv: list[str]) -> int`` parses its own
# arguments (``prog="phyda evaluate"``) and raises PhydaError subclasses for bad input; main() below
# turns those into one line and exit code 1.  Until the module has ``main``, the command says so.
EVALUATE_ENTRY = ("xphyda.evaluate", "main")


def _evaluate_entry():
    import importlib

    module, func = EVALUATE_ENTRY
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None
    return getattr(mod, func, None)


def _cmd_evaluate(args) -> int:
    from .errors import PhydaError

    entry = _evaluate_entry()
    if entry is None:
        raise PhydaError(
            "`phyda evaluate` is not available in this version of xphyda yet; score analyses in Python with "
            "xphyda.metrics.score_table({'oi': analysis}, truth) (see the Metrics page of the documentation)"
        )
    return int(entry(args.args) or 0)
# <<< EVALUATE


# --------------------------------------------------------------------------- the parser
class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the examples' line breaks; show a default when there is one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default == []:
            return text
        if action.option_strings and action.nargs != 0:
            return f"{text} (default: %(default)s)"
        return text


def _sub(sub, name: str, help: str, description: str, epilog: str | None = None, **kwargs):
    import textwrap

    return sub.add_parser(name, help=help, description=textwrap.fill(description, 79), epilog=epilog,
                          formatter_class=_Formatter, **kwargs)


def _positive_int(text: str) -> int:
    """An argparse type: a positive integer (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _device(p) -> None:
    p.add_argument("--device", default=None, help="auto (CUDA when present), cpu or cuda (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``phyda`` and its subcommands."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="phyda",
        description="Physics-guided diffusion data assimilation (xphyda): analyses from a background and "
                    "observations, physics checks, training and evaluation of priors.",
        epilog="Start with `phyda demo`. Exit codes: 0 success, 1 xphyda error, 2 usage, "
               "3 output exists (use --overwrite), 4 internal error, 130 interrupted.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"xphyda {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # demo
    from .demo import DEMO_DEFAULTS as D

    p = _sub(sub, "demo", "assimilate simulated observations of the bundled ERA5 sample with PhyDA and OI",
             "Needs no data of yours: simulates station observations of the real ERA5 sample shipped with "
             "xphyda, makes a forecast-like background (the truth displaced by a smooth random field, RMS "
             f"{D['displacement_km']:g} km), assimilates with the bundled PhyDA model and with optimal "
             "interpolation, prints the scores side by side and writes demo.png and scores.csv (files of "
             "these names in the output folder are replaced). Without the bundled model, runs OI only.",
             "examples:\n  phyda demo\n  phyda demo --output-dir figures --members 4 --quiet\n"
             "  phyda demo --model ~/.cache/xphyda/models/my-prior")
    p.add_argument("--output-dir", default="phyda-demo", metavar="DIR", help="folder for demo.png and scores.csv")
    p.add_argument("--model", metavar="NAME_OR_PATH", help="PhyDA model name or folder (default: the bundled model)")
    p.add_argument("--oi-only", action="store_true", help="skip PhyDA: optimal interpolation only")
    p.add_argument("--stations", type=_positive_int, default=D["n_stations"], metavar="N", help="number of simulated stations")
    p.add_argument("--members", type=_positive_int, default=D["members"], metavar="N", help="PhyDA ensemble size")
    p.add_argument("--steps", type=_positive_int, default=D["steps"], metavar="N", help="PhyDA sampling steps")
    p.add_argument("--guidance", default=D["guidance"], choices=["mmps", "diag", "diag-fwd", "dps"],
                   help="PhyDA observation guidance (mmps: most accurate, about 3x slower)")
    p.add_argument("--seed", type=int, default=D["seed"], metavar="S", help="seed of stations, noise, background and ensemble")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar or timings")
    p.set_defaults(func=_cmd_demo)

    # assimilate
    p = _sub(sub, "assimilate", "background and observation files in, analysis file out (netCDF or Zarr)",
             "Analyse a background with observations (xphyda.assimilate.assimilate) and write the analysis "
             "with per-observation diagnostics (VAR_flag, VAR_innovation = O-B, VAR_residual = O-A, "
             "VAR_obs_error). Inputs: netCDF, Zarr or GRIB; observations as station points, gridded, or on "
             "the background's grid (NaN where not observed), or a CSV table of stations with units in its "
             "header (lat,lon,pressure [hPa],time,t [K],z [m2 s-2]; see xphyda.obs.read_csv). The output is "
             "written under a temporary name and renamed when complete.",
             "examples:\n  phyda assimilate background.nc obs.nc --output analysis.nc   # PhyDA, 8 members\n"
             "  phyda assimilate background.zarr obs.nc -o analysis.zarr --members 16 --seed 1\n"
             "  phyda assimilate background.nc obs.nc -o analysis.nc --method oi --obs-error t=0.5\n"
             "  phyda assimilate background.nc stations.csv -o analysis.nc --method oi\n"
             "  phyda assimilate background.nc obs.nc -o ensemble.nc --method oi --members 8 --seed 1")
    p.add_argument("background", help="background state (.nc, .zarr, .grib)")
    p.add_argument("obs", help="observations (.nc, .zarr, .grib, or a .csv table of stations)")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="analysis file to write (.nc or .zarr)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (otherwise exit code 3)")
    p.add_argument("--method", default="phyda", choices=["oi", "phyda"],
                   help="the PhyDA diffusion prior (an ensemble; the default), or optimal interpolation")
    p.add_argument("--variable", action="append", metavar="NAME",
                   help="observation variable to use (repeatable); default: all")
    p.add_argument("--obs-error", action="append", metavar="VAR=VALUE",
                   help="observation-error standard deviation in the variable's units or with units "
                        "('z=10 m'); repeatable; default: the file's standard_error variables, else defaults")
    p.add_argument("--qc", type=float, default=5.0,
                   help="background check: reject |O-B| > QC * sqrt(sigma_o^2 + sigma_b^2)")
    p.add_argument("--no-qc", action="store_true", help="turn the background check off")
    g = p.add_argument_group("optimal interpolation (--method oi)")
    g.add_argument("--background-error", action="append", metavar="VAR=VALUE",
                   help="background-error standard deviation (default: estimated from the innovations)")
    g.add_argument("--length-scale", action="append", metavar="[VAR=]VALUE",
                   help="correlation length scale, metres or '500 km' (default: 800 km for z, 500 km otherwise)")
    g = p.add_argument_group("ensemble (both methods)")
    g.add_argument("--members", type=_positive_int, metavar="N",
                   help="ensemble size: PhyDA (default: 8), or with --method oi a perturbed-observation OI "
                        "ensemble (default: 1, the deterministic analysis; grids up to 12,000 points)")
    g.add_argument("--seed", type=int, metavar="S",
                   help="member k depends only on (seed, k) (default: 0; with --method oi only with --members > 1)")
    g = p.add_argument_group("PhyDA (--method phyda)")
    g.add_argument("--model", metavar="NAME_OR_PATH", help="model name or folder (default: the bundled model)")
    g.add_argument("--steps", type=_positive_int, metavar="N", help="sampling steps (default: 16)")
    g.add_argument("--guidance", choices=["mmps", "diag", "diag-fwd", "dps"], help="observation guidance (default: diag-fwd)")
    g.add_argument("--balance", choices=["auto", "none", "hydrostatic", "continuity", "both"],
                   help="laws each member is balanced to the truth's level afterwards (default auto: both for an "
                        "ensemble, hydrostatic for one member, when the model carries balance statistics)")
    g.add_argument("--no-calibrate", action="store_true",
                   help="keep the raw ensemble spread (default: the model's spread factors when it has them)")
    g.add_argument("--independent", action="store_true",
                   help="independent members (default: mirror pairs, whose mean carries less sampling noise)")
    _device(g)
    p.add_argument("--quiet", action="store_true", help="no progress bar or notes")
    p.set_defaults(func=_cmd_assimilate)

    # encode
    p = _sub(sub, "encode", "VRE reconstruction of a background (and observations) by a model",
             "The virtual reconstruction encoder of a PhyDA model: a dense reconstruction of every model "
             "channel (z500, t850... in SI units) and the latent features that condition the denoiser, on the "
             "input's grid (xphyda.diffusion.encode).",
             "examples:\n  phyda encode background.nc obs.nc --output reconstruction.nc\n"
             "  phyda encode background.nc -o reconstruction.zarr --model my-prior")
    p.add_argument("background", help="background state (.nc, .zarr, .grib)")
    p.add_argument("obs", nargs="?", help="observations (optional): .nc, .zarr, .grib or a .csv table of stations")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="file to write (.nc or .zarr)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (otherwise exit code 3)")
    p.add_argument("--model", metavar="NAME_OR_PATH", help="model name or folder (default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no notes")
    p.set_defaults(func=_cmd_encode)

    # residual
    p = _sub(sub, "residual", "physics residuals of a dataset (netCDF, Zarr or GRIB)",
             "Area-weighted RMS of the physics residuals (continuity, hydrostatic, geostrophic) per layer or "
             "level, in physical units and relative to a natural scale; optionally the residual fields.",
             "examples:\n  phyda residual state.nc\n  phyda residual state.zarr --name hydrostatic\n"
             "  phyda residual state.nc --var u=uwnd --var v=vwnd --output residuals.nc")
    p.add_argument("file", help="input dataset")
    p.add_argument("--name", action="append", help="residual to compute (repeatable); default: all possible")
    p.add_argument("--var", action="append", default=[], metavar="KEY=NAME", help="variable override, e.g. u=uwnd")
    p.add_argument("--output", help="write the residual fields to this .nc or .zarr")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (otherwise exit code 3)")
    p.set_defaults(func=_cmd_residual)

    # train
    p = _sub(sub, "train", "train a prior on a store (jcm corpus or ERA5); resumes; torchrun-ready",
             "Train (or resume training) a PhyDA prior on a store and write the model folder "
             "(model.safetensors and card.json). Under torchrun every process takes a shard of each batch.",
             "examples:\n  phyda train --preset jcm-t31-v1 --data /path/to/corpus --steps 20000\n"
             "  python -m torch.distributed.run --nproc_per_node=4 -m xphyda.cli train --preset era5-v1 "
             "--data ERA5_STORE")
    p.add_argument("--data", required=True, metavar="STORE", help="training store: corpus folder, Zarr, netCDF or GRIB")
    p.add_argument("--preset", default="jcm-t31-v1", metavar="NAME", help="channel layout and grid (see `phyda models`)")
    p.add_argument("--out", metavar="DIR", help="model folder (default: ~/.cache/xphyda/models/PRESET, or PRESET-user when a bundled model has that name)")
    p.add_argument("--steps", type=int, default=2000, metavar="N", help="total optimiser steps")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="global batch size")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate")
    p.add_argument("--lr-decay-steps", type=int, default=0, metavar="N",
                   help="anneal the learning rate to 0 (half cosine) over the last N steps (default: constant)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--physics-lambda", type=float, default=0.02, metavar="W", help="weight of the physics term")
    p.add_argument("--channel-weight", action="append", default=[], metavar="NAME=W",
                   help="loss weight of one channel, e.g. q200=4 (repeatable; others 1; rescaled to mean 1)")
    p.add_argument("--no-physics", action="store_true", help="ablation: train without the physics term")
    p.add_argument("--no-vre", action="store_true", help="ablation: condition on raw observations, no VRE")
    p.add_argument("--init-from", metavar="MODEL", help="fine-tune: start from this model's weights, architecture "
                                                        "and statistics (name or folder; same preset)")
    p.add_argument("--widths", type=int, nargs="+", metavar="W",
                   help="denoiser U-Net channels per resolution (default: 32 64 128, the bundled model's); it runs "
                        "once per member and step, so it sets an analysis' cost")
    p.add_argument("--vre-widths", type=int, nargs="+", metavar="W",
                   help="VRE U-Net channels per resolution (default: 16 32 64); it runs once per analysis")
    p.add_argument("--features", type=int, metavar="N", help="VRE latent channels (default: 8)")
    obs_inputs = p.add_mutually_exclusive_group()
    obs_inputs.add_argument("--denoiser-obs", action="store_const", const=True, default=None,
                   help="condition the denoiser on the gridded observations too, not only on the VRE's "
                        "reconstruction; with --init-from the new inputs start at zero weight")
    obs_inputs.add_argument("--no-denoiser-obs", dest="denoiser_obs", action="store_const", const=False,
                   help="with --init-from a model trained with --denoiser-obs: remove those inputs")
    p.add_argument("--static", nargs="+", default=[], metavar="NAME",
                   help="time-invariant input fields, by name in --static-from (e.g. lsm z_surface; 'latitude' "
                        "is the grid's own); regridded to the model grid if needed; with --init-from added at "
                        "zero weight")
    p.add_argument("--static-from", metavar="STORE", help="store holding the --static fields (default: --data)")
    p.add_argument("--attention", action="store_true",
                   help="self-attention at the denoiser's coarsest level (with --init-from: added to a model "
                        "without it, as the identity)")
    p.add_argument("--stats-from", metavar="MODEL",
                   help="reuse the normalisation statistics and background regression of this model or training "
                        "run folder instead of computing them (same preset; not with --init-from)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of batches, noise and simulated observations")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="DataLoader worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    # simulate
    p = sub.add_parser("simulate", help="make an Earth-like training corpus with the jcm GCM (needs xphyda[gcm])",
                       add_help=False, description="See `phyda simulate --help`.")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of `python -m xphyda.data.simulate --help`")
    p.set_defaults(func=_cmd_simulate)

    # evaluate (see EVALUATE above)
    p = sub.add_parser("evaluate", help="evaluate methods in observing-system simulation experiments: scores, "
                                        "report (see `phyda evaluate --help`)",
                       add_help=False, description="See `phyda evaluate --help`.")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of xphyda.evaluate")
    p.set_defaults(func=_cmd_evaluate)

    # models
    p = _sub(sub, "models", "list models and presets, or show a model card",
             "Without NAME: the models that can be loaded on this machine (XPHYDA_MODEL_PATH, the user cache, "
             "the bundled models) and the training presets. With NAME: that model's card as JSON.",
             "examples:\n  phyda models\n  phyda models jcm-t31-v1")
    p.add_argument("name", nargs="?", help="model name or path: show its card")
    p.set_defaults(func=_cmd_models)
    return parser


_FORWARDED = ("simulate", "evaluate")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split("\n")) if len(text) < 2000 else text[:2000] + " ..."


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``phyda`` command; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (see the module docstring).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `simulate` and `evaluate` hand everything after their name to their own parser (even --help)
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    forward = first is not None and argv[first] in _FORWARDED
    try:
        args = parser.parse_args(argv[: first + 1] if forward else argv)
        if forward:
            args.args = argv[first + 1 :]
            args.debug = args.debug or "--debug" in args.args
    except SystemExit as exc:  # --help, --version, or a usage error already printed by argparse
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    args.command_line = "phyda " + " ".join(shlex.quote(a) for a in argv)
    from .errors import PhydaError

    def fail(code: int, message: str) -> int:
        if args.debug:
            traceback.print_exc()
        print(f"phyda: error: {message}", file=sys.stderr)
        return code

    def show(message, category, filename, lineno, file=None, line=None):  # no path into the installed script
        print(f"phyda: warning ({category.__name__}): {message}", file=sys.stderr if file is None else file)

    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = show
            return args.func(args)
    except SystemExit as exc:  # a forwarded command's own parser: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print("phyda: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"phyda {args.command}: error: {exc} (see `phyda {args.command} --help`)", file=sys.stderr)
        return EXIT_USAGE
    except OutputExistsError as exc:
        return fail(EXIT_EXISTS, str(exc))
    except PhydaError as exc:
        return fail(EXIT_ERROR, _one_line(exc))
    except ImportError as exc:
        name = getattr(exc, "name", None)
        return fail(EXIT_ERROR, f"a package this needs is not installed: {_one_line(exc)}"
                    + (f"; install it with `pip install {name}`" if name else ""))
    except OSError as exc:
        return fail(EXIT_ERROR, _one_line(exc))
    except Exception as exc:  # noqa: BLE001 - the last resort: still one line, and the way to report it
        return fail(EXIT_INTERNAL, f"internal error ({type(exc).__name__}: {_one_line(exc)}); this is a bug "
                    "in xphyda: rerun with `phyda --debug ...` and report the traceback")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
