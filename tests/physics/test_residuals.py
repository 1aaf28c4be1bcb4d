"""The xarray front: discovery, units and dask around the kernels give the kernels' answer."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import P_LEVELS

import xphyda  # noqa: F401  (registers ds.phyda)
from xphyda.physics import available, kernels, physics_residual, residual_summary
from xphyda.physics.constants import constants
from xphyda.physics.operators import SphereGrid


class _RaiseIfComputed:
    """A dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk, keys, **kwargs):
        raise AssertionError("a dask array was computed where the result should stay lazy")


def _state(analytic, name="pole33x64", *, with_humidity=False):
    lat, lon = analytic.grid_coords(name)
    u, v, w, _ = analytic.divergent_column(lat, lon)
    geo, t = analytic.isothermal(lat, lon)
    ug, vg, _ = analytic.balanced_rotation(lat, lon)
    # an unbalanced part in z so that the hydrostatic residual is not just rounding
    bump = 300.0 * np.cos(np.deg2rad(lat))[:, None] ** 2 * np.linspace(0, 1, P_LEVELS.size)[:, None, None]
    fields = {"u": u + ug, "v": v + vg, "w": w, "z": geo + bump, "t": t}
    if with_humidity:
        fields["q"] = np.full(t.shape, 0.005)
    return analytic.to_dataset(lat, lon, P_LEVELS, **fields)


def test_available():
    assert available() == ["continuity", "geostrophic", "hydrostatic"]


@pytest.mark.parametrize("name", ["continuity", "hydrostatic", "geostrophic"])
def test_front_gives_the_kernel_answer(analytic, name):
    ds = _state(analytic)
    res = physics_residual(ds, name)
    g = SphereGrid(ds.latitude.values, ds.longitude.values)
    a = {k: ds[k].values for k in ds.data_vars}
    expected = {
        "continuity": lambda: kernels.continuity(a["u"], a["v"], a["w"], P_LEVELS, g),
        "hydrostatic": lambda: kernels.hydrostatic(a["z"], a["t"], P_LEVELS),
        "geostrophic": lambda: kernels.geostrophic(a["u"], a["v"], a["z"], g),
    }[name]()
    np.testing.assert_array_equal(res.values, expected)
    assert res.name == f"{name}_residual"
    assert res.attrs["units"] == {"continuity": "s-1", "hydrostatic": "m", "geostrophic": "m s-1"}[name]
    for key in ("long_name", "formula", "discretisation", "history"):
        assert res.attrs[key]
    if name == "geostrophic":
        assert res.dims == ("level", "latitude", "longitude")
        assert res.attrs["equatorial_band_deg"] == kernels.GEOSTROPHIC_BAND
    else:
        assert res.dims == ("layer", "latitude", "longitude")
        assert list(res.layer.values[:2]) == ["1000-925 hPa", "925-850 hPa"]
        np.testing.assert_array_equal(res.level_upper.values, P_LEVELS[1:] / 100)  # the lower pressure
        np.testing.assert_array_equal(res.level_lower.values, P_LEVELS[:-1] / 100)


def test_accessor_is_the_function(analytic):
    ds = _state(analytic)
    xr.testing.assert_identical(ds.phyda.physics_residual("continuity"), physics_residual(ds, "continuity"))
    xr.testing.assert_identical(ds.phyda.residual_summary(), residual_summary(ds))
    assert ds.phyda.grid.level == "level"


@pytest.mark.parametrize("name", ["continuity", "hydrostatic", "geostrophic"])
def test_latitude_order_does_not_matter(analytic, name):
    ds = _state(analytic, "pole33x64")  # descending
    flipped = ds.isel(latitude=slice(None, None, -1))
    a = physics_residual(ds, name)
    b = physics_residual(flipped, name).sortby("latitude", ascending=False)
    xr.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13 * float(np.abs(a).max()))


@pytest.mark.parametrize("name", ["continuity", "hydrostatic"])
def test_level_order_does_not_matter(analytic, name):
    ds = _state(analytic)
    a = physics_residual(ds, name)
    b = physics_residual(ds.isel(level=slice(None, None, -1)), name)
    np.testing.assert_allclose(b.values[::-1], a.values, rtol=1e-12, atol=1e-12 * float(np.abs(a).max()))
    np.testing.assert_array_equal(b.level_upper.values[::-1], a.level_upper.values)


@pytest.mark.parametrize("name", ["continuity", "geostrophic"])
def test_longitude_convention_does_not_matter(analytic, name):
    ds = _state(analytic, "reg64x128")
    west = ds.assign_coords(longitude=((ds.longitude + 180) % 360) - 180).sortby("longitude")
    a = physics_residual(ds, name)
    b = physics_residual(west, name).assign_coords(longitude=lambda d: d.longitude % 360).sortby("longitude")
    np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("name", ["gauss48x96", "reg32x64", "pole65x128"])
def test_gaussian_and_offset_grids(analytic, name):
    ds = _state(analytic, name)
    res = physics_residual(ds, "continuity")
    lat, lon = analytic.grid_coords(name)
    scale = np.abs(analytic.divergent_column(lat, lon)[3]).max()
    assert float(np.abs(res).max()) < 0.3 * scale  # truncation level, pole rows included (see test_operators)


def test_geopotential_height_gives_the_same_residual(analytic):
    ds = _state(analytic)
    g = constants().g
    gh = ds.assign(z=(ds.z / g).assign_attrs(units="m", standard_name="geopotential_height")).rename(z="gh")
    gpm = gh.assign(gh=gh.gh.assign_attrs(units="gpm"))
    for name in ("hydrostatic", "geostrophic"):
        ref = physics_residual(ds, name)
        for other in (gh, gpm):
            xr.testing.assert_allclose(physics_residual(other, name), ref, atol=1e-9, rtol=1e-12)


@pytest.mark.parametrize(
    "var, units, factor, offset",
    [
        ("z", "m**2 s**-2", 1.0, 0.0),
        ("z", "m2 s-2", 1.0, 0.0),
        ("z", "m^2/s^2", 1.0, 0.0),
        ("w", "Pa s**-1", 1.0, 0.0),
        ("w", "hPa s-1", 0.01, 0.0),
        ("w", "Pa/s", 1.0, 0.0),
        ("t", "degC", 1.0, -273.15),
        ("u", "km h-1", 3.6, 0.0),
        ("u", "knots", 3600 / 1852, 0.0),
    ],
)
def test_units_are_converted(analytic, var, units, factor, offset):
    ds = _state(analytic)
    other = ds.assign({var: (ds[var] * factor + offset).assign_attrs(units=units)})
    name = {"z": "hydrostatic", "t": "hydrostatic", "w": "continuity", "u": "continuity"}[var]
    ref = physics_residual(ds, name)
    xr.testing.assert_allclose(physics_residual(other, name), ref, rtol=1e-9, atol=1e-9 * float(np.abs(ref).max()))


@pytest.mark.parametrize("units, scale", [("hPa", 0.01), ("Pa", 1.0), ("millibars", 0.01), ("mbar", 0.01), ("kPa", 0.001)])
def test_level_units(analytic, units, scale):
    ds = _state(analytic)
    ref = physics_residual(ds, "continuity")
    other = ds.assign_coords(level=("level", P_LEVELS * scale, {"units": units}))
    np.testing.assert_allclose(physics_residual(other, "continuity").values, ref.values, rtol=1e-12, atol=1e-22)


@pytest.mark.parametrize(
    "renames",
    [
        {"latitude": "lat", "longitude": "lon"},  # WeatherBench2
        {"level": "pressure_level"},  # ERA5 from the new CDS
        {"level": "isobaricInhPa"},  # cfgrib
        {"latitude": "lat", "longitude": "lon", "level": "plev"},  # CMIP
    ],
)
def test_coordinate_names(analytic, renames):
    ds = _state(analytic)
    ref = physics_residual(ds, "continuity")
    other = ds.rename(renames)
    for name in other.coords:  # names alone must suffice: drop the CF attributes (not the level units)
        other[name].attrs.pop("standard_name", None)
        if name != renames.get("level", "level"):
            other[name].attrs.pop("units", None)
    res = physics_residual(other, "continuity")
    np.testing.assert_array_equal(res.values, ref.values)


def test_cf_attributes_alone_suffice(analytic):
    ds = _state(analytic).rename(latitude="y", longitude="x", level="p")
    res = physics_residual(ds, "continuity")
    assert res.dims == ("layer", "y", "x")


def test_extra_dimensions_time_member(analytic):
    ds = _state(analytic)
    times = xr.DataArray(np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[ns]"), dims="valid_time")
    big = xr.concat([ds, ds * 2], dim=times).expand_dims(number=[0, 1, 2]).transpose(
        "valid_time", "level", "number", "latitude", "longitude"
    )
    for k in big.data_vars:
        big[k].attrs = ds[k].attrs
    ref = physics_residual(ds, "hydrostatic")
    res = physics_residual(big, "hydrostatic")
    assert res.dims == ("valid_time", "layer", "number", "latitude", "longitude")
    np.testing.assert_allclose(res.isel(valid_time=0, number=1).values, ref.values, atol=1e-9)
    grid = big.phyda.grid
    assert (grid.time, grid.member) == ("valid_time", "number")


def test_variable_overrides(analytic):
    ds = _state(analytic).rename(u="uwnd", v="vwnd", w="omega_pa")
    ref = physics_residual(_state(analytic), "continuity")
    res = ds.phyda.physics_residual("continuity", u="uwnd", v="vwnd", w="omega_pa")
    xr.testing.assert_identical(res.drop_attrs(), ref.drop_attrs())
    assert "u='uwnd'" in res.attrs["history"]


def test_standard_names_find_variables(analytic):
    ds = _state(analytic).rename(u="a", v="b", w="c")
    for var, sn in [("a", "eastward_wind"), ("b", "northward_wind"), ("c", "lagrangian_tendency_of_air_pressure")]:
        ds[var].attrs["standard_name"] = sn
    physics_residual(ds, "continuity")


def test_humidity_from_q_and_from_r(ecmwf):
    dry = physics_residual(ecmwf.drop_vars("r"), "hydrostatic")
    from_r = physics_residual(ecmwf, "hydrostatic")
    assert "humidity" in from_r.attrs["history"]
    # q from r with MetPy, then Tv: the same as giving that q
    import metpy.calc as mpcalc
    from metpy.units import units

    p = (ecmwf.isobaricInhPa * units.hPa)
    mr = mpcalc.mixing_ratio_from_relative_humidity(p, ecmwf.t.metpy.quantify(), ecmwf.r.metpy.quantify())
    q = mpcalc.specific_humidity_from_mixing_ratio(mr).metpy.dequantify().assign_attrs(units="kg kg-1")
    from_q = physics_residual(ecmwf.drop_vars("r").assign(q=q), "hydrostatic")
    xr.testing.assert_allclose(from_q, from_r.assign_attrs(from_q.attrs), rtol=0, atol=1e-4)  # float32 inputs
    assert float(np.abs(from_r - dry).max()) > 0.1


def test_inputs_are_never_modified(ecmwf, era5):
    for ds in (ecmwf, era5):
        before = ds.copy(deep=True)
        ds.phyda.residual_summary()
        for name in available():
            try:
                ds.phyda.physics_residual(name)
            except KeyError:  # era5 has no winds
                pass
        xr.testing.assert_identical(ds, before)
        for k in ds.variables:
            assert ds[k].attrs == before[k].attrs and ds[k].dtype == before[k].dtype


@pytest.mark.filterwarnings("ignore:Increasing number of chunks")  # level chunks merged: by design
@pytest.mark.parametrize("name", ["continuity", "hydrostatic", "geostrophic"])
def test_dask_is_lazy_and_equal(analytic, name):
    ds = _state(analytic, with_humidity=True)
    chunked = ds.chunk({"level": 2, "latitude": 11})
    with dask.config.set(scheduler=_RaiseIfComputed()):
        res = physics_residual(chunked, name)
    assert res.chunks is not None
    xr.testing.assert_allclose(res.compute(), physics_residual(ds, name), rtol=1e-13, atol=1e-20)


def test_dask_relative_humidity_is_lazy(ecmwf):
    with dask.config.set(scheduler=_RaiseIfComputed()):
        res = physics_residual(ecmwf.chunk(time=1), "hydrostatic")
    xr.testing.assert_allclose(res.compute(), physics_residual(ecmwf, "hydrostatic"))


def test_summary(ecmwf):
    s = residual_summary(ecmwf)
    assert set(s.data_vars) == {"geostrophic_rms", "geostrophic_relative", "hydrostatic_rms", "hydrostatic_relative"}
    assert s.hydrostatic_rms.dims == ("time", "layer")
    assert s.geostrophic_rms.dims == ("time", "isobaricInhPa")
    assert s.hydrostatic_rms.attrs["units"] == "m" and s.geostrophic_rms.attrs["units"] == "m s-1"
    assert s.hydrostatic_relative.attrs["units"] == "1"
    assert "RMS" in s.geostrophic_relative.attrs["long_name"]
    only = residual_summary(ecmwf, ["geostrophic"])
    assert set(only.data_vars) == {"geostrophic_rms", "geostrophic_relative"}
    assert "geostrophic_rms" in repr(s)  # reads in a notebook


def test_summary_skips_residuals_it_cannot_compute(analytic):
    ds = _state(analytic)
    single = ds.isel(level=[3]).drop_vars("w")
    s = residual_summary(single)
    assert set(s.data_vars) == {"geostrophic_rms", "geostrophic_relative"}


def test_summary_relative_is_rms_over_scale(analytic):
    lat, lon = analytic.grid_coords("pole33x64")
    u, v, z = analytic.balanced_rotation(lat, lon)
    ds = analytic.to_dataset(lat, lon, u=u, v=v, z=z)
    s = residual_summary(ds, ["geostrophic"])
    res = physics_residual(ds, "geostrophic")
    w = np.abs(SphereGrid(ds.latitude.values, ds.longitude.values).dsin)
    w = xr.DataArray(w, dims="latitude") * xr.ones_like(res) * res.notnull()
    rms = np.sqrt((res.fillna(0) ** 2 * w).sum(["latitude", "longitude"]) / w.sum(["latitude", "longitude"]))
    np.testing.assert_allclose(s.geostrophic_rms.values, rms.values, rtol=1e-12)
    assert float(s.geostrophic_relative.max()) < 0.01  # balanced rotation: residual << wind


@pytest.mark.parametrize("budget_planes", [0.5, 1, 2.5, 7.5, 100])
@pytest.mark.parametrize("name", ["continuity", "hydrostatic", "geostrophic"])
def test_slabs_give_the_same_answer(analytic, monkeypatch, name, budget_planes):
    """The front evaluates big inputs slab by slab (levels in overlapping blocks): same numbers."""
    from xphyda.physics import residuals

    ds = _state(analytic, "reg32x64", with_humidity=True)
    times = xr.DataArray(np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[ns]"), dims="time")
    ds = xr.concat([ds, ds * 1.1], dim=times).expand_dims(number=3)
    for k in ds.data_vars:
        ds[k].attrs["units"] = _state(analytic, "reg32x64", with_humidity=True)[k].attrs["units"]
    ref = physics_residual(ds, name)
    monkeypatch.setattr(residuals, "_SLAB_BYTES", int(budget_planes * 8 * 32 * 64))
    xr.testing.assert_identical(physics_residual(ds, name), ref)


@pytest.mark.parametrize("min_rows, column_bytes", [(4, None), (5, None), (8, None), (4, 1)])
@pytest.mark.parametrize("grid", ["pole33x64", "gauss48x96", "regional"])
@pytest.mark.parametrize("name", ["continuity", "hydrostatic", "geostrophic"])
def test_bands_of_rows_give_the_same_answer(analytic, monkeypatch, name, grid, min_rows, column_bytes):
    """Bands of rows (a halo row on either side) and blocks of levels: the whole grid's numbers, bit for bit."""
    from xphyda.physics import residuals

    ds = _state(analytic, "pole33x64" if grid == "regional" else grid, with_humidity=True)
    if grid == "regional":  # neither global nor periodic: the outer rows and columns are extrapolated
        ds = ds.isel(latitude=slice(3, 27), longitude=slice(5, 45))
    ref = physics_residual(ds, name)
    monkeypatch.setattr(residuals, "_SLAB_BYTES", 1)  # bands of _MIN_ROWS rows
    monkeypatch.setattr(residuals, "_MIN_ROWS", min_rows)
    if column_bytes is not None:  # and blocks of two levels
        monkeypatch.setattr(residuals, "_COLUMN_BYTES", column_bytes)
    xr.testing.assert_identical(physics_residual(ds, name), ref)
    for dtype in (np.float32,):  # float32 data are computed in float32, also in bands
        small = ds.astype(dtype)
        monkeypatch.setattr(residuals, "_SLAB_BYTES", 2**30)
        whole = physics_residual(small, name)
        monkeypatch.setattr(residuals, "_SLAB_BYTES", 1)
        xr.testing.assert_identical(physics_residual(small, name), whole)


@pytest.mark.parametrize("name", ["continuity", "hydrostatic", "geostrophic"])
def test_many_leading_indices_at_once(analytic, name):
    """Small fields go to the kernel several leading indices at a time: each gets its own answer."""
    base = _state(analytic, "reg32x64", with_humidity=True)
    times = xr.DataArray(np.arange(10).astype("datetime64[D]").astype("datetime64[ns]"), dims="time")
    ds = xr.concat([base * (1 + 0.01 * i) for i in range(10)], dim=times).expand_dims(number=2)
    for k in ds.data_vars:
        ds[k].attrs["units"] = base[k].attrs["units"]
    res = physics_residual(ds, name)  # 10 times > 8 levels
    for i in (0, 9):
        one = physics_residual(ds.isel(number=1, time=i), name)
        np.testing.assert_array_equal(res.isel(number=1, time=i).values, one.values)


def test_summary_of_continuity_is_per_layer(analytic):
    ds = _state(analytic)
    s = residual_summary(ds, ["continuity"])
    assert s.continuity_rms.dims == ("layer",) and s.continuity_relative.dims == ("layer",)
    assert s.continuity_rms.attrs["units"] == "s-1"
    # the omega balances the divergent wind: the residual is truncation, small against div(V)
    assert float(s.continuity_relative.max()) < 0.05
    with dask.config.set(scheduler=_RaiseIfComputed()):
        lazy = residual_summary(ds.chunk(latitude=11), ["continuity"])
    xr.testing.assert_allclose(lazy.compute(), s)


def test_summary_is_lazy_for_dask(ecmwf):
    with dask.config.set(scheduler=_RaiseIfComputed()):
        lazy = residual_summary(ecmwf.chunk(time=1, latitude=10))
    xr.testing.assert_allclose(lazy.compute(), residual_summary(ecmwf))
