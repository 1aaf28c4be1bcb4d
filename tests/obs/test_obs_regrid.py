"""Regridding gridded observations: conservation, accuracy, gaps, conventions, user regridders, xESMF."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xphyda.errors import ObservationError
from xphyda.obs.regridding import (
    apply_weights,
    bilinear_weights,
    conservative_weights,
    lat_edges,
    lon_edges,
    regrid,
)


def coarse_target(nlat: int = 64, nlon: int = 128) -> xr.Dataset:
    lat = 90.0 - (np.arange(nlat) + 0.5) * 180.0 / nlat
    lon = np.arange(nlon) * 360.0 / nlon
    return xr.Dataset(
        coords={
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        }
    )


def areas(lat, lon):
    return (
        np.abs(np.diff(np.sin(np.deg2rad(lat_edges(lat)))))[:, None]
        * np.deg2rad(np.diff(lon_edges(lon)))[None, :]
    )


def harmonic(lat, lon):
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    return 2.0 + np.cos(la) ** 3 * np.sin(3 * lo) + np.sin(la) * np.cos(la)


def test_cell_areas_cover_the_sphere():
    for lat, lon in (
        (np.linspace(90, -90, 181), np.arange(360.0)),
        (coarse_target().latitude.values, coarse_target().longitude.values),
    ):
        assert areas(lat, lon).sum() == pytest.approx(4 * np.pi, rel=1e-12)


@pytest.mark.parametrize("direction", ["fine-to-coarse", "coarse-to-fine"])
def test_conservative_conserves_the_global_integral(era5, direction):
    fine = (era5.latitude.values.astype(float), era5.longitude.values.astype(float))
    coarse = (coarse_target().latitude.values, coarse_target().longitude.values)
    src, dst = (fine, coarse) if direction == "fine-to-coarse" else (coarse, fine)
    W = conservative_weights(*src, *dst)
    np.testing.assert_allclose(np.asarray(W.sum(axis=1)).ravel(), 1.0, rtol=1e-12)
    f = era5.t.isel(time=0, level=0).values.astype(float) if direction == "fine-to-coarse" else harmonic(*src)
    out = apply_weights(W, f.ravel()).reshape(dst[0].size, dst[1].size)
    total_src = (areas(*src) * f).sum()
    total_dst = (areas(*dst) * out).sum()
    assert total_dst == pytest.approx(total_src, rel=1e-12)


def test_conservative_is_the_block_mean_for_aligned_grids():
    lat, lon = np.linspace(89.5, -89.5, 180), np.arange(0.5, 360, 1.0)
    clat, clon = np.linspace(88.5, -88.5, 60), np.arange(1.5, 360, 3.0)
    f = harmonic(lat, lon)
    out = apply_weights(conservative_weights(lat, lon, clat, clon), f.ravel()).reshape(60, 120)
    w = areas(lat, lon)
    block = (f * w).reshape(60, 3, 120, 3).sum((1, 3)) / w.reshape(60, 3, 120, 3).sum((1, 3))
    np.testing.assert_allclose(out, block, rtol=1e-12)


def test_bilinear_accuracy_and_exact_on_coincident_nodes():
    lat, lon = np.linspace(90, -90, 181), np.arange(360.0)
    clat, clon = coarse_target().latitude.values, coarse_target().longitude.values
    out = apply_weights(bilinear_weights(lat, lon, clat, clon), harmonic(lat, lon).ravel())
    assert np.abs(out - harmonic(clat, clon).ravel()).max() < 1e-3
    same = apply_weights(bilinear_weights(lat, lon, lat[::2], lon[::3]), harmonic(lat, lon).ravel())
    np.testing.assert_array_equal(same, harmonic(lat[::2], lon[::3]).ravel())


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_gaps_neither_spread_nor_get_filled(era5, method):
    src = era5.t.isel(time=0, level=0, drop=True)
    gappy = src.where(
        ~((src.latitude > 20) & (src.latitude < 40) & (src.longitude > 100) & (src.longitude < 140))
    )
    target = coarse_target()
    full = regrid(src, target, method=method, backend="xphyda")
    out = regrid(gappy, target, method=method, backend="xphyda")
    lat, lon = out.latitude, out.longitude
    far = (abs(lat - 30) > 14) | (abs(lon - 120) > 24)
    xr.testing.assert_equal(out.where(far), full.where(far))  # untouched away from the gap
    inside = (abs(lat - 30) < 7) & (abs(lon - 120) < 16)
    assert int(inside.sum()) > 10 and int(out.where(inside).notnull().sum()) == 0  # never filled
    # the unobserved area is about the gap's area (one target cell of slack around it)
    w = np.cos(np.deg2rad(lat))
    missing_dst = float((out.isnull() * w).sum() / (w * xr.ones_like(out)).sum())
    wf = np.cos(np.deg2rad(src.latitude))
    missing_src = float((gappy.isnull() * wf).sum() / (wf * xr.ones_like(gappy)).sum())
    assert missing_dst == pytest.approx(missing_src, rel=0.35)


def test_conventions_and_orientation_do_not_matter(era5):
    src = era5.t.isel(time=0, level=1, drop=True)
    flipped = (
        src.assign_coords(longitude=((src.longitude + 180) % 360) - 180)
        .sortby("longitude")
        .sortby("latitude")
    )
    target = coarse_target()
    a = regrid(src, target, method="conservative", backend="xphyda")
    b = regrid(flipped, target, method="conservative", backend="xphyda")
    np.testing.assert_allclose(a.values, b.values, rtol=1e-10)
    assert a.dims == ("latitude", "longitude") and np.array_equal(a.latitude, target.latitude)


def test_regional_source_leaves_the_rest_unobserved(era5):
    europe = era5.t.isel(time=0, level=0, drop=True).sel(latitude=slice(70, 30), longitude=slice(0, 40))
    out = regrid(europe, coarse_target(), method="bilinear", backend="xphyda")
    seen = out.notnull()
    assert bool(seen.any()) and float(seen.mean()) < 0.05
    assert float(out.where(seen).latitude.where(seen).max()) <= 70


def test_dataset_with_levels_and_time(era5):
    out = regrid(era5, coarse_target(), method="auto", backend="xphyda")
    assert out.t.dims == ("time", "level", "latitude", "longitude") and out.t.shape == (1, 2, 64, 128)
    assert out.t.attrs["units"] == "K"


def test_user_regridder_is_used_and_checked(era5):
    target = coarse_target()
    calls = []

    def mine(da):
        calls.append(da.name)
        return da.interp(latitude=target.latitude, longitude=target.longitude)

    out = regrid(era5[["t"]], target, method=mine)
    assert calls == ["t"] and out.t.shape == (1, 2, 64, 128)
    with pytest.raises(ObservationError, match="not the analysis grid"):
        regrid(era5[["t"]], target, method=lambda da: da.isel(latitude=slice(0, 10)))


def test_bad_options():
    ds = coarse_target().assign(x=(("latitude", "longitude"), np.zeros((64, 128)), {"units": "K"}))
    with pytest.raises(ObservationError, match="unknown regridding method"):
        regrid(ds, coarse_target(), method="nearest")
    with pytest.raises(ObservationError, match="only one horizontal dimension"):
        regrid(ds.assign(y=("latitude", np.zeros(64))), coarse_target(), method="bilinear")


def test_xesmf_backend_without_xesmf_says_how_to_get_it():
    try:
        import xesmf  # noqa: F401
    except ImportError:
        ds = coarse_target().assign(x=(("latitude", "longitude"), np.zeros((64, 128)), {"units": "K"}))
        with pytest.raises(ObservationError, match="conda install -c conda-forge xesmf"):
            regrid(ds, coarse_target(), backend="xesmf")
    else:  # pragma: no cover - xESMF present
        pytest.skip("xESMF is importable")


def test_xesmf_agrees_when_importable(era5):
    pytest.importorskip("xesmf")
    src = era5.t.isel(time=0, level=0, drop=True)
    target = coarse_target()
    for method in ("bilinear", "conservative"):
        ours = regrid(src, target, method=method, backend="xphyda")
        theirs = regrid(src, target, method=method, backend="xesmf")
        assert float(abs(ours - theirs).max()) < 0.5  # K; ESMF bounds cells by great circles
