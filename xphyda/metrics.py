"""Skill scores for xarray: thin wrappers over the numpy kernels of :mod:`xphyda._metrics_kernels`.

Every score takes a forecast (any estimate of the state: an analysis, a
background, an ensemble) and the truth, as two DataArrays or two Datasets, and
returns the same type.  The wrappers only find coordinates, check that the
inputs share a grid and units, build the weights, and hand plain arrays to a
numpy kernel through :func:`xarray.apply_ufunc` (lazily for dask data).

Options shared by every score (keyword-only):

``dim``
    Dimensions to reduce; by default latitude and longitude only, so level,
    time and variable stay.
``weighting``
    ``"area"`` (default): finite-volume cell areas of
    :class:`xphyda.physics.operators.SphereGrid`, proportional to
    ``sin(lat_north) - sin(lat_south)`` of each cell (polar caps on global
    grids, as WeatherBench 2), times the cell's longitude width.  ``"cos"``:
    ``cos(latitude)``.  ``None``: equal weights.  Factors are applied only for
    latitude or longitude when they are reduced.
``weights``
    A DataArray that replaces the weights above (for example a land mask times
    cell area); it must be finite, non-negative and on the data's dims.
``skipna``
    ``False`` (default): a NaN makes the score NaN.  ``True``: points where any
    input is NaN are left out (jointly) and the weights renormalised.

The definitions are in ``docs/metrics.md``.

Examples
--------
>>> import numpy as np, xarray as xr
>>> coords = {"latitude": [0.0, 60.0], "longitude": [0.0, 180.0]}
>>> t = xr.DataArray(np.zeros((2, 2)), coords, ("latitude", "longitude"), name="t", attrs={"units": "K"})
>>> f = (t + xr.DataArray([1.0, 4.0], {"latitude": [0.0, 60.0]}, "latitude")).assign_attrs(units="K")
>>> b = bias(f, t, weighting="cos")  # (1 cos 0 + 4 cos 60) / (cos 0 + cos 60) = 2 K
>>> round(float(b), 12), b.attrs["units"]
(2.0, 'K')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import xarray as xr

from . import _metrics_kernels as kernels
from ._metrics_engine import COORD_TOLERANCE, Dims, Weighting, area_weights, member_dim_of
from ._metrics_engine import dispatch as _dispatch
from ._metrics_engine import history as _history
from ._metrics_engine import score_da as _score_da
from .errors import CoordinateError, DataError, GridError, VariableError
from .grid import find_coord

__all__ = [
    "rmse",
    "bias",
    "mae",
    "acc",
    "crps",
    "spread_skill_ratio",
    "rank_histogram",
    "residual_ratio",
    "score_table",
    "area_weights",
    "member_dim_of",
    "TABLE_METRICS",
    "COORD_TOLERANCE",
]

if TYPE_CHECKING:
    import pandas as pd

XT = TypeVar("XT", xr.DataArray, xr.Dataset)

# --------------------------------------------------------------------------- deterministic scores
_COMMON_DOC = """dim : str or sequence of str, optional
        Dimensions to reduce (default: latitude and longitude).
    weights : xarray.DataArray, optional
        Non-negative weights replacing ``weighting``.
    weighting : {"area", "cos", None}
        Latitude/area weighting (see the module docstring); ignored with ``weights``.
    skipna : bool
        Leave out points where any input is NaN (default: NaN propagates).
    lat, lon : str, optional
        Latitude and longitude names, when discovery needs help."""


def _deterministic(fname, kernel, long_name, units):
    def score(
        forecast: XT,
        truth: XT,
        *,
        dim: Dims = None,
        weights: xr.DataArray | None = None,
        weighting: Weighting = "area",
        skipna: bool = False,
        lat: str | None = None,
        lon: str | None = None,
    ) -> XT:
        def one(f, t):
            return _score_da(
                fname, kernel, [("forecast", f), ("truth", t)], dim=dim, weights=weights, weighting=weighting,
                skipna=skipna, lat=lat, lon=lon, long_name=long_name, units=units,
            )

        return _dispatch(fname, forecast, [("truth", truth)], one)

    score.__name__ = score.__qualname__ = fname
    return score


rmse = _deterministic("rmse", kernels.rmse, "root mean squared error", None)
rmse.__doc__ = f"""Latitude-weighted root mean squared error ``sqrt(sum w (f - t)^2 / sum w)``.

    Parameters
    ----------
    forecast, truth : xarray.DataArray or xarray.Dataset
        Same type; a Dataset is scored variable by variable (the truth must
        have every variable of the forecast).
    {_COMMON_DOC}

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The score over the remaining dims, in the variable's units.

    Examples
    --------
    >>> import xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> err = rmse(ds + 1.0, ds)
    >>> round(float(err["t"].isel(time=0, level=0)), 6), err["t"].attrs["units"]
    (1.0, 'K')
    """

bias = _deterministic("bias", kernels.bias, "mean error (bias)", None)
bias.__doc__ = f"""Latitude-weighted mean error ``sum w (f - t) / sum w`` (positive: forecast too high).

    Parameters
    ----------
    forecast, truth : xarray.DataArray or xarray.Dataset
    {_COMMON_DOC}

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        In the variable's units.

    Examples
    --------
    >>> import xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> round(float(bias(ds["t"] - 0.5, ds["t"]).isel(time=0, level=1)), 6)
    -0.5
    """

mae = _deterministic("mae", kernels.mae, "mean absolute error", None)
mae.__doc__ = f"""Latitude-weighted mean absolute error ``sum w |f - t| / sum w``.

    Parameters
    ----------
    forecast, truth : xarray.DataArray or xarray.Dataset
    {_COMMON_DOC}

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        In the variable's units.

    Examples
    --------
    >>> import xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> round(float(mae(ds["t"] - 0.5, ds["t"]).isel(time=0, level=1)), 6)
    0.5
    """


def acc(
    forecast: XT,
    truth: XT,
    climatology: XT,
    *,
    centered: bool = True,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    weighting: Weighting = "area",
    skipna: bool = False,
    lat: str | None = None,
    lon: str | None = None,
) -> XT:
    """Anomaly correlation coefficient of forecast and truth anomalies from a climatology.

    With ``f' = f - c`` and ``t' = t - c``, and weighted means over ``dim``,
    ``ACC = sum w f'' t'' / sqrt(sum w f''^2 sum w t''^2)``, where
    ``f'' = f' - mean(f')`` when ``centered`` (the default, the WMO
    definition) and ``f'' = f'`` otherwise (``centered=False`` is exactly
    WeatherBench 2's ``ACC``).

    Parameters
    ----------
    forecast, truth : xarray.DataArray or xarray.Dataset
    climatology : same type
        The climatological state for the same times (select the matching day
        of year and hour first); it may lack dims such as time, which it is
        broadcast over.
    centered : bool
        Remove the weighted mean of each anomaly before correlating.
    {common}

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Dimensionless (``units`` ``"1"``), NaN where an anomaly is constant.

    Examples
    --------
    >>> import xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> clim = ds.mean("longitude")  # a zonal-mean stand-in for a climatology
    >>> score = acc(ds + 0.0, ds, clim)
    >>> round(float(score["z"].isel(time=0, level=0)), 12), score["z"].attrs["units"]
    (1.0, '1')
    """

    def one(f, t, c):
        return _score_da(
            "acc", kernels.acc, [("forecast", f), ("truth", t), ("climatology", c)], dim=dim, weights=weights,
            weighting=weighting, skipna=skipna, lat=lat, lon=lon, long_name="anomaly correlation coefficient",
            units="1", kwargs={"centered": centered},
            attrs={"anomaly_correlation": "centred" if centered else "uncentred"},
        )

    return _dispatch("acc", forecast, [("truth", truth), ("climatology", climatology)], one)


acc.__doc__ = acc.__doc__.format(common=_COMMON_DOC)


# --------------------------------------------------------------------------- ensemble scores
def crps(
    forecast: XT,
    truth: XT,
    *,
    fair: bool = True,
    member_dim: str | None = None,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    weighting: Weighting = "area",
    skipna: bool = False,
    lat: str | None = None,
    lon: str | None = None,
) -> XT:
    """Continuous ranked probability score of an ensemble, averaged over ``dim``.

    At each point, with members ``x_1..x_M`` and truth ``y``,
    ``CRPS = (1/M) sum_i |x_i - y| - sum_ij |x_i - x_j| / (2 M^2)`` (standard:
    the CRPS of the empirical distribution of the members) or, with ``fair``
    (the default, as WeatherBench 2), ``... / (2 M (M - 1))``, which is an
    unbiased estimate of the CRPS of the distribution the members are drawn
    from.  The pointwise values are then averaged with the weights.

    Parameters
    ----------
    forecast : xarray.DataArray or xarray.Dataset
        The ensemble, with a member dimension.
    truth : same type
        Without the member dimension.
    fair : bool
        The fair (unbiased) estimator; ``False`` for the standard one.
    member_dim : str, optional
        The member dimension, when discovery needs help.
    {common}

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        In the variable's units.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ens = xr.DataArray([1.0, 2.0, 4.0], dims="member")
    >>> float(crps(ens, xr.DataArray(3.0), dim=[], fair=False))  # hand value 4/3 - 12/18
    0.6666666666666666
    """

    def one(f, t):
        return _score_da(
            "crps", kernels.crps, [("forecast", f), ("truth", t)], dim=dim, weights=weights, weighting=weighting,
            skipna=skipna, lat=lat, lon=lon, long_name="continuous ranked probability score", units=None,
            member_dim=member_dim, ensemble=True, kwargs={"fair": fair},
            attrs={"crps_estimator": "fair" if fair else "standard"},
        )

    return _dispatch("crps", forecast, [("truth", truth)], one)


crps.__doc__ = crps.__doc__.format(common=_COMMON_DOC)


def spread_skill_ratio(
    forecast: XT,
    truth: XT,
    *,
    corrected: bool = True,
    member_dim: str | None = None,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    weighting: Weighting = "area",
    skipna: bool = False,
    lat: str | None = None,
    lon: str | None = None,
) -> XT:
    """Ensemble spread over the RMSE of the ensemble mean.

    ``SSR = sqrt((M + 1) / M) * sqrt(mean(s^2)) / sqrt(mean((xbar - y)^2))``,
    with ``s^2`` the member variance (``ddof=1``), ``xbar`` the ensemble mean
    and weighted means over ``dim``.  The factor ``sqrt((M + 1) / M)``
    (``corrected=True``, Fortin et al. 2014) accounts for the finite ensemble:
    for a reliable ensemble the expected squared error of the mean is
    ``(M + 1) / M`` times the expected variance, so the corrected ratio is 1
    for any ``M``; ``corrected=False`` gives the plain ratio.

    Parameters
    ----------
    forecast : xarray.DataArray or xarray.Dataset
        The ensemble (at least 2 members).
    truth : same type
    corrected : bool
        Apply the ``sqrt((M + 1) / M)`` factor.
    member_dim : str, optional
    {common}

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Dimensionless (``units`` ``"1"``).

    Examples
    --------
    >>> import xarray as xr
    >>> ens = xr.DataArray([[0.0, 2.0], [1.0, 3.0]], dims=("x", "member"))
    >>> float(spread_skill_ratio(ens, xr.DataArray([0.0, 3.0], dims="x"), dim="x", corrected=False))
    1.4142135623730951
    """

    def one(f, t):
        return _score_da(
            "spread_skill_ratio", kernels.spread_skill_ratio, [("forecast", f), ("truth", t)], dim=dim,
            weights=weights, weighting=weighting, skipna=skipna, lat=lat, lon=lon,
            long_name="spread-skill ratio", units="1", member_dim=member_dim, ensemble=True,
            kwargs={"corrected": corrected},
            attrs={"finite_ensemble_correction": "sqrt((M+1)/M)" if corrected else "none"},
        )

    return _dispatch("spread_skill_ratio", forecast, [("truth", truth)], one)


spread_skill_ratio.__doc__ = spread_skill_ratio.__doc__.format(common=_COMMON_DOC)


def rank_histogram(
    forecast: XT,
    truth: XT,
    *,
    seed: int | np.random.Generator | None = 0,
    normalize: bool = True,
    member_dim: str | None = None,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    weighting: Weighting = "area",
    skipna: bool = False,
    lat: str | None = None,
    lon: str | None = None,
) -> XT:
    """Rank histogram (Talagrand diagram) of the truth among the ensemble members.

    The rank of the truth at a point is the number of members below it, plus,
    when members equal it, a uniformly random share of the ties
    (``floor(u (n_ties + 1))``, ``u`` drawn with ``numpy.random.default_rng(seed)``
    over the truth's points in the order of its dims, then dims only the
    ensemble has, before any chunking; so the same seed gives the same
    histogram for numpy and dask inputs).  Ranks run from 0 to M, on a new
    ``rank`` dimension.

    Parameters
    ----------
    forecast : xarray.DataArray or xarray.Dataset
        The ensemble.
    truth : same type
    seed : int or numpy.random.Generator, optional
        Seed of the tie-breaking draws.
    normalize : bool
        Relative (weighted) frequencies summing to 1; ``False`` gives the sum
        of the weights in each rank, i.e. counts with ``weighting=None``.
    member_dim : str, optional
    {common}

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        On a ``rank`` dimension of size M + 1.

    Examples
    --------
    >>> import xarray as xr
    >>> ens = xr.DataArray([[1.0, 2.0]] * 4, dims=("x", "member"))
    >>> truth = xr.DataArray([0.0, 1.5, 1.7, 3.0], dims="x")
    >>> rank_histogram(ens, truth, dim="x", normalize=False).values
    array([1., 2., 1.])
    """
    state = {"seed": seed}

    def one(f, t):
        out = _score_da(
            "rank_histogram", kernels.rank_histogram, [("forecast", f), ("truth", t)], dim=dim, weights=weights,
            weighting=weighting, skipna=skipna, lat=lat, lon=lon,
            long_name=f"{'relative frequency' if normalize else 'weight'} of the rank of the truth",
            units="1" if normalize else ("count" if weighting is None and weights is None else "1"),
            member_dim=member_dim, ensemble=True, tiebreak_seed=state["seed"], use_tiebreak=True,
            out_dim="rank", kwargs={"normalize": normalize},
        )
        return out.assign_coords(rank=np.arange(out.sizes["rank"]))

    return _dispatch("rank_histogram", forecast, [("truth", truth)], one)


rank_histogram.__doc__ = rank_histogram.__doc__.format(common=_COMMON_DOC)


# --------------------------------------------------------------------------- physics
def residual_ratio(
    analysis: xr.Dataset,
    truth: xr.Dataset,
    name: str,
    *,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
    weighting: Weighting = "area",
    skipna: bool = True,
    **kwargs,
) -> xr.DataArray:
    """Physics residual ratio: RMS residual of the analysis over the RMS residual of the truth.

    ``sqrt(sum w r_a^2 / sum w r_t^2)`` with ``r = physics_residual(state, name)``
    (:func:`xphyda.physics.physics_residual`), per layer (continuity,
    hydrostatic) or level (geostrophic) and any other dims not in ``dim``.
    Above 1: the analysis breaks the law more than the truth does.  With
    ``skipna`` (the default, because the geostrophic residual is NaN near the
    equator) the same points are used in both.

    Parameters
    ----------
    analysis, truth : xarray.Dataset
        States with the variables the residual needs; the analysis may be an
        ensemble (the ratio is then per member unless ``dim`` includes it).
    name : {"continuity", "hydrostatic", "geostrophic"}
    dim, weights, weighting, skipna
        As for :func:`rmse`.
    **kwargs
        Passed to :func:`~xphyda.physics.physics_residual` (``lat``, ``lon``,
        ``level``, ``radius``, ``band``, variable overrides such as ``u="uwnd"``).

    Returns
    -------
    xarray.DataArray
        Named ``{name}_residual_ratio``, ``units`` ``"1"``.

    Examples
    --------
    >>> import numpy as np, xphyda
    >>> ds = xphyda.tutorial.open_dataset("era5-z-t")
    >>> noise = np.random.default_rng(0).normal(0.0, 500.0, ds["z"].shape)  # about 50 m of height
    >>> ratio = residual_ratio(ds.assign(z=ds["z"] + noise), ds, "hydrostatic")
    >>> ratio.dims, bool(ratio.isel(time=0, layer=0) > 1)
    (('time', 'layer'), True)
    """
    from .physics import physics_residual

    ra = physics_residual(analysis, name, **kwargs)
    rt = physics_residual(truth, name, **kwargs)
    return _residual_ratio(ra, rt, name, dim=dim, weights=weights, weighting=weighting, skipna=skipna,
                           lat=kwargs.get("lat"), lon=kwargs.get("lon"))


def _residual_ratio(ra, rt, name, *, dim, weights, weighting, skipna, lat, lon) -> xr.DataArray:
    long_name = f"RMS {name} residual of the analysis over that of the truth"
    out = _score_da(
        "residual_ratio", kernels.rms_ratio, [("analysis residual", ra), ("truth residual", rt)], dim=dim,
        weights=weights, weighting=weighting, skipna=skipna, lat=lat, lon=lon, long_name=long_name, units="1",
    )
    out.name = f"{name}_residual_ratio"
    out.attrs["long_name"] = long_name
    out.attrs["residual_units"] = ra.attrs.get("units", "")
    return out


# --------------------------------------------------------------------------- tables
TABLE_METRICS = ("rmse", "bias", "mae", "acc", "crps", "spread_skill_ratio")
"""Scores :func:`score_table` knows; ``crps`` and ``spread_skill_ratio`` need an ensemble."""

_ENSEMBLE_METRICS = ("crps", "spread_skill_ratio")


def _try_member(ds, member_dim):
    try:
        return member_dim_of(ds, member_dim, role="analysis")
    except CoordinateError:
        if member_dim is not None:
            raise
        return None


def score_table(
    analyses: Mapping[str, xr.Dataset],
    truth: xr.Dataset,
    *,
    metrics: Sequence[str] | None = None,
    climatology: xr.Dataset | None = None,
    residuals: Sequence[str] = (),
    member_dim: str | None = None,
    weighting: Weighting = "area",
    skipna: bool = False,
    lat: str | None = None,
    lon: str | None = None,
    output: Literal["dataframe", "dataset"] = "dataframe",
) -> pd.DataFrame | xr.Dataset:
    """Score several methods against one truth, as a tidy table.

    Every score is reduced over all dims except the level (so over latitude,
    longitude, time and any case dimension, with the area weights): RMSE is
    the root of the mean squared error over space and time, bias and MAE are
    means, CRPS and the spread-skill ratio pool all points.  ACC is computed
    per map (latitude and longitude) and then averaged over the other dims.
    Deterministic scores of an ensemble analysis use its ensemble mean;
    ensemble scores of a deterministic analysis are left out (no rows).

    Parameters
    ----------
    analyses : mapping of str to xarray.Dataset
        Method name to its analysis (deterministic or an ensemble).
    truth : xarray.Dataset
        Must hold every variable of the analyses.
    metrics : sequence of str, optional
        Among :data:`TABLE_METRICS`.  Default: every one that applies (``acc``
        only with a ``climatology``, ensemble scores only for ensembles).
    climatology : xarray.Dataset, optional
        For ``acc``.
    residuals : sequence of str
        Physics residuals (see :func:`xphyda.physics.available`) whose
        :func:`residual_ratio` is added, per layer, with metric
        ``"residual_ratio"`` and variable ``"{name}_residual"``.  For an
        ensemble that ratio pools the members (is each member balanced?), and
        metric ``"residual_ratio_mean"`` adds the ratio of the ensemble mean.
    member_dim, weighting, skipna, lat, lon
        As for the scores.
    output : {"dataframe", "dataset"}
        A pandas DataFrame, or an xarray Dataset on a ``row`` dimension
        (``to_netcdf`` ready).

    Returns
    -------
    pandas.DataFrame or xarray.Dataset
        Columns ``method, variable, level, layer, metric, value, units``:
        ``level`` is the level value (NaN for single-level variables), ``layer``
        the layer label of residual ratios ("" otherwise).

    Examples
    --------
    >>> import xphyda
    >>> truth = xphyda.tutorial.open_dataset("era5-z-t")
    >>> table = score_table({"plus_one": truth + 1.0, "truth": truth}, truth, metrics=["rmse", "bias"])
    >>> len(table), list(table.columns)
    (16, ['method', 'variable', 'level', 'layer', 'metric', 'value', 'units'])
    >>> rows = table.query("method == 'plus_one' and variable == 't' and metric == 'rmse'")
    >>> rows[["level", "value"]].values.round(6).tolist()
    [[500.0, 1.0], [850.0, 1.0]]
    """
    import pandas as pd

    if output not in ("dataframe", "dataset"):
        raise DataError(f"output must be 'dataframe' or 'dataset'; got {output!r}")
    if not isinstance(analyses, Mapping) or not analyses:
        raise DataError("analyses must be a non-empty mapping of method name to Dataset, e.g. {'oi': ds_oi}")
    explicit = metrics is not None
    chosen = list(TABLE_METRICS if metrics is None else metrics)
    unknown = [m for m in chosen if m not in TABLE_METRICS]
    if unknown:
        raise DataError(f"unknown metrics {unknown}; score_table knows {list(TABLE_METRICS)}")
    if "acc" in chosen and climatology is None:
        if explicit:
            raise DataError("metric 'acc' needs a climatology: pass climatology=...")
        chosen.remove("acc")
    try:
        level = find_coord(truth, "level", required=False)
    except GridError:  # a height or model-level coordinate: no pressure levels to split rows by
        level = None
    opts = dict(weighting=weighting, skipna=skipna, lat=lat, lon=lon)
    rows = []

    def add(method, variable, da: xr.DataArray, metric, units, layer_dim=None):
        da = da.compute()
        keep = layer_dim or (level if level is not None and level in da.dims else None)
        if keep is None:
            rows.append((method, variable, np.nan, "", metric, float(da), units))
            return
        for i in range(da.sizes[keep]):
            v = float(da.isel({keep: i}))
            if keep == "layer":
                rows.append((method, variable, np.nan, str(da["layer"].values[i]), metric, v, units))
            else:
                rows.append((method, variable, float(da[keep].values[i]), "", metric, v, units))

    kw = {k: v for k, v in (("lat", lat), ("lon", lon)) if v is not None}
    if residuals:
        from .physics import physics_residual

        truth_residual = {rname: physics_residual(truth, rname, **kw) for rname in residuals}
    for method, ds in analyses.items():
        if not isinstance(ds, xr.Dataset):
            raise DataError(f"analysis {method!r} is a {type(ds).__name__}; expected an xarray Dataset")
        member = _try_member(ds, member_dim)
        det = ds.mean(member, keep_attrs=True) if member is not None else ds
        for var in ds.data_vars:
            if var not in truth.data_vars:
                raise VariableError(
                    f"analysis {method!r} has variable {var!r}, which the truth lacks; the truth has "
                    f"{sorted(map(str, truth.data_vars))}. Fix: drop it, analyses[{method!r}][[...]]"
                )
            pooled = [d for d in dict.fromkeys((*det[var].dims, *truth[var].dims)) if d != level]
            units = ds[var].attrs.get("units", "")
            for metric in chosen:
                if metric in ("rmse", "bias", "mae"):
                    fn = {"rmse": rmse, "bias": bias, "mae": mae}[metric]
                    add(method, var, fn(det[var], truth[var], dim=pooled, **opts), metric, units)
                elif metric == "acc":
                    if var not in climatology.data_vars:
                        raise VariableError(
                            f"the climatology lacks {var!r}; it has {sorted(map(str, climatology.data_vars))}"
                        )
                    score = acc(det[var], truth[var], climatology[var], **opts)
                    rest = [d for d in score.dims if d != level]
                    add(method, var, score.mean(rest, skipna=skipna), metric, "1")
                elif member is not None:
                    fn = {"crps": crps, "spread_skill_ratio": spread_skill_ratio}[metric]
                    add(method, var, fn(ds[var], truth[var], dim=pooled, member_dim=member, **opts), metric,
                        units if metric == "crps" else "1")
        states = [(ds, "residual_ratio")] + ([(det, "residual_ratio_mean")] if member is not None else [])
        for rname in residuals:
            rt = truth_residual[rname]
            for state, metric in states:
                ra = physics_residual(state, rname, **kw)
                core = [d for d in ra.dims if d not in ("layer", level)]
                ratio = _residual_ratio(ra, rt, rname, dim=core, weights=None, weighting=weighting, skipna=True,
                                        lat=lat, lon=lon)
                add(method, f"{rname}_residual", ratio, metric, "1", "layer" if "layer" in ratio.dims else None)

    df = pd.DataFrame(rows, columns=["method", "variable", "level", "layer", "metric", "value", "units"])
    if output == "dataframe":
        return df
    out = xr.Dataset.from_dataframe(df).rename({"index": "row"})
    out.attrs = {"title": "xphyda score table", "history": _history("score_table", f"metrics={chosen}")}
    return out
