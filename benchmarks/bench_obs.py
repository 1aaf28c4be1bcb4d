"""Benchmarks of the observation machinery, and the calibration of the OI length scale.

Run from the repository root::

    python benchmarks/bench_obs.py                # H for 100,000 stations; OI at 1 % and 10 % of 64x128
    python benchmarks/bench_obs.py --calibrate    # analysis error against the OI length scale (a few minutes)

Medians of a few repeats are printed with the command that produced them.
Targets (issue 3): H built in under 1 s and applied in under 10 ms for
100,000 point observations; OI at 10 % of a 64x128 grid in under 5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np
import xarray as xr

import xphyda
from xphyda.assimilate import assimilate
from xphyda.obs import build_operator, regrid, simulate


def timeit(func, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def coarse(ds: xr.Dataset, nlat: int = 64, nlon: int = 128) -> xr.Dataset:
    """``ds`` remapped conservatively to a regular grid without pole rows (2.8125 degrees, WeatherBench-like)."""
    lat = 90.0 - (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = np.arange(nlon) * 360.0 / nlon
    target = xr.Dataset(
        coords={
            "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        }
    )
    out = regrid(ds, target, method="conservative", backend="xphyda")
    return out.assign_coords({c: ds[c] for c in ds.coords if c not in ("latitude", "longitude")})


def area_rmse(a: xr.DataArray, b: xr.DataArray) -> float:
    w = np.cos(np.deg2rad(a["latitude"]))
    return float(np.sqrt(((a - b) ** 2).weighted(w).mean()))


def bench_operator(repeat: int) -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    lat = np.rad2deg(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    pressure = rng.uniform(500e2, 850e2, n)
    for label, glat, glon, levels in (
        (
            "64x128, 13 levels",
            90 - (np.arange(64) + 0.5) * 180 / 64,
            np.arange(128) * 360 / 128,
            np.array([50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000]) * 100.0,
        ),
        (
            "181x360 (ERA5 1 deg), 2 levels",
            np.linspace(90, -90, 181),
            np.arange(360.0),
            np.array([500e2, 850e2]),
        ),
    ):
        t_build, op = timeit(
            lambda g=(glat, glon, levels): build_operator(
                lat, lon, g[0], g[1], pressure=pressure, levels=g[2]
            ),
            repeat,
        )
        x = rng.normal(size=op.matrix.shape[1])
        y = rng.normal(size=n)
        t_apply, _ = timeit(lambda h=op.matrix, x=x: h @ x, max(repeat, 20))
        t_adj, _ = timeit(lambda h=op.matrix, y=y: h.T @ y, max(repeat, 20))
        print(
            f"H for {n:,} stations on {label}: build {t_build:.3f} s, H @ x {t_apply * 1e3:.2f} ms, "
            f"H.T @ y {t_adj * 1e3:.2f} ms (nnz {op.matrix.nnz:,})"
        )


def bench_oi(repeat: int) -> None:
    truth = coarse(xphyda.tutorial.open_dataset("era5-z-t"))
    background = truth.copy(deep=True)
    background["t"] = background["t"].roll(longitude=2, roll_coords=False)
    background["z"] = background["z"].roll(longitude=2, roll_coords=False)
    for fraction in (0.01, 0.10):
        obs = simulate(truth, fraction=fraction, seed=0)
        n_obs = int(sum(obs[v].notnull().sum() for v in ("t", "z")))
        t_oi, out = timeit(lambda obs=obs: assimilate(background, obs, method="oi", qc=None), repeat)
        gain = area_rmse(out.t, truth.t) / area_rmse(background.t, truth.t)
        print(
            f"OI, {fraction:.0%} of 64x128 (t and z, 2 levels, {n_obs:,} observations): {t_oi:.2f} s "
            f"(t analysis/background RMSE {gain:.2f})"
        )


MASS = {"z": "mass", "msl": "mass"}  # geopotential and pressure: the mass fields


def calibrate(lengths_km) -> None:
    """Analysis RMSE / background RMSE against the length scale, on real ERA5 errors."""
    surface = coarse(xphyda.tutorial.open_dataset("era5-surface"))
    upper = coarse(xphyda.tutorial.open_dataset("era5-z-t"))
    cases = []
    for k in range(surface.sizes["time"] - 1):  # background: the previous state, 1.8 days earlier
        truth = surface.isel(time=[k + 1])
        background = surface.isel(time=[k]).assign_coords(time=truth.time)
        cases.append((f"surface lag {k}", truth, background))
    shifted = upper.copy(deep=True)  # background: a displacement error of 2 cells (5.6 degrees) east
    for v in ("t", "z"):
        shifted[v] = upper[v].roll(longitude=2, roll_coords=False)
    cases.append(("t/z displaced", upper, shifted))
    networks = {
        "500 stations": {"n_stations": 500},
        "2% of points": {"fraction": 0.02},
        "2000 stations": {"n_stations": 2000},
    }
    print("length scale (km):", " ".join(f"{x:>6g}" for x in lengths_km))
    table = []
    for cname, truth, background in cases:
        for nname, kw in networks.items():
            obs = simulate(truth, seed=1, **kw)
            rows = {}
            for length in lengths_km:
                out = assimilate(background, obs, method="oi", length_scale=length * 1e3)
                for v in truth.data_vars:
                    rows.setdefault(v, []).append(
                        area_rmse(out[v], truth[v]) / area_rmse(background[v], truth[v])
                    )
            for v, r in rows.items():
                table.append((MASS.get(v, "other"), r))
                print(f"{cname:>16} {nname:>14} {v:>4}:", " ".join(f"{x:6.3f}" for x in r))
    for group in ("mass", "other", None):
        mean = np.mean([r for g, r in table if group in (None, g)], axis=0)
        label = f"mean ratio ({group or 'all'})"
        print(
            f"{label:>41}:",
            " ".join(f"{x:6.3f}" for x in mean),
            f"-> best {lengths_km[int(np.argmin(mean))]} km",
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args(argv)
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    if args.calibrate:
        calibrate([250, 400, 500, 600, 800, 1000, 1200])
        return
    bench_operator(args.repeat)
    bench_oi(args.repeat)


if __name__ == "__main__":
    main()
