"""Where does a field's 24-hour change live?  Its squared change by latitude band.

    python benchmarks/change_by_latitude.py STORE [--fields q200 q300 q500 w850 z500] [--days 365] [--every 13]

STORE is a corpus trajectory (e.g. ``/work/corpus/traj0.zarr``).  Over its last
``--days`` days, every ``--every``-th 6-hourly state ``x(t)`` is compared with
``x(t - 24 h)`` (the OSSE's background is the state 24 hours earlier, so this
change is what an analysis must recover).  Printed per field: the area-weighted
RMS change and the share of the area-weighted squared change in 90-30 S,
30 S-30 N and 30-90 N (the bands hold 0.25, 0.5 and 0.25 of the area).
No model is run.
"""

from __future__ import annotations

import argparse
import re

import numpy as np
import xarray as xr

BANDS = ((-90.0, -30.0), (-30.0, 30.0), (30.0, 90.001))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--fields", nargs="+", default=["q200", "q300", "q500", "w850", "z500"])
    p.add_argument("--days", type=float, default=365.0)
    p.add_argument("--every", type=int, default=13, help="use every N-th state (default 13: all hours of day)")
    a = p.parse_args(argv)
    ds = xr.open_zarr(a.store)
    step = (ds.time.values[1] - ds.time.values[0]) / np.timedelta64(1, "h")
    lag = int(round(24 / step))
    n = int(round(a.days * 24 / step))
    idx = np.arange(max(lag, ds.sizes["time"] - n), ds.sizes["time"], a.every)
    lat = ds.latitude.values
    w = np.cos(np.deg2rad(lat))[:, None] * np.ones(ds.sizes["longitude"])
    print(f"{a.store}: {len(idx)} states, change over {lag * step:g} h")
    for name in a.fields:
        m = re.fullmatch(r"([a-z_]+?)(\d+)?", name)
        var, level = m.group(1), m.group(2)
        da = ds[var] if level is None else ds[var].sel(level=int(level))
        d2 = (da.isel(time=idx).values - da.isel(time=idx - lag).values) ** 2 * w
        total = d2.sum()
        shares = [d2[:, (lat >= lo) & (lat < hi)].sum() / total for lo, hi in BANDS]
        rms = np.sqrt(total / (w.sum() * len(idx)))
        print(f"{name:>6}: RMS change {rms:.3g} {da.attrs.get('units', '')}; "
              f"share 90-30 S / 30 S-30 N / 30-90 N: {shares[0]:.2f} / {shares[1]:.2f} / {shares[2]:.2f}")


if __name__ == "__main__":
    main()
