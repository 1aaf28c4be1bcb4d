"""Figures of the corpus climatology beside the real ERA5 sample, for docs/corpus.md.

Usage: python scripts/corpus_figures.py /work/corpus docs/img
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

import xphyda  # noqa: E402


def main(corpus: str, out: str) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = xr.open_zarr(Path(corpus) / "traj0.zarr")
    jan = ds.sel(time=ds.time.dt.month == 1)
    era5 = xphyda.tutorial.open_dataset("era5-z-t").isel(time=0)
    fig, ax = plt.subplots(2, 2, figsize=(12, 6.5), constrained_layout=True)
    z_c = (jan.z.sel(level=500).mean("time") / 9.80665).load()
    t_c = jan.t.sel(level=850).mean("time").load()
    levels_z = np.arange(4800, 6001, 60)
    levels_t = np.arange(230, 306, 4)
    z_c.plot.contourf(ax=ax[0, 0], levels=levels_z, cmap="viridis", cbar_kwargs={"label": "m"})
    ax[0, 0].set_title("corpus: January-mean z500 (traj0)")
    (era5.z.sel(level=500) / 9.80665).plot.contourf(ax=ax[0, 1], levels=levels_z, cmap="viridis",
                                                     cbar_kwargs={"label": "m"})
    ax[0, 1].set_title("ERA5: z500, 2007-01-01 12 UTC (one state)")
    t_c.plot.contourf(ax=ax[1, 0], levels=levels_t, cmap="RdYlBu_r", cbar_kwargs={"label": "K"})
    ax[1, 0].set_title("corpus: January-mean t850")
    era5.t.sel(level=850).plot.contourf(ax=ax[1, 1], levels=levels_t, cmap="RdYlBu_r", cbar_kwargs={"label": "K"})
    ax[1, 1].set_title("ERA5: t850, 2007-01-01 12 UTC")
    fig.suptitle("Contains modified Copernicus Climate Change Service information (ERA5)", fontsize=7)
    fig.savefig(out / "corpus_z500_t850.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    for a, months, name in ((ax[0], (12, 1, 2), "DJF"), (ax[1], (6, 7, 8), "JJA")):
        sel = ds.u.sel(time=ds.time.dt.month.isin(months)).mean(("time", "longitude")).load()
        sel.plot.contourf(ax=a, x="latitude", y="level", levels=np.arange(-20, 45, 5), cmap="RdBu_r",
                          yincrease=False, cbar_kwargs={"label": "m s-1"})
        a.set_title(f"corpus zonal-mean u, {name} (traj0, 3 years)")
    fig.savefig(out / "corpus_zonal_u.png", dpi=80)
    plt.close(fig)
    print("wrote", out / "corpus_z500_t850.png", out / "corpus_zonal_u.png")


if __name__ == "__main__":
    main(*sys.argv[1:3])
