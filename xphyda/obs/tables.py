"""Station observations from CSV tables: one reader for ``phyda assimilate``, ``phyda evaluate`` and Python.

The header names one field per column, with its units in square brackets::

    lat,lon,pressure [hPa],time,t [K],z [m2 s-2]
    48.2,16.4,500,2007-01-01T12:00,252.1,
    -33.9,151.2,850,2007-01-01T12:00,271.4,14000

Each row is one observation place (a station, or a station at one level or time);
an empty cell is a value that was not observed (NaN).  The result is a *points*
observation Dataset (see :func:`xphyda.obs.observation_kind`), ready for
:func:`xphyda.assimilate.assimilate`.

Examples
--------
>>> import io
>>> obs = read_csv(io.StringIO("lat,lon,t [degC]\\n48.2,16.4,-21.0\\n"))
>>> obs.t.attrs["units"], obs.t.dims, float(obs.lat[0])
('degC', ('station',), 48.2)
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import CoordinateError, DataError, ObservationError, UnitsError, VariableError
from ..units import parse_units, registry

__all__ = ["read_csv", "read_positions"]

# Lower-cased header names of the coordinate columns, by the name they get in the Dataset.
_ROLES = {
    "lat": ("lat", "latitude"),
    "lon": ("lon", "longitude"),
    "pressure": ("pressure", "level", "p", "plev"),
    "time": ("time",),
}
_IDS = ("id", "name", "station", "station_id", "wmo", "wmo_id", "site")
_ATTRS = {
    "lat": {"standard_name": "latitude", "units": "degrees_north"},
    "lon": {"standard_name": "longitude", "units": "degrees_east"},
    "pressure": {"standard_name": "air_pressure"},
    "time": {"standard_name": "time"},
}
_HEADER = re.compile(r"^(?P<name>[^\[\]]*?)\s*(?:\[(?P<units>[^\[\]]*)\])?$")
_EXAMPLE = "lat,lon,pressure [hPa],time,t [K],z [m2 s-2]"


def _label(source) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    return str(getattr(source, "name", "<CSV text>"))


def _read_cells(source, label: str) -> pd.DataFrame:
    """Every cell as text (NaN where empty), the header as the first row; the index is the line number."""
    if isinstance(source, str | os.PathLike) and not Path(source).exists():
        raise DataError(f"CSV file {label!r} does not exist")
    try:
        table = pd.read_csv(
            source, header=None, dtype=str, index_col=False, skipinitialspace=True, skip_blank_lines=False
        )
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"could not read {label!r} as CSV text: {exc}") from None
    table.index = table.index + 1  # line numbers, for messages
    first = str(table.iloc[0, 0]) if table.shape[0] and table.shape[1] == 1 else ""
    if ";" in first or "\t" in first:
        raise ObservationError(
            f"CSV file {label!r} has one column whose header {first!r} holds ';' or tabs: it is separated by "
            "semicolons or tabs, not commas. Fix: write it with commas (pandas: pd.read_csv(path, sep=';')"
            ".to_csv(new_path, index=False))"
        )
    _short_rows(source, label, table.shape[1])
    table = table.dropna(how="all")
    if table.shape[0] == 0:
        raise ObservationError(
            f"CSV file {label!r} is empty; expected a header such as {_EXAMPLE!r} and one row per observation"
        )
    if table.shape[0] == 1:
        raise ObservationError(
            f"CSV file {label!r} has a header but no rows of observations; add one row per station "
            f"under the header {','.join(map(str, table.iloc[0].fillna('')))!r}"
        )
    return table


def _short_rows(source, label: str, width: int) -> None:
    """Warn about rows with fewer fields than the header: pandas reads their last columns as empty (not observed).

    Only for a file path (a stream cannot be read twice).  Not an error: a row that leaves out its trailing empty
    fields is common in hand-written files, but a comma missing in the middle would shift the values, so say so.
    """
    import csv
    import warnings

    if not isinstance(source, str | os.PathLike):
        return
    with open(source, newline="", encoding="utf-8-sig", errors="replace") as fh:
        short = [(n, len(row)) for n, row in enumerate(csv.reader(fh), start=1) if row and len(row) < width]
    if short:
        where = ", ".join(f"line {n} ({k} fields)" for n, k in short[:5]) + (" ..." if len(short) > 5 else "")
        warnings.warn(
            f"CSV file {label!r} has rows with fewer fields than its {width} columns: {where}; their last columns "
            "are read as missing values. Check those rows: a comma missing in the middle shifts the values into "
            "the wrong columns",
            UserWarning, stacklevel=4,
        )


def _split_header(cell, index: int, label: str) -> tuple[str, str | None]:
    text = "" if pd.isna(cell) else str(cell).strip()
    match = _HEADER.match(text)
    if match is None:
        raise ObservationError(
            f"column {index + 1} of {label!r} has the header {text!r}, which is not 'name [units]' "
            f"(one pair of square brackets around the units); for example {_EXAMPLE!r}"
        )
    units = match["units"].strip() if match["units"] is not None else None
    return match["name"], units or None


def _role(name: str, obs_dim: str) -> str | None:
    low = name.lower()
    for role, names in _ROLES.items():
        if low in names:
            return role
    if low in _IDS or name == obs_dim:
        return "id"
    return None


def _parse(units: str, header: str, label: str):
    """The units layer's reading of ``units``, or a UnitsError about the column."""
    try:
        return parse_units(units, name=header)
    except UnitsError:
        raise UnitsError(
            f"column {header!r} of {label!r} has units {units!r}, which xphyda's units layer cannot read; "
            "expected a UDUNITS string such as 'K', 'degC', 'hPa', 'm s-1' or 'm2 s-2'. Fix the header"
        ) from None


def _numbers(cells: pd.Series, header: str, label: str) -> np.ndarray:
    values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(cells.notna().to_numpy() & np.isnan(values))
    if bad.size:
        raise ObservationError(
            f"column {header!r} of {label!r} has values that are not numbers, on {_lines(cells, bad)}; "
            "expected numbers, with an empty cell where nothing was observed. Fix those cells"
        )
    return values


def _lines(cells: pd.Series, positions) -> str:
    """``line 3 ('abc'), line 7 ('x')``: where the bad cells are in the file (the first five)."""
    positions = np.asarray(positions, dtype=int)
    shown = [
        f"line {cells.index[i]}" + ("" if pd.isna(cells.iloc[i]) else f" ({cells.iloc[i]!r})")
        for i in positions[:5]
    ]
    return ", ".join(shown) + (f" and {positions.size - 5} more" if positions.size > 5 else "")


def _position(cells: pd.Series, role: str, header: str, units: str | None, label: str) -> np.ndarray:
    values = _numbers(cells, header, label)
    if units is not None:
        unit = _parse(units, header, label)
        try:
            values = registry().Quantity(values, unit).m_as("degree")
        except Exception:  # noqa: BLE001 - pint's DimensionalityError: not an angle
            raise UnitsError(
                f"column {header!r} of {label!r} has units {units!r}, which are not an angle; expected "
                f"degrees: write the header as {role!r} or '{role} [{_ATTRS[role]['units']}]'"
            ) from None
    missing = np.isnan(values)
    if missing.any():
        raise CoordinateError(
            f"column {header!r} of {label!r} is empty on {_lines(cells, np.flatnonzero(missing))}; every row "
            "needs a latitude and a longitude. Fill them in or delete those rows"
        )
    if role == "lat" and (np.abs(values) > 90.0).any():
        raise CoordinateError(
            f"column {header!r} of {label!r} has latitudes outside [-90, 90] on "
            f"{_lines(cells, np.flatnonzero(np.abs(values) > 90.0))}; expected degrees north in [-90, 90]: "
            "are latitude and longitude swapped, or the units not degrees?"
        )
    if role == "lon" and not np.isfinite(values).all():
        raise CoordinateError(
            f"column {header!r} of {label!r} has infinite longitudes on "
            f"{_lines(cells, np.flatnonzero(~np.isfinite(values)))}; expected degrees east"
        )
    return values


def _is_pressure(unit) -> bool:
    ureg = registry()
    return ureg.Quantity(1, unit).dimensionality == ureg.Quantity(1, "Pa").dimensionality


def _times(cells: pd.Series, header: str, label: str) -> np.ndarray:
    missing = cells.isna().to_numpy()
    if missing.any():
        raise ObservationError(
            f"column {header!r} of {label!r} is empty on {_lines(cells, np.flatnonzero(missing))}; give "
            "every row a time, or drop the time column when all observations are valid at the "
            "background's time"
        )
    try:
        times = pd.to_datetime(cells, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        bad = [
            i for i, c in enumerate(cells) if pd.isna(pd.to_datetime(c, format="ISO8601", errors="coerce"))
        ]
        raise ObservationError(
            f"column {header!r} of {label!r} has values that are not ISO 8601 times, on "
            f"{_lines(cells, bad)}; expected for example 2007-01-01T12:00 or 2007-01-01 12:00:00 "
            "(UTC unless an offset is given)"
        ) from None
    return times.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def read_csv(path, *, obs_dim: str = "station", variables=None) -> xr.Dataset:
    """Read station observations from a CSV table into a points observation Dataset.

    The header names one field per column with its units in square brackets, e.g.
    ``lat,lon,pressure [hPa],time,t [K],z [m2 s-2]``:

    * ``lat``/``latitude`` and ``lon``/``longitude`` (required): degrees, when no units are
      given; any other angle is converted to degrees.  Every row needs both.
    * ``pressure``/``level``/``p``/``plev`` (optional): the pressure of each observation, with
      units (``pressure [hPa]``).
    * ``time`` (optional): ISO 8601 times, UTC unless an offset is given.
    * ``id``, ``name``, ``wmo``, ``station`` (or the name of ``obs_dim``), optional: station
      identifiers, kept as text in a coordinate.
    * every other column is an observed variable named like the background's (``t``, ``z``,
      ``u``...), with units that xphyda's units layer reads (``t [degC]``, ``z [m2 s-2]``,
      ``z [m]`` for geopotential height); values stay in those units, and
      :func:`~xphyda.assimilate.assimilate` converts them to the background's.  An empty cell
      is a value that was not observed (NaN).

    Parameters
    ----------
    path : str, path or file-like
        The CSV file (or an open text buffer such as :class:`io.StringIO`).
    obs_dim : str
        Name of the observation dimension.
    variables : sequence of str, optional
        Data columns to read, by name without units; the others are ignored (and need no
        units).  ``None`` reads all; an empty sequence reads only the coordinates.

    Returns
    -------
    xarray.Dataset
        Data variables along ``obs_dim`` with a ``units`` attribute; coordinates ``lat`` and
        ``lon`` (``degrees_north``, ``degrees_east``) and, when given, ``pressure`` (in the
        column's units) and ``time``, whatever their spelling in the header.

    Raises
    ------
    xphyda.errors.UnitsError
        A variable or pressure column without units, units that cannot be parsed, or
        latitude/longitude units that are not an angle.
    xphyda.errors.CoordinateError
        No latitude or longitude column, an empty cell in one, or a latitude outside [-90, 90].
    xphyda.errors.ObservationError
        An empty file, a header without rows, a malformed header, a repeated column, a value
        that is not a number, or a time that is not ISO 8601.
    xphyda.errors.VariableError
        A name in ``variables`` that is not a column.
    xphyda.errors.DataError
        The file does not exist or is not CSV text.

    Examples
    --------
    >>> import io
    >>> text = '''lat,lon,pressure [hPa],t [K],z [m2 s-2]
    ... 48.2,16.4,500,252.1,
    ... -33.9,151.2,850,271.4,14000
    ... '''
    >>> obs = read_csv(io.StringIO(text))
    >>> list(obs.data_vars), list(obs.coords)
    (['t', 'z'], ['lat', 'lon', 'pressure'])
    >>> obs.z.values.tolist(), obs.pressure.attrs["units"]
    ([nan, 14000.0], 'hPa')
    """
    wanted = None if variables is None else [variables] if isinstance(variables, str) else list(variables)
    return _read(path, obs_dim, wanted, positions_only=False)


def read_positions(path, *, obs_dim: str = "station") -> xr.Dataset:
    """The station positions of a CSV table: its ``lat`` and ``lon`` columns, read as :func:`read_csv` does.

    Every other column is ignored (``phyda evaluate --stations FILE.csv`` uses this to place
    simulated stations).

    Returns
    -------
    xarray.Dataset
        No data variables; coordinates ``lat`` and ``lon`` along ``obs_dim``.

    Examples
    --------
    >>> import io
    >>> read_positions(io.StringIO("name,lat,lon,elevation\\nWien,48.2,16.4,200\\n")).lat.values.tolist()
    [48.2]
    """
    return _read(path, obs_dim, [], positions_only=True)


def _read(path, obs_dim: str, wanted, *, positions_only: bool) -> xr.Dataset:
    if not isinstance(obs_dim, str) or not obs_dim or obs_dim in _ROLES:
        raise ObservationError(f"obs_dim must be a name other than {sorted(_ROLES)}; got {obs_dim!r}")
    label = _label(path)
    table = _read_cells(path, label)
    headers = [str(c).strip() if pd.notna(c) else "" for c in table.iloc[0]]
    body = table.iloc[1:]

    coords: dict = {}
    data: dict = {}
    seen: dict[str, str] = {}
    for j, header in enumerate(headers):
        cells = body.iloc[:, j]
        if positions_only:  # only lat and lon matter: any other column is skipped unread
            if _role(_HEADER.sub(r"\g<name>", header), obs_dim) not in ("lat", "lon"):
                continue
        elif not header:
            if cells.notna().any():
                raise ObservationError(
                    f"column {j + 1} of {label!r} has values but no header; name it, e.g. 't [K]'"
                )
            continue  # an empty column, as spreadsheets write after a trailing comma
        name, units = _split_header(header, j, label)
        role = _role(name, obs_dim)
        key = role if role in _ROLES else name
        if role is None and wanted is not None and name not in wanted:
            continue
        if key in seen:
            raise ObservationError(
                f"columns {seen[key]!r} and {header!r} of {label!r} are the same field {key!r}; "
                "keep one of them"
            )
        seen[key] = header
        if role in ("lat", "lon"):
            coords[role] = (obs_dim, _position(cells, role, header, units, label), dict(_ATTRS[role]))
        elif role == "time":
            coords["time"] = (obs_dim, _times(cells, header, label), dict(_ATTRS["time"]))
        elif role == "id":
            coords[name] = (obs_dim, cells.fillna("").to_numpy(dtype=str))
        else:
            if units is None:
                what = "pressure" if role == "pressure" else "variable"
                example = f"{name} [hPa]" if role == "pressure" else f"{name} [K]' or '{name} [m s-1]"
                raise UnitsError(
                    f"column {header!r} of {label!r} has no units; every {what} column needs them in its "
                    f"header as 'name [units]'. Fix: rename the column to '{example}' (the units of "
                    "its values)"
                    + (
                        ""
                        if role == "pressure"
                        else ", or leave it out with variables=[...] / phyda assimilate --variable"
                    )
                )
            unit = _parse(units, header, label)
            if role == "pressure" and not _is_pressure(unit):
                raise UnitsError(
                    f"column {header!r} of {label!r} has units {units!r}, which are not a pressure; expected "
                    f"for example '{name} [hPa]' or '{name} [Pa]'"
                )
            entry = (obs_dim, _numbers(cells, header, label), {"units": units})
            if role == "pressure":
                coords["pressure"] = (obs_dim, entry[1], {**_ATTRS["pressure"], "units": units})
            else:
                data[name] = entry
    for role in ("lat", "lon"):
        if role not in coords:
            raise CoordinateError(
                f"{label!r} has no {_ROLES[role][1]} column; its columns are {[h for h in headers if h]}. "
                f"Expected a column {_ROLES[role][0]!r} (or {_ROLES[role][1]!r}) in degrees, "
                f"as in {_EXAMPLE!r}"
            )
    if wanted is not None:
        missing = [v for v in wanted if v not in data]
        if missing:
            raise VariableError(
                f"variables {missing} were requested but {label!r} has no such columns; its columns are "
                f"{[h for h in headers if h]}"
            )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    source = Path(label).name
    call = "xphyda.obs.tables.read_positions" if positions_only else "xphyda.obs.read_csv"
    attrs = {"source": source, "history": f"{stamp}: {call}({source!r}, obs_dim={obs_dim!r})"}
    return xr.Dataset(data, coords=coords, attrs=attrs)
