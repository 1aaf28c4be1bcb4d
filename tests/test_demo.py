"""The demo: its forecast-like background, its score table, and the run with and without a model."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xphyda
from xphyda import metrics
from xphyda.demo import _verdict, demo_scores, displaced_background, format_scores, run_demo
from xphyda.errors import ModelError, PhydaError

G0 = 9.80665


def test_displaced_background_is_forecast_like_and_balanced(era5):
    before = era5.copy(deep=True)
    bg = displaced_background(era5, seed=0)
    xr.testing.assert_identical(era5, before)  # input untouched
    assert bg["t"].dtype == era5["t"].dtype and bg["z"].attrs == era5["z"].attrs
    assert bg.attrs["history"].startswith("displaced_background(displacement_km=150")
    err = metrics.rmse(bg, era5)
    z500_m = err["z"].sel(level=500).item() / G0
    t850 = err["t"].sel(level=850).item()
    # 24-hour-forecast-like errors: 10-40 m of 500 hPa height, 0.5-2 K at 850 hPa
    assert 10 < z500_m < 40 and 0.5 < t850 < 2.0
    # a column moves as a whole: the hydrostatic residual is the truth's
    ratio = metrics.residual_ratio(bg, era5, "hydrostatic").item()
    assert 0.95 < ratio < 1.05
    # the displacement is smooth: the error has large scales, not grid noise
    e = (bg["z"] - era5["z"]).sel(level=500).isel(time=0)
    assert float(e.diff("longitude").std()) < 0.3 * float(e.std())


def test_displaced_background_seed_and_amplitude(era5):
    a = displaced_background(era5, seed=1)
    xr.testing.assert_identical(a, displaced_background(era5, seed=1))
    assert not a["z"].equals(displaced_background(era5, seed=2)["z"])
    small = metrics.rmse(displaced_background(era5, displacement_km=50.0, seed=1), era5)["z"]
    assert small.sel(level=500).item() < 0.5 * metrics.rmse(a, era5)["z"].sel(level=500).item()
    with pytest.raises(PhydaError, match="displacement_km must be a positive distance"):
        displaced_background(era5, displacement_km=-1.0)


def test_demo_scores_table(era5):
    ens = xr.concat([era5 + 1.0, era5 - 1.0], "member")
    table = demo_scores({"warm": era5.assign(t=era5.t + 1.0), "ens": ens}, era5)
    assert list(table.columns) == ["warm", "ens"]
    assert float(table.loc[("RMSE", "t", "500 hPa", "K"), "warm"]) == pytest.approx(1.0)
    assert float(table.loc[("RMSE", "z", "850 hPa", "m2 s-2"), "ens"]) == pytest.approx(0.0, abs=1e-3)
    assert np.isnan(table.loc[("CRPS", "t", "500 hPa", "K"), "warm"])
    assert float(table.loc[("spread", "t", "850 hPa", "K"), "ens"]) == pytest.approx(np.sqrt(2.0), rel=1e-6)
    assert table.index.get_level_values("score").tolist()[0] == "RMSE"
    assert ("residual ratio", "hydrostatic", "500-850 hPa", "1") in table.index
    text = format_scores(table)
    assert text.splitlines()[0].split() == ["score", "variable", "level", "units", "warm", "ens"]
    crps_t500 = next(ln for ln in text.splitlines() if ln.startswith("CRPS") and "t " in ln and "500" in ln)
    assert crps_t500.split()[-2] == "-"  # no CRPS for a deterministic state


def test_format_scores_columns_fit_their_labels(era5):
    """Each label stays inside its column, followed by a gap: ``residual ratio (mean)`` once ran into the next."""
    import re

    import pandas as pd

    ens = xr.concat([era5 + 1.0, era5 - 1.0], "member")
    table = demo_scores({"OI": era5.assign(t=era5.t + 1.0), "PhyDA": ens}, era5)
    assert any(key[0] == "residual ratio (mean)" for key in table.index)
    long_row = pd.DataFrame(  # longer labels in every column, and a number longer than the default width
        [[1.2345e25, np.nan]], columns=table.columns,
        index=pd.MultiIndex.from_tuples([("a very long score name", "geopotential_height", "1000-10 hPa layer",
                                          "m2 s-2 per day")], names=table.index.names))
    for t in (table, pd.concat([table, long_row])):
        lines = format_scores(t).splitlines()
        header = lines[0]
        tokens = [m.span() for m in re.finditer(r"\S+", header)]
        assert [header[a:b] for a, b in tokens] == ["score", "variable", "level", "units", "OI", "PhyDA"]
        starts = [a for a, _ in tokens[:4]]
        ends = [b for _, b in tokens[4:]]
        assert len(lines) == len(t) + 1
        for line, key, values in zip(lines[1:], t.index, t.to_numpy()):
            assert len(line) == len(header), line
            for i in range(3):  # score, variable, level: the label, then blanks up to the next column
                cell = line[starts[i]:starts[i + 1]]
                assert cell.rstrip() == key[i] and cell.endswith(" "), (cell, key)
            assert line[starts[3]:].startswith(key[3] + " "), (line, key)
            for end, value in zip(ends, values):  # numbers right-aligned under their header, after a blank
                before, _, number = line[:end].rpartition(" ")
                assert before.endswith(" ") or before[starts[3]:].strip() == key[3], line
                assert number == "-" if not np.isfinite(value) else float(number) == pytest.approx(value, rel=1e-3)


def test_verdict_puts_the_table_in_words(era5):
    table = demo_scores({"background": era5 + 2.0, "OI": era5 + 1.0, "PhyDA": era5 + 4.0}, era5)
    lines = _verdict(table, {"name": "m", "description": "a test prior", "training": {"steps_done": 600, "lead_hours": 24}})
    assert lines[0].endswith("OI -50 %, PhyDA +100 %")
    assert "worse than the background" in lines[1] and "600 training steps" in lines[1]
    assert "the state 24 h earlier" in lines[1] and "`phyda models m`" in lines[1]
    assert len(_verdict(table, None)) == 2  # no caveat without a card (OI only)
    tuned = {"name": "m", "training": {"steps_done": 600, "init_from": {"steps_done": 21000}}}
    assert "21000 + 600 fine-tuning training steps" in _verdict(table, tuned)[1]  # a fine-tune counts both
    twice = {"name": "m", "training": {"steps_done": 5000, "init_from": {"steps_done": 3000, "total_steps": 24000}}}
    assert "24000 + 5000 fine-tuning training steps" in _verdict(table, twice)[1]  # a fine-tune of a fine-tune


@pytest.fixture
def no_bundled_model(monkeypatch, tmp_path):
    """A machine where the bundled model is not installed (and no user models)."""
    from xphyda import models

    empty = tmp_path / "no-models"
    empty.mkdir()
    monkeypatch.setenv("XPHYDA_MODEL_PATH", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty))
    monkeypatch.setattr(models, "_bundled", lambda: empty)


def test_demo_without_the_bundled_model_runs_oi_and_says_so(no_bundled_model, tmp_path):
    lines = []
    out = run_demo(output_dir=tmp_path / "demo", n_stations=300, progress=False, echo=lines.append)
    text = "\n".join(lines)
    assert out["notice"] and "NOTICE: The bundled PhyDA model 'jcm-t31-v1' is not installed" in text
    assert "phyda train --preset jcm-t31-v1" in text
    assert list(out["scores"].columns) == ["background", "OI"]
    rmse = out["scores"].xs("RMSE", level="score")
    assert (rmse["OI"] < rmse["background"]).all()  # OI improves every variable and level
    assert out["figure"].stat().st_size > 10_000 and out["table"].is_file()
    assert "background: the truth displaced" in text and "wrote" in lines[-1]


def test_demo_with_a_model(tiny_model, tmp_path):
    lines = []
    out = run_demo(output_dir=tmp_path, model=tiny_model, n_stations=150, members=2, steps=2, device="cpu",
                   progress=False, echo=lines.append)
    assert out["notice"] is None
    assert list(out["scores"].columns) == ["background", "OI", "PhyDA"]
    assert out["analyses"]["PhyDA"]["z"].sizes["member"] == 2
    crps = out["scores"].xs("CRPS", level="score")["PhyDA"]
    assert np.isfinite(crps).all()
    assert any("PhyDA: model 'tiny'" in ln for ln in lines)
    assert set(out["seconds"]) == {"data", "OI", "PhyDA", "scores and figure", "total"}


def test_demo_with_a_named_model_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(ModelError, match="no model named 'nope'"):
        run_demo(output_dir=tmp_path, model="nope", progress=False, echo=lambda *a: None)
    with pytest.raises(PhydaError, match="members must be a positive integer"):
        run_demo(output_dir=tmp_path, members=0, progress=False, echo=lambda *a: None)


def test_tutorial_sample_carries_the_attribution_the_figure_shows():
    assert "Copernicus" in xphyda.tutorial.open_dataset("era5-z-t").attrs["attribution"]
