"""The ``phyda`` command: every subcommand's happy path, bad arguments and bad files, exit codes.

Commands run in-process through ``xphyda.cli.main`` (fast, and ``capsys`` sees
the output); the README's demo command runs in a subprocess, as CI runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xphyda
from xphyda import cli
from xphyda.cli import EXIT_ERROR, EXIT_EXISTS, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main

pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning")

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ("demo", "assimilate", "encode", "residual", "train", "simulate", "evaluate", "models")


def _open(path: Path) -> xr.Dataset:
    if path.suffix == ".zarr":
        return xr.open_zarr(path).load()
    with xr.open_dataset(path, engine="netcdf4") as ds:  # engine explicit: see tests/conftest.py
        return ds.load()


@pytest.fixture
def files(era5, tmp_path):
    """A background (ERA5 with a 1 K warm bias) and station observations of the truth, as netCDF."""
    background = era5.copy(deep=True)
    background["t"] = background["t"] + 1.0
    obs = xphyda.obs.simulate(era5, n_stations=80, seed=4)
    paths = {"background": tmp_path / "background.nc", "obs": tmp_path / "obs.nc"}
    background.to_netcdf(paths["background"], engine="netcdf4")
    obs.to_netcdf(paths["obs"], engine="netcdf4")
    return paths


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("phyda")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- help and usage
def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"    {name}" in out
    assert "Exit codes" in out


@pytest.mark.parametrize("name", ["demo", "assimilate", "encode", "residual", "train", "models"])
def test_subcommand_help_has_description_and_examples(name, capsys):
    assert main([name, "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(f"usage: phyda {name}")
    assert "examples:" in out
    assert "(default: None)" not in out and "(default: False)" not in out


def test_no_command_and_version(capsys):
    assert main([]) == EXIT_USAGE
    assert "usage: phyda" in capsys.readouterr().out
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"xphyda {xphyda.__version__}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--method", "oi", "--steps", "3"], "--steps is used by --method phyda"),
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--method", "oi", "--seed", "3"], "--seed with --method oi needs --members"),
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--method", "oi", "--members", "1", "--seed", "3"],
         "needs --members N with N > 1"),
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--members", "0"], "expected a positive integer, got '0'"),
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--method", "phyda", "--steps", "x"], "expected a positive"),
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--method", "phyda", "--length-scale", "500 km"],
         "--length-scale is used by --method oi"),
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--obs-error", "t"], "--obs-error expects VAR=VALUE"),
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--method", "oi", "--length-scale", "t=500 km", "--length-scale", "9"],
         "not both"),
        (["assimilate", "B.nc", "O.nc", "-o", "A.nc", "--method", "kalman"], "invalid choice"),
        (["assimilate", "B.nc", "O.nc"], "required: -o/--output"),
        (["demo", "--stations", "many"], "expected a positive integer, got 'many'"),
        (["demo", "--members", "0"], "expected a positive integer, got '0'"),
        (["encode", "B.nc"], "required: -o/--output"),
        (["residual"], "required: file"),
        (["train", "--data", "S.zarr", "--steps", "x"], "invalid int value"),
        (["train", "--steps", "5"], "required: --data"),
        (["models", "a", "b"], "unrecognized arguments: b"),
        (["simulate", "S", "--years", "abc"], "invalid float value"),
        (["residual", "x.nc", "--var", "u"], "--var expects VAR=VALUE"),
    ],
)
def test_bad_arguments_exit_2_with_one_message(argv, message, capsys):
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- assimilate
def test_assimilate_oi_netcdf_and_zarr(files, era5, tmp_path, capsys):
    out = tmp_path / "analysis.nc"
    argv = ["assimilate", str(files["background"]), str(files["obs"]), "-o", str(out), "--method", "oi",
            "--obs-error", "t=0.5", "--obs-error", "z=10 m", "--length-scale", "600 km"]
    assert main(argv) == EXIT_OK
    captured = capsys.readouterr()
    assert "t: " in captured.out and "RMS O-B" in captured.out and f"wrote {out}" in captured.out
    assert "optimal interpolation" in captured.err  # notes go to stderr
    ana = _open(out)
    assert {"t", "z", "t_flag", "t_innovation", "t_residual", "z_obs_error"} <= set(ana.data_vars)
    np.testing.assert_allclose(ana["t_obs_error"].max(), 0.5)
    history = ana.attrs["history"].splitlines()
    assert history[0].endswith("--length-scale '600 km'") and "phyda assimilate" in history[0]
    assert "assimilate(method='oi')" in history[1]
    bias = float((ana["t"] - era5["t"]).mean())
    assert bias < 0.9  # the warm bias of 1 K is reduced
    assert not list(tmp_path.glob(".analysis.nc.tmp-*"))

    zarr = tmp_path / "analysis.zarr"
    assert main(["assimilate", str(files["background"]), str(files["obs"]), "-o", str(zarr), "--quiet",
                 "--method", "oi", "--no-qc", "--variable", "t"]) == EXIT_OK
    assert capsys.readouterr().err == ""
    ana = _open(zarr)
    assert "t_flag" in ana and "z_flag" not in ana


def test_assimilate_oi_from_a_csv_table_of_stations(files, era5, tmp_path, capsys):
    """``phyda assimilate BACKGROUND stations.csv``: the table is read by xphyda.obs.read_csv, t in degC."""
    rng = np.random.default_rng(0)
    i, j = rng.integers(10, 170, 40), rng.integers(0, 360, 40)
    level = rng.choice([500.0, 850.0], 40)
    truth = era5.isel(time=0)
    t = [float(truth["t"].sel(level=p).values[a, b]) - 273.15 for a, b, p in zip(i, j, level)]
    z = [float(truth["z"].sel(level=p).values[a, b]) for a, b, p in zip(i, j, level)]
    rows = [f"{float(truth.latitude[a])},{float(truth.longitude[b])},{p:g},{tc!r},{'' if k % 3 else repr(zz)}"
            for k, (a, b, p, tc, zz) in enumerate(zip(i, j, level, t, z))]
    table = tmp_path / "stations.csv"
    table.write_text("lat,lon,pressure [hPa],t [degC],z [m2 s-2]\n" + "\n".join(rows) + "\n")
    out = tmp_path / "analysis.nc"
    argv = ["assimilate", str(files["background"]), str(table), "--method", "oi", "-o", str(out), "--quiet"]
    assert main(argv) == EXIT_OK
    printed = capsys.readouterr().out
    assert "t: 40 of 40 observations used" in printed and "z: 14 of 14 observations used" in printed
    ana = _open(out)
    assert ana["t_flag"].dims == ("station",) and ana.sizes["station"] == 40
    np.testing.assert_allclose(ana["t_innovation"], -1.0, atol=1e-3)  # degC converted: the 1 K warm bias
    assert float(abs(ana["t_residual"]).max()) < 0.9
    assert ana["lat"].values.tolist() == [float(truth.latitude[a]) for a in i]
    assert "stations.csv" in ana.attrs["history"].splitlines()[0]


def test_assimilate_oi_ensemble_with_members_and_seed(era5, tmp_path, capsys):
    """``--members N --seed S`` with ``--method oi``: the library's perturbed-observation OI ensemble."""
    from xphyda.assimilate import assimilate
    from xphyda.baselines.oi import ENSEMBLE_MAX_POINTS

    truth = era5.isel(latitude=slice(None, None, 4), longitude=slice(None, None, 4))  # 46 x 90: an ensemble grid
    background = truth.copy(deep=True)
    background["t"] = background["t"] + 1.0
    obs = xphyda.obs.simulate(truth, n_stations=60, seed=1)
    bg, ob = tmp_path / "bg.nc", tmp_path / "obs.nc"
    background.to_netcdf(bg, engine="netcdf4")
    obs.to_netcdf(ob, engine="netcdf4")
    out = tmp_path / "ens.nc"
    argv = ["assimilate", str(bg), str(ob), "-o", str(out), "--method", "oi", "--members", "3", "--seed", "2",
            "--obs-error", "t=0.5"]
    assert main(argv) == EXIT_OK
    captured = capsys.readouterr()
    assert "3-member perturbed-observation ensemble" in captured.err and "t: " in captured.out
    ens = _open(out)
    assert ens["t"].dims[0] == "member" and ens.sizes["member"] == 3
    assert float(ens["t"].std("member").mean()) > 0.0  # the members differ
    assert "--members 3 --seed 2" in ens.attrs["history"].splitlines()[0]
    # exactly what the library gives for the same call (the file is written in float64 as the input)
    direct = assimilate(_open(bg), _open(ob), method="oi", members=3, seed=2, obs_error={"t": 0.5})
    xr.testing.assert_allclose(ens.drop_attrs(), direct.drop_attrs())
    # another seed, other members; the same seed, the same members
    again = tmp_path / "again.nc"
    assert main([*argv[:4], str(again), *argv[5:], "--quiet"]) == EXIT_OK
    xr.testing.assert_identical(_open(again)["t"], ens["t"])
    other = tmp_path / "other.nc"
    assert main([*argv[:4], str(other), "--members", "3", "--seed", "5", "--obs-error", "t=0.5", "--quiet"]) == EXIT_OK
    assert not _open(other)["t"].equals(ens["t"])
    # the help states the grid limit of an OI ensemble
    assert main(["assimilate", "--help"]) == EXIT_OK
    assert f"{ENSEMBLE_MAX_POINTS:,} points" in " ".join(capsys.readouterr().out.split())


def test_assimilate_oi_ensemble_on_too_large_a_grid_exits_1(files, tmp_path, capsys):
    code = main(["assimilate", str(files["background"]), str(files["obs"]), "-o", str(tmp_path / "e.nc"),
                 "--method", "oi", "--members", "2", "--quiet"])
    assert code == EXIT_ERROR
    line = _error_line(capsys.readouterr().err)
    assert "181 x 360 = 65160 points" in line and "Fix: analyse a grid coarser" in line
    assert not (tmp_path / "e.nc").exists()


def test_assimilate_phyda_with_a_model_folder(files, tiny_model, tmp_path, capsys):
    out = tmp_path / "ens.nc"
    argv = ["assimilate", str(files["background"]), str(files["obs"]), "-o", str(out), "--method", "phyda",
            "--model", str(tiny_model), "--members", "2", "--steps", "2", "--seed", "3", "--device", "cpu",
            "--guidance", "diag-fwd", "--quiet"]
    assert main(argv) == EXIT_OK
    ana = _open(out)
    assert ana["t"].sizes["member"] == 2
    assert "tiny" in ana.attrs["history"] and "--seed 3" in ana.attrs["history"]
    # the untrained model fits the observations worse than the background: one line, without a path
    err = capsys.readouterr().err
    assert "phyda: warning (PoorFitWarning): the PhyDA analysis fits the observations worse" in err
    assert ".py:" not in err and "bin/phyda" not in err


def test_assimilate_phyda_balance_and_calibration_options(files, tmp_path, capsys):
    """The bundled model: --balance none --no-calibrate is the raw ensemble; the default balances and calibrates."""
    base = ["assimilate", str(files["background"]), str(files["obs"]), "--method", "phyda", "--members", "2",
            "--steps", "2", "--device", "cpu", "--quiet"]
    assert main(base + ["-o", str(tmp_path / "raw.nc"), "--balance", "none", "--no-calibrate"]) == EXIT_OK
    assert main(base + ["-o", str(tmp_path / "default.nc")]) == EXIT_OK
    assert main(base + ["-o", str(tmp_path / "hydro.nc"), "--balance", "hydrostatic"]) == EXIT_OK
    raw, default, hydro = (_open(tmp_path / n).attrs["history"] for n in ("raw.nc", "default.nc", "hydro.nc"))
    assert "balance none, spread calibration off" in raw
    assert "balance ['hydrostatic', 'continuity'], spread calibration on" in default
    assert "balance ['hydrostatic'], spread calibration on" in hydro
    assert main(["assimilate", str(files["background"]), str(files["obs"]), "-o", str(tmp_path / "x.nc"),
                 "--method", "oi", "--balance", "none"]) == EXIT_USAGE  # the OI method does not balance
    assert "used by --method phyda only" in capsys.readouterr().err
    assert "in mirror pairs (antithetic)" in default
    assert main(base + ["-o", str(tmp_path / "indep.nc"), "--independent"]) == EXIT_OK
    indep = _open(tmp_path / "indep.nc")
    assert "mirror" not in indep.attrs["history"] and "spread calibration on" in indep.attrs["history"]
    assert main(["assimilate", str(files["background"]), str(files["obs"]), "-o", str(tmp_path / "y.nc"),
                 "--method", "oi", "--independent"]) == EXIT_USAGE
    assert "--independent is used by --method phyda only" in capsys.readouterr().err


def test_existing_output_exits_3_and_is_kept(files, tmp_path, capsys):
    out = tmp_path / "analysis.nc"
    out.write_text("precious")
    argv = ["assimilate", str(files["background"]), str(files["obs"]), "-o", str(out), "--method", "oi", "--quiet"]
    assert main(argv) == EXIT_EXISTS
    assert "pass --overwrite" in _error_line(capsys.readouterr().err)
    assert out.read_text() == "precious"
    assert main(argv + ["--overwrite"]) == EXIT_OK
    assert "t_flag" in _open(out)


def test_missing_and_unreadable_files_exit_1(files, tmp_path, capsys):
    bg, out = str(files["background"]), str(tmp_path / "a.nc")
    assert main(["assimilate", bg, str(tmp_path / "nope.nc"), "-o", out, "--quiet"]) == EXIT_ERROR
    assert "nope.nc' does not exist" in _error_line(capsys.readouterr().err)
    garbage = tmp_path / "garbage.nc"
    garbage.write_text("not a netCDF file")
    assert main(["assimilate", bg, str(garbage), "-o", out, "--quiet"]) == EXIT_ERROR
    assert "could not read" in _error_line(capsys.readouterr().err)
    table = tmp_path / "obs.txt"
    table.write_text("lat,lon,t [K]\n1,2,3\n")
    assert main(["assimilate", bg, str(table), "-o", out, "--quiet"]) == EXIT_ERROR
    assert "unrecognised format" in _error_line(capsys.readouterr().err)
    table = tmp_path / "obs.csv"
    table.write_text("lat,lon,t\n1,2,3\n")  # a CSV is read, but a column without units is refused
    assert main(["assimilate", bg, str(table), "-o", out, "--quiet"]) == EXIT_ERROR
    assert "column 't' of" in _error_line(capsys.readouterr().err)
    assert main(["assimilate", bg, str(files["obs"]), "-o", str(tmp_path / "a.txt")]) == EXIT_ERROR
    assert "expected a .nc or .zarr suffix" in _error_line(capsys.readouterr().err)
    assert main(["assimilate", bg, str(files["obs"]), "-o", str(tmp_path / "no" / "a.nc")]) == EXIT_ERROR
    assert "does not exist; create it first" in _error_line(capsys.readouterr().err)
    assert not Path(out).exists()


def test_observations_that_do_not_match_the_background_exit_1(files, tmp_path, capsys):
    obs = xr.Dataset({"humidity": ("station", [0.5])}, coords={"lat": ("station", [1.0]), "lon": ("station", [2.0])})
    path = tmp_path / "odd.nc"
    obs.to_netcdf(path, engine="netcdf4")
    code = main(["assimilate", str(files["background"]), str(path), "-o", str(tmp_path / "a.nc"), "--quiet"])
    assert code == EXIT_ERROR
    _error_line(capsys.readouterr().err)


def test_missing_model_fails_before_reading_files(tmp_path, capsys):
    code = main(["assimilate", "missing-bg.nc", "missing-obs.nc", "-o", str(tmp_path / "a.nc"),
                 "--method", "phyda", "--model", "no-such-model"])
    assert code == EXIT_ERROR
    assert "no model named 'no-such-model'" in _error_line(capsys.readouterr().err)


def test_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["assimilate", str(tmp_path / "b.nc"), str(tmp_path / "o.nc"), "-o", str(tmp_path / "a.nc")]
    assert main(["--debug", *argv]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "DataError" in err
    assert err.rstrip().splitlines()[-1].startswith("phyda: error: file")


def test_internal_errors_and_interrupts(monkeypatch, capsys, tmp_path):
    def boom(args):
        raise RuntimeError("unexpected\nstate")

    monkeypatch.setattr(cli, "_cmd_models", boom)
    assert main(["models"]) == EXIT_INTERNAL
    line = _error_line(capsys.readouterr().err)
    assert "internal error (RuntimeError: unexpected state)" in line and "--debug" in line

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_models", interrupted)
    assert main(["models"]) == EXIT_INTERRUPTED


def test_write_atomic_leaves_nothing_behind_on_failure(era5, tmp_path, monkeypatch):
    def fail(self, path, **kwargs):
        Path(path).write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", fail)
    with pytest.raises(OSError, match="disk full"):
        cli.write_atomic(era5, tmp_path / "out.nc")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- other subcommands
def test_encode(files, tiny_model, tmp_path, capsys):
    out = tmp_path / "rec.nc"
    argv = ["encode", str(files["background"]), str(files["obs"]), "-o", str(out), "--model", str(tiny_model),
            "--device", "cpu"]
    assert main(argv) == EXIT_OK
    assert "reconstructed channels" in capsys.readouterr().out
    rec = _open(out)
    assert rec["t850"].attrs["units"] == "K" and rec["features"].dims == ("feature", "latitude", "longitude")
    assert main(argv) == EXIT_EXISTS
    assert main(["encode", str(files["background"]), "-o", str(tmp_path / "r2.zarr"), "--model", str(tiny_model),
                 "--quiet"]) == EXIT_OK
    # observations from a CSV table give the reconstruction of the same observations from netCDF
    table = tmp_path / "stations.csv"
    table.write_text("lat,lon,pressure [hPa],t [degC]\n48.2,16.4,500,-21.05\n-33.9,151.2,850,-1.75\n")
    xphyda.obs.read_csv(table).to_netcdf(tmp_path / "stations.nc", engine="netcdf4")
    recs = []
    for name in ("stations.csv", "stations.nc"):
        out = tmp_path / f"rec-{name}.nc"
        assert main(["encode", str(files["background"]), str(tmp_path / name), "-o", str(out), "--model",
                     str(tiny_model), "--device", "cpu", "--quiet"]) == EXIT_OK
        recs.append(_open(out))
    xr.testing.assert_allclose(recs[0].drop_attrs(), recs[1].drop_attrs())


def test_residual(files, tmp_path, capsys):
    out = tmp_path / "res.nc"
    assert main(["residual", str(files["background"]), "--output", str(out)]) == EXIT_OK
    assert "hydrostatic (m):" in capsys.readouterr().out
    assert _open(out)["hydrostatic_residual"].attrs["units"] == "m"
    assert main(["residual", str(files["background"]), "--output", str(out)]) == EXIT_EXISTS
    assert "exists" in _error_line(capsys.readouterr().err)
    assert main(["residual", str(files["background"]), "--name", "geostrophic"]) == EXIT_ERROR
    assert "Fix: pass it by keyword" in _error_line(capsys.readouterr().err)


def test_models(tiny_model, capsys):
    assert main(["models"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "jcm-t31-v1" in out and "era5-v1" in out
    assert main(["models", str(tiny_model)]) == EXIT_OK
    card = json.loads(capsys.readouterr().out)
    assert card["name"] == "tiny" and card["path"] == str(tiny_model)
    assert main(["models", "era5-v1"]) == EXIT_ERROR
    assert "phyda train --preset era5-v1" in _error_line(capsys.readouterr().err)


def _tiny_store(era5: xr.Dataset, path: Path, n_times: int = 16) -> Path:
    """An ERA5-shaped store on an 8 x 16 grid: the sample moved east a little every 6 hours."""
    from xphyda.data.regrid import model_grid, regrid

    small = regrid(era5, model_grid(8, 16, kind="equiangular"))
    t0 = era5.time.values[0]
    states = [small.roll(longitude=i, roll_coords=False).assign_coords(time=[t0 + np.timedelta64(6 * i, "h")])
              for i in range(n_times)]
    ds = xr.concat(states, "time")
    for v in ds.variables:
        ds[v].encoding = {}
    ds.to_zarr(path, mode="w")
    return path


def test_train(era5, tmp_path, monkeypatch, capsys):
    import functools

    from xphyda import training
    from xphyda.models import PRESETS

    # the command's wiring, with a network small enough for a test (sizes from the command's options)
    monkeypatch.setattr(training, "train_prior", functools.partial(training.train_prior, stats_max_times=None))

    monkeypatch.setitem(PRESETS, "cli-tiny", {
        "description": "test preset", "grid": {"nlat": 8, "nlon": 16}, "variables": ["z", "t"],
        "levels_hpa": [500, 850], "surface": [], "background_lead_hours": 24,
        "train_command": "phyda train --preset cli-tiny --data X",
    })
    store = _tiny_store(era5, tmp_path / "store.zarr")
    out = tmp_path / "model"
    argv = ["train", "--data", str(store), "--preset", "cli-tiny", "--out", str(out), "--steps", "1",
            "--batch-size", "2", "--device", "cpu", "--quiet", "--widths", "8", "16", "--vre-widths", "8", "16",
            "--features", "2"]
    assert main(argv) == EXIT_OK
    assert f"model written to {out}" in capsys.readouterr().out
    assert (out / "card.json").is_file() and (out / "model.safetensors").is_file()
    arch = json.loads((out / "card.json").read_text())["architecture"]
    assert (arch["widths"], arch["vre_widths"], arch["features"]) == ([8, 16], [8, 16], 2)
    assert arch["denoiser_obs"] is False
    # --denoiser-obs on a fine-tune: the starting model's denoiser gets the observation inputs
    tuned = tmp_path / "tuned"
    assert main([*argv[:6], str(tuned), *argv[7:14], "--init-from", str(out), "--denoiser-obs"]) == EXIT_OK
    assert json.loads((tuned / "card.json").read_text())["architecture"]["denoiser_obs"] is True
    # --no-denoiser-obs removes them again
    plain = tmp_path / "plain"
    assert main([*argv[:6], str(plain), *argv[7:14], "--init-from", str(tuned), "--no-denoiser-obs"]) == EXIT_OK
    assert json.loads((plain / "card.json").read_text())["architecture"]["denoiser_obs"] is False
    # from scratch with a static field, attention and the first run's statistics
    extra = tmp_path / "extra"
    assert main([*argv[:6], str(extra), *argv[7:], "--static", "latitude", "--attention",
                 "--stats-from", str(out)]) == EXIT_OK
    card = json.loads((extra / "card.json").read_text())
    assert card["architecture"]["static"] == ["latitude"] and card["architecture"]["attention"] is True
    assert card["normalisation"] == json.loads((out / "card.json").read_text())["normalisation"]
    capsys.readouterr()
    assert main([*argv[:6], str(tmp_path / "m4"), *argv[7:], "--static", "orography"]) == EXIT_ERROR
    assert "no variable 'orography'" in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "m4").exists()
    # a network that does not fit the preset's 8 x 16 grid: a one-line error, exit code 1, no folder
    assert main([*argv[:6], str(tmp_path / "m3"), *argv[7:14], "--widths", "8", "16", "32", "64", "128"]) == EXIT_ERROR
    assert "needs latitudes divisible by 16" in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "m3").exists()
    assert main(["train", "--data", str(tmp_path / "none.zarr"), "--preset", "cli-tiny", "--out",
                 str(tmp_path / "m2"), "--quiet"]) == EXIT_ERROR
    _error_line(capsys.readouterr().err)


def _corpus_dataset():
    """The corpus-layout maker of tests/data/conftest.py (the contract of ``phyda simulate``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_data_conftest", ROOT / "tests" / "data" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.corpus_dataset


def test_simulate_summary_and_help(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _corpus_dataset()(n_times=4).to_zarr(corpus / "traj0.zarr", mode="w")
    assert main(["simulate", str(corpus), "--summary"]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert len(summary) == 1
    assert main(["simulate", "--help"]) == EXIT_OK
    assert "usage: phyda simulate" in capsys.readouterr().out


def test_evaluate_is_wired_or_says_it_is_missing(monkeypatch, capsys):
    entry = cli._evaluate_entry()
    if entry is None:
        assert main(["evaluate", "--help"]) == EXIT_ERROR
        assert "not available in this version" in _error_line(capsys.readouterr().err)
    else:  # its own parser answers --help and usage errors
        assert main(["evaluate", "--help"]) == EXIT_OK
        assert capsys.readouterr().out.startswith("usage: phyda evaluate")
        assert main(["evaluate", "--methods", "oi"]) == EXIT_USAGE  # --data is required
        assert "--data" in capsys.readouterr().err
    seen = {}

    def fake_main(argv):
        seen["argv"] = argv
        return 0

    monkeypatch.setattr(cli, "_evaluate_entry", lambda: fake_main)
    assert main(["evaluate", "analysis.nc", "--truth", "t.nc"]) == EXIT_OK
    assert seen["argv"] == ["analysis.nc", "--truth", "t.nc"]


# --------------------------------------------------------------------------- bad files, every subcommand that reads one
@pytest.fixture
def bad_files(tmp_path):
    """A path that does not exist, a .nc file that is not netCDF, and a file of an unknown format."""
    junk_nc = tmp_path / "junk.nc"
    junk_nc.write_text("not a netCDF file")
    junk_txt = tmp_path / "junk.txt"
    junk_txt.write_text("lat,lon,t [K]\n1,2,3\n")
    return {"missing": tmp_path / "missing.nc", "junk_nc": junk_nc, "junk_txt": junk_txt}


READ_ERRORS = {"missing": "does not exist", "junk_nc": "could not read", "junk_txt": "unrecognised format"}


@pytest.mark.parametrize("kind", sorted(READ_ERRORS))
def test_encode_and_residual_refuse_bad_files_in_one_line(kind, bad_files, files, tiny_model, tmp_path, capsys):
    bad = str(bad_files[kind])
    out = tmp_path / "out.nc"
    assert main(["encode", bad, "-o", str(out), "--model", str(tiny_model), "--quiet"]) == EXIT_ERROR
    assert READ_ERRORS[kind] in _error_line(capsys.readouterr().err)
    assert main(["encode", str(files["background"]), bad, "-o", str(out), "--model", str(tiny_model),
                 "--quiet"]) == EXIT_ERROR  # the observations file
    assert READ_ERRORS[kind] in _error_line(capsys.readouterr().err)
    assert main(["residual", bad]) == EXIT_ERROR
    assert READ_ERRORS[kind] in _error_line(capsys.readouterr().err)
    assert main(["residual", bad, "--output", str(out)]) == EXIT_ERROR
    assert READ_ERRORS[kind] in _error_line(capsys.readouterr().err)
    assert not out.exists()


def test_residual_and_encode_outputs_need_a_known_suffix(files, tiny_model, tmp_path, capsys):
    bg = str(files["background"])
    assert main(["residual", bg, "--output", str(tmp_path / "res.txt")]) == EXIT_ERROR
    assert "expected a .nc or .zarr suffix" in _error_line(capsys.readouterr().err)
    assert main(["encode", bg, "-o", str(tmp_path / "rec.csv"), "--model", str(tiny_model)]) == EXIT_ERROR
    assert "expected a .nc or .zarr suffix" in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "res.txt").exists() and not (tmp_path / "rec.csv").exists()


def test_train_and_evaluate_refuse_a_missing_or_unknown_store(bad_files, tmp_path, capsys):
    for kind, message in (("missing", "no store at"), ("junk_nc", "could not read"),
                          ("junk_txt", "cannot tell the format")):
        data = str(bad_files[kind])
        assert main(["train", "--data", data, "--out", str(tmp_path / "model"), "--quiet"]) == EXIT_ERROR
        assert message in _error_line(capsys.readouterr().err)
        if cli._evaluate_entry() is not None:
            assert main(["evaluate", "--data", data, "--out", str(tmp_path / "ev"), "--quiet"]) == EXIT_ERROR
            assert message in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "ev").exists() and not (tmp_path / "model").exists()  # refused before any folder


def test_models_and_demo_refuse_a_folder_that_is_not_a_model(tmp_path, capsys):
    assert main(["models", str(tmp_path)]) == EXIT_ERROR
    assert "is not an xphyda model" in _error_line(capsys.readouterr().err)
    out = tmp_path / "demo-out"
    assert main(["demo", "--model", str(tmp_path / "nope"), "--output-dir", str(out), "--quiet"]) == EXIT_ERROR
    assert "no model named" in _error_line(capsys.readouterr().err)
    assert not out.exists()  # refused before any work


# --------------------------------------------------------------------------- the README's demo command
def _run_cli(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env)
    return subprocess.run([sys.executable, "-m", "xphyda.cli", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=600, check=False)


def test_demo_command_as_ci_runs_it(tiny_model, tmp_path):
    """`python -m xphyda.cli demo --output-dir tmp`, with the tiny model and small settings."""
    proc = _run_cli(["demo", "--output-dir", "tmp", "--model", str(tiny_model), "--members", "2", "--steps", "2",
                     "--stations", "150", "--device", "cpu"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "background: the truth displaced" in out and "PhyDA: model 'tiny'" in out
    assert "RMSE" in out and "CRPS" in out and "residual ratio" in out
    assert (tmp_path / "tmp" / "demo.png").stat().st_size > 10_000
    assert (tmp_path / "tmp" / "scores.csv").is_file()


def test_demo_command_oi_only(tmp_path):
    """The OI part alone (what the demo runs when the bundled model is missing: see tests/test_demo.py)."""
    proc = _run_cli(["demo", "--output-dir", "out", "--stations", "150", "--oi-only", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "NOTICE: PhyDA skipped" in proc.stdout and "PhyDA" not in proc.stdout.split("Scores")[1]
    assert (tmp_path / "out" / "demo.png").is_file() and proc.stderr == ""


def test_the_phyda_script_is_the_cli_and_runs_the_demo_when_installed(tmp_path):
    """``make demo`` runs ``.venv/bin/phyda demo``: the console script of pyproject.toml is ``xphyda.cli:main``.

    Where xphyda is installed (CI's fresh ``.venv``), the script itself runs the OI part of the demo.
    """
    import importlib
    import shutil

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["phyda"]
    module, _, func = target.partition(":")
    assert getattr(importlib.import_module(module), func) is main
    assert "$(BIN)/phyda demo" in (ROOT / "Makefile").read_text()  # the README's `make demo`
    script = shutil.which("phyda", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("xphyda is not installed in this environment (no phyda script next to the interpreter)")
    proc = subprocess.run([script, "demo", "--output-dir", "out", "--oi-only", "--stations", "150", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "RMSE" in proc.stdout and (tmp_path / "out" / "demo.png").stat().st_size > 10_000


@pytest.mark.slow
def test_readme_demo_command_exactly(tmp_path):
    """The README's first command with its defaults (the bundled model when installed); its time is a benchmark."""
    proc = _run_cli(["demo", "--output-dir", "tmp"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tmp" / "demo.png").is_file()


def test_simulate_summary_rejects_a_store_that_is_not_a_corpus(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _corpus_dataset()(n_times=2).drop_vars("w").to_zarr(corpus / "traj0.zarr", mode="w")
    assert main(["simulate", str(corpus), "--summary"]) == EXIT_ERROR
    err = _error_line(capsys.readouterr().err)
    assert "not a corpus store" in err and "'w'" in err


def test_the_summary_of_a_variable_with_no_observation_used_gives_no_nan():
    from xphyda.cli import _obs_summary
    from xphyda.obs import FLAGS

    ana = xr.Dataset({"t_flag": ("station", [FLAGS["outside_grid"]] * 2 + [FLAGS["missing_value"]]),
                      "t_innovation": ("station", [np.nan] * 3, {"units": "K"}),
                      "t_residual": ("station", [np.nan] * 3, {"units": "K"})})
    assert _obs_summary(ana) == ["  t: 0 of 2 observations used (see t_flag)"]


def test_models_lists_unreadable_and_hiding_models(tmp_path, monkeypatch, capsys):
    """A model whose card is broken was listed like any other; one in the user cache hid the bundled one silently."""
    import shutil

    from xphyda.models import DEFAULT_MODEL, find

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    user = tmp_path / "xphyda" / "models"
    user.mkdir(parents=True)
    bundled = find(DEFAULT_MODEL)
    shutil.copytree(bundled, user / DEFAULT_MODEL)
    (user / "broken").mkdir()
    (user / "broken" / "card.json").write_text("{not json")
    shutil.copy(bundled / "model.safetensors", user / "broken")
    assert main(["models"]) == EXIT_OK
    out = capsys.readouterr().out
    assert re.search(r"broken .*UNREADABLE: model card .* is not valid JSON", out)
    assert f"{DEFAULT_MODEL}  ({user / DEFAULT_MODEL})  (hides {bundled})" in out
