"""OSSEs (xphyda.evaluate): the table's rows, identical observations for every method, files, report, CLI, errors.

The data are the real ERA5 extract (t and z at 500 and 850 hPa) coarsened to
16 x 32 and moved eastwards by one column per 6 hours, so that the state 6 h
earlier is a background with errors of realistic structure.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xphyda
from xphyda.cli import OutputExistsError
from xphyda.data.splits import TimeSplit
from xphyda.errors import ModelError, PhydaError
from xphyda.evaluate import (
    COLUMNS,
    EvaluationError,
    OSSEResult,
    evaluate_main,
    run_osse,
    summarize,
    write_report,
)

NT = 6
SETTINGS = [{"fraction": 0.3}, {"n_stations": 40, "label": "40 stations"}]


@pytest.fixture(scope="module")
def _data():
    era5 = xphyda.tutorial.open_dataset("era5-z-t")
    day = era5.coarsen(latitude=11, longitude=11, boundary="trim").mean(keep_attrs=True)  # 16 x 32
    times = day.time.values[0] + np.arange(NT) * np.timedelta64(6, "h")
    return xr.concat(
        [day.roll(longitude=k, roll_coords=False).assign_coords(time=[t]) for k, t in enumerate(times)],
        "time",
    )


@pytest.fixture
def data(_data):
    return _data.copy(deep=True)


def quick(data, **kw):
    opts = {
        "cases": 2,
        "split": None,
        "lead": "6h",
        "observations": SETTINGS,
        "methods": {"background": None, "oi": {}},
        "progress": False,
    }
    return run_osse(data, **{**opts, **kw})


def test_table_report_and_files_with_an_ensemble(data, tiny_model, tmp_path):
    phyda = {"model": tiny_model, "members": 2, "steps": 2, "guidance": "diag"}
    methods = {"background": None, "oi": {}, "phyda": phyda}
    out = tmp_path / "out"
    res = quick(data, cases=1, methods=methods, out_dir=out, report=False)
    t = res.table
    assert tuple(t.columns) == COLUMNS
    # per case and setting: 3 methods x 2 variables x 2 levels x (rmse, bias, mae), the ensemble's crps and
    # spread-skill ratio (2 x 2 x 2), one hydrostatic layer ratio per method (and of the ensemble mean), and
    # the relative hydrostatic residual of each method and of the truth
    assert len(t) == 1 * 2 * (36 + 8 + 3 + 1 + 4)
    metrics = {"rmse", "bias", "mae", "crps", "spread_skill_ratio", "residual_ratio", "residual_ratio_mean",
               "residual_relative"}
    assert set(t["metric"]) == metrics
    assert set(t.loc[t.metric == "crps", "method"]) == {"phyda"}
    assert set(t.loc[t.method == "truth", "metric"]) == {"residual_relative"}
    res_rows = t[t.metric == "residual_ratio"]
    assert set(res_rows["variable"]) == {"hydrostatic_residual"} and set(res_rows["layer"]) == {"500-850 hPa"}
    rel = t[(t.metric == "residual_relative") & (t.setting == "fraction=0.3")].set_index("method")["value"]
    assert 1e-4 < rel["truth"] < 1e-2  # ERA5 is close to hydrostatic balance, not exactly
    bg_ratio = res_rows[(res_rows.method == "background") & (res_rows.setting == "fraction=0.3")]["value"]
    assert float(bg_ratio.iloc[0]) == pytest.approx(rel["background"] / rel["truth"], rel=0.2)
    assert set(t["setting"]) == {"fraction=0.3", "40 stations"} and set(t["trajectory"]) == {-1}
    assert set(t["time"]) == {c["time"] for c in res.config["cases"]}
    for name in ("scores.csv", "scores.nc", "summary.csv", "runs.csv", "fields.nc", "config.json"):
        assert (out / name).is_file(), name
    with xr.open_dataset(out / "scores.nc", engine="netcdf4") as nc:
        assert nc.sizes["row"] == len(t) and json.loads(nc.attrs["config"])["seed"] == 0
        np.testing.assert_array_equal(nc["value"].values, t["value"].values)
        assert list(nc["method"].values) == list(t["method"])
    np.testing.assert_allclose(pd.read_csv(out / "scores.csv")["value"], t["value"])
    runs = res.runs
    assert len(runs) == 2 * 3 and set(runs.loc[runs.method == "phyda", "members"]) == {2}
    assert (runs.loc[runs.kind != "background", "n_obs"] > 0).all()
    with xr.open_dataset(out / "fields.nc", engine="netcdf4") as f:
        assert f["analysis_t850"].dims == ("setting", "method", "latitude", "longitude")
        assert np.isfinite(f["spread_t850"].sel({"method": "phyda"})).all()
        assert np.isnan(f["spread_t850"].sel({"method": "oi"})).all()
    # the report, drawn from the folder alone
    files = write_report(out)
    for fig in (
        "maps_z500",
        "maps_t850",
        "scores_rmse",
        "scores_crps",
        "scores_spread_skill_ratio",
        "density",
        "residual_ratios",
    ):
        assert files[f"fig_{fig}"].stat().st_size > 5000, fig
    md = (out / "report.md").read_text()
    assert "## RMSE" in md and "### Observations: 40 stations" in md and "## Ensemble scores" in md
    assert md.count("![") == sum(k.startswith("fig_") for k in files) and "figures/maps_z500.png" in md
    assert OSSEResult.open(out).table.shape == t.shape


def test_oi_beats_the_background_on_real_fields(data):
    s = quick(data, cases=3).summary()
    rmse = s[(s.metric == "rmse") & (s.setting == "fraction=0.3")].set_index(["method", "variable", "level"])[
        "value"
    ]
    for var, lev in (("t", 850.0), ("z", 500.0)):
        assert rmse[("oi", var, lev)] < 0.95 * rmse[("background", var, lev)]


def test_observations_depend_on_the_case_not_on_the_methods_or_other_cases(data):
    full = quick(data, cases=3)
    alone = quick(data, cases=[full.config["cases"][1]["time"]], methods={"oi": {}})
    a = full.table[(full.table.method == "oi") & (full.table.case == 1)].reset_index(drop=True)
    b = alone.table[alone.table.method == "oi"].drop(columns="case").reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="case"), b)


def test_given_background_has_the_bias_it_was_given(data):
    bg = data.copy(deep=True)
    bg["t"] = bg["t"] + 1.0
    s = quick(data, background=bg, methods=["background"]).summary()
    s = s[s.setting == "fraction=0.3"].set_index(["metric", "variable", "level"])
    assert s.loc[("bias", "t", 850.0), "value"] == pytest.approx(1.0, abs=1e-5)
    assert s.loc[("rmse", "t", 500.0), "value"] == pytest.approx(1.0, abs=1e-5)
    assert s.loc[("bias", "z", 500.0), "value"] == pytest.approx(0.0, abs=1e-6)


def test_store_with_trajectories_and_a_test_split(data, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for k in range(2):  # the jcm corpus layout: one Zarr store per trajectory
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            data.roll(longitude=3 * k, roll_coords=False).to_zarr(root / f"traj{k}.zarr", consolidated=True)
    times = data.time.values
    split = TimeSplit(
        train=(times[0], times[2]), test=(times[2], times[-1] + np.timedelta64(6, "h")), gap="6h"
    )
    res = run_osse(
        root,
        cases=4,
        split=split,
        lead="6h",
        observations=[{"fraction": 0.2}],
        methods=["background", "oi"],
        progress=False,
    )
    cases = pd.DataFrame(res.config["cases"])
    assert set(cases["trajectory"]) == {0, 1} and len(cases) == 4
    assert (pd.to_datetime(cases["time"]) >= pd.Timestamp(times[3])).all()  # truths start one gap into test
    assert set(res.table["trajectory"]) == {0, 1}
    assert res.config["split"]["name"] == "test"


def test_bad_settings_fail_early_and_teach(data, tmp_path):
    with pytest.raises(EvaluationError, match="exactly one of fraction, n_stations or stations"):
        quick(data, observations=[{"fraction": 0.1, "n_stations": 5}])
    with pytest.raises(EvaluationError, match=r"unknown keys \['fractoin'\]"):
        quick(data, observations=[{"fractoin": 0.1}])
    with pytest.raises(EvaluationError, match=r"fraction must be in \(0, 1\]"):
        quick(data, observations=[{"fraction": 5}])
    with pytest.raises(EvaluationError, match="both labelled"):
        quick(data, observations=[{"fraction": 0.1}, {"fraction": 0.1}])
    with pytest.raises(EvaluationError, match=r"method 'nudging': cannot tell what it is"):
        quick(data, methods={"nudging": {}})
    with pytest.raises(EvaluationError, match=r"options \['lenght_scale'\] are not options"):
        quick(data, methods={"oi": {"lenght_scale": 5e5}})
    with pytest.raises(ModelError, match="method 'no-vre': no model named"):
        quick(data, methods={"no-vre": {"model": "no-such-model"}})
    with pytest.raises(EvaluationError, match="9 cases were asked for but the data has only 5"):
        quick(data, cases=9)
    with pytest.raises(EvaluationError, match="not a truth time of the data with a background; the nearest"):
        quick(data, cases=["2007-01-01T12"])  # the first time has no state 6 h earlier
    with pytest.raises(EvaluationError, match="split must be one of"):
        quick(data, split="testing")
    with pytest.raises(PhydaError, match="seed must be a non-negative integer"):
        quick(data, seed=-1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(OutputExistsError, match="not empty"):
        quick(data, cases=1, out_dir=tmp_path / "full")
    assert issubclass(EvaluationError, ValueError)


def test_summarize_pools_rmse_as_root_mean_square():
    t = pd.DataFrame(
        {
            "case": [0, 1, 0, 1],
            "setting": "s",
            "method": "m",
            "variable": "t",
            "level": [500.0, 500.0, np.nan, np.nan],
            "layer": "",
            "metric": ["rmse", "rmse", "bias", "bias"],
            "value": [3.0, 4.0, 1.0, -2.0],
            "units": "K",
        }
    )
    s = summarize(t).set_index("metric")
    assert s.loc["rmse", "value"] == pytest.approx(np.sqrt(12.5)) and s.loc["bias", "value"] == pytest.approx(
        -0.5
    )
    assert s.loc["bias", "sem"] == pytest.approx(np.std([1.0, -2.0], ddof=1) / np.sqrt(2)) and np.isnan(
        s.loc["bias", "level"]
    )


def test_cli_writes_the_report_and_refuses_to_overwrite(data, tmp_path, capsys):
    from xphyda.cli import main as phyda

    path = tmp_path / "truth.nc"
    data.to_netcdf(path, engine="netcdf4")
    argv = [
        "--data",
        str(path),
        "--methods",
        "background",
        "oi",
        "--fractions",
        "0.3",
        "--stations",
        "30",
        "--cases",
        "2",
        "--split",
        "all",
        "--lead",
        "6h",
        "--out",
        str(tmp_path / "ev"),
        "--quiet",
    ]
    assert phyda(["evaluate", *argv]) == 0  # through the phyda command, as users run it
    assert (tmp_path / "ev" / "report.md").is_file() and (
        tmp_path / "ev" / "figures" / "scores_rmse.png"
    ).is_file()
    assert "`phyda evaluate --data" in (tmp_path / "ev" / "report.md").read_text()
    table = pd.read_csv(tmp_path / "ev" / "scores.csv")
    assert set(table["setting"]) == {"fraction=0.3", "n_stations=30"}
    assert evaluate_main(argv) == 3 and "pass overwrite=True (--overwrite)" in capsys.readouterr().err
    bad = [*argv[:-3], "--out", str(tmp_path / "ev2"), "--methods", "phyda", "--model", "nope-v0"]
    assert evaluate_main(bad) == 1 and "no model named 'nope-v0'" in capsys.readouterr().err
    assert phyda(["evaluate", *bad]) == 1 and "method 'phyda': no model named" in capsys.readouterr().err


def test_cli_data_that_is_not_netcdf_is_one_data_error_line(tmp_path, capsys):
    """`phyda evaluate --data junk.nc`: the file, what a store may be and the fix, not the library's bare error."""
    from xphyda.cli import EXIT_ERROR
    from xphyda.cli import main as phyda
    from xphyda.errors import DataError
    from xphyda.evaluate.cli import main as evaluate_cli

    junk = tmp_path / "junk.nc"
    junk.write_text("not a netCDF file")
    argv = ["--data", str(junk), "--methods", "oi", "--out", str(tmp_path / "ev"), "--quiet"]
    assert phyda(["evaluate", *argv]) == EXIT_ERROR
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"phyda: error: could not read {str(junk)!r} as netCDF")
    assert "Expected a netCDF (.nc) or GRIB file, a Zarr store (folder), or a corpus folder" in lines[0]
    assert "Fix:" in lines[0]
    with pytest.raises(DataError, match="could not read"):
        evaluate_cli(argv)  # the entry `phyda` forwards to raises it; `phyda` prints it on one line
    assert not (tmp_path / "ev").exists()


def test_an_oi_ensemble_gets_crps_and_spread_skill_rows(data, tmp_path):
    methods = {"background": None, "oi": {}, "oi-ens": {"method": "oi", "members": 8}}
    res = quick(data, cases=1, methods=methods, residuals=None)
    t = res.table
    ens = t[t.metric.isin(["crps", "spread_skill_ratio"])]
    assert set(ens["method"]) == {"oi-ens"}
    assert len(ens) == 2 * 2 * 2 * 2  # settings x variables x levels x (crps, spread-skill ratio)
    s = t.set_index(["setting", "method", "variable", "level", "metric"])["value"]
    for setting in ("fraction=0.3", "40 stations"):
        for var, lev in (("t", 850.0), ("z", 500.0)):
            ssr = s[(setting, "oi-ens", var, lev, "spread_skill_ratio")]
            assert 0.3 < ssr < 3.0, (setting, var, ssr)
            assert 0 < s[(setting, "oi-ens", var, lev, "crps")] < s[(setting, "background", var, lev, "mae")]
            assert s[(setting, "oi-ens", var, lev, "rmse")] < 1.2 * s[(setting, "oi", var, lev, "rmse")]
    runs = res.runs.set_index(["setting", "method"])["members"]
    assert set(runs.xs("oi-ens", level="method")) == {8} and set(runs.xs("oi", level="method")) == {1}
    assert np.isfinite(res.fields["spread_t850"].sel({"method": "oi-ens"})).all()
    assert np.isnan(res.fields["spread_t850"].sel({"method": "oi"})).all()
    again = quick(data, cases=1, methods={"oi-ens": methods["oi-ens"]}, residuals=None).table
    pd.testing.assert_frame_equal(
        again.reset_index(drop=True), t[t.method == "oi-ens"].reset_index(drop=True)
    )  # seeded from (seed, case): the same members whatever the other methods
    with pytest.raises(EvaluationError, match="method 'oi': members must be a positive integer"):
        quick(data, methods={"oi": {"members": 0}})
    # the command line: --oi-members
    path = tmp_path / "truth.nc"
    data.to_netcdf(path, engine="netcdf4")
    argv = "--methods oi --oi-members 4 --fractions 0.3 --cases 1 --split all --lead 6h --quiet --no-report"
    argv = ["--data", str(path), "--out", str(tmp_path / "ev"), *argv.split()]
    assert evaluate_main(argv) == 0
    table = pd.read_csv(tmp_path / "ev" / "scores.csv")
    assert {"crps", "spread_skill_ratio"} <= set(table.loc[table.method == "oi", "metric"])
    assert set(pd.read_csv(tmp_path / "ev" / "runs.csv")["members"]) == {4}
    with pytest.raises(SystemExit):
        evaluate_main([*argv[:4], "--oi-members", "0"])
