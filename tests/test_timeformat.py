"""d3-time-format semantics of segmenter.reading.timeformat.

The expected strings and epoch values were produced by d3-time-format 4.1.1
(``utcFormat``/``utcParse``), the library Label Studio's UI uses.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.reading.timeformat import TimeFormatError, format_time, is_number_format, parse_time, parse_times

TIMES = [0, -1, 1700000123456, 951782400000, -2208988800000, 1704067199999, 1709164805007]

D3_FORMATTED = {
    "%Y-%m-%d %H:%M:%S.%L": [
        "1970-01-01 00:00:00.000", "1969-12-31 23:59:59.999", "2023-11-14 22:15:23.456",
        "2000-02-29 00:00:00.000", "1900-01-01 00:00:00.000", "2023-12-31 23:59:59.999",
        "2024-02-29 00:00:05.007",
    ],
    "%a %A %b %B %d %e %j": [
        "Thu Thursday Jan January 01  1 001", "Wed Wednesday Dec December 31 31 365",
        "Tue Tuesday Nov November 14 14 318", "Tue Tuesday Feb February 29 29 060",
        "Mon Monday Jan January 01  1 001", "Sun Sunday Dec December 31 31 365",
        "Thu Thursday Feb February 29 29 060",
    ],
    "%I:%M %p": ["12:00 AM", "11:59 PM", "10:15 PM", "12:00 AM", "12:00 AM", "11:59 PM", "12:00 AM"],
    "%Q %s": [
        "0 0", "-1 -1", "1700000123456 1700000123", "951782400000 951782400",
        "-2208988800000 -2208988800", "1704067199999 1704067199", "1709164805007 1709164805",
    ],
    "%f": ["000000", "999000", "456000", "000000", "000000", "999000", "007000"],
    "%Z %%": ["+0000 %"] * 7,
    "%y %G %g %V %U %W %u %w %q": [
        "70 1970 70 01 00 00 4 4 1", "69 1970 70 01 52 52 3 3 4", "23 2023 23 46 46 46 2 2 4",
        "00 2000 00 09 09 09 2 2 1", "00 1900 00 01 00 01 1 1 1", "23 2023 23 52 53 52 7 0 4",
        "24 2024 24 09 08 09 4 4 1",
    ],
    "%c": [
        "1/1/1970, 12:00:00 AM", "12/31/1969, 11:59:59 PM", "11/14/2023, 10:15:23 PM",
        "2/29/2000, 12:00:00 AM", "1/1/1900, 12:00:00 AM", "12/31/2023, 11:59:59 PM",
        "2/29/2024, 12:00:05 AM",
    ],
    "%x %X": [
        "1/1/1970 12:00:00 AM", "12/31/1969 11:59:59 PM", "11/14/2023 10:15:23 PM",
        "2/29/2000 12:00:00 AM", "1/1/1900 12:00:00 AM", "12/31/2023 11:59:59 PM",
        "2/29/2024 12:00:05 AM",
    ],
    "%-d/%-m/%Y %_H %0e %-j": [
        "1/1/1970  0 01 1", "31/12/1969 23 31 365", "14/11/2023 22 14 318", "29/2/2000  0 29 60",
        "1/1/1900  0 01 1", "31/12/2023 23 31 365", "29/2/2024  0 29 60",
    ],
}

D3_PARSED = [
    ("%Y-%m-%d %H:%M:%S%Z", "2024-01-01 00:00:00+01", 1704063600000),
    ("%Y-%m-%d %H:%M:%S%Z", "2024-01-01 00:00:00Z", 1704067200000),
    ("%Y-%m-%d %H:%M:%S%Z", "2024-01-01 00:00:00-07:30", 1704094200000),
    ("%Y-%m-%d %H:%M:%S%Z", "2024-01-01 00:00:00+0545", 1704046500000),
    ("%m/%d/%Y %I:%M:%S %p", "1/5/2024 12:00:00 AM", 1704412800000),
    ("%m/%d/%Y %I:%M:%S %p", "1/5/2024 12:30:00 pm", 1704457800000),
    ("%d %b %Y", "07 feb 2024", 1707264000000),
    ("%d %B %Y", "7 February 2024", 1707264000000),
    ("%A, %d %B %Y", "Monday, 01 January 2024", 1704067200000),
    ("%Y %j", "2024 060", 1709164800000),
    ("%y-%m-%d", "68-01-01", 3092601600000),
    ("%y-%m-%d", "69-01-01", -31536000000),
    ("%e.%m.%Y", " 5.03.2024", 1709596800000),
    ("%H:%M:%S", "12:30:15", -2208943785000),
    ("%Y-%m-%dT%H:%M:%S.%LZ", "2024-03-10T08:09:10.011Z", 1710058150011),
    ("%Y-%m-%d %H:%M:%S.%f", "2024-03-10 08:09:10.011999", 1710058150011),
    ("%Q", "1700000123456", 1700000123456),
    ("%s", "1700000123", 1700000123000),
    ("%s.%L", "1700000123.456", 1700000123456),
    ("%c", "3/10/2024, 8:09:10 AM", 1710058150000),
    ("%Y%m%d%H%M%S", "20240310080910", 1710058150000),
    ("100%% %Y", "100% 2024", 1704067200000),
]

# Formats whose output keeps every millisecond, so parse(format(t)) == t.
MS_FORMATS = [
    "%Y-%m-%d %H:%M:%S.%L",
    "%Y-%m-%dT%H:%M:%S.%LZ",
    "%m/%d/%Y %I:%M:%S.%L %p",
    "%d %b %Y %H:%M:%S.%L%Z",
    "%a, %e %B %Y %H:%M:%S.%L",
    "%Y %j %H%M%S%L",
    "%Y-%m-%d %H:%M:%S.%f",
    "%-m/%-d/%Y %-H:%M:%S.%L",
    "%Q",
    "%s.%L",
]
SECOND_FORMATS = ["%Y-%m-%d %H:%M:%S", "%s", "%c", "%x %X"]

# 1900-01-01 .. 2099-12-31, in whole milliseconds.
epoch_ms = st.integers(min_value=-2208988800000, max_value=4102444799999)


@pytest.mark.parametrize("fmt", sorted(D3_FORMATTED))
def test_format_time_matches_d3(fmt):
    assert [format_time(t, fmt) for t in TIMES] == D3_FORMATTED[fmt]


@pytest.mark.parametrize(("fmt", "text", "expected"), D3_PARSED)
def test_parse_time_matches_d3(fmt, text, expected):
    assert parse_time(text, fmt) == expected


def test_format_time_cuts_fractional_milliseconds_like_a_js_date():
    assert format_time(1700000123456.9, "%Q %L") == "1700000123456 456"
    assert format_time(-0.5, "%Q") == "0"


def test_format_time_keeps_unknown_directive_letters_and_writes_z_as_utc_offset():
    assert format_time(0, "%k|%z") == "k|+0000"


@settings(max_examples=200, deadline=None)
@given(t=epoch_ms, fmt=st.sampled_from(MS_FORMATS))
def test_round_trip_at_millisecond_resolution(t, fmt):
    assert parse_time(format_time(t, fmt), fmt) == t


@settings(max_examples=100, deadline=None)
@given(t=epoch_ms, fmt=st.sampled_from(SECOND_FORMATS))
def test_round_trip_at_second_resolution(t, fmt):
    assert parse_time(format_time(t, fmt), fmt) == (t // 1000) * 1000


@settings(max_examples=50, deadline=None)
@given(t=st.integers(min_value=-31536000000, max_value=3124223999999))
def test_two_digit_years_cover_1969_to_2068(t):
    assert parse_time(format_time(t, "%y%m%d %H%M%S.%L"), "%y%m%d %H%M%S.%L") == t


@settings(max_examples=50, deadline=None)
@given(times=st.lists(epoch_ms, min_size=1, max_size=40), fmt=st.sampled_from(MS_FORMATS))
def test_parse_times_reads_whole_columns(times, fmt):
    """Columns of one width (numpy path) and of mixed widths (pandas path) agree with format_time."""
    texts = [format_time(t, fmt) for t in times]
    assert parse_times(texts, fmt).tolist() == [float(t) for t in times]
    assert parse_times(np.array(texts, dtype=object), fmt).dtype == np.float64


def test_parse_times_converts_mixed_offsets_to_utc():
    fmt = "%Y-%m-%dT%H:%M:%S%Z"
    texts = ["2024-01-01T01:00:00+01:00", "2024-01-01T00:00:00Z", "2023-12-31T17:00:00-0700"]
    assert parse_times(texts, fmt).tolist() == [1704067200000.0] * 3


def test_fixed_width_column_with_offsets():
    fmt = "%Y-%m-%d %H:%M:%S%Z"
    texts = ["2024-01-01 01:00:00+01:00", "2024-01-01 02:30:00+01:30"]
    assert parse_times(texts, fmt).tolist() == [1704067200000.0, 1704070800000.0]


def test_fraction_of_a_second_reads_like_the_ui():
    """The UI pads ``.5`` to ``.500`` before parsing and cuts six digits to three."""
    fmt = "%Y-%m-%d %H:%M:%S.%L"
    assert parse_times(["2024-01-01 00:00:00.5", "2024-01-01 00:00:00.25"], fmt).tolist() == [
        1704067200500.0,
        1704067200250.0,
    ]
    assert parse_time("2024-01-01 00:00:00.123999", "%Y-%m-%d %H:%M:%S.%f") == 1704067200123.0


def test_short_fields_are_accepted_like_d3():
    assert parse_times(["1/2/2024", "12/31/2024"], "%m/%d/%Y").tolist() == [1704153600000.0, 1735603200000.0]


def test_epoch_formats_take_numbers():
    assert parse_times(np.array([1700000000000, 1700000000001]), "%Q").tolist() == [1.7e12, 1.7e12 + 1]
    assert parse_times(np.array([1700000000.5]), "%s").tolist() == [1700000000500.0]
    assert parse_times(["1700000000"], "%s").tolist() == [1.7e12]


def test_numbers_are_read_as_their_digits_for_other_formats():
    days = parse_times(np.array([20240101.0, 20240102.0]), "%Y%m%d")
    assert days.tolist() == [1704067200000.0, 1704153600000.0]


def test_is_number_format():
    assert is_number_format("%Q")
    assert is_number_format("%s")
    assert is_number_format("%s.%L")
    assert not is_number_format("%Y")
    assert not is_number_format("%Q %Y")


def test_empty_input_gives_an_empty_array():
    assert parse_times([], "%Y").shape == (0,)


@pytest.mark.parametrize(
    ("values", "fmt", "bad_index"),
    [
        (["2024-01-01", "2024-02-30"], "%Y-%m-%d", 1),
        (["2024-01-01", "01/02/2024"], "%Y-%m-%d", 1),
        (["2024-01-01 00:00:00", ""], "%Y-%m-%d %H:%M:%S", 1),
        (["nope"], "%Y", 0),
        (["1700000000000", "x"], "%Q", 1),
        (np.array(["2024-01-01", None], dtype=object), "%Y-%m-%d", 1),
    ],
)
def test_a_value_that_does_not_match_is_named(values, fmt, bad_index):
    with pytest.raises(TimeFormatError) as caught:
        parse_times(values, fmt)
    assert caught.value.index == bad_index
    assert repr(values[bad_index]) in str(caught.value)
    assert fmt in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("fmt", ["%U %Y", "%Q %Y", "%d %d %m", "%q %Y"])
def test_formats_that_cannot_be_parsed_raise_value_error(fmt):
    with pytest.raises(ValueError, match="timeFormat"):
        parse_times(["01 2024"], fmt)
