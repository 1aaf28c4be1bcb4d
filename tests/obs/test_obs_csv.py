"""Station observations from CSV: ``xphyda.obs.read_csv``, the one reader of ``phyda assimilate`` and
``phyda evaluate --stations``; the round trip against the Dataset built by hand in docs/observations.md."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from xphyda.errors import CoordinateError, DataError, ObservationError, PhydaError, UnitsError, VariableError
from xphyda.obs import read_csv
from xphyda.obs.tables import read_positions
from xphyda.units import magnitude_si

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _csv(text: str, **kwargs) -> xr.Dataset:
    return read_csv(io.StringIO(text), **kwargs)


def _docs_namespace() -> dict:
    """Run the docs/observations.md block that builds ``stations`` by hand, then the CSV section's."""
    page = (DOCS / "observations.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", page, flags=re.DOTALL | re.MULTILINE)
    section = page.split("### Stations from CSV", 1)[1].split("\n#", 1)[0]
    own = re.findall(r"^```python\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)
    hand = [b for b in blocks if "stations = xr.Dataset(" in b]
    assert len(hand) == 1 and len(own) >= 1
    namespace: dict = {}
    for i, code in enumerate(hand + own):
        exec(compile(code, f"observations.md CSV block {i}", "exec"), namespace)  # noqa: S102 (our own page)
    return namespace


# --------------------------------------------------------------------------- the round trip
def test_the_docs_table_is_the_dataset_built_by_hand_in_the_docs(capsys):
    ns = _docs_namespace()
    hand, ours = ns["stations"], ns["from_csv"]
    xr.testing.assert_equal(ours, hand)  # values (NaN where empty), dims, coords
    assert set(ours.coords) == set(hand.coords) and list(ours.data_vars) == list(hand.data_vars)
    for name in ("t", "z", "lat", "lon", "pressure"):
        assert ours[name].attrs["units"] == hand[name].attrs["units"], name
        assert ours[name].dtype == np.float64
    assert ours.t.dims == ("station",)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "m2 s-2 hPa"
    assert out[1] == "degC 2007-01-01T12:00:00.000000000 11035"
    celsius = ns["celsius"]
    assert celsius.t.values.tolist() == [-21.05]  # values kept in the file's units


def test_a_file_on_disk_is_read_by_str_and_path_and_left_unchanged(tmp_path):
    path = tmp_path / "stations.csv"
    text = "lat,lon,pressure [hPa],t [K]\n48.2,16.4,500,252.1\n-33.9,151.2,850,271.4\n"
    path.write_text(text)
    a, b = read_csv(path), read_csv(str(path))
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.t.values.tolist() == [252.1, 271.4] and a.pressure.values.tolist() == [500.0, 850.0]
    assert a.attrs["source"] == "stations.csv" and "read_csv('stations.csv'" in a.attrs["history"]
    assert path.read_text() == text


# --------------------------------------------------------------------------- units
def test_a_degc_column_is_read_in_degc_and_converted_by_the_units_layer(era5):
    from xphyda.assimilate import assimilate

    lat, lon = [50.0, 10.0, -30.0, 60.0], [10.0, 100.0, 200.0, 300.0]
    truth = (
        era5["t"]
        .isel(time=0)
        .sel(level=500.0)
        .sel(latitude=xr.DataArray(lat, dims="s"), longitude=xr.DataArray(lon, dims="s"))
    )
    kelvin = truth.values.astype(float)
    rows_k = "".join(f"{a},{o},500,{float(k)!r}\n" for a, o, k in zip(lat, lon, kelvin))
    rows_c = "".join(f"{a},{o},500,{float(k) - 273.15!r}\n" for a, o, k in zip(lat, lon, kelvin))
    in_k = _csv("lat,lon,pressure [hPa],t [K]\n" + rows_k)
    in_c = _csv("lat,lon,pressure [hPa],t [degC]\n" + rows_c)
    assert in_c.t.attrs["units"] == "degC"
    np.testing.assert_allclose(in_c.t.values, kelvin - 273.15)
    np.testing.assert_allclose(magnitude_si(in_c.t, "temperature"), kelvin, rtol=0, atol=1e-9)

    background = era5.copy(deep=True)
    background["t"] = background["t"] + 2.0
    ana_k = assimilate(background, in_k, method="oi", obs_error=0.5, background_error=2.0)
    ana_c = assimilate(background, in_c, method="oi", obs_error=0.5, background_error=2.0)
    np.testing.assert_allclose(ana_c["t_innovation"], -2.0, atol=1e-3)  # O - B in K, not degC - K
    np.testing.assert_allclose(ana_c["t"], ana_k["t"], atol=1e-6)
    assert (ana_c["t_flag"] == 0).all()
    assert float(abs(ana_c["t_residual"]).max()) < 1.0  # the observations were used: O - A < O - B


def test_header_spellings_angle_units_ids_and_obs_dim():
    text = (
        "WMO,Latitude,Longitude [rad],level [Pa],T [K]\n03772,51.5,0.5,50000,250\n94767,-33.9,-1.0,85000,\n"
    )
    ds = _csv(text, obs_dim="site")
    assert set(ds.coords) == {"lat", "lon", "pressure", "WMO"} and list(ds.data_vars) == ["T"]
    assert ds.WMO.values.tolist() == ["03772", "94767"]  # text: leading zeros kept
    np.testing.assert_allclose(ds.lon, np.rad2deg([0.5, -1.0]))
    assert ds.lon.attrs == {"standard_name": "longitude", "units": "degrees_east"}
    assert ds.lat.attrs == {"standard_name": "latitude", "units": "degrees_north"}
    assert ds.pressure.attrs == {"standard_name": "air_pressure", "units": "Pa"}
    assert ds["T"].dims == ("site",) and np.isnan(ds["T"].values[1])
    named = _csv("station,lat,lon,p [hPa]\nWien,48.2,16.4,500\n")
    assert named.station.values.tolist() == ["Wien"] and named.pressure.values.tolist() == [500.0]


def test_empty_cells_are_nan_and_spreadsheet_leftovers_are_skipped():
    text = "lat,lon,t [K],u [m s-1],\n\n1,2,,5,\n3,4,280,,\n\n5,6,,,\n"
    ds = _csv(text)
    assert ds.sizes == {"station": 3}  # the blank lines are not stations
    np.testing.assert_array_equal(ds.t.values, [np.nan, 280.0, np.nan])
    np.testing.assert_array_equal(ds.u.values, [5.0, np.nan, np.nan])
    assert ds.u.attrs["units"] == "m s-1"


def test_time_column_iso_8601_in_utc():
    ds = _csv(
        "lat,lon,time,t [K]\n"
        "1,2,2007-01-01T12:00,250\n"
        "1,2,2007-01-01 06:00:00Z,251\n"
        "1,2,2007-01-01T14:00+02:00,252\n"
    )
    assert ds.time.dtype == np.dtype("datetime64[ns]") and ds.time.dims == ("station",)
    expected = np.array(["2007-01-01T12:00", "2007-01-01T06:00", "2007-01-01T12:00"], dtype="datetime64[ns]")
    np.testing.assert_array_equal(ds.time.values, expected)
    assert ds.time.attrs["standard_name"] == "time"


def test_variables_selects_columns_and_the_others_need_no_units():
    text = "lat,lon,elevation,t [K],z [m]\n1,2,100,250,5000\n"
    ds = _csv(text, variables=["t"])
    assert list(ds.data_vars) == ["t"]
    assert list(_csv(text, variables=[]).data_vars) == []
    with pytest.raises(VariableError, match=r"\['q'\] were requested .* its columns are"):
        _csv(text, variables=["t", "q"])
    with pytest.raises(UnitsError, match="column 'elevation'"):
        _csv(text)


# --------------------------------------------------------------------------- errors
ERRORS = [
    # (csv text, error class, builtin it also is, fragments of the message)
    ("lat,lon,t\n1,2,3\n", UnitsError, ValueError, ["column 't'", "no units", "'t [K]'", "name [units]"]),
    ("lat,lon,p\n1,2,500\n", UnitsError, ValueError, ["column 'p'", "no units", "'p [hPa]'"]),
    (
        "lat,lon,t [kelvins please]\n1,2,3\n",
        UnitsError,
        ValueError,
        ["'kelvins please'", "cannot read", "'degC'"],
    ),
    ("lat,lon,pressure [K]\n1,2,3\n", UnitsError, ValueError, ["not a pressure", "'pressure [hPa]'"]),
    (
        "lat [m],lon,t [K]\n1,2,3\n",
        UnitsError,
        ValueError,
        ["'lat [m]'", "not an angle", "'lat [degrees_north]'"],
    ),
    (
        "latitude,t [K]\n1,2\n",
        CoordinateError,
        KeyError,
        ["no longitude column", "['latitude', 't [K]']", "'lon'"],
    ),
    ("lon,t [K]\n1,2\n", CoordinateError, KeyError, ["no latitude column", "'lat' (or 'latitude')"]),
    (
        "lat,lon,t [K]\n1,2,3\n4,5,abc\n",
        ObservationError,
        ValueError,
        ["column 't [K]'", "line 3 ('abc')", "not numbers"],
    ),
    ("lat,lon\n1,2\nnorth,5\n", ObservationError, ValueError, ["column 'lat'", "line 3 ('north')"]),
    (
        "lat,lon,t [K]\n10,0,1\n95,0,1\n-91,0,1\n",
        CoordinateError,
        KeyError,
        ["outside [-90, 90]", "line 3 ('95'), line 4 ('-91')"],
    ),
    ("lat,lon,t [K]\n10,0,1\n,0,1\n", CoordinateError, KeyError, ["column 'lat'", "empty on line 3;"]),
    ("lat,lon,time\n1,2,yesterday\n", ObservationError, ValueError, ["ISO 8601", "line 2 ('yesterday')"]),
    ("lat,lon,time\n1,2,\n", ObservationError, ValueError, ["column 'time'", "empty on line 2"]),
    ("", ObservationError, ValueError, ["is empty", "lat,lon,pressure [hPa]"]),
    ("\n\n", ObservationError, ValueError, ["is empty"]),
    ("lat,lon,t [K]\n", ObservationError, ValueError, ["header but no rows", "'lat,lon,t [K]'"]),
    ("lat,lon,t [K\n1,2,3\n", ObservationError, ValueError, ["column 3", "'t [K'", "name [units]"]),
    (
        "lat,lon,t [K],t [degC]\n1,2,3,4\n",
        ObservationError,
        ValueError,
        ["'t [K]' and 't [degC]'", "keep one"],
    ),
    ("lat,latitude,lon\n1,2,3\n", ObservationError, ValueError, ["'lat' and 'latitude'"]),
    ("lat,lon,,\n1,2,3,\n", ObservationError, ValueError, ["column 3", "no header"]),
]


@pytest.mark.parametrize(
    "text, error, builtin, fragments", ERRORS, ids=[e[0][:24] or "empty" for e in ERRORS]
)
def test_errors_name_the_column_and_the_line(text, error, builtin, fragments):
    source = io.StringIO(text)
    with pytest.raises(error) as info:
        read_csv(source)
    assert isinstance(info.value, PhydaError) and isinstance(info.value, builtin)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert source.getvalue() == text  # the input is not modified


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="nope.csv' does not exist"):
        read_csv(tmp_path / "nope.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"lat,lon\n\xff\xfe\x00,\x81\n")
    with pytest.raises(PhydaError, match="binary.csv"):
        read_csv(binary)
    with pytest.raises(ObservationError, match="obs_dim"):
        _csv("lat,lon\n1,2\n", obs_dim="lat")


# --------------------------------------------------------------------------- phyda evaluate --stations
def test_evaluate_stations_csv_uses_the_same_reader(tmp_path):
    from xphyda.evaluate.cli import build_parser, observations_option

    good = tmp_path / "network.csv"
    good.write_text("name,Latitude,Longitude,elevation,t\nWien,48.2,16.4,200,x\nSydney,-33.9,151.2,,\n")
    args = build_parser().parse_args(["--data", "x", "--stations", str(good)])
    (setting,) = observations_option(args)
    assert setting["label"] == "network"
    np.testing.assert_array_equal(setting["stations"]["lat"], [48.2, -33.9])
    np.testing.assert_array_equal(setting["stations"]["lon"], [16.4, 151.2])
    positions = read_positions(good)
    assert set(positions.coords) == {"lat", "lon"} and not positions.data_vars

    bad = tmp_path / "bad.csv"
    bad.write_text("lat,lon\n48.2,16.4\n95.0,10.0\n")
    args = build_parser().parse_args(["--data", "x", "--stations", str(bad)])
    with pytest.raises(CoordinateError, match=r"outside \[-90, 90\] on line 3"):
        observations_option(args)
    no_lon = tmp_path / "no_lon.csv"
    no_lon.write_text("lat,elevation\n48.2,16.4\n")
    with pytest.raises(CoordinateError, match="no longitude column"):
        observations_option(build_parser().parse_args(["--data", "x", "--stations", str(no_lon)]))


def test_short_rows_are_read_as_missing_with_a_warning_and_semicolons_get_a_hint(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("lat,lon,t [K],u [m s-1]\n1,2,280,5\n3,4,281\n")
    with pytest.warns(UserWarning, match=r"fewer fields than its 4 columns: line 3 \(3 fields\)"):
        ds = read_csv(path)
    np.testing.assert_array_equal(ds.u.values, [5.0, np.nan])
    semi = tmp_path / "semi.csv"
    semi.write_text("lat;lon;t [K]\n1;2;280\n")
    with pytest.raises(ObservationError, match=r"separated by semicolons or tabs, not commas\. Fix: write it with commas"):
        read_csv(semi)
