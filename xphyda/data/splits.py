"""Train / validation / test splits by time, without leakage between them.

A split is a half-open time range ``[start, end)``.  A *sample* is a pair
(background at ``t - lead``, truth at ``t``) from one trajectory; it belongs to a
split only if ``start + gap <= t < end`` with ``gap >= lead``, so its background
lies inside the split too and no pair straddles two splits.  States are never
shared between splits; the gap also separates the last truth of one split from
the first background of the next.

Defaults
--------
* the jcm corpus (:meth:`TimeSplit.last_years`): the last year of the data is
  the test split, the year before it validation, everything earlier training;
  the trajectories share one calendar, so every trajectory is split the same
  way (the corpus of two trajectories of 1110 days: 2 x 1.04 training years,
  2 x 1 validation, 2 x 1 test);
* ERA5 (:meth:`TimeSplit.weatherbench2`): training 1979-2017, validation
  2018-2019, test 2020 (WeatherBench2's headline evaluation year);
* :func:`default_split` picks the WeatherBench2 years when the data cover them,
  the last-years rule otherwise.

Examples
--------
>>> s = TimeSplit.by_years(train=(2000, 2002), valid=2003, test=2004)
>>> s.train
(np.datetime64('2000-01-01T00:00:00'), np.datetime64('2003-01-01T00:00:00'))
>>> import numpy as np
>>> t = np.arange("2003-01-01", "2003-01-03", np.timedelta64(6, "h"), dtype="datetime64[h]")
>>> s.truth_mask(t, "valid").astype(int).tolist()
[0, 0, 0, 0, 1, 1, 1, 1]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["SPLITS", "TimeSplit", "as_timedelta", "default_split"]

SPLITS = ("train", "valid", "test")
_S = "datetime64[s]"


def as_timedelta(value) -> np.timedelta64:
    """``"24h"``, ``24`` (hours), ``numpy.timedelta64`` or ``datetime.timedelta`` as ``timedelta64[s]``.

    Examples
    --------
    >>> as_timedelta("1D"), as_timedelta(6)
    (np.timedelta64(86400,'s'), np.timedelta64(21600,'s'))
    """
    if isinstance(value, np.timedelta64):
        return value.astype("timedelta64[s]")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return np.timedelta64(round(float(value) * 3600), "s")
    try:
        return pd.Timedelta(value).to_timedelta64().astype("timedelta64[s]")
    except (ValueError, TypeError):
        raise DataError(
            f"cannot read {value!r} as a duration; expected e.g. '24h', '6h', 24 (hours)"
        ) from None


def _range(value, name: str):
    if value is None:
        return None
    try:
        start, end = value
        out = (
            np.datetime64(pd.Timestamp(start).to_datetime64(), "s"),
            np.datetime64(pd.Timestamp(end).to_datetime64(), "s"),
        )
    except (TypeError, ValueError):
        raise DataError(f"split {name!r} must be a (start, end) pair of dates, got {value!r}") from None
    if not out[0] < out[1]:
        raise DataError(f"split {name!r} has start {out[0]} not before end {out[1]}")
    return out


@dataclass(frozen=True)
class TimeSplit:
    """Half-open time ranges for the training, validation and test splits.

    Parameters
    ----------
    train, valid, test : (start, end) or None
        Dates (anything :class:`pandas.Timestamp` reads); ``end`` is excluded.
        A split may be ``None`` (absent).
    gap : duration
        Truth times of a split start ``gap`` after its start; must be at least the
        background lead time (default 24 h).

    Examples
    --------
    >>> TimeSplit(train=("2000-01-01", "2001-01-01"), test=("2001-01-01", "2002-01-01")).gap
    np.timedelta64(86400,'s')
    """

    train: tuple | None = None
    valid: tuple | None = None
    test: tuple | None = None
    gap: object = "24h"

    def __post_init__(self):
        set_ = object.__setattr__
        for name in SPLITS:
            set_(self, name, _range(getattr(self, name), name))
        set_(self, "gap", as_timedelta(self.gap))
        if self.gap < np.timedelta64(0, "s"):
            raise DataError(f"gap must be non-negative, got {self.gap}")
        present = [(n, getattr(self, n)) for n in SPLITS if getattr(self, n) is not None]
        if not present:
            raise DataError("a TimeSplit needs at least one of train, valid, test")
        for i, (a, ra) in enumerate(present):
            for b, rb in present[i + 1 :]:
                if ra[0] < rb[1] and rb[0] < ra[1]:
                    raise DataError(
                        f"splits {a!r} {ra} and {b!r} {rb} overlap; they must be disjoint time ranges"
                    )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def by_years(cls, *, train=None, valid=None, test=None, gap="24h") -> TimeSplit:
        """Splits from calendar years, each an int or an inclusive ``(first, last)`` pair."""

        def yrs(v):
            if v is None:
                return None
            first, last = (v, v) if isinstance(v, (int, np.integer)) else v
            return (f"{int(first):04d}-01-01", f"{int(last) + 1:04d}-01-01")

        return cls(train=yrs(train), valid=yrs(valid), test=yrs(test), gap=gap)

    @classmethod
    def weatherbench2(cls, *, gap="24h") -> TimeSplit:
        """ERA5 default: train 1979-2017, validation 2018-2019, test 2020 (WeatherBench2's evaluation year)."""
        return cls.by_years(train=(1979, 2017), valid=(2018, 2019), test=2020, gap=gap)

    @classmethod
    def last_years(cls, times, *, valid_years: float = 1, test_years: float = 1, gap="24h") -> TimeSplit:
        """jcm-corpus default: the last ``test_years`` of the data test, the ``valid_years`` before validation.

        Years are counted back from the end of the data (the last time plus one
        time step), whole years by the calendar and fractions as 365.25 days, so a
        corpus of 1110 days from 2000-01-01 06 UTC splits into about 1.04 training,
        1 validation and 1 test year in every trajectory.

        Parameters
        ----------
        times : array_like of datetime64, or an object with a ``time`` coordinate
            The times of the data.

        Examples
        --------
        >>> import numpy as np
        >>> t = np.arange("2000-01-01", "2005-01-01", np.timedelta64(6, "h"), dtype="datetime64[h]")
        >>> s = TimeSplit.last_years(t)
        >>> [str(x[0])[:10] for x in (s.train, s.valid, s.test)]
        ['2000-01-01', '2003-01-01', '2004-01-01']
        """
        times = _times_of(times)
        if times.size < 2:
            raise DataError(f"need at least two times to split, got {times.size}")
        t = np.sort(times)
        end = pd.Timestamp(t[-1] + np.median(np.diff(t)))

        def back(stamp, years):
            whole = int(np.floor(years))
            return stamp - pd.DateOffset(years=whole) - pd.Timedelta(days=365.25 * (years - whole))

        test_start = back(end, test_years)
        valid_start = back(test_start, valid_years)
        if valid_start <= pd.Timestamp(t[0]):
            span = (end - pd.Timestamp(t[0])) / pd.Timedelta(days=365.25)
            raise DataError(
                f"the data span {span:.2f} years ({t[0]} to {t[-1]}), too short for {test_years} test and "
                f"{valid_years} validation year(s) plus training. Fix: smaller valid_years / test_years, or give dates, "
                "e.g. TimeSplit(train=('2000-01-01', '2000-03-01'), valid=('2000-03-01', '2000-04-01'), test=(...))"
            )
        return cls(
            train=(t[0], valid_start),
            valid=(valid_start, test_start) if valid_years else None,
            test=(test_start, end),
            gap=gap,
        )

    # ------------------------------------------------------------------ queries
    def range(self, split: str) -> tuple[np.datetime64, np.datetime64]:
        """``(start, end)`` of ``split``; raises if the split is absent."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
        r = getattr(self, split)
        if r is None:
            raise DataError(f"this TimeSplit has no {split!r} split: {self}")
        return r

    def state_mask(self, times, split: str) -> np.ndarray:
        """Which ``times`` are states of ``split`` (inside its range)."""
        t = _times_of(times)
        start, end = self.range(split)
        return (t >= start) & (t < end)

    def truth_mask(self, times, split: str, *, lead=None) -> np.ndarray:
        """Which ``times`` may be *truth* times of ``split``: ``start + gap <= t < end``.

        Raises :class:`DataError` if ``lead`` (when given) exceeds the gap.
        """
        if lead is not None and as_timedelta(lead) > self.gap:
            raise DataError(
                f"a background lead of {as_timedelta(lead)} exceeds the split gap {self.gap}: "
                "backgrounds could come from the previous split. Fix: TimeSplit(..., gap=lead) or larger"
            )
        t = _times_of(times)
        start, end = self.range(split)
        return (t >= start + self.gap) & (t < end)

    def to_dict(self) -> dict:
        """JSON-serialisable form (ISO dates, gap in hours)."""
        out = {n: (None if getattr(self, n) is None else [str(x) for x in getattr(self, n)]) for n in SPLITS}
        out["gap_hours"] = float(self.gap / np.timedelta64(1, "h"))
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> TimeSplit:
        """Inverse of :meth:`to_dict`."""
        return cls(**{n: d.get(n) for n in SPLITS}, gap=as_timedelta(d.get("gap_hours", 24.0)))


def _times_of(obj) -> np.ndarray:
    if hasattr(obj, "coords") and "time" in obj.coords:
        obj = obj["time"].values
    t = np.asarray(obj)
    if not np.issubdtype(t.dtype, np.datetime64):
        raise DataError(f"expected datetime64 times, got dtype {t.dtype}")
    return t.astype(_S)


def default_split(ds, *, gap="24h") -> TimeSplit:
    """The documented default for ``ds``: WeatherBench2 years if the data cover 2017-2020, else :meth:`TimeSplit.last_years`.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange("2000-01-01", "2003-01-01", np.timedelta64(1, "D"), dtype="datetime64[D]")
    >>> default_split(t).test
    (np.datetime64('2002-01-01T00:00:00'), np.datetime64('2003-01-01T00:00:00'))
    """
    t = _times_of(ds)
    wb2 = TimeSplit.weatherbench2(gap=gap)
    if t.min() < wb2.train[1] and t.max() >= wb2.test[0]:
        return wb2
    return TimeSplit.last_years(t, gap=gap)
