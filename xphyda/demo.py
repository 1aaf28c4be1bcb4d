"""The demo behind ``phyda demo``: a physics check of the bundled ERA5 sample.

It needs no data of the user's: it opens the ERA5 extract shipped with the
package, computes the hydrostatic residual between 850 and 500 hPa, prints its
area-weighted summary, and writes a figure of the field and its residual.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_demo"]


def run_demo(*, output_dir: str | Path = "phyda-demo", progress: bool = True) -> dict:
    """Run the demo and return the paths it wrote and the summary table.

    Parameters
    ----------
    output_dir : str or Path
        Folder for ``demo.png`` and ``summary.csv`` (created if needed).
    progress : bool
        Print what is being done.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .tutorial import open_dataset

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = open_dataset("era5-z-t").isel(time=0)
    if progress:
        print("ERA5 sample:", ds.attrs["title"])
    summary = ds.phyda.residual_summary()
    table = summary.to_dataframe()
    print(table.to_string())
    table.to_csv(out / "summary.csv")
    res = ds.phyda.physics_residual("hydrostatic").isel(layer=0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    (ds["z"].sel(level=500) / 9.80665).plot(ax=axes[0], cmap="viridis", cbar_kwargs={"label": "m"})
    axes[0].set_title("ERA5 500 hPa geopotential height")
    res.plot(ax=axes[1], cmap="RdBu_r", robust=True, cbar_kwargs={"label": "m"})
    axes[1].set_title(f"hydrostatic residual {res.layer.item()} (no humidity)")
    fig.suptitle(ds.attrs["attribution"][:110] + "...", fontsize=7)
    png = out / "demo.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    print(f"wrote {png} and {out / 'summary.csv'}")
    return {"figure": png, "summary": table}
