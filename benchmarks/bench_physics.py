"""Benchmark: the three physics residuals on a 0.25-degree, 13-level global state, beside MetPy.

Run from the repository root::

    python benchmarks/bench_physics.py                  # 5 repeats, about 1 minute on 2 cores
    python benchmarks/bench_physics.py --dtype float64  # the same state stored as float64

Each measurement runs in its own subprocess, so that peak memory (the maximum
resident set size, ``ru_maxrss``) belongs to that measurement alone.  The state
is synthetic (smooth waves plus noise) with ERA5 names, float32 as ERA5 files
are, on the ERA5 0.25-degree grid (721 x 1440, pole rows, descending latitude)
and the 13 WeatherBench2 levels.  Timings are medians of ``--repeats`` runs:
wall time and process CPU time (the CPU time is the fairer figure on a shared
machine).  MetPy's ``divergence`` gets the same u and v as an xarray DataArray
with a latitude-longitude CRS of the same earth radius (its documented path for
global grids); by default on all 13 levels in one call, the same field
(``--metpy-levels 1`` times one level and scales it, which overstates MetPy's cost,
since most of it is a fixed cost per call).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LEVELS = [50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000]  # hPa, WeatherBench2
NLAT, NLON = 721, 1440
RADIUS = 6_371_229.0
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def make_state(nlev: int = len(LEVELS), dtype: str = "float32"):
    """A synthetic ERA5-like state (float32 like ERA5 files, or ``dtype``): u v w z t q on pressure levels."""
    import xarray as xr

    lat = np.linspace(90.0, -90.0, NLAT)
    lon = np.arange(NLON) * 360.0 / NLON
    p = np.asarray(LEVELS[:nlev], dtype=np.float64)
    phi, lam = np.deg2rad(lat)[:, None], np.deg2rad(lon)[None, :]
    rng = np.random.default_rng(0)
    shape = (1, nlev, NLAT, NLON)

    def field(mean, amp, noise):
        wave = np.cos(phi) * np.cos(3 * lam + phi) + 0.5 * np.sin(2 * phi) * np.sin(5 * lam)
        prof = np.linspace(0.5, 1.5, nlev)[:, None, None]
        out = mean + amp * prof * wave + noise * rng.standard_normal(shape, dtype=np.float32)
        return out.astype(dtype)

    logp = np.log(1000.0 / p)[:, None, None]
    data = {
        "u": (field(10.0, 15.0, 2.0), "m s**-1"),
        "v": (field(0.0, 10.0, 2.0), "m s**-1"),
        "w": (field(0.0, 0.3, 0.1), "Pa s**-1"),
        "z": ((field(0.0, 500.0, 5.0) + 287.0 * 250.0 * logp).astype(dtype), "m**2 s**-2"),
        "t": (field(250.0, 20.0, 0.5), "K"),
        "q": (np.abs(field(0.0, 0.005, 0.0005)), "kg kg**-1"),
    }
    dims = ("time", "level", "latitude", "longitude")
    return xr.Dataset(
        {k: (dims, v, {"units": units}) for k, (v, units) in data.items()},
        coords={
            "time": [np.datetime64("2024-01-01T00", "ns")],
            "level": ("level", np.asarray(LEVELS[:nlev], dtype=np.int32), {"units": "millibars"}),
            "latitude": ("latitude", lat.astype(np.float32), {"units": "degrees_north"}),
            "longitude": ("longitude", lon.astype(np.float32), {"units": "degrees_east"}),
        },
    )


def _timed(func, repeats):
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        func()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def worker_ours(repeats: int, dtype: str) -> dict:
    import tracemalloc

    import xphyda  # noqa: F401
    from xphyda.physics import physics_residual

    ds = make_state(dtype=dtype)
    base = _maxrss_mb()
    out = {"state_mb": ds.nbytes / 2**20, "rss_after_state_mb": base}
    total_wall = total_cpu = 0.0
    for name in ("continuity", "hydrostatic", "geostrophic"):
        def run(name=name):
            return physics_residual(ds, name).values

        run()  # warm-up (imports, first touch of memory)
        wall, cpu = _timed(run, repeats)
        out[name] = {"wall_s": wall, "cpu_s": cpu}
        total_wall += wall
        total_cpu += cpu
    out["all_three"] = {"wall_s": total_wall, "cpu_s": total_cpu}
    out["peak_rss_mb"] = _maxrss_mb()
    tracemalloc.start()
    for name in ("continuity", "hydrostatic", "geostrophic"):
        _ = physics_residual(ds, name).values
    out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out


def worker_metpy(repeats: int, nlev: int, dtype: str) -> dict:
    import warnings

    import metpy  # noqa: F401
    import metpy.calc as mpcalc

    ds = make_state(dtype=dtype).isel(time=0, level=slice(0, nlev))
    ds = ds.metpy.assign_crs(grid_mapping_name="latitude_longitude", earth_radius=RADIUS)
    u, v = ds.u, ds.v

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mpcalc.divergence(u, v).values

    run()
    wall, cpu = _timed(run, repeats)
    return {"levels": nlev, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": _maxrss_mb()}


def _subprocess(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metpy-levels", type=int, default=len(LEVELS), choices=range(1, len(LEVELS) + 1), metavar="N")
    parser.add_argument("--metpy-repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--worker", choices=["ours", "metpy"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "ours":
        print(json.dumps(worker_ours(args.repeats, args.dtype)))
        return
    if args.worker == "metpy":
        print(json.dumps(worker_metpy(args.metpy_repeats, args.metpy_levels, args.dtype)))
        return

    import os
    import platform

    print(f"command: python benchmarks/bench_physics.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; numpy {np.__version__}")
    print(f"state: {len(LEVELS)} levels x {NLAT} x {NLON}, u v w z t q {args.dtype}; medians of {args.repeats} "
          f"runs (MetPy: {args.metpy_repeats})\n")
    ours = _subprocess(["--worker", "ours", "--repeats", str(args.repeats), "--dtype", args.dtype])
    metpy = _subprocess(["--worker", "metpy", "--metpy-repeats", str(args.metpy_repeats),
                         "--metpy-levels", str(args.metpy_levels), "--dtype", args.dtype])
    scale = len(LEVELS) / metpy["levels"]
    rows = [(f"xphyda {k}", ours[k]["wall_s"], ours[k]["cpu_s"]) for k in ("continuity", "hydrostatic", "geostrophic")]
    rows.append(("xphyda all three residuals", ours["all_three"]["wall_s"], ours["all_three"]["cpu_s"]))
    rows.append((f"MetPy divergence, {metpy['levels']} level(s)", metpy["wall_s"], metpy["cpu_s"]))
    if scale != 1:
        rows.append((f"MetPy divergence, x{scale:g} = {len(LEVELS)} levels", metpy["wall_s"] * scale,
                     metpy["cpu_s"] * scale))
    print(f"{'':44s} {'wall (s)':>9s} {'CPU (s)':>9s}")
    for label, wall, cpu in rows:
        print(f"{label:44s} {wall:9.2f} {cpu:9.2f}")
    ratio_wall = metpy["wall_s"] * scale / ours["all_three"]["wall_s"]
    ratio_cpu = metpy["cpu_s"] * scale / ours["all_three"]["cpu_s"]
    print(f"\nMetPy divergence on {len(LEVELS)} levels / xphyda all three residuals: "
          f"{ratio_wall:.1f}x (wall), {ratio_cpu:.1f}x (CPU)")
    print(f"xphyda peak memory: {ours['peak_rss_mb']:.0f} MB resident (input state {ours['state_mb']:.0f} MB, "
          f"{ours['rss_after_state_mb']:.0f} MB after building it); largest numpy allocations at once "
          f"{ours['tracemalloc_peak_mb']:.0f} MB (tracemalloc)")
    print(f"MetPy peak memory: {metpy['peak_rss_mb']:.0f} MB resident ({metpy['levels']} level(s))")
    ok = min(ratio_wall, ratio_cpu) >= 5 and ours["peak_rss_mb"] < 4096
    print(f"targets (at least 5x faster than MetPy's divergence, under 4 GB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
