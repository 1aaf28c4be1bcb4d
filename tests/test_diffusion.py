"""The diffusion front: assimilate(method="phyda") and encode on a real ERA5 background."""

import warnings

import numpy as np
import pytest
import xarray as xr

import xphyda
from xphyda.errors import ModelError


@pytest.fixture
def case(era5):
    truth = era5
    background = truth.copy(deep=True)
    background["t"] = background["t"] + 1.0
    obs = xphyda.obs.simulate(truth, n_stations=60, seed=3)
    return truth, background, obs


def test_phyda_analysis_has_members_units_and_diagnostics(case, tiny_model):
    _, background, obs = case
    before = background.copy(deep=True)
    out = background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=2, steps=3, seed=1)
    xr.testing.assert_identical(background, before)  # input untouched
    assert out["t"].dims == ("member",) + background["t"].dims
    assert out["t"].attrs == background["t"].attrs and out["z"].attrs["units"] == background["z"].attrs["units"]
    assert np.isfinite(out["t"]).all() and np.isfinite(out["z"]).all()
    assert {"t_flag", "t_innovation", "t_residual", "z_flag"} <= set(out.data_vars)
    history = out.attrs["history"].splitlines()[0]
    assert "phyda" in history and "tiny" in history and "u500" in history  # prior-filled channels are named
    # the increment is large-scale (model grid 8 x 16): the background's fine scales are kept
    fine = (out["t"].isel(member=0) - background["t"]).diff("longitude").std()
    assert float(fine) < float(background["t"].diff("longitude").std())


def test_members_are_reproducible_whatever_the_ensemble_size(case, tiny_model):
    _, background, obs = case
    a = background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=2, steps=2, seed=5)
    b = background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=3, steps=2, seed=5)
    np.testing.assert_allclose(a["t"].isel(member=1), b["t"].isel(member=1), rtol=0, atol=1e-4)
    c = background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=1, steps=2, seed=6)
    assert "member" not in c["t"].dims


def test_encode_returns_reconstruction_on_input_grid(case, tiny_model):
    _, background, obs = case
    rec = background.phyda.encode(obs, model=tiny_model)
    assert rec["t850"].shape == (181, 360) and rec["t850"].attrs["units"] == "K"
    assert rec["features"].dims == ("feature", "latitude", "longitude")
    assert np.isfinite(rec["z500"]).all()


def test_preset_without_weights_says_how_to_train(case):
    _, background, obs = case
    with pytest.raises(ModelError, match="phyda train --preset era5-v1"):
        background.phyda.assimilate(obs, method="phyda", model="era5-v1")


def test_unknown_model_and_unusable_background(case, tiny_model):
    _, background, obs = case
    with pytest.raises(ModelError, match="no model named"):
        background.phyda.assimilate(obs, method="phyda", model="nope-v0")
    sfc = xphyda.tutorial.open_dataset("era5-surface").isel(time=0)
    with pytest.raises(ModelError, match="none of the model's channels"):
        sfc.phyda.encode(model=tiny_model)


def test_oi_options_are_refused_for_phyda(case, tiny_model):
    _, background, obs = case
    with pytest.raises(xphyda.PhydaError, match="not used by method"):
        background.phyda.assimilate(obs, method="phyda", model=tiny_model, length_scale=5e5)


def test_background_on_a_grid_short_of_the_poles_keeps_its_values_on_the_model_grid():
    """Conservative mapping of a finer background that stops short of the poles and of 360 degrees.

    Model cells it covers only in part must get the mean of what is covered (a constant stays constant),
    not the constant scaled down by the uncovered fraction.
    """
    from xphyda.diffusion import _to_model_grid

    src_lat = np.linspace(87.0, -87.0, 96)
    src_lon = np.linspace(0.0, 356.0, 192)
    dst_lat = np.linspace(86.25, -86.25, 24)
    dst_lon = np.arange(0.0, 360.0, 7.5)
    w = _to_model_grid(src_lat, src_lon, dst_lat, dst_lon)
    mapped = w @ np.full(src_lat.size * src_lon.size, 280.0)
    np.testing.assert_allclose(mapped, 280.0, rtol=1e-12)


def test_a_regional_background_is_refused_with_a_clear_error():
    from xphyda.diffusion import _to_model_grid
    from xphyda.errors import GridError

    lat, lon = np.linspace(70.0, 30.0, 41), np.linspace(-20.0, 40.0, 61)  # Europe, 1 degree
    with pytest.raises(GridError, match=r"covers \d+ % of the model's global grid.*method='oi'"):
        _to_model_grid(lat, lon, np.linspace(86.25, -86.25, 24), np.arange(0.0, 360.0, 7.5))


def test_balance_and_calibration_need_the_model_statistics(case, tiny_model):
    _, background, obs = case
    out = background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=2, steps=2)
    assert "balance none" in out.attrs["history"] and "spread calibration off" in out.attrs["history"]
    with pytest.raises(ModelError, match="no balance statistics"):
        background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=2, steps=2, balance=["hydrostatic"])
    with pytest.raises(ModelError, match="no spread calibration"):
        background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=2, steps=2, calibrate=True)
    with pytest.raises(ModelError, match="unknown laws"):
        background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=2, steps=2, balance="geostrophic")
    with pytest.raises(ModelError, match="calibrate must be"):
        background.phyda.assimilate(obs, method="phyda", model=tiny_model, members=2, steps=2, calibrate="yes")


def test_balance_option_values(tiny_model):
    from xphyda.diffusion import _balance_laws, load

    lm = load(tiny_model, device="cpu")
    for auto in ("auto", True, None):
        assert _balance_laws(auto, lm, 2) == ()  # the tiny model has no statistics: auto is off
    assert _balance_laws(False, lm, 2) == () and _balance_laws((), lm, 2) == ()
    with pytest.raises(ModelError, match="unknown laws"):
        _balance_laws(3, lm, 2)
    with pytest.raises(ModelError, match="no balance statistics"):
        _balance_laws(["hydrostatic", "hydrostatic"], lm, 2)


def test_the_vre_sees_no_more_observed_points_than_it_was_trained_on():
    """A dense user grid observes every model point; the VRE gets at most its training fraction of them."""
    import scipy.sparse as sp

    from xphyda.diffusion import _gridded_obs, load

    lm = load(device="cpu")  # trained with observed fractions up to the card's obs_fraction[1]
    top = lm.card["training"]["config"]["obs_fraction"][1]
    nh = lm.lat.size * lm.lon.size
    n = lm.channels * nh
    H = sp.identity(n, format="csr")  # every model value observed
    y = H @ np.repeat(lm.mean, nh)
    values, mask = _gridded_obs(H, y, lm)
    per_channel = mask.reshape(lm.channels, nh).mean(1)
    assert np.all(per_channel <= top + 1e-9) and np.all(per_channel >= top - 1.0 / nh)
    sparse = sp.identity(n, format="csr")[:: 50]  # 2 % observed: all kept
    assert _gridded_obs(sparse, sparse @ np.repeat(lm.mean, nh), lm)[1].sum() == sparse.shape[0]


def test_the_vre_sees_only_observations_as_accurate_as_in_training():
    """Observations far noisier (in the channel's normalised units) than the training noise are for the guidance."""
    import scipy.sparse as sp

    from xphyda.diffusion import _vre_rows, load

    lm = load(device="cpu")
    noise = lm.card["training"]["config"]["obs_noise"]
    nh = lm.lat.size * lm.lon.size
    t500, w200 = lm.names.index("t500"), lm.names.index("w200")
    rows = [t500 * nh + 5, t500 * nh + 6, w200 * nh + 5]
    H = sp.csr_matrix((np.ones(3), (np.arange(3), rows)), shape=(3, lm.channels * nh))
    sigma = np.array([1.0, 10 * noise * lm.std[t500], 0.1])  # 1 K; 10x the training noise; omega 0.1 Pa s-1
    keep = _vre_rows(H, sigma, lm)
    assert keep.tolist() == [True, False, 0.1 / lm.std[w200] <= 3 * noise]
    assert not keep[2]  # omega's default error is more than twice w200's spread


def test_members_come_in_mirror_pairs_unless_asked_for_independent_ones(case, tiny_model):
    _, background, obs = case
    kw = dict(method="phyda", model=tiny_model, members=2, steps=2, seed=4)
    pairs = background.phyda.assimilate(obs, **kw)
    indep = background.phyda.assimilate(obs, antithetic=False, **kw)
    assert "in mirror pairs (antithetic)" in pairs.attrs["history"]
    assert "mirror" not in indep.attrs["history"]
    np.testing.assert_allclose(pairs["t"].isel(member=0), indep["t"].isel(member=0), rtol=0, atol=1e-4)
    assert float(abs(pairs["t"].isel(member=1) - indep["t"].isel(member=1)).max()) > 1e-3
    one = background.phyda.assimilate(obs, **{**kw, "members": 1})
    assert "mirror" not in one.attrs["history"]
    three = background.phyda.assimilate(obs, **{**kw, "members": 3})
    assert "in mirror pairs (antithetic), the last unpaired" in three.attrs["history"]
    with pytest.raises(ModelError, match="antithetic must be True or False"):
        background.phyda.assimilate(obs, antithetic="yes", **kw)


def test_observations_the_model_cannot_use_are_flagged_and_reported(case, tiny_model):
    """q is not a channel of the tiny model: its observations are flagged not_analysed (6) with a warning."""
    from xphyda.obs.qc import FLAGS

    truth, background, _ = case
    q = (truth["t"] - 200.0) * 1e-4
    q.attrs = {"units": "kg kg-1", "standard_name": "specific_humidity"}
    truth, background = truth.assign(q=q), background.assign(q=q + 1e-4)
    obs = xphyda.obs.simulate(truth, n_stations=40, seed=4)
    with pytest.warns(UserWarning, match=r"not analysed by model tiny \(q: \d+\).*'not_analysed' \(6\)"):
        out = background.phyda.assimilate(obs, model=tiny_model, members=1, steps=2, seed=1)
    given = out["q_flag"] != FLAGS["missing_value"]
    assert int(given.sum()) > 0
    assert bool((out["q_flag"].where(given) == FLAGS["not_analysed"]).sum() == given.sum())
    assert int((out["t_flag"] == FLAGS["used"]).sum()) > 0  # served variables still used
    xr.testing.assert_equal(out["q"], background["q"])  # kept, and said so
    with pytest.warns(UserWarning, match=r"not analysed by model tiny \(q: \d+\)"):
        background.phyda.encode(obs, model=tiny_model)  # the encoder leaves them out too, and says so
    assert "q" in out.attrs["history"].split("not analysed")[-1]


@pytest.fixture
def surface_case(era5):
    """ERA5 with a surface pressure and a mean sea-level pressure whose ratio varies (1 to 1.3, 'mountains')."""
    lat, lon = np.deg2rad(era5["latitude"]), np.deg2rad(era5["longitude"])
    sp_true = 1.0e5 + 1500.0 * np.sin(2 * lon) * np.cos(lat)
    ratio = 1.0 + 0.3 * np.maximum(0.0, np.sin(lon) * np.cos(lat)) ** 2
    pa = {"units": "Pa"}
    truth = era5.assign(sp=sp_true.assign_attrs(pa, standard_name="surface_air_pressure"),
                        msl=(sp_true * ratio).assign_attrs(pa, standard_name="air_pressure_at_mean_sea_level"))
    background = truth.copy(deep=True)
    background["sp"] = background["sp"] - 300.0
    background["msl"] = background["sp"] * ratio
    return truth, background, ratio.broadcast_like(truth["sp"]).transpose(*truth["sp"].dims)


def test_msl_observations_are_used_through_the_surface_pressure(surface_case, tiny_model):
    """The tiny model serves sp, not msl: msl observations are sp observations scaled by the background's
    msl/sp, so they give the same analysis as those sp observations, and msl moves with sp."""
    from xphyda.obs.qc import FLAGS

    truth, background, ratio = surface_case
    sp_obs = xphyda.obs.simulate(truth, fraction=0.05, variables=["sp"], noise=80.0, seed=2)
    msl_obs = xr.Dataset({"msl": sp_obs["sp"] * ratio, "msl_error": sp_obs["sp_error"] * ratio})
    msl_obs["msl"].attrs = {"units": "Pa", "standard_name": "air_pressure_at_mean_sea_level",
                            "ancillary_variables": "msl_error"}
    msl_obs["msl_error"].attrs = {"units": "Pa", "standard_name": "air_pressure_at_mean_sea_level standard_error"}
    before = background.copy(deep=True)
    kw = dict(model=tiny_model, members=2, steps=3, seed=1, qc=None)
    a = background.phyda.assimilate(sp_obs, **kw)
    b = background.phyda.assimilate(msl_obs, **kw)
    xr.testing.assert_identical(background, before)
    moved = float(abs(a["sp"] - background["sp"]).max())
    assert moved > 10.0  # Pa: the sp observations moved it
    # the same observations of sp, up to float32 rounding in the sampler (values near 1e5 Pa)
    assert float(abs(b["sp"] - a["sp"]).max()) < 1e-2 * moved
    inc_msl = b["msl"] - background["msl"]
    expected = (ratio * (b["sp"] - background["sp"])).transpose(*inc_msl.dims)
    np.testing.assert_allclose(inc_msl, expected, rtol=0, atol=0.05)  # Pa (float32 values near 1e5 Pa)
    np.testing.assert_array_equal(b["msl_flag"], a["sp_flag"])  # the same checks (duplicates at the poles)
    assert int((b["msl_flag"] == FLAGS["used"]).sum()) > 1000 and not (b["msl_flag"] == FLAGS["not_analysed"]).any()
    assert "msl analysed through sp" in b.attrs["history"]
    # O-A of msl is computed from the analysed msl (the ensemble mean), not from the background
    used = b["msl_flag"] == FLAGS["used"]
    o_minus_a = (msl_obs["msl"] - b["msl"].mean("member")).where(used)
    np.testing.assert_allclose(b["msl_residual"].where(used).transpose(*o_minus_a.dims), o_minus_a, atol=0.1)


def test_msl_without_surface_pressure_is_not_analysed(surface_case, tiny_model):
    truth, background, _ = surface_case
    obs = xphyda.obs.simulate(truth, n_stations=30, variables=["msl"], seed=2)
    with pytest.warns(UserWarning, match=r"msl: \d+"):
        out = background.drop_vars("sp").phyda.assimilate(obs, model=tiny_model, members=1, steps=2, qc=None)
    xr.testing.assert_equal(out["msl"], background["msl"])


def test_station_msl_observations_see_the_reduction_at_each_grid_point(surface_case, tiny_model):
    """Where msl/sp changes from cell to cell (mountains), a station's msl observes sp through h diag(k):
    its sp departure is (y - h msl_b) / (h k) exactly, not y / (h k) - h sp_b."""
    import scipy.sparse as sp
    from types import SimpleNamespace

    from xphyda.diffusion import _map_background, _obs_operator, load
    from xphyda.obs.problem import build_problem

    truth, background, _ = surface_case
    background = background.isel(latitude=slice(None, None, 4), longitude=slice(None, None, 4))
    rng = np.random.default_rng(0)
    k = xr.DataArray(np.where(rng.random(background["sp"].shape) < 0.5, 1.0, 1.25), dims=background["sp"].dims)
    background["sp"] = background["msl"] / k  # smooth msl over rugged terrain
    stations = xphyda.obs.simulate(background, n_stations=200, variables=["msl"], noise=0.0, seed=3)  # O - B = 0
    lm = load(tiny_model, device="cpu")
    mapping = _map_background(background, lm, {})
    assert mapping.reduced is not None
    problem = build_problem(background, stations)
    ratio = mapping.ratios[0]
    nh = mapping.grid.shape[0] * mapping.grid.shape[1]
    flat = SimpleNamespace(lat=np.zeros(mapping.grid.shape[0]), lon=np.zeros(mapping.grid.shape[1]),
                           channels=lm.channels)  # a "model" on the user's grid: H stays there
    H, y, sig, used = _obs_operator(problem, flat, mapping, sp.identity(nh, format="csr"), 0, ratio)
    c = mapping.reduced[1]
    sp_b = background["sp"].transpose(mapping.grid.lat, mapping.grid.lon).values.ravel()
    departure = y - H[:, c * nh:(c + 1) * nh] @ sp_b
    assert len(used["msl"]) > 150
    np.testing.assert_allclose(departure, 0.0, atol=1e-6 * 1e5)  # zero msl departure is zero sp departure
    target = problem.targets["msl"]
    np.testing.assert_allclose(sig, target.sigma_o[used["msl"]] / (target.H[used["msl"]] @ ratio))
    row_sums = np.asarray(H[:, c * nh:(c + 1) * nh].sum(1)).ravel()
    np.testing.assert_allclose(row_sums, 1.0)  # still an interpolation, for the VRE's gridded values


def test_msl_that_cannot_be_related_to_sp_is_left_with_a_reason(surface_case, tiny_model):
    """msl without units, or with a gap, does not stop the analysis: msl keeps the background and its
    observations are flagged not_analysed, with the reason in the warning."""
    from xphyda.errors import NotAnalysedWarning

    truth, background, _ = surface_case
    obs = xphyda.obs.simulate(truth, n_stations=30, variables=["msl", "t"], seed=2)
    gap = background.copy(deep=True)
    gap["msl"][0, 0] = np.nan
    with pytest.warns(NotAnalysedWarning, match=r"msl: \d+.*not finite and positive everywhere"):
        out = gap.phyda.assimilate(obs, model=tiny_model, members=1, steps=2, qc=None)
    xr.testing.assert_equal(out["msl"], gap["msl"])
    assert int((out["t_flag"] == 0).sum()) > 0
    plain = background.copy(deep=True)
    del plain["msl"].attrs["units"]  # not observed, so nothing needs its units
    out = plain.phyda.assimilate(obs[["t"]], model=tiny_model, members=1, steps=2, qc=None)
    xr.testing.assert_equal(out["msl"], plain["msl"])


def test_levels_and_variables_the_model_lacks_give_one_warning_over_all_times(ecmwf, tiny_model):
    """ECMWF t u v z r on 6 levels and 2 times; the tiny model has z t u v at 500 and 850 hPa only."""
    from xphyda.errors import NotAnalysedWarning
    from xphyda.obs.qc import FLAGS
    from xphyda.parallel import assimilate_times

    obs = xphyda.obs.simulate(ecmwf, n_stations=25, seed=1)
    with pytest.warns(NotAnalysedWarning) as record:
        out = assimilate_times(ecmwf, obs, model=tiny_model, members=1, steps=2, progress=False, qc=None)
    ours = [w for w in record if issubclass(w.category, NotAnalysedWarning)]
    assert len(ours) == 1 and "r: " in str(ours[0].message) and "t: " in str(ours[0].message)
    flag = out["t_flag"]  # (time, isobaricInhPa, station)
    assert int((flag == FLAGS["used"]).sum()) > 0 and int((flag == FLAGS["not_analysed"]).sum()) > 0
    served = flag["isobaricInhPa"].isin([500, 850])  # t observed on the model's levels is used, elsewhere not
    assert not bool((flag.where(~served) == FLAGS["used"]).any())
    assert bool((flag.where(served) == FLAGS["used"]).any())
    assert not bool((out["r_flag"] == FLAGS["used"]).any())


@pytest.fixture(scope="module")
def observing_models(tiny_parts, tmp_path_factory):
    """The tiny model with weights everywhere, its denoiser_obs widening, and that widening with weight on
    the new inputs, each saved as a model folder."""
    import torch

    from xphyda.model.phyda import with_observation_inputs

    tiny_net, save_tiny = tiny_parts
    base = tiny_net(centred=True)
    with torch.no_grad():  # an untrained U-Net's head is zero: the stem would not matter
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    wide, used = with_observation_inputs(base), with_observation_inputs(base)
    with torch.no_grad():
        used.denoiser.net.stem.weight[:, -2 * base.config["channels"]:].normal_(0.0, 0.2)
    root = tmp_path_factory.mktemp("observing")
    return {name: save_tiny(net, root / name) for name, net in (("base", base), ("wide", wide), ("used", used))}


def test_a_model_whose_denoiser_sees_the_observations_assimilates_and_encodes(case, observing_models):
    from xphyda.model.checkpoint import load_model

    _, background, obs = case
    net, card = load_model(observing_models["wide"], device="cpu")
    assert card["architecture"]["denoiser_obs"] is True and net.config["denoiser_obs"] is True
    run = {name: background.phyda.assimilate(obs, method="phyda", model=path, members=2, steps=2, seed=1)
           for name, path in observing_models.items()}
    # zero weights on [y, mask]: the same analysis as the model it was widened from
    xr.testing.assert_equal(run["wide"]["t"], run["base"]["t"])
    # weight on them: the sampler feeds the gridded observations to the denoiser
    assert float(abs(run["used"]["t"] - run["base"]["t"]).max()) > 1e-3
    assert np.isfinite(run["used"]["t"]).all() and np.isfinite(run["used"]["z"]).all()
    rec = background.phyda.encode(obs, model=observing_models["used"])
    assert np.isfinite(rec["t850"]).all()


def test_a_model_with_static_fields_and_attention_assimilates_and_encodes(case, observing_models, tiny_parts,
                                                                           tmp_path):
    """An adapted model (land-sea mask input, attention) gives the original's analysis until its new weights move."""
    import torch

    from xphyda.model.checkpoint import load_model
    from xphyda.model.phyda import adapt

    _, save_tiny = tiny_parts
    base, _ = load_model(observing_models["base"], device="cpu")
    lsm = (torch.rand(8, 16, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    grown = adapt(base, static={"lsm": lsm}, attention=True)
    used = adapt(base, static={"lsm": lsm}, attention=True)
    with torch.no_grad():
        used.denoiser.net.stem.weight[:, -1:].normal_(0.0, 0.2)
    _, background, obs = case
    run = {name: background.phyda.assimilate(obs, method="phyda", model=save_tiny(net, tmp_path / name),
                                             members=2, steps=2, seed=1)
           for name, net in (("grown", grown), ("used", used))}
    plain = background.phyda.assimilate(obs, method="phyda", model=observing_models["base"], members=2, steps=2, seed=1)
    xr.testing.assert_allclose(run["grown"]["t"], plain["t"], atol=1e-4)
    assert float(abs(run["used"]["t"] - plain["t"]).max()) > 1e-3  # the sampler feeds the static field
    rec = background.phyda.encode(obs, model=tmp_path / "used")
    assert np.isfinite(rec["t850"]).all()


# --------------------------------------------------------------------------- awkward inputs (exploratory review)
def test_a_background_with_nan_or_inf_is_refused_saying_where(case, tiny_model):
    """A NaN row spoilt every member of the analysis before; now it is a DataError naming the variable and place."""
    from xphyda.errors import DataError

    _, background, obs = case
    gap = background.copy(deep=True)
    gap["t"] = gap.t.where(gap.latitude != 0)  # one missing row, both levels
    with pytest.raises(DataError, match=r"'t' has 360 non-finite values \(360 NaN.*latitude 0,.*level 500.*Fix: fill"):
        gap.phyda.assimilate(obs, model=tiny_model, members=2, steps=2)
    spike = background.copy(deep=True).assign_coords(step=np.timedelta64(6, "h"))  # cfgrib's scalar step
    spike["z"][0, 1, 50, 60] = np.inf  # a channel of the model that is not observed
    with pytest.raises(DataError, match=r"'z' has 1 non-finite value \(0 NaN, 1 infinite\).*level 850, .*step 0 days 06:00:00"):
        spike.phyda.assimilate(obs[["t"]], model=tiny_model, members=2, steps=2)
    with pytest.raises(DataError, match="non-finite"):
        gap.phyda.encode(model=tiny_model)


def test_a_scalar_pressure_level_is_that_level(case, tiny_model):
    """``background.sel(level=500)`` keeps level as a scalar coordinate: observations at 500 hPa are used, those
    at 850 hPa are outside the grid (before, their pressure was ignored and they were compared with t500)."""
    _, background, obs = case
    b500 = background.sel(level=500)
    out = b500.phyda.assimilate(obs, model=tiny_model, members=1, steps=2, qc=None)
    flags = out.t_flag  # the observations' level is renamed obs_level beside the background's scalar level
    assert set(np.unique(flags.sel(obs_level=500).values)) == {0}
    assert set(np.unique(flags.sel(obs_level=850).values)) == {xphyda.obs.FLAGS["outside_grid"]}
    assert out.t.dims == b500.t.dims and float(out.level) == 500.0
    assert float(abs(out.t - b500.t).max()) > 0  # the t500 channel was analysed
    oi = b500.phyda.assimilate(obs, method="oi", qc=None)
    np.testing.assert_array_equal(oi.t_flag.values, out.t_flag.values)


def test_variable_names_by_keyword_and_unknown_options(case, tiny_model):
    """The fix that an ambiguous variable's error gives (``t='t'``) is accepted; a misspelt option is named."""
    from xphyda.errors import VariableError

    _, background, obs = case
    twin = background.assign(foo=background.t * 0 + 1)  # keeps t's attributes: two air_temperature variables
    with pytest.raises(VariableError, match="pass the one to use by keyword, e.g. t="):
        twin.phyda.assimilate(obs, model=tiny_model, members=1, steps=2)
    out = twin.phyda.assimilate(obs, model=tiny_model, members=1, steps=2, t="t")
    assert float(abs(out.t - twin.t).max()) > 0 and float(abs(out.foo - twin.foo).max()) == 0
    with pytest.raises(xphyda.PhydaError, match="did you mean 'membres' -> 'members'"):
        background.phyda.assimilate(obs, membres=2)
    with pytest.raises(xphyda.PhydaError, match="used by method 'phyda' only"):
        background.phyda.assimilate(obs, method="oi", t="t")


@pytest.mark.parametrize("bad", [dict(members="4"), dict(members=True), dict(members=2.0), dict(steps=0),
                                 dict(seed=-1), dict(seed=1.5)])
def test_members_steps_and_seed_must_be_whole_numbers(case, tiny_model, bad):
    _, background, obs = case
    (name, value), = bad.items()
    with pytest.raises(ModelError, match=rf"{name} must be a whole number of at least \d; got {value!r}\. Fix"):
        background.phyda.assimilate(obs, model=tiny_model, **{"members": 1, "steps": 2, **bad})


def test_encode_gives_one_reconstruction_per_time(case, tiny_model):
    _, background, _ = case
    later = background.assign_coords(time=background.time + np.timedelta64(6, "h"))
    later["t"] = later.t + 3.0
    both = xr.concat([background, later], "time")
    rec = both.phyda.encode(model=tiny_model)
    assert rec["t500"].dims == ("time", "latitude", "longitude") and rec.sizes["time"] == 2
    assert rec["features"].dims == ("feature", "time", "latitude", "longitude")
    for i in range(2):
        one = both.isel(time=[i]).phyda.encode(model=tiny_model)
        assert one["t500"].dims == ("latitude", "longitude") and one["time"].values == both.time.values[i]
        np.testing.assert_allclose(rec["t500"].isel(time=i), one["t500"], rtol=1e-6)
    assert not np.allclose(rec["t500"].isel(time=0), rec["t500"].isel(time=1))
    # with observations at both times: each time is encoded with its own
    _, _, obs = case
    both_obs = xr.concat([obs, obs.assign_coords(time=obs.time + np.timedelta64(6, "h")) + 1.0], "time")
    rec = both.phyda.encode(both_obs, model=tiny_model)
    for i in range(2):
        one = both.isel(time=[i]).phyda.encode(both_obs.isel(time=[i]), model=tiny_model)
        np.testing.assert_allclose(rec["t500"].isel(time=i), one["t500"], rtol=1e-6)
    # the untrained tiny VRE ignores observations: the bundled model shows they are used at each time
    rec, without = both.phyda.encode(both_obs), both.phyda.encode()
    for i in range(2):
        assert float(abs(rec["t500"] - without["t500"]).isel(time=i).max()) > 0.1


def test_a_poor_fit_to_the_observations_is_a_warning(case, tiny_model):
    """The untrained model's analysis fits the observations worse than the background: the user is told."""
    from types import SimpleNamespace

    from xphyda.diffusion import _warn_poor_fit
    from xphyda.errors import PoorFitWarning
    from xphyda.obs.problem import build_problem

    truth, background, obs = case
    with pytest.warns(PoorFitWarning, match=r"fits the observations worse than the background did.*'t': O - A"):
        background.phyda.assimilate(obs, model=tiny_model, members=1, steps=2, qc=None)
    # the rule itself: the truth fits better than the background (no warning), a state 5 K off fits worse
    problem = build_problem(background, obs[["t"]])
    model = SimpleNamespace(path=SimpleNamespace(name="m"), card={})
    good = {"t": build_problem(truth, obs[["t"]]).targets["t"].background}
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoorFitWarning)
        _warn_poor_fit(problem, good, model)
    with pytest.warns(PoorFitWarning, match=r"'t': O - A [5-7]\.\d+, O - B 1\.\d+ K \(120 observations\)"):
        _warn_poor_fit(problem, {"t": problem.targets["t"].background + 5.0}, model)
