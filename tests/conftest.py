"""Shared fixtures: the real sample datasets (loaded once per session, copied per test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture
def run_doc_page(tmp_path, monkeypatch):
    """``run(name, min_blocks)``: every ``python`` block of ``docs/<name>`` run in order, in one namespace.

    Runs in a temporary folder; a failing block raises an AssertionError that shows it.  Returns the namespace.
    """
    import re

    def run(name: str, min_blocks: int = 1) -> dict:
        monkeypatch.chdir(tmp_path)
        text = (DOCS / name).read_text()
        blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
        assert len(blocks) >= min_blocks, f"docs/{name} has {len(blocks)} python blocks, expected {min_blocks}"
        namespace: dict = {}
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"{name} block {i}", "exec"), namespace)  # noqa: S102  (our own page)
            except Exception as exc:  # pragma: no cover - the message is the point
                raise AssertionError(f"docs/{name} python block {i} failed:\n{code}") from exc
        return namespace

    return run


@pytest.fixture(scope="session")
def _era5_z_t():
    import xphyda

    return xphyda.tutorial.open_dataset("era5-z-t")


@pytest.fixture
def era5(_era5_z_t):
    """ERA5 t and z at 500 and 850 hPa, 2007-01-01 12Z, 181 x 360 (a fresh deep copy per test)."""
    return _era5_z_t.copy(deep=True)


@pytest.fixture(scope="session")
def _ecmwf_pl():
    # engine given explicitly: the default engine can crash at interpreter exit here
    with xr.open_dataset(DATA / "ecmwf_pl_10deg.nc", engine="netcdf4") as ds:
        return ds.load()


@pytest.fixture
def ecmwf(_ecmwf_pl):
    """ECMWF t u v z r on 6 pressure levels, 19 x 36 (10 degree), two times, cfgrib names (a deep copy)."""
    return _ecmwf_pl.copy(deep=True)


def save_tiny(net, folder):
    """Save ``net`` (a PhydaNet for :func:`tiny_spec`'s channels on an 8 x 16 Gaussian grid) as a model folder."""
    from xphyda.data.regrid import model_grid
    from xphyda.model.checkpoint import architecture_card, save_checkpoint

    spec, g = tiny_spec(), model_grid(8, 16, kind="gaussian")
    mean = {"z": (55000.0, 14000.0), "t": (255.0, 275.0), "u": (10.0, 5.0), "v": (0.0, 0.0)}
    std = {"z": (3000.0, 1500.0), "t": (10.0, 12.0), "u": (15.0, 10.0), "v": (10.0, 8.0)}
    channels = {"sp": dict(mean=98000.0, std=3000.0, diff_mean=0.0, diff_std=500.0)}
    for name in spec.names[:-1]:
        var, i = name[0], 0 if name.endswith("500") else 1
        channels[name] = dict(mean=mean[var][i], std=std[var][i], diff_mean=0.0, diff_std=std[var][i] / 3)
    card = {
        "name": Path(folder).name,
        "description": "untrained tiny test model",
        "channels": spec.to_dict(),
        "grid": {"latitude": g.latitude.values.tolist(), "longitude": g.longitude.values.tolist()},
        "normalisation": {"schema": 1, "lead_hours": 24, "channels": channels, "info": {}},
        "training": {},
        "scores": {},
        **architecture_card(net),
    }
    return save_checkpoint(folder, net.state_dict(), card, overwrite=True)


def tiny_spec():
    from xphyda.data.channels import ChannelSpec

    return ChannelSpec(("z", "t", "u", "v"), (500.0, 850.0), ("sp",))


def tiny_net(**kwargs):
    """The tiny model's untrained PhydaNet (seeded)."""
    import torch

    from xphyda.model.phyda import PhydaNet

    torch.manual_seed(0)
    return PhydaNet(tiny_spec().n_channels, features=2, widths=(8, 16), vre_widths=(8, 16), groups=4, **kwargs)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An untrained PhydaNet on an 8 x 16 Gaussian grid (z, t, u, v at 500/850 hPa and sp), saved as a model folder.

    Untrained weights make the analyses meaningless but exercise every path of the front end.
    """
    return save_tiny(tiny_net(), tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_parts():
    """``(tiny_net, save_tiny)``: build the tiny model's network (keywords go to PhydaNet) and save one like it."""
    return tiny_net, save_tiny
