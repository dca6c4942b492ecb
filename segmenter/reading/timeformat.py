"""d3-time-format for UTC times, as Label Studio's TimeSeries reads and writes them.

Times are float epoch milliseconds, the unit the UI works in. ``format_time``
renders one time exactly like ``d3.utcFormat`` (en-US names, zero padding,
``%Z`` as ``+0000``, the ``-``/``_``/``0`` padding modifiers) because region
``start``/``end`` must read back in the UI. ``parse_times`` reads a whole time
column like ``d3.utcParse``: naive times are UTC, ``%Z`` offsets (``Z``,
``+01``, ``+0100``, ``-07:00``) are converted to UTC, ``%L`` is milliseconds,
``%f`` is read as a fraction of a second cut to the millisecond (the UI swaps
``%f`` for ``%L`` and drops the last three of six digits), ``%Q``/``%s`` are
epoch milliseconds/seconds, and ``%z`` is taken as ``%Z``.

Parsing is vectorised: strings that all put their fields at the same character
positions (the usual zero-padded timestamps) are decoded with numpy directly;
anything else goes through ``pandas.to_datetime`` with the equivalent
strptime format. Week-number and quarter directives cannot be parsed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PADS = {"-": "", "_": " ", "0": "0"}
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
# d3's en-US locale: %c, %x and %X stand for these formats.
_LOCALE_FORMATS = {"c": "%x, %X", "x": "%-m/%-d/%Y", "X": "%-I:%M:%S %p"}

# Directive -> strptime equivalent, for the pandas path.
_STRPTIME = {
    "Y": "%Y", "y": "%y", "m": "%m", "d": "%d", "e": "%d", "H": "%H", "I": "%I", "p": "%p",
    "M": "%M", "S": "%S", "L": "%f", "j": "%j", "b": "%b", "B": "%B", "a": "%a", "A": "%A",
    "Z": "%z", "u": "%u", "w": "%w",
}
# Directive -> width, for the fixed-position numpy path (Z has a width of its own).
_FIXED_WIDTH = {
    "Y": 4, "y": 2, "m": 2, "d": 2, "e": 2, "H": 2, "I": 2, "M": 2, "S": 2, "L": 3, "j": 3,
    "p": 2, "b": 3, "a": 3,
}
_TICKS_PER_MS = {"ms": 1, "us": 1000, "ns": 1_000_000}
_Tokens = list[tuple[str, str]]  # ("lit", text) or (pad, directive)


class TimeFormatError(ValueError):
    """A time value that does not match the time format; ``index`` is its position in the input."""

    def __init__(self, value: object, index: int, fmt: str) -> None:
        self.value = value
        self.index = index
        self.fmt = fmt
        super().__init__(f"time value {value!r} does not match timeFormat {fmt!r}")


def _tokens(fmt: str) -> _Tokens:
    """Split a d3 format into ("lit", text) and (pad, directive) pairs; pad is "" when absent."""
    tokens: _Tokens = []
    i = 0
    while i < len(fmt):
        if fmt[i] != "%":
            j = fmt.find("%", i)
            j = len(fmt) if j < 0 else j
            tokens.append(("lit", fmt[i:j]))
            i = j
            continue
        pad = fmt[i + 1 : i + 2]
        if pad in _PADS and pad != "":
            i += 1
        else:
            pad = ""
        directive = fmt[i + 1 : i + 2]
        i += 2
        if directive in _LOCALE_FORMATS:
            tokens.extend(_tokens(_LOCALE_FORMATS[directive]))
        else:
            tokens.append((pad, directive))
    return tokens


def _pad(value: int, pad: str, default: str, width: int) -> str:
    """d3's pad(): sign first, then ``width`` digits filled with the pad character."""
    fill = _PADS[pad] if pad else default
    digits = str(abs(value))
    sign = "-" if value < 0 else ""
    return sign + fill * max(0, width - len(digits)) + digits


def _week_numbers(dt: datetime) -> tuple[int, int]:
    """%U (weeks start on Sunday) and %W (weeks start on Monday); days before the first are week 0."""
    yday = dt.timetuple().tm_yday - 1
    sunday_based = (dt.weekday() + 1) % 7
    return (yday + 7 - sunday_based) // 7, (yday + 7 - dt.weekday()) // 7


_NUMERIC_FIELDS = {
    "d": (lambda dt: dt.day, 2),
    "e": (lambda dt: dt.day, 2),
    "f": (lambda dt: dt.microsecond, 6),
    "g": (lambda dt: dt.isocalendar()[0] % 100, 2),
    "G": (lambda dt: dt.isocalendar()[0] % 10000, 4),
    "H": (lambda dt: dt.hour, 2),
    "I": (lambda dt: dt.hour % 12 or 12, 2),
    "j": (lambda dt: dt.timetuple().tm_yday, 3),
    "L": (lambda dt: dt.microsecond // 1000, 3),
    "m": (lambda dt: dt.month, 2),
    "M": (lambda dt: dt.minute, 2),
    "S": (lambda dt: dt.second, 2),
    "U": (lambda dt: _week_numbers(dt)[0], 2),
    "V": (lambda dt: dt.isocalendar()[1], 2),
    "W": (lambda dt: _week_numbers(dt)[1], 2),
    "y": (lambda dt: dt.year % 100, 2),
    "Y": (lambda dt: dt.year % 10000, 4),
}
_TEXT_FIELDS = {
    "a": lambda dt, ms: _DAYS[dt.isoweekday() % 7][:3],
    "A": lambda dt, ms: _DAYS[dt.isoweekday() % 7],
    "b": lambda dt, ms: _MONTHS[dt.month - 1][:3],
    "B": lambda dt, ms: _MONTHS[dt.month - 1],
    "p": lambda dt, ms: "PM" if dt.hour >= 12 else "AM",
    "q": lambda dt, ms: str(1 + (dt.month - 1) // 3),
    "Q": lambda dt, ms: str(ms),
    "s": lambda dt, ms: str(ms // 1000),
    "u": lambda dt, ms: str(dt.isoweekday()),
    "w": lambda dt, ms: str(dt.isoweekday() % 7),
    "Z": lambda dt, ms: "+0000",
    "z": lambda dt, ms: "+0000",
    "%": lambda dt, ms: "%",
}


def _format_directive(dt: datetime, ms: int, pad: str, directive: str) -> str:
    if directive in _NUMERIC_FIELDS:
        field, width = _NUMERIC_FIELDS[directive]
        return _pad(field(dt), pad, " " if directive == "e" else "0", width)
    if directive in _TEXT_FIELDS:
        return _TEXT_FIELDS[directive](dt, ms)
    return directive  # d3 writes an unknown directive's letter as is


def format_time(ms: float, fmt: str) -> str:
    """``ms`` (epoch milliseconds) rendered like ``d3.utcFormat(fmt)``, for region start/end."""
    whole = math.trunc(ms)  # a JS Date keeps whole milliseconds, cut toward zero
    dt = _EPOCH + timedelta(milliseconds=whole)
    parts = []
    for pad, text in _tokens(fmt):
        parts.append(text if pad == "lit" else _format_directive(dt, whole, pad, text))
    return "".join(parts)


def _parse_tokens(fmt: str) -> _Tokens:
    """Tokens for parsing: padding dropped, %f read as %L, %z as %Z, adjacent literals merged."""
    merged: _Tokens = []
    for pad, text in _tokens(fmt):
        if pad == "lit" or text == "%":
            literal = text
            if merged and merged[-1][0] == "lit":
                literal = merged.pop()[1] + literal
            merged.append(("lit", literal))
        else:
            merged.append(("", {"f": "L", "z": "Z"}.get(text, text)))
    return merged


def _texts(values: np.ndarray) -> np.ndarray:
    """The values as a numpy unicode array; numbers print as JS prints them (no ``.0``)."""
    if values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
        values = values.astype(np.int64)
    try:
        return values.astype(str)
    except ValueError:  # cells holding sequences
        return np.frompyfunc(str, 1, 1)(values).astype(str)


def _first_bad(values: np.ndarray, bad: np.ndarray, fmt: str) -> TimeFormatError:
    index = int(np.flatnonzero(bad)[0])
    value = values[index]
    return TimeFormatError(value.item() if isinstance(value, np.generic) else value, index, fmt)


def _parse_epoch(values: np.ndarray, kind: str, fmt: str) -> np.ndarray:
    """``%Q``, ``%s`` and ``%s.%L`` (kind "Q", "s", "s.L"): numbers, scaled to milliseconds."""
    if values.dtype.kind in "iuf":
        numbers = values.astype(np.float64)
    else:
        texts = pd.Series(_texts(values), dtype=object)
        numbers = pd.to_numeric(texts, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        raise _first_bad(values, bad, fmt)
    if kind == "Q":
        return numbers
    if kind == "s":
        return np.round(numbers * 1000.0)
    whole = np.trunc(numbers)  # d3 adds the %L digits to the seconds, also for negative seconds
    return whole * 1000.0 + np.round(np.abs(numbers - whole) * 1000.0)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (Howard Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = np.floor_divide(year, 400)
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _is_leap(year: np.ndarray) -> np.ndarray:
    return (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))


def _name_keys(names: Sequence[str]) -> np.ndarray:
    """Lower-case three-letter names packed into one integer each, as ``_letters`` packs the data."""
    return np.array([sum(ord(c) << (8 * k) for k, c in enumerate(name[:3].lower())) for name in names])


def _letters(block: np.ndarray) -> np.ndarray:
    lower = block.astype(np.int64) | 0x20
    return lower[:, 0] | (lower[:, 1] << 8) | (lower[:, 2] << 16)


def _layout(tokens: _Tokens, length: int) -> list[tuple[str, str, int, int]] | None:
    """(kind, text, start, width) of each token when every field has a fixed width, else None."""
    if any(pad != "lit" and text != "Z" and text not in _FIXED_WIDTH for pad, text in tokens):
        return None
    widths = [len(text) if pad == "lit" else _FIXED_WIDTH.get(text, 0) for pad, text in tokens]
    zones = sum(1 for pad, text in tokens if pad != "lit" and text == "Z")
    zone_width = length - sum(widths)
    if zones > 1 or (zones == 1 and zone_width not in (1, 3, 5, 6)) or (zones == 0 and zone_width != 0):
        return None
    layout = []
    start = 0
    for (pad, text), width in zip(tokens, widths, strict=True):
        width = zone_width if pad != "lit" and text == "Z" else width
        layout.append((pad, text, start, width))
        start += width
    return layout


def _ascii_codes(strings: np.ndarray) -> np.ndarray | None:
    """The strings as an (n, width) uint8 matrix of character codes; None if any is not ASCII."""
    wide = np.ascontiguousarray(strings).view(np.uint32).reshape(len(strings), strings.itemsize // 4)
    if wide.max() > 127:
        return None
    return wide.astype(np.uint8)


def _zone_minutes(block: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Offset east of UTC in minutes from ``Z``, ``+HH``, ``+HHMM`` or ``+HH:MM`` columns."""
    width = block.shape[1]
    if width == 1:
        ok &= block[:, 0] == ord("Z")
        return np.zeros(len(block), dtype=np.int32)
    ok &= (block[:, 0] == ord("+")) | (block[:, 0] == ord("-"))
    if width == 6:
        ok &= block[:, 3] == ord(":")
    digits = block[:, [1, 2, 3, 4] if width == 5 else [1, 2, 4, 5] if width == 6 else [1, 2]] - np.uint8(48)
    ok &= (digits <= 9).all(axis=1)
    digits = digits.astype(np.int32)
    minutes = digits[:, 0] * 600 + digits[:, 1] * 60
    if width > 3:
        minutes += digits[:, 2] * 10 + digits[:, 3]
    return np.where(block[:, 0] == ord("-"), -minutes, minutes)


def _parse_fixed(strings: np.ndarray, tokens: _Tokens) -> np.ndarray | None:
    """Epoch ms when all strings put every field at the same positions and all fields are valid.

    None sends the values to the pandas path, which also produces the error message.
    """
    if strings.dtype.kind != "U" or strings.itemsize == 0:
        return None
    layout = _layout(tokens, strings.itemsize // 4)
    codes = None if layout is None else _ascii_codes(strings)
    if layout is None or codes is None:
        return None
    literal_pos: list[int] = []
    literal_codes: list[int] = []
    numeric: list[tuple[str, int, int]] = []
    for pad, text, start, width in layout:
        if pad == "lit":
            literal_pos.extend(range(start, start + width))
            literal_codes.extend(ord(c) for c in text)
        elif text not in ("Z", "p", "a", "b"):
            numeric.append((text, start, width))
            if text == "e":  # %e pads with a space
                codes[:, start] = np.where(codes[:, start] == ord(" "), ord("0"), codes[:, start])
    digit_pos = [start + k for _, start, width in numeric for k in range(width)]
    ok = (codes[:, literal_pos] == np.array(literal_codes, dtype=np.uint8)).all(axis=1)
    ok &= ((codes[:, digit_pos] - np.uint8(48)) <= 9).all(axis=1)
    fields: dict[str, np.ndarray] = {}
    for text, start, width in numeric:
        value = np.zeros(len(codes), dtype=np.int32)
        for pos in range(start, start + width):
            value = value * 10 + (codes[:, pos] - np.uint8(48))
        fields[text] = value
    for pad, text, start, width in layout:
        block = codes[:, start : start + width]
        if pad == "lit":
            continue
        if text == "Z":
            fields["Z"] = _zone_minutes(block, ok)
        elif text == "p":
            lower = block | np.uint8(0x20)
            ok &= ((lower[:, 0] == ord("a")) | (lower[:, 0] == ord("p"))) & (lower[:, 1] == ord("m"))
            fields["p"] = (lower[:, 0] == ord("p")).astype(np.int32)
        elif text in ("a", "b"):
            found = _letters(block)[:, None] == _name_keys(_MONTHS if text == "b" else _DAYS)[None, :]
            ok &= found.any(axis=1)
            fields[text] = found.argmax(axis=1) + 1
    if not ok.all() or ("j" in fields and ("m" in fields or "d" in fields or "b" in fields)):
        return None
    return _epoch_ms(fields, len(codes))


def _epoch_ms(fields: dict[str, np.ndarray], n: int) -> np.ndarray | None:
    """Combine decoded fields (d3 defaults: 1900-01-01 00:00) into epoch ms; None if any is out of range."""
    zero = np.zeros(n, dtype=np.int32)
    if "y" in fields:
        year = fields["y"] + np.where(fields["y"] > 68, 1900, 2000).astype(np.int32)
    else:
        year = fields.get("Y", zero + 1900)
    month = fields.get("m", fields.get("b", zero + 1))
    day = fields.get("d", fields.get("e", zero + 1))
    hour = fields.get("H", fields.get("I", zero))
    if "p" in fields:
        hour = hour % 12 + 12 * fields["p"]
    minute, second, milli = fields.get("M", zero), fields.get("S", zero), fields.get("L", zero)
    month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month - 1, 0, 11)]
    month_days = month_days + ((month == 2) & _is_leap(year))
    valid = (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    valid &= (hour < 24) & (minute < 60) & (second < 60)
    if "I" in fields and "p" in fields:
        valid &= (fields["I"] >= 1) & (fields["I"] <= 12)
    days = _days_from_civil(year, month, day)
    if "j" in fields:
        days = _days_from_civil(year, zero + 1, zero + 1) + fields["j"] - 1
        valid &= (fields["j"] >= 1) & (fields["j"] <= 365 + _is_leap(year))
    if not valid.all():
        return None
    in_day = hour * 3_600_000 + minute * 60_000 + second * 1000 + milli - fields.get("Z", zero) * 60_000
    return (days.astype(np.int64) * 86_400_000 + in_day).astype(np.float64)


def _strptime_format(tokens: _Tokens, fmt: str) -> str:
    directives = [text for pad, text in tokens if pad != "lit"]
    repeated = sorted({text for text in directives if directives.count(text) > 1})
    if repeated:
        raise ValueError(f"timeFormat {fmt!r}: directive %{repeated[0]} is used twice")
    parts = []
    for pad, text in tokens:
        if pad == "lit":
            parts.append(text.replace("%", "%%"))
        elif text not in _STRPTIME:
            raise ValueError(f"timeFormat {fmt!r}: directive %{text} cannot be parsed")
        elif text == "I" and "p" not in directives:
            parts.append("%H")  # d3 reads %I as the hour itself unless %p is there too
        else:
            parts.append(_STRPTIME[text])
    return "".join(parts)


def _parse_pandas(texts: np.ndarray, values: np.ndarray, tokens: _Tokens, fmt: str) -> np.ndarray:
    """Any supported format, through ``pandas.to_datetime``; cut to whole milliseconds."""
    pattern = _strptime_format(tokens, fmt)
    parsed = pd.to_datetime(pd.Series(texts, dtype=object), format=pattern, utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise _first_bad(values, bad, fmt)
    index = pd.DatetimeIndex(parsed)
    if index.unit == "s":
        return (index.asi8 * 1000).astype(np.float64)
    return np.floor_divide(index.asi8, _TICKS_PER_MS[index.unit]).astype(np.float64)


def _epoch_directive(tokens: _Tokens, fmt: str) -> str | None:
    """Which epoch format ``fmt`` is: "Q", "s" or "s.L" for ``%Q``, ``%s``, ``%s.%L``; else None."""
    if tokens in ([("", "Q")], [("", "s")]):
        return tokens[0][1]
    if tokens == [("", "s"), ("lit", "."), ("", "L")]:
        return "s.L"
    if any(pad != "lit" and text in ("Q", "s") for pad, text in tokens):
        raise ValueError(f"timeFormat {fmt!r}: %Q and %s can only be used alone (or as %s.%L)")
    return None


def is_number_format(fmt: str) -> bool:
    """True for ``%Q``, ``%s`` and ``%s.%L``, whose values are plain numbers."""
    try:
        return _epoch_directive(_parse_tokens(fmt), fmt) is not None
    except ValueError:
        return False


def parse_times(values: np.ndarray | Sequence[str], fmt: str) -> np.ndarray:
    """Epoch ms (float64) of every value read with d3 format ``fmt``.

    Raises TimeFormatError (a ValueError) naming the first value that does not match, and
    ValueError for a format that cannot be parsed.
    """
    array = values if isinstance(values, np.ndarray) else np.array(list(values), dtype=object)
    array = array.reshape(-1)
    if len(array) == 0:
        return np.zeros(0, dtype=np.float64)
    tokens = _parse_tokens(fmt)
    epoch = _epoch_directive(tokens, fmt)
    if epoch is not None:
        return _parse_epoch(array, epoch, fmt)
    texts = _texts(array)
    fixed = _parse_fixed(texts, tokens)
    if fixed is not None:
        return fixed
    return _parse_pandas(texts, array, tokens, fmt)


def parse_time(value: str, fmt: str) -> float:
    """Epoch ms of one value read with d3 format ``fmt`` (raises TimeFormatError)."""
    return float(parse_times(np.array([value], dtype=object), fmt)[0])
