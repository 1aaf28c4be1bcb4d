"""Tiny stores for the data-pipeline tests.

``make_corpus`` writes the jcm corpus format that ``xphyda.data.simulate`` produces
(the contract between the simulation and the pipeline): one Zarr store per
trajectory ``STORE/traj{k}.zarr``; dims ``time`` (6-hourly datetime64), ``level``
(hPa, either order), ``latitude`` (Gaussian, descending), ``longitude`` (0 ..
360 - dlon); float32 ``z t u v q w`` on levels and 2-D ``sp``, with ``units`` and
``standard_name``; static ``z_surface`` and ``lsm``; plus ``corpus.json``,
``logs/`` and ``state/`` beside the trajectories.

``era5_wb2`` writes an ERA5-shaped WeatherBench2-layout Zarr store built from the
real ERA5 extract shipped with xphyda (``geopotential`` and ``temperature`` at 500
and 850 hPa on 181 x 360): a few 6-hourly times, ascending latitude as WB2 uses.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from xphyda.data.regrid import model_grid

ATTRS = {
    "z": ("m2 s-2", "geopotential"),
    "t": ("K", "air_temperature"),
    "u": ("m s-1", "eastward_wind"),
    "v": ("m s-1", "northward_wind"),
    "q": ("kg kg-1", "specific_humidity"),
    "w": ("Pa s-1", "lagrangian_tendency_of_air_pressure"),
    "sp": ("Pa", "surface_air_pressure"),
}


def corpus_dataset(
    *,
    trajectory: int = 0,
    n_times: int = 16,
    start: str = "2000-01-01",
    step_hours: int = 6,
    levels=(100.0, 500.0, 850.0),
    nlat: int = 8,
    nlon: int = 16,
) -> xr.Dataset:
    """One trajectory in the corpus layout with smooth, trajectory-dependent fields."""
    g = model_grid(nlat, nlon, kind="gaussian")
    lat = g.latitude.values
    lon = g.longitude.values
    times = np.datetime64(start, "ns") + np.arange(n_times) * np.timedelta64(step_hours, "h")
    p = np.asarray(levels, dtype=np.float64)
    hours = (times - times[0]) / np.timedelta64(1, "h")
    phase = (hours / 24.0)[:, None, None, None] * 2 * np.pi / 5 + trajectory
    la = np.deg2rad(lat)[None, None, :, None]
    lo = np.deg2rad(lon)[None, None, None, :]
    pp = p[None, :, None, None]
    wave = np.sin(2 * lo - phase) * np.cos(la)
    fields = {
        "t": 288.0 * (pp / 1000.0) ** 0.19 + 25 * np.cos(la) + 3 * wave,
        "z": 9.80665 * 7500 * np.log(1013.0 / pp) + 400 * np.cos(la) ** 2 + 300 * wave,
        "u": 5 + 25 * np.cos(la) * (1 - pp / 1200) + 4 * wave,
        "v": 6 * np.cos(lo + phase) * np.cos(la) + 0 * pp,
        "q": 0.012 * np.exp(-(1000 - pp) / 250) * np.cos(la) ** 2 * (1 + 0.1 * wave),
        "w": 0.2 * np.sin(lo - phase) * np.sin(2 * la) * (pp / 1000),
    }
    sp = 1.0e5 + 800 * np.cos(la[:, 0]) + 300 * wave[:, 0]
    dims3, dims2 = ("time", "level", "latitude", "longitude"), ("time", "latitude", "longitude")
    data = {
        k: (dims3, np.broadcast_to(v, (n_times, p.size, nlat, nlon)).astype(np.float32))
        for k, v in fields.items()
    }
    data["sp"] = (dims2, np.broadcast_to(sp, (n_times, nlat, nlon)).astype(np.float32))
    data["z_surface"] = (
        ("latitude", "longitude"),
        np.zeros((nlat, nlon), np.float32),
        {"units": "m2 s-2", "standard_name": "surface_geopotential"},
    )
    data["lsm"] = (
        ("latitude", "longitude"),
        np.zeros((nlat, nlon), np.float32),
        {"units": "1", "standard_name": "land_area_fraction"},
    )
    ds = xr.Dataset(
        data,
        coords={
            "time": ("time", times, {"standard_name": "time"}),
            "level": (
                "level",
                p.astype(np.int64),
                {"units": "hPa", "standard_name": "air_pressure", "positive": "down"},
            ),
            "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"title": "xphyda training corpus (test)", "trajectory": trajectory},
    )
    for k, (units, sn) in ATTRS.items():
        ds[k].attrs.update(units=units, standard_name=sn)
    return ds


def write_zarr(ds: xr.Dataset, path, *, time_chunk: int = 4) -> None:
    enc = {
        k: {"chunks": tuple(time_chunk if d == "time" else ds[k].sizes[d] for d in ds[k].dims)}
        for k in ds.data_vars
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        ds.to_zarr(str(path), mode="w", consolidated=True, encoding=enc)


@pytest.fixture
def make_corpus(tmp_path):
    """``make_corpus(n_traj=2, n_times=16, levels=..., lengths=None) -> path`` of a corpus folder."""

    def make(
        *,
        n_traj: int = 2,
        n_times: int = 16,
        levels=(100.0, 500.0, 850.0),
        lengths=None,
        name="corpus",
        **kwargs,
    ):
        root = tmp_path / name
        root.mkdir()
        (root / "logs").mkdir()
        (root / "state").mkdir()
        (root / "corpus.json").write_text(json.dumps({"trajectories": n_traj}))
        for k in range(n_traj):
            n = n_times if lengths is None else lengths[k]
            write_zarr(
                corpus_dataset(trajectory=k, n_times=n, levels=levels, **kwargs), root / f"traj{k}.zarr"
            )
        return root

    return make


@pytest.fixture(scope="session")
def era5_wb2(tmp_path_factory):
    """Path of an ERA5-shaped WeatherBench2-layout Zarr store (8 six-hourly times, ascending latitude)."""
    import xphyda

    era5 = xphyda.tutorial.open_dataset("era5-z-t")
    t0 = era5.time.values[0]
    states = []
    for i in range(8):  # move the real fields eastward a little each step: different, still ERA5-like states
        s = era5.roll(longitude=2 * i, roll_coords=False).assign_coords(
            time=[t0 + np.timedelta64(6 * i, "h")]
        )
        states.append(s)
    ds = xr.concat(states, "time").rename(z="geopotential", t="temperature").sortby("latitude")
    ds["level"] = ds["level"].astype(np.int64)
    for v in ds.data_vars:
        ds[v].encoding = {}
    path = tmp_path_factory.mktemp("wb2") / "era5_1959-2022-6h-181x360.zarr"
    write_zarr(ds, path, time_chunk=1)
    return path
