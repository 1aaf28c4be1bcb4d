"""Quality control that loses nothing: every observation keeps a flag saying why it was (not) used.

Checks, in order (an observation gets the first flag that applies):

* 0 ``used``: assimilated;
* 1 ``missing_value``: the value is NaN (not observed);
* 2 ``outside_grid``: outside the grid or its levels, or with unusable coordinates;
* 3 ``outside_time_window``: no background time within the time window;
* 4 ``duplicate``: same variable, place, pressure and time as an earlier observation;
* 5 ``rejected_by_background_check``: ``|O - B| > k sqrt(sigma_o^2 + sigma_b^2)``;
* 6 ``not_analysed``: passed the checks, but the method cannot use it (PhyDA: a variable or level that is
  not a channel of the model);
* 7 ``background_missing``: the background is NaN or infinite at a grid point the observation is interpolated
  from (a land-masked field); it is checked right after ``outside_grid``, and numbered last so that the
  older values keep their meaning.

The flag variables follow CF (``flag_values`` and ``flag_meanings``).

Examples
--------
>>> import numpy as np
>>> background_check(np.array([0.5, 9.0]), np.array([1.0, 1.0]), 1.0, k=5.0).tolist()
[False, True]
"""

from __future__ import annotations

import numpy as np

__all__ = ["FLAGS", "background_check", "duplicates", "flag_attributes", "match_times"]

FLAGS: dict[str, int] = {
    "used": 0,
    "missing_value": 1,
    "outside_grid": 2,
    "outside_time_window": 3,
    "duplicate": 4,
    "rejected_by_background_check": 5,
    "not_analysed": 6,
    "background_missing": 7,
}
"""Flag meanings and values."""


def flag_attributes(name: str, standard_name: str | None = None) -> dict:
    """CF attributes of the flag variable of observation variable ``name``.

    Examples
    --------
    >>> flag_attributes("t", "air_temperature")["standard_name"]
    'air_temperature status_flag'
    """
    attrs = {
        "long_name": f"quality-control flag of the {name} observations",
        "flag_values": np.array(list(FLAGS.values()), dtype=np.int8),
        "flag_meanings": " ".join(FLAGS),
    }
    if standard_name:
        attrs = {"standard_name": f"{standard_name} status_flag", **attrs}
    return attrs


def duplicates(lat, lon, pressure, time_index, candidates) -> np.ndarray:
    """True for every candidate observation that repeats an earlier candidate's place, pressure and time.

    Longitudes are compared modulo 360 (and ignored at the poles); places equal
    to 1e-6 degree and pressures to 1e-3 Pa are the same.

    Examples
    --------
    >>> duplicates([10.0, 10.0, 10.0], [-1.0, 359.0, 0.0], None, None, [True, True, True]).tolist()
    [False, True, False]
    """
    lat = np.asarray(lat, dtype=np.float64)
    cand = np.asarray(candidates, dtype=bool)
    out = np.zeros(lat.size, dtype=bool)
    idx = np.flatnonzero(cand)
    if idx.size < 2:
        return out
    la = lat[idx]
    lo = np.mod(np.asarray(lon, dtype=np.float64)[idx], 360.0)
    lo = np.where(np.abs(np.abs(la) - 90.0) < 1e-9, 0.0, lo)
    keys = [np.round(la * 1e6), np.round(lo * 1e6) % 360_000_000]
    if pressure is not None:
        keys.append(np.round(np.asarray(pressure, dtype=np.float64)[idx] * 1e3))
    if time_index is not None:
        keys.append(np.asarray(time_index)[idx].astype(np.float64))
    table = np.stack(keys, axis=1)
    _, first = np.unique(table, axis=0, return_index=True)
    repeat = np.ones(idx.size, dtype=bool)
    repeat[first] = False
    out[idx] = repeat
    return out


def background_check(innovation, sigma_o, sigma_b, *, k: float) -> np.ndarray:
    """True where ``|O - B| > k * sqrt(sigma_o**2 + sigma_b**2)`` (the observation is rejected)."""
    d = np.asarray(innovation, dtype=np.float64)
    spread = np.sqrt(np.asarray(sigma_o, dtype=np.float64) ** 2 + np.asarray(sigma_b, dtype=np.float64) ** 2)
    return np.abs(d) > k * spread


def match_times(obs_times, background_times, *, window) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest background time for each observation time, and whether it is within ``window``.

    Parameters
    ----------
    obs_times : numpy.ndarray of datetime64
    background_times : numpy.ndarray of datetime64
    window : numpy.timedelta64 or None
        Largest distance to the nearest background time (``None``: any).

    Examples
    --------
    >>> bt = np.array(["2020-01-01T00", "2020-01-01T06"], dtype="datetime64[ns]")
    >>> ot = np.array(["2020-01-01T05", "2020-01-02T00"], dtype="datetime64[ns]")
    >>> index, ok = match_times(ot, bt, window=np.timedelta64(3, "h"))
    >>> index.tolist(), ok.tolist()
    ([1, 1], [True, False])
    """
    ot = np.asarray(obs_times).astype("datetime64[ns]")
    bt = np.asarray(background_times).astype("datetime64[ns]")
    valid = ~np.isnat(ot)
    diff = np.abs((ot[:, None] - bt[None, :]).astype("timedelta64[ns]").astype(np.float64))
    diff[~valid] = np.inf
    index = np.argmin(diff, axis=1)
    best = diff[np.arange(ot.size), index]
    ok = valid & (
        np.isfinite(best)
        if window is None
        else best <= np.float64(np.timedelta64(window, "ns").astype(np.int64))
    )
    return index, ok
