"""Static input fields on a model grid: reordering, regridding and the errors that teach."""

import numpy as np
import pytest
import xarray as xr

from xphyda.data.static import check_static, static_fields
from xphyda.errors import DataError

LAT = np.linspace(78.75, -78.75, 8)  # a model grid: north to south, 0..360
LON = np.arange(16) * 22.5


def _store(lat, lon, values, **extra):
    return xr.Dataset({"lsm": (("latitude", "longitude"), values), **extra},
                      coords={"latitude": ("latitude", lat, {"units": "degrees_north"}),
                              "longitude": ("longitude", lon, {"units": "degrees_east"})})


def test_a_field_on_the_model_grid_is_reordered_not_interpolated():
    lat, lon = LAT[::-1], np.sort((LON + 180.0) % 360.0 - 180.0)  # south to north, -180..180
    values = np.add.outer(lat, lon / 1000.0)
    out = static_fields(_store(lat, lon, values), ["lsm", "latitude"], LAT, LON)
    assert list(out) == ["lsm", "latitude"]
    np.testing.assert_array_equal(out["lsm"], np.add.outer(LAT, ((LON + 180.0) % 360.0 - 180.0) / 1000.0))
    np.testing.assert_array_equal(out["latitude"], np.repeat(LAT[:, None], 16, axis=1))


def test_a_finer_field_is_regridded_conservatively():
    lat = np.linspace(84.375, -84.375, 16)  # twice as fine
    lon = np.arange(32) * 11.25
    rng = np.random.default_rng(1)
    values = (rng.random((16, 32)) < 0.4).astype(float)
    out = static_fields(_store(lat, lon, values), ["lsm"], LAT, LON)["lsm"]
    assert out.shape == (8, 16) and 0 <= out.min() and out.max() <= 1
    w_src, w_out = np.cos(np.deg2rad(lat))[:, None], np.cos(np.deg2rad(LAT))[:, None]
    # a conservative map keeps the area mean (up to the polar caps both grids leave out)
    assert abs((values * w_src).sum() / (w_src.sum() * 32) - (out * w_out).sum() / (w_out.sum() * 16)) < 0.03
    assert len(np.unique(out)) > 2  # fractions, not a copy of nearest cells


@pytest.mark.parametrize(("names", "store", "says"), [
    (["orography"], "ok", r"no variable 'orography'; its variables are \['flat', 'lsm', 'step'\].*Fix"),
    (["lsm"], None, r"need a store.*Fix: pass the store"),
    ("lsm", "ok", r"got the string 'lsm'.*Fix: \['lsm'\]"),
    (["lsm", "lsm"], "ok", r"unique.*Fix"),
    (["step"], "ok", r"dims \('time', 'latitude', 'longitude'\).*Fix: select one of \['time'\]"),
    (["lsm"], "nan", r"in the given Dataset has 1 missing values.*Fix: fill them"),
    (["flat"], "ok", r"'flat' in the given Dataset is constant \(0 everywhere\).*Fix: leave it out"),
])
def test_bad_requests_say_what_was_found_and_how_to_fix_it(names, store, says):
    values = np.ones((8, 16))
    values[0, 0] = 0.0
    if store == "nan":
        values[3, 3] = np.nan
    ds = None if store is None else _store(LAT, LON, values, step=(("time", "latitude", "longitude"),
                                                                 np.zeros((2, 8, 16))),
                                           flat=(("latitude", "longitude"), np.zeros((8, 16))))
    with pytest.raises(DataError, match=says):
        static_fields(ds, names, LAT, LON)


def test_check_static_checks_the_fields_on_the_stores_own_grid(tmp_path):
    values = np.zeros((8, 16))
    values[2, 3] = 1.0
    ds = _store(LAT, LON, values, flat=(("latitude", "longitude"), np.ones((8, 16))))
    assert check_static(ds, ("lsm", "latitude")) == ["lsm", "latitude"]
    assert check_static(None, ["latitude"]) == ["latitude"]
    with pytest.raises(DataError, match="no variable 'z_surface'"):
        check_static(ds, ["z_surface"])
    with pytest.raises(DataError, match="'flat' in the given Dataset is constant"):
        check_static(ds, ["lsm", "flat"])
    path = tmp_path / "s.nc"
    ds.to_netcdf(path)
    with pytest.raises(DataError, match=rf"^'{path}' has no variable 'orography'"):  # a path, not PosixPath(...)
        check_static(path, ["orography"])


@pytest.mark.parametrize("lat, lon", [(LAT[::-1], LON), (LAT, LON - 180.0), (LAT, LON[::-1])])
def test_a_target_that_is_not_a_model_grid_is_refused(lat, lon):
    with pytest.raises(DataError, match=r"north to south.*0..360 ascending.*Fix"):
        static_fields(_store(LAT, LON, np.eye(8, 16)), ["lsm"], lat, lon)


def test_a_weatherbench2_layout_is_regridded_onto_the_model_grid():
    lat = np.linspace(-90.0, 90.0, 33)  # ascending with both poles, -180..180: the WeatherBench2 64 x 33 layout
    lon = np.arange(64) * 5.625 - 180.0
    def field(la, lo):
        return np.sin(np.deg2rad(lo))[None, :] + 0.5 * la[:, None] / 90.0

    out = static_fields(_store(lat, lon, field(lat, lon)), ["lsm"], LAT, LON)["lsm"]
    # cell means, not point values (the polar cells' mean latitude is 2.4 degrees from their centre);
    # a flipped latitude or a shifted longitude would be off by up to 0.9 and 2
    assert np.abs(out - field(LAT, LON)).max() < 0.03
