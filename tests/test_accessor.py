"""The accessors: registered by ``import xphyda``, thin, stateless, never mutating; torch stays unimported."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import xphyda  # noqa: F401  (registers the accessors)
from xphyda.errors import UnitsError, VariableError


def test_import_registers_both_accessors_without_importing_torch():
    code = (
        "import sys, xarray as xr, xphyda; "
        "assert 'phyda' in dir(xr.Dataset) and 'phyda' in dir(xr.DataArray), 'accessor missing'; "
        "ds = xphyda.tutorial.open_dataset('era5-z-t'); ds.phyda.residual_summary(); ds.t.phyda.to_si(); "
        "heavy = sorted(m for m in ('torch', 'jax', 'jcm', 'xesmf') if m in sys.modules); "
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


def test_dataarray_grid(era5):
    g = era5["t"].phyda.grid
    assert (g.lat, g.lon, g.level, g.time) == ("latitude", "longitude", "level", "time")
    np.testing.assert_array_equal(g.level_pa, [50000.0, 85000.0])
    assert g.shape == (181, 360)


def test_dataarray_to_si_infers_the_kind_and_leaves_the_input_alone(era5):
    gh = (era5["z"] / 9.80665).assign_attrs(units="gpm", standard_name="geopotential_height").rename("gh")
    before = gh.copy(deep=True)
    out = gh.phyda.to_si()
    assert out.attrs["units"] == "m**2 s**-2" and out.dtype == np.float64
    np.testing.assert_allclose(out.values, era5["z"].values, rtol=1e-6)
    xr.testing.assert_identical(gh, before)
    celsius = (era5["t"] - 273.15).assign_attrs(units="degC")  # found by its name 't'
    np.testing.assert_allclose(celsius.phyda.to_si().values, era5["t"].values, atol=1e-4)
    anon = xr.DataArray([1.0], dims="x", name="thing", attrs={"units": "hPa"})
    assert float(anon.phyda.to_si("pressure")[0]) == 100.0


def test_dataarray_to_si_errors_name_the_variable():
    anon = xr.DataArray([1.0], dims="x", name="thing", attrs={"units": "hPa"})
    with pytest.raises(VariableError, match=r"'thing'.*kind='temperature'"):
        anon.phyda.to_si()
    wrong = xr.DataArray([1.0], dims="x", name="t", attrs={"units": "m s-1"})
    with pytest.raises(UnitsError, match=r"'t'.*temperature"):
        wrong.phyda.to_si()


def test_accessors_hold_only_their_object(era5):
    for obj in (era5, era5["t"]):
        assert set(vars(obj.phyda)) == {"_obj"}


def test_phyda_is_the_default_method_everywhere():
    """Issue 5's signature: ds.phyda.assimilate(obs, model=None, method="phyda", ...), and the same default in
    the function, the many-times front and the command line."""
    import inspect

    from xphyda.accessor import PhydaDatasetAccessor
    from xphyda.assimilate import assimilate
    from xphyda.cli import build_parser
    from xphyda.parallel import assimilate_times

    for fn in (PhydaDatasetAccessor.assimilate, assimilate, assimilate_times):
        assert inspect.signature(fn).parameters["method"].default == "phyda", fn
    assert build_parser().parse_args(["assimilate", "B.nc", "O.nc", "-o", "A.nc"]).method == "phyda"


def test_an_oi_option_without_a_method_says_to_pass_it(era5):
    import xphyda

    obs = xphyda.obs.simulate(era5, n_stations=20, seed=0)
    with pytest.raises(xphyda.PhydaError, match=r"options \['length_scale'\] are not used by method 'phyda'.*"
                                                 r"Fix: pass method='oi'"):
        era5.phyda.assimilate(obs, length_scale="500 km")
