"""Read one task's time series the way Label Studio's TimeSeries tag shows it.

Row labels computed from the result must line up with the rows annotators saw,
so the rules follow the UI's CSV reader and ``TimeSeries`` model:

- Forms: the bytes or text of a downloaded file (``valueType="url"``), or the
  task's inline value (``valueType="json"``): a dict of column -> list, a JSON
  string of one, or a list of row objects. Text whose first non-blank
  character is ``{`` or ``[`` is JSON; anything else is CSV. Bytes must be UTF-8.
- CSV separator: ``sep`` as given; ``tab``/``\\t``, ``space`` (any run of
  whitespace), ``comma``, ``dot`` are aliases, other multi-character values
  use their first character, and ``auto`` picks among ``,`` ``;`` tab ``|``
  and space the one that splits the first two lines into the same number of
  fields.
- CSV header: the first row is a header when some cell differs in
  numeric-ness (JavaScript's ``isNaN``: an empty cell counts as a number) from
  the cell below it; a file of one row has a header when any cell is not a
  number. Headless columns are named ``0``, ``1``, ... Names are stripped and
  lower-cased; JSON keys too, so matching is case-insensitive.
- Columns: a Channel or timeColumn is found by name; a digit string that is
  no name is the column at that position.
- Time: no timeColumn -> the row index (``time_kind="index"``); a numeric
  timeColumn without timeFormat -> its values (``"numeric"``); with timeFormat
  -> epoch milliseconds read with d3 semantics by ``segmenter.reading.timeformat``
  (``"datetime"``). The time may not decrease (equal neighbours are fine).
- Channel cells are numbers (``true``/``false`` read as 1/0). Missing values
  are empty cells, ``NaN``/``null``/``None``/``NA``/``N/A`` (any case), JSON
  null, infinite values and the cells missing from a short row. They are
  filled forward from the last value before them, then backward from the
  first value after them; a channel with no value at all becomes 0. (The UI
  plots an empty cell as 0.)
- Errors, as ``TaskDataError`` naming the task: undecodable bytes, broken CSV
  (a row with more fields than the first), no data rows, a missing channel or
  time column (listing the columns there are), a channel cell that is not a
  number, a missing or unreadable time value, a non-numeric time column
  without timeFormat, a decreasing time column; each names the column and the
  1-based data row.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segmenter.errors import TaskDataError
from segmenter.reading.labelconfig import Target
from segmenter.reading.timeformat import TimeFormatError, is_number_format, parse_times

_MISSING = ("", "nan", "null", "none", "na", "n/a")
_NA_VALUES = sorted({v for token in _MISSING for v in (token, token.upper(), token.capitalize())})
_SEP_ALIASES = {"tab": "\t", "\\t": "\t", "space": " ", "comma": ",", "dot": ".", "auto": "auto"}
_SNIFFED = (",", ";", "\t", "|", " ")
# What JavaScript's Number() accepts, surrounding whitespace aside.
_JS_NUMBER = re.compile(
    r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Infinity)|0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+"
)
_NAMES_SHOWN = 30


@dataclass
class Series:
    """One task's series: a time per row and one value column per Channel."""

    time: np.ndarray  # float64 (n,), non-decreasing: row index, raw numeric time, or epoch ms
    values: np.ndarray  # float32 (n, channels), in Target.channels order
    time_kind: str  # "index" | "numeric" | "datetime"

    def __len__(self) -> int:
        return len(self.time)


@dataclass
class _Table:
    """Parsed columns by position, with their lower-cased names."""

    names: list[str]
    columns: list[pd.Series | None]  # None: a JSON value that is not a list


def load_series(raw: bytes | str | dict | list, target: Target, task_id: object = None) -> Series:
    """The series of ``target`` in ``raw`` (file content or inline JSON), read as the UI reads it."""
    try:
        return _load(raw, target)
    except TaskDataError as exc:
        if exc.task_id is not None or task_id is None:
            raise
        raise exc.for_task(task_id) from exc.__cause__


def _load(raw: bytes | str | dict | list, target: Target) -> Series:
    content = _content(raw)
    if isinstance(content, bytes):
        table = _csv_table(content, target)
    else:
        table = _json_table(content)
    if not table.columns:
        raise TaskDataError("the time series has no data rows")
    time_pos = None if target.time_column is None else _position(table.names, target.time_column, "time")
    channel_pos = [_position(table.names, name, "channel") for name in target.channels]
    _check_lengths(table, [p for p in [time_pos, *channel_pos] if p is not None])
    if len(table.columns[channel_pos[0]]) == 0:
        raise TaskDataError("the time series has no data rows")
    values = _channel_values(table, channel_pos)
    if time_pos is None:
        return Series(np.arange(len(values), dtype=np.float64), values, "index")
    time = table.columns[time_pos]
    if target.time_format:
        return Series(_datetime_time(time, table.names[time_pos], target.time_format), values, "datetime")
    return Series(_numeric_time(time, table.names[time_pos]), values, "numeric")


def _content(raw: bytes | str | dict | list) -> bytes | dict | list:
    """CSV bytes (UTF-8, no BOM) or parsed JSON."""
    if isinstance(raw, (dict, list)):
        return raw
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TaskDataError(f"the file is not UTF-8 text ({exc})") from exc
    elif isinstance(raw, str):
        text = raw
        data = raw.encode("utf-8")
    else:
        raise TaskDataError(f"cannot read time series data of type {type(raw).__name__}")
    if text.startswith("\ufeff"):
        text, data = text[1:], data[3:]
    start = text.lstrip()[:1]
    if not start:
        raise TaskDataError("the time series data is empty")
    if start in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskDataError(f"the time series data is not valid JSON: {exc}") from exc
    return data


def _json_table(content: dict | list) -> _Table:
    """Columns of a dict of column -> list, or of a list of row objects."""
    if isinstance(content, list):
        if not all(isinstance(row, dict) for row in content):
            raise TaskDataError("JSON time series must be an object of columns or a list of row objects")
        content = pd.DataFrame.from_records(content).to_dict("list") if content else {}
    names = [str(key).strip().lower() for key in content]
    columns = [pd.Series(cells, dtype=None if cells else object) if isinstance(cells, list) else None
               for cells in content.values()]
    return _Table(names, columns)


def _separator(sep: str, text: str) -> str:
    """The one character (or whitespace rule) the UI would split rows with."""
    if len(sep) > 1:
        sep = _SEP_ALIASES.get(sep.lower(), sep[0])
    if sep == " ":
        return r"\s+"
    if sep != "auto":
        return sep
    lines = [line.strip() for line in text[:65536].splitlines() if line.strip()][:2] or [""]
    present = [c for c in _SNIFFED if c in lines[-1]]
    for c in present:
        if all(line.count(c) == lines[-1].count(c) for line in lines):
            return r"\s+" if c == " " else c
    return (r"\s+" if present[0] == " " else present[0]) if present else ","


def _is_js_nan(cell: str) -> bool:
    """JavaScript's isNaN(cell) for a CSV cell: false for numbers and for blank cells."""
    return _JS_NUMBER.fullmatch(cell.strip()) is None and cell.strip() != ""


def _read_csv(data: bytes, sep: str, **options: object) -> pd.DataFrame:
    """``pandas.read_csv`` with the missing-value tokens; columns mixing numbers and text are fine."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            return pd.read_csv(
                io.BytesIO(data), sep=sep, header=None, keep_default_na=False, na_values=_NA_VALUES,
                skip_blank_lines=True, encoding="utf-8", **options,
            )
    except pd.errors.EmptyDataError as exc:
        raise TaskDataError("the time series data is empty") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise TaskDataError(f"cannot parse the CSV: {str(exc).strip()}") from exc


def _csv_table(data: bytes, target: Target) -> _Table:
    text = data[:65536].decode("utf-8", errors="replace")
    sep = _separator(target.sep, text)
    head = _read_csv(data, sep, nrows=2, dtype=str, na_filter=False)
    if head.empty:
        raise TaskDataError("the time series data is empty")
    first = [str(cell) for cell in head.iloc[0]]
    if len(head) > 1:
        second = [str(cell) for cell in head.iloc[1]]
        has_header = any(_is_js_nan(a) != _is_js_nan(b) for a, b in zip(first, second, strict=True))
    else:
        has_header = any(_is_js_nan(cell) for cell in first)
    names = [cell.strip().lower() for cell in first] if has_header else [str(i) for i in range(len(first))]
    text_columns = {}
    if target.time_column is not None and target.time_format and not is_number_format(target.time_format):
        text_columns = {_position(names, target.time_column, "time"): str}
    skip = text[: len(text) - len(text.lstrip())].count("\n") + 1 if has_header else 0
    if has_header and len(head) == 1:
        return _Table(names, [])
    frame = _read_csv(data, sep, skiprows=skip, dtype=text_columns)
    return _Table(names, [frame.iloc[:, i].reset_index(drop=True) for i in range(frame.shape[1])])


def _position(names: list[str], wanted: str, role: str) -> int:
    """Index of column ``wanted``: by name, else a digit string as a position."""
    if wanted in names:
        return names.index(wanted)
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    shown = ", ".join(repr(name) for name in names[:_NAMES_SHOWN])
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    raise TaskDataError(f"{role} column {wanted!r} not found; the columns are {shown}{more}")


def _check_lengths(table: _Table, positions: list[int]) -> None:
    """The used columns are lists (JSON) of one length."""
    for p in positions:
        if table.columns[p] is None:
            raise TaskDataError(f"JSON column {table.names[p]!r} is not a list of values")
    lengths = {table.names[p]: len(table.columns[p]) for p in positions}
    if len(set(lengths.values())) > 1:
        raise TaskDataError(f"columns differ in length: {lengths}")


def _cell(column: pd.Series, row: int) -> str:
    """A cell as an error message shows it."""
    value = column.iloc[row]
    return repr(value.item() if isinstance(value, np.generic) else value)


def _missing(cells: np.ndarray) -> np.ndarray:
    """Which of ``cells`` (objects) are missing values rather than text."""
    absent = pd.isna(cells)
    present = ~absent
    texts = np.frompyfunc(str, 1, 1)(cells[present]).astype(str)
    absent[present] = np.isin(np.char.lower(np.char.strip(texts)), _MISSING)
    return absent


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values (NaN where missing) and a mask of cells that are not numbers."""
    if column.dtype.kind in "iufb":
        return column.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(column), dtype=bool)
    cells = column.to_numpy(dtype=object)
    scalar = slice(None)
    if column.dtype == object:  # JSON cells may hold lists or objects, which are no numbers
        scalar = np.frompyfunc(pd.api.types.is_scalar, 1, 1)(cells).astype(bool)
    numbers = np.full(len(cells), np.nan)
    numbers[scalar] = pd.to_numeric(pd.Series(cells[scalar], dtype=object), errors="coerce")
    bad = np.zeros(len(cells), dtype=bool)
    unread = np.flatnonzero(np.isnan(numbers))
    bad[unread] = ~_missing(cells[unread])
    return numbers, bad


def _channel_values(table: _Table, positions: list[int]) -> np.ndarray:
    """(n, channels) float32, missing values filled forward, then backward, then with 0."""
    blocks = []
    for pos in positions:
        numbers, bad = _numbers(table.columns[pos])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            name, cell = table.names[pos], _cell(table.columns[pos], row)
            raise TaskDataError(f"channel column {name!r}, data row {row + 1}: {cell} is not a number")
        blocks.append(numbers)
    values = np.column_stack(blocks)
    values[~np.isfinite(values)] = np.nan
    if np.isnan(values).any():
        values = pd.DataFrame(values).ffill().bfill().fillna(0.0).to_numpy()
    return values.astype(np.float32)


def _check_time(time: np.ndarray, column: pd.Series, name: str) -> np.ndarray:
    """``time`` itself once it is finite and never decreases."""
    unusable = np.flatnonzero(~np.isfinite(time))
    if unusable.size:
        row = int(unusable[0])
        cell = _cell(column, row)
        raise TaskDataError(f"time column {name!r}, data row {row + 1}: {cell} is not a usable time")
    drops = np.flatnonzero(np.diff(time) < 0)
    if drops.size:
        row = int(drops[0]) + 1
        raise TaskDataError(
            f"time column {name!r} decreases at data row {row + 1}: {_cell(column, row - 1)} then "
            f"{_cell(column, row)}; Label Studio needs the time in increasing order"
        )
    return time


def _missing_time(column: pd.Series, name: str, missing: np.ndarray) -> None:
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise TaskDataError(f"time column {name!r}, data row {row + 1}: the time is missing")


def _numeric_time(column: pd.Series, name: str) -> np.ndarray:
    numbers, bad = _numbers(column)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TaskDataError(
            f"time column {name!r} is not numeric (data row {row + 1}: {_cell(column, row)}); "
            "set timeFormat on the <TimeSeries> if it holds dates"
        )
    _missing_time(column, name, np.isnan(numbers))
    return _check_time(numbers, column, name)


def _datetime_time(column: pd.Series, name: str, fmt: str) -> np.ndarray:
    cells = column.to_numpy(dtype=object) if column.dtype.kind not in "iuf" else column.to_numpy()
    if cells.dtype == object:
        candidates = np.flatnonzero(pd.isna(cells) | (cells == ""))
        missing = np.zeros(len(cells), dtype=bool)
        missing[candidates] = _missing(cells[candidates])
    else:
        missing = np.isnan(cells.astype(np.float64))
    _missing_time(column, name, missing)
    try:
        time = parse_times(cells, fmt)
    except TimeFormatError as exc:
        raise TaskDataError(f"time column {name!r}, data row {exc.index + 1}: {exc}") from exc
    except ValueError as exc:
        raise TaskDataError(f"time column {name!r}: {exc}") from exc
    return _check_time(time, column, name)
