"""Tests of the training-data pipeline on tiny stores (corpus format) and an ERA5-shaped WB2 store."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import corpus_dataset, write_zarr

import xphyda
from xphyda.data.pipeline import (
    ChannelSpec,
    NormStats,
    StateDataset,
    TimeSplit,
    area_weights,
    compute_stats,
    default_split,
    model_grid,
    open_store,
    prepare,
    regrid,
    regrid_weights,
    sample_pairs,
    time_features,
    write_store,
)
from xphyda.errors import DataError, GridError, UnitsError, VariableError


# --------------------------------------------------------------------------- open_store
def test_corpus_opens_in_canonical_layout(make_corpus):
    root = make_corpus(levels=(850.0, 500.0, 100.0))  # descending pressure in the store
    ds = open_store(root)
    assert list(ds.data_vars) == ["z", "t", "u", "v", "q", "w", "sp"]  # static fields are not state variables
    assert ds["t"].dims == ("trajectory", "time", "level", "latitude", "longitude")
    assert ds["sp"].dims == ("trajectory", "time", "latitude", "longitude")
    assert ds["level"].values.tolist() == [100.0, 500.0, 850.0]
    assert np.all(np.diff(ds["latitude"].values) < 0)
    assert ds["trajectory"].values.tolist() == [0, 1]
    assert all(ds[v].dtype == np.float32 and ds[v].chunks is not None for v in ds.data_vars)  # lazy
    assert (
        ds["z"].attrs["units"] == "m2 s-2"
        and ds["w"].attrs["standard_name"] == "lagrangian_tendency_of_air_pressure"
    )
    raw = corpus_dataset(trajectory=1, levels=(850.0, 500.0, 100.0))
    np.testing.assert_array_equal(
        ds["t"].sel(trajectory=1, level=850.0).values, raw["t"].sel(level=850).values
    )
    assert "open_store" in ds.attrs["history"]


def test_names_of_any_convention_select_variables_and_levels(make_corpus):
    ds = open_store(
        make_corpus(),
        variables=["geopotential", "t", "u_component_of_wind", "surface_pressure"],
        levels=[500],
    )
    assert list(ds.data_vars) == ["z", "t", "u", "sp"]
    assert ds["level"].values.tolist() == [500.0]
    mapped = open_store(make_corpus(name="b"), variables={"t": "t"}, levels=[850, 500])
    assert list(mapped.data_vars) == ["t"] and mapped["level"].values.tolist() == [500.0, 850.0]


def test_missing_variable_and_level_errors_teach(make_corpus):
    root = make_corpus()
    with pytest.raises(VariableError) as err:
        open_store(root, variables=["t", "msl"])
    msg = str(err.value)
    assert "'msl'" in msg and "'t': 't'" in msg and "Fix" in msg
    with pytest.raises(GridError) as err:
        open_store(root, levels=[500, 250])
    assert "[250.0]" in str(err.value) and "100.0, 500.0, 850.0" in str(err.value)
    with pytest.raises(VariableError, match="unknown variable name 'vorticity'"):
        open_store(root, variables=["vorticity"])
    with pytest.raises(DataError, match="no store"):
        open_store(root / "missing.zarr")
    with pytest.raises(DataError, match="traj"):
        open_store(root / "logs")


def test_units_are_converted_to_si_at_the_boundary():
    raw = corpus_dataset(n_times=2)
    other = raw.copy()
    other["z"] = (raw["z"] / 9.80665).assign_attrs(units="m", standard_name="geopotential_height")
    other = other.rename(z="gh")
    other["t"] = (raw["t"] - 273.15).assign_attrs(units="degC", standard_name="air_temperature")
    other["sp"] = (raw["sp"] / 100).assign_attrs(units="hPa", standard_name="surface_air_pressure")
    a, b = open_store(raw, variables=["z", "t", "sp"]), open_store(other, variables=["z", "t", "sp"])
    for v in ("z", "t", "sp"):
        np.testing.assert_allclose(b[v].values, a[v].values, rtol=2e-6)
        assert b[v].attrs["units"] == a[v].attrs["units"]
    bad = raw.copy()
    bad["t"].attrs["units"] = "m s-1"
    with pytest.raises(UnitsError, match="temperature"):
        open_store(bad, variables=["t"])


def test_netcdf_files_and_fsspec_urls_give_the_same_dataset(make_corpus, tmp_path):
    root = make_corpus(n_traj=1)
    ref = open_store(root / "traj0.zarr").load()
    raw = corpus_dataset(trajectory=0)
    raw.isel(time=slice(0, 8)).to_netcdf(tmp_path / "a.nc", engine="netcdf4")
    raw.isel(time=slice(8, None)).to_netcdf(tmp_path / "b.nc", engine="netcdf4")
    from_nc = open_store(tmp_path / "a.nc")
    assert from_nc.sizes["time"] == 8
    xr.testing.assert_allclose(open_store(str(tmp_path / "*.nc")).load().drop_attrs(), ref.drop_attrs())
    xr.testing.assert_allclose(
        open_store(f"file://{root}").isel(trajectory=0, drop=True).load().drop_attrs(), ref.drop_attrs()
    )
    write_zarr(raw, "memory://xphyda-test/traj0.zarr")
    xr.testing.assert_allclose(
        open_store("memory://xphyda-test/traj0.zarr").load().drop_attrs(), ref.drop_attrs()
    )


def test_a_file_that_is_not_netcdf_is_a_data_error_naming_it(tmp_path):
    """Not the netCDF library's bare "Unknown file format": the file, what a store may be, and the fix."""
    junk = tmp_path / "junk.nc"
    junk.write_text("<html>404 not found</html>")
    with pytest.raises(DataError) as info:
        open_store(junk)
    text = str(info.value)
    assert f"could not read {str(junk)!r} as netCDF" in text
    assert "Expected a netCDF (.nc) or GRIB file, a Zarr store (folder)" in text and "Fix:" in text
    assert isinstance(info.value.__cause__, OSError)  # the library's error stays in the chain (--debug)
    # among good files of a folder, the bad one is named
    folder = tmp_path / "files"
    folder.mkdir()
    corpus_dataset(n_times=2).to_netcdf(folder / "a.nc", engine="netcdf4")
    (folder / "b.nc").write_bytes(junk.read_bytes())
    with pytest.raises(DataError, match=r"could not read '.*b\.nc' as netCDF"):
        open_store(folder)


def test_real_cfgrib_layout_file_and_cds_netcdf_layout(tmp_path):
    real = open_store(Path(__file__).parent / "ecmwf_pl_10deg.nc")  # ECMWF analysis read by cfgrib
    assert list(real.data_vars) == ["z", "t", "u", "v", "r"]
    assert real["level"].values.tolist() == [300.0, 400.0, 500.0, 700.0, 850.0, 1000.0]
    assert (
        real["r"].attrs["units"] == "1" and -0.05 < float(real["r"].min()) and float(real["r"].max()) < 1.5
    )  # percent -> 1
    assert len(StateDataset(real, lead="24h")) == 1
    # the 2024+ CDS netCDF layout: valid_time, pressure_level (descending), scalar number / expver
    raw = corpus_dataset(n_times=5, levels=(850.0, 500.0)).drop_vars(["z_surface", "lsm"])
    cds = raw.rename(time="valid_time", level="pressure_level").assign_coords(number=0, expver="0001")
    cds["pressure_level"].attrs = {"units": "hPa", "long_name": "pressure"}
    cds.to_netcdf(tmp_path / "cds.nc", engine="netcdf4")
    import fsspec

    fsspec.filesystem("memory").pipe("/xphyda-test/cds.nc", (tmp_path / "cds.nc").read_bytes())
    for source in (tmp_path / "cds.nc", "memory://xphyda-test/cds.nc"):  # local, and remote via a cached copy
        ds = open_store(source, variables=["t", "sp"])
        assert ds["t"].dims == ("time", "level", "latitude", "longitude") and ds["level"].values.tolist() == [
            500,
            850,
        ]
        np.testing.assert_array_equal(ds["t"].sel(level=850).values, raw["t"].sel(level=850).values)


def _era5_grib(path, era5, hours=(0, 6, 12)):
    """Write the real ERA5 extract (z and t at 500 and 850 hPa) as GRIB 1, as the CDS delivers ERA5,
    one message per variable, level and time (the same state at each time; only the layout matters)."""
    eccodes = pytest.importorskip("eccodes")
    lat, lon = era5.latitude.values, era5.longitude.values
    with open(path, "wb") as f:
        for h in hours:
            for var, param in (("z", 129), ("t", 130)):
                for level in (500, 850):
                    msg = eccodes.codes_grib_new_from_samples("regular_ll_pl_grib1")
                    keys = {
                        "Ni": lon.size, "Nj": lat.size, "jScansPositively": 0,
                        "latitudeOfFirstGridPointInDegrees": float(lat[0]),
                        "latitudeOfLastGridPointInDegrees": float(lat[-1]),
                        "longitudeOfFirstGridPointInDegrees": float(lon[0]),
                        "longitudeOfLastGridPointInDegrees": float(lon[-1]),
                        "iDirectionIncrementInDegrees": 1.0, "jDirectionIncrementInDegrees": 1.0,
                        "dataDate": 20070101, "dataTime": 100 * h, "level": level, "paramId": param,
                        "bitsPerValue": 16,
                    }
                    for key, value in keys.items():
                        eccodes.codes_set(msg, key, value)
                    values = era5[var].sel(level=level).isel(time=0).values.astype(np.float64)
                    eccodes.codes_set_values(msg, values.ravel())
                    eccodes.codes_write(msg, f)
                    eccodes.codes_release(msg)
    return path


def test_era5_grib_file_runs_through_the_same_path(tmp_path):
    """A GRIB file as the CDS delivers ERA5 (cfgrib names: isobaricInhPa, paramId-named variables)."""
    # pyproj before eccodes: the other import order makes the binary wheels of the two (each bundles
    # its own libraries) crash the interpreter at exit, after every test has passed
    pytest.importorskip("pyproj")
    pytest.importorskip("cfgrib")
    era5 = xphyda.tutorial.open_dataset("era5-z-t")
    grib = _era5_grib(tmp_path / "era5_pl.grib", era5)
    ds = open_store(grib)
    assert list(ds.data_vars) == ["z", "t"] and ds["level"].values.tolist() == [500.0, 850.0]
    assert dict(ds.sizes) == {"time": 3, "level": 2, "latitude": 181, "longitude": 360}
    assert ds["z"].attrs["units"] == "m2 s-2" and ds["t"].attrs["units"] == "K"
    reference = open_store(era5)
    for var, packing in (("z", 0.2), ("t", 1e-3)):  # 16-bit GRIB packing: measured 0.125 m2 s-2 and 6.6e-4 K
        assert float(abs(ds[var].isel(time=1) - reference[var].isel(time=0)).max()) < packing
    grid = model_grid(16, 32)
    data = prepare(grib, grid=grid, split=None, lead="6h")
    assert data.spec.names == ("z500", "z850", "t500", "t850") and len(data.dataset("train")) == 2
    assert data.dataset("train")[0]["truth"].shape == (4, 16, 32)


def test_an_opened_canonical_dataset_is_a_valid_source(make_corpus):
    root = make_corpus(lengths=(16, 12))
    ds = open_store(root, variables=["t"], levels=[500])
    assert len(StateDataset(ds)) == len(StateDataset(root, variables=["t"], levels=[500])) == 12 + 8
    xr.testing.assert_identical(open_store(ds).drop_attrs(), ds.drop_attrs())


def test_trajectories_of_different_lengths_are_aligned_with_an_availability_mask(make_corpus):
    ds = open_store(make_corpus(lengths=(16, 10)))
    assert ds.sizes["time"] == 16
    assert ds["available"].values.sum(axis=1).tolist() == [16, 10]
    pairs = sample_pairs(ds, lead="24h")
    assert [ti.size for _, ti, _ in pairs] == [12, 6]


# --------------------------------------------------------------------------- channels
def test_channel_spec_layout_json_and_round_trip(make_corpus):
    ds = open_store(make_corpus(n_traj=1), variables=["t", "z", "sp"], levels=[850, 500]).isel(trajectory=0)
    spec = ChannelSpec.from_dataset(ds)
    assert spec.names == ("z500", "z850", "t500", "t850", "sp")  # canonical order, ascending pressure
    assert spec.channel(3) == ("t", 850.0) and spec.channel(4) == ("sp", None)
    assert ChannelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    x = spec.stack(ds)
    assert x.dims == ("time", "channel", "latitude", "longitude")
    back = spec.to_dataset(
        x.values,
        latitude=ds.latitude,
        longitude=ds.longitude,
        leading_dims=("time",),
        coords={"time": ds.time.values},
    )
    for v in ("z", "t", "sp"):
        np.testing.assert_array_equal(back[v].values, ds[v].values)
        assert back[v].attrs["units"] == ds[v].attrs["units"]
        assert back[v].attrs["standard_name"] == ds[v].attrs["standard_name"]
    with pytest.raises(VariableError, match="short names"):
        ChannelSpec(("temperature",), (500,))
    with pytest.raises(GridError, match="leading_dims"):
        spec.to_dataset(x.values, latitude=ds.latitude, longitude=ds.longitude)
    with pytest.raises(DataError, match="do not match"):
        ChannelSpec.from_dict({**spec.to_dict(), "names": ["a"]})


# --------------------------------------------------------------------------- regrid
def _sphere_field(lat, lon):
    la, lo = np.deg2rad(np.asarray(lat))[:, None], np.deg2rad(np.asarray(lon))[None, :]
    return (
        280
        + 30 * np.cos(la) ** 2
        + 10 * np.cos(la) * np.sin(la) * np.cos(lo)
        + 5 * np.cos(la) ** 2 * np.sin(2 * lo)
    )


def _mean(values, grid):
    w = area_weights(grid).values
    return float((w * values).mean())


@pytest.mark.parametrize("target", [model_grid(32, 64), model_grid(48, 96, kind="gaussian")])
def test_conservative_regrid_keeps_the_global_mean_and_is_accurate(target):
    era5 = xphyda.tutorial.open_dataset("era5-z-t")
    out = regrid(era5, target)
    assert out["t"].shape == (1, 2, target.sizes["latitude"], target.sizes["longitude"])
    for v in ("t", "z"):
        src = era5[v].isel(time=0, level=0).values.astype(np.float64)
        dst = out[v].isel(time=0, level=0).values.astype(np.float64)
        assert abs(_mean(dst, target) - _mean(src, era5)) < 1e-6 * abs(_mean(src, era5))
    src = model_grid(181, 360, poles=True)
    smooth = xr.DataArray(_sphere_field(src.latitude, src.longitude), coords=src.coords)
    err = regrid(smooth, target) - _sphere_field(target.latitude, target.longitude)
    assert float(abs(err).max()) < 0.5  # first-order conservative on a 6-degree cell of a 40 K field


def test_integer_factor_coarsening_is_the_area_weighted_block_mean():
    fine = model_grid(8, 16).assign_coords(longitude=11.25 + 22.5 * np.arange(16))  # cells aligned with 4x8
    coarse = model_grid(4, 8)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16))
    out = regrid(xr.DataArray(x, coords=fine.coords), coarse, method="conservative").values
    w = area_weights(fine).values
    blocks = np.roll(x * w, 1, axis=1).reshape(4, 2, 8, 2).sum(axis=(1, 3))
    norm = np.roll(w, 1, axis=1).reshape(4, 2, 8, 2).sum(axis=(1, 3))
    np.testing.assert_allclose(out, blocks / norm, rtol=1e-12)


def test_bilinear_refinement_and_nan_cells():
    coarse = model_grid(32, 64)
    fine = model_grid(91, 180, poles=True)
    field = xr.DataArray(_sphere_field(coarse.latitude, coarse.longitude), coords=coarse.coords)
    out = regrid(field, fine)  # auto: bilinear when refining
    inner = np.abs(fine.latitude.values) < 85
    err = (out.values - _sphere_field(fine.latitude, fine.longitude))[inner]
    assert np.abs(err).max() < 0.5
    wl, wx = regrid_weights(
        coarse.latitude, coarse.longitude, fine.latitude, fine.longitude, method="bilinear"
    )
    np.testing.assert_allclose(wl.sum(1), 1) and np.testing.assert_allclose(wx.sum(1), 1)
    holes = field.copy()
    holes[5, 7] = np.nan
    filled = regrid(holes, model_grid(16, 32), method="conservative")
    assert np.isfinite(filled.values).all()


def test_regrid_agrees_with_the_observations_regridder():
    """Two independent constructions (dense separable here, sparse 2-D in xphyda.obs.regridding) agree."""
    import importlib

    obs = importlib.import_module("xphyda.obs.regridding")
    if not hasattr(obs, "conservative_weights"):
        pytest.skip("xphyda.obs.regridding has no conservative_weights")
    era5 = xphyda.tutorial.open_dataset("era5-z-t")
    target = model_grid(48, 96, kind="gaussian")
    mine = regrid(era5["z"].isel(time=0), target, method="conservative").values
    w = obs.conservative_weights(
        era5.latitude.values, era5.longitude.values, target.latitude.values, target.longitude.values
    )
    theirs = np.stack([w @ x.ravel() for x in era5["z"].isel(time=0).values.astype(np.float64)])
    np.testing.assert_allclose(mine.reshape(theirs.shape), theirs, rtol=1e-6)


# --------------------------------------------------------------------------- splits
def test_last_years_and_weatherbench2_splits():
    times = np.arange("2000-01-01", "2006-01-01", np.timedelta64(6, "h"), dtype="datetime64[ns]")
    s = TimeSplit.last_years(times)
    assert [str(r[0])[:4] for r in (s.train, s.valid, s.test)] == ["2000", "2004", "2005"]
    assert str(s.train[1])[:10] == "2004-01-01"
    wb2 = TimeSplit.weatherbench2()
    assert str(wb2.test[0])[:4] == "2020" and str(wb2.train[1])[:4] == "2018"
    era = np.arange("1979-01-01", "2022-01-01", np.timedelta64(1, "D"), dtype="datetime64[ns]")
    assert default_split(era) == wb2 and default_split(times) == s
    assert TimeSplit.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(DataError, match="overlap"):
        TimeSplit(train=("2000-01-01", "2002-01-01"), test=("2001-06-01", "2003-01-01"))
    with pytest.raises(DataError, match="too short"):
        TimeSplit.last_years(times[:100])
    corpus = np.datetime64("2000-01-01T06") + np.arange(4440) * np.timedelta64(
        6, "h"
    )  # 1110 days, as simulated
    c = TimeSplit.last_years(corpus)
    years = [(r[1] - r[0]) / np.timedelta64(1, "D") / 365.25 for r in (c.train, c.valid, c.test)]
    assert np.allclose(years, [1.04, 1.0, 1.0], atol=0.01) and c.test[1] == corpus[-1] + np.timedelta64(
        6, "h"
    )
    with pytest.raises(DataError, match="exceeds the split gap"):
        s.truth_mask(times, "valid", lead="48h")


def test_no_pair_straddles_a_split(make_corpus):
    ds = open_store(make_corpus(n_traj=2, n_times=40))  # 10 days, 6-hourly
    split = TimeSplit(
        train=("2000-01-01", "2000-01-05"),
        valid=("2000-01-05", "2000-01-08"),
        test=("2000-01-08", "2000-01-11"),
        gap="24h",
    )
    times = ds.time.values
    seen = {}
    for name in ("train", "valid", "test"):
        start, end = split.range(name)
        pairs = sample_pairs(ds, split=split, name=name, lead="24h")
        for _, ti, bi in pairs:
            assert np.all(times[ti] - times[bi] == np.timedelta64(24, "h"))
            assert np.all(times[bi] >= start) and np.all(times[ti] < end)
        seen[name] = set(np.concatenate([np.r_[ti, bi] for _, ti, bi in pairs]).tolist())
    assert not (seen["train"] & seen["valid"]) and not (seen["valid"] & seen["test"])


# --------------------------------------------------------------------------- statistics
def test_stats_match_numpy_and_round_trip_json(make_corpus, tmp_path):
    ds = open_store(make_corpus(n_traj=2, n_times=24))
    split = TimeSplit(train=("2000-01-01", "2000-01-05"), test=("2000-01-05", "2000-01-07"))
    spec = ChannelSpec(("t", "q"), (500, 850), ("sp",))
    stats = compute_stats(ds, spec, split=split, lead="24h")
    x = spec.stack(ds).values.astype(np.float64)  # (traj, time, C, lat, lon)
    w = area_weights(ds).values
    train = split.state_mask(ds.time.values, "train")
    a = x[:, train]
    mean = (a * w).sum(axis=(0, 1, 3, 4)) / (w.sum() * a.shape[0] * a.shape[1])
    var = ((a - mean[:, None, None]) ** 2 * w).sum(axis=(0, 1, 3, 4)) / (w.sum() * a.shape[0] * a.shape[1])
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(stats.std, np.sqrt(var), rtol=1e-6)
    ti = np.flatnonzero(split.truth_mask(ds.time.values, "train"))
    d = x[:, ti] - x[:, ti - 4]
    np.testing.assert_allclose(
        stats.diff_std,
        np.sqrt((d**2 * w).sum(axis=(0, 1, 3, 4)) / (w.sum() * d.shape[0] * d.shape[1]) - stats.diff_mean**2),
        rtol=1e-6,
    )
    assert stats.info["n_states"] == 2 * train.sum() and stats.info["n_pairs"] == 2 * ti.size
    stats.save(tmp_path / "stats.json")
    again = NormStats.load(tmp_path / "stats.json")
    np.testing.assert_array_equal(again.std, stats.std)
    assert again.channels == spec.names
    z = stats.normalize(x[0, :3].astype(np.float32))
    np.testing.assert_allclose(stats.denormalize(z), x[0, :3], rtol=1e-5)
    quick = compute_stats(ds, spec, split=split, max_times=5)
    assert quick.info["n_states"] == 10 and np.allclose(quick.mean, stats.mean, rtol=0.05)


def test_area_weights():
    g = model_grid(48, 96, kind="gaussian")
    w = area_weights(g, normalize=False)
    assert abs(float(w.sum()) / (4 * np.pi * 6371229.0**2) - 1) < 1e-12
    assert area_weights(g, kind="cos").dims == ("latitude",)


# --------------------------------------------------------------------------- torch dataset
def test_state_dataset_samples(make_corpus, tmp_path):
    import torch

    root = make_corpus(n_traj=2, n_times=40)
    split = TimeSplit(train=("2000-01-01", "2000-01-07"), valid=("2000-01-07", "2000-01-11"))
    spec = ChannelSpec(("z", "t", "u"), (500, 850), ("sp",))
    ds = open_store(root)
    stats = compute_stats(ds, spec, split=split)
    stats.save(tmp_path / "s.json")
    data = StateDataset(root, spec=spec, stats=tmp_path / "s.json", split=split, name="valid")
    assert len(data) == 2 * (16 - 4)
    item = data[5]
    assert item["truth"].shape == (7, 8, 16) and item["truth"].dtype == torch.float32
    t = np.datetime64(int(item["time"]), "s")
    k = int(item["trajectory"])
    truth = spec.stack(ds.sel(trajectory=k, time=t)).values
    background = spec.stack(ds.sel(trajectory=k, time=t - np.timedelta64(24, "h"))).values
    np.testing.assert_allclose(item["truth"].numpy(), stats.normalize(truth), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(item["background"].numpy(), stats.normalize(background), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(item["time_features"].numpy(), time_features(t)[0])
    assert np.all(data.sample_times() >= np.datetime64("2000-01-08"))
    with pytest.raises(IndexError):
        data[len(data)]


def test_state_dataset_with_workers_pickling_and_distributed_sampler(make_corpus):
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    root = make_corpus(n_traj=2, n_times=12)
    data = StateDataset(root, variables=["t", "sp"], levels=[500], lead="6h")
    copy = pickle.loads(pickle.dumps(data))
    assert len(pickle.dumps(data)) < 20_000  # addresses and indices only, no data or open handles
    torch.testing.assert_close(copy[3]["truth"], data[3]["truth"])
    loader = DataLoader(
        data, batch_size=4, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    batches = list(loader)
    assert sum(b["truth"].shape[0] for b in batches) == len(data)
    assert batches[0]["truth"].shape[1:] == (2, 8, 16) and batches[0]["time"].dtype == torch.int64
    parts = [list(DistributedSampler(data, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(len(data)))
    with pytest.raises(DataError, match="no \\(background, truth\\) pairs"):
        StateDataset(root, lead="7h")


# --------------------------------------------------------------------------- real ERA5 in WeatherBench2 layout
def test_era5_weatherbench2_store_runs_through_the_same_path(era5_wb2, tmp_path):
    grid = model_grid(32, 64)
    ds = open_store(era5_wb2, grid=grid)
    assert list(ds.data_vars) == ["z", "t"] and ds["z"].attrs["source_variable"] == "geopotential"
    assert dict(ds.sizes) == {"time": 8, "level": 2, "latitude": 32, "longitude": 64}
    assert np.all(np.diff(ds.latitude.values) < 0)
    # the same answer as the descending-latitude original regridded directly
    era5 = xphyda.tutorial.open_dataset("era5-z-t")
    direct = regrid(era5, grid)["z"].isel(time=0).values
    np.testing.assert_allclose(ds["z"].isel(time=0).values, direct, rtol=1e-6)
    z500 = ds["z"].sel(level=500).values
    assert 4.6e4 < z500.min() and z500.max() < 6.0e4  # 500 hPa geopotential of a January day
    data = prepare(era5_wb2, grid=grid, split=None, lead="6h", stats=tmp_path / "era5_stats.json")
    assert (tmp_path / "era5_stats.json").exists()
    assert data.spec.names == ("z500", "z850", "t500", "t850")
    train = data.dataset("train")
    item = train[0]
    assert item["truth"].shape == (4, 32, 64)
    assert abs(float(item["truth"].mean())) < 1.0 and 0.5 < float(item["truth"].std()) < 2.0
    card = json.loads(json.dumps(data.to_dict()))
    assert card["channels"]["names"] == list(data.spec.names) and len(card["grid"]["latitude"]) == 32


def test_write_store_round_trip_for_trajectories(make_corpus, tmp_path):
    ds = open_store(make_corpus(lengths=(8, 6)), variables=["t"], levels=[500], grid=model_grid(4, 8))
    out = write_store(ds, tmp_path / "train")
    back = open_store(out)
    assert back["t"].chunks[1][0] == 1  # one state per chunk
    xr.testing.assert_allclose(back["t"].load(), ds["t"].load())
    np.testing.assert_array_equal(back["available"].values, ds["available"].values)


def test_docs_data_page_code_runs(run_doc_page):
    """Every runnable ``python`` block of docs/data.md runs, in order, in one namespace."""
    namespace = run_doc_page("data.md", min_blocks=5)
    assert namespace["item"]["truth"].shape == (4, 32, 64)
