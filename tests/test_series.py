"""Reading a task's series the way the Label Studio UI does (segmenter.reading.series)."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segmenter.errors import TaskDataError
from segmenter.reading.labelconfig import Target
from segmenter.reading.series import Series, load_series

TASK = 42


def target(channels=("a", "b"), time_column="time", time_format=None, sep=","):
    return Target("label", "ts", "csv_url", "url", ("Run",), tuple(channels), time_column, time_format, sep)


def load(raw, **kwargs) -> Series:
    return load_series(raw, target(**kwargs), TASK)


def error(raw, **kwargs) -> str:
    with pytest.raises(TaskDataError) as caught:
        load_series(raw, target(**kwargs), TASK)
    assert caught.value.task_id == TASK
    message = str(caught.value)
    assert message.startswith(f"task {TASK}: ")
    return message


# --- forms of data ---------------------------------------------------------------------------


def test_headed_csv_with_float_time():
    series = load(b"time,a,b\n0.1,1,2\n0.2,3,4\n0.35,5.5,-6\n")
    assert series.time_kind == "numeric"
    assert series.time.dtype == np.float64
    assert series.time.tolist() == [0.1, 0.2, 0.35]
    assert series.values.dtype == np.float32
    assert series.values.shape == (3, 2)
    assert series.values.tolist() == [[1, 2], [3, 4], [5.5, -6]]
    assert len(series) == 3


def test_channels_come_in_config_order():
    assert load(b"time,a,b\n0,1,2\n", channels=("b", "a")).values.tolist() == [[2, 1]]


def test_headless_csv_names_columns_by_position():
    series = load(b"0,10,20\n1,11,21\n2,12,22\n", channels=("2", "1"), time_column="0")
    assert series.time.tolist() == [0, 1, 2]
    assert series.values.tolist() == [[20, 10], [21, 11], [22, 12]]


def test_no_time_column_uses_the_row_index():
    series = load(b"a,b\n5,6\n7,8\n", time_column=None, time_format="%Y")
    assert series.time_kind == "index"
    assert series.time.tolist() == [0.0, 1.0]


def test_header_names_are_stripped_and_lower_cased():
    series = load(b"Time, SensorOne ,B\n0,1,2\n1,3,4\n", channels=("sensorone", "b"))
    assert series.values.tolist() == [[1, 2], [3, 4]]


def test_a_digit_column_that_is_no_name_is_a_position():
    assert load(b"time,a,b\n0,1,2\n", channels=("2",), time_column="0").values.tolist() == [[2]]


def test_a_digit_column_that_is_a_name_is_that_name():
    assert load(b"time,1,0\n0,7,8\n", channels=("1",)).values.tolist() == [[7]]


@pytest.mark.parametrize(
    ("sep", "text"),
    [
        (",", "time,a,b\n0,1,2\n1,3,4\n"),
        (";", "time;a;b\n0;1;2\n1;3;4\n"),
        ("comma", "time,a,b\n0,1,2\n1,3,4\n"),
        ("tab", "time\ta\tb\n0\t1\t2\n1\t3\t4\n"),
        ("\\t", "time\ta\tb\n0\t1\t2\n1\t3\t4\n"),
        ("\t", "time\ta\tb\n0\t1\t2\n1\t3\t4\n"),
        ("space", "time a b\n0 1 2\n1  3 4 \n"),
        ("dot", "time.a.b\n0.1.2\n1.3.4\n"),
        ("||", "time|a|b\n0|1|2\n1|3|4\n"),
        ("auto", "time,a,b\n0,1,2\n1,3,4\n"),
        ("auto", "time;a;b\n0;1;2\n1;3;4\n"),
        ("auto", "time\ta\tb\n0\t1\t2\n1\t3\t4\n"),
        ("auto", "time|a|b\n0|1|2\n1|3|4\n"),
        ("auto", "time a b\n0 1 2\n1 3 4\n"),
        ("auto", "time, a, b\n0, 1, 2\n1, 3, 4\n"),
    ],
)
def test_separators_and_their_aliases(sep, text):
    series = load(text.encode(), sep=sep)
    assert series.time.tolist() == [0, 1]
    assert series.values.tolist() == [[1, 2], [3, 4]]


def test_json_text_is_column_oriented_and_case_insensitive():
    text = '\n  {"Time": [0, 1], "A": [1, 2], "b": [3, "4"]}'
    for raw in (text, text.encode()):
        series = load(raw)
        assert series.time.tolist() == [0, 1]
        assert series.values.tolist() == [[1, 3], [2, 4]]


def test_inline_json_dict():
    series = load({"time": [0, 0.5], "a": [1, None], "b": [2, 3], "note": "ignored"})
    assert series.time.tolist() == [0, 0.5]
    assert series.values.tolist() == [[1, 2], [1, 3]]


def test_json_list_of_row_objects():
    series = load([{"time": 0, "a": 1, "b": 2}, {"time": 1, "a": 3}])
    assert series.values.tolist() == [[1, 2], [3, 2]]


def test_inline_json_with_datetime_and_epoch_times():
    dates = load({"time": ["2024-01-01 00:00:00", "2024-01-01 00:00:01"], "a": [1, 2], "b": [3, 4]},
                 time_format="%Y-%m-%d %H:%M:%S")
    assert dates.time_kind == "datetime"
    assert dates.time.tolist() == [1704067200000, 1704067201000]
    epoch = load({"time": [1704067200000, 1704067201000], "a": [1, 2], "b": [3, 4]}, time_format="%Q")
    assert epoch.time.tolist() == [1704067200000, 1704067201000]


@pytest.mark.parametrize(
    ("fmt", "cells", "expected"),
    [
        ("%Y-%m-%d %H:%M:%S", ["2024-01-01 00:00:17", "2024-01-01 00:01:05"], [1704067217000, 1704067265000]),
        ("%m/%d/%Y %H:%M:%S.%L", ["01/01/2024 00:00:00.250", "01/01/2024 00:00:00.500"],
         [1704067200250, 1704067200500]),
        ("%Y-%m-%dT%H:%M:%S%Z", ["2024-01-01T01:00:00+01:00", "2024-01-01T00:00:01Z"],
         [1704067200000, 1704067201000]),
        ("%Y-%m-%d %H:%M:%S%Z", ["2024-01-01 00:00:00-0700", "2024-01-01 02:00:00-0600"],
         [1704092400000, 1704096000000]),
        ("%H%M%S", ["000001", "000002"], [-2208988799000, -2208988798000]),
        ("%Q", ["1704067200000", "1704067200001"], [1704067200000, 1704067200001]),
        ("%s", ["1704067200", "1704067201"], [1704067200000, 1704067201000]),
        ("%s.%L", ["1704067200.250", "1704067200.5"], [1704067200250, 1704067200500]),
    ],
)
def test_datetime_time_columns(fmt, cells, expected):
    text = "time,a,b\n" + "".join(f"{cell},{i},{i}\n" for i, cell in enumerate(cells))
    series = load(text.encode(), time_format=fmt)
    assert series.time_kind == "datetime"
    assert series.time.tolist() == expected


def test_equal_neighbouring_times_are_allowed():
    assert load(b"time,a,b\n0,1,1\n0,2,2\n1,3,3\n").time.tolist() == [0, 0, 1]


def test_bom_crlf_and_blank_lines():
    raw = b"\xef\xbb\xbf\r\n\r\nTime,a,b\r\n0,1,2\r\n\r\n1,3,4\r\n"
    series = load(raw)
    assert series.time.tolist() == [0, 1]
    assert series.values.tolist() == [[1, 2], [3, 4]]


def test_a_single_data_row_is_a_series():
    assert load(b"5,6,7\n", channels=("1",), time_column=None).values.tolist() == [[6]]
    assert len(load(b"time,a,b\n1,2,3\n")) == 1


# --- header detection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "has_header"),
    [
        ("time,a,b\n0,1,2\n1,3,4\n", True),
        ("0,1,2\n1,3,4\n", False),
        ("x,1,2\n0,3,4\n5,6,7\n", True),  # one non-numeric cell over a number is enough
        ("1e3,-2,.5\n0,3,4\n", False),  # JavaScript numbers
        ("Infinity,-0,+7\n0,3,4\n", False),
    ],
)
def test_header_detection(text, has_header):
    lines = len(text.strip().splitlines())
    assert len(load(text.encode(), channels=("1",), time_column=None)) == lines - has_header


def test_two_rows_of_text_are_headless_like_in_the_ui():
    message = error(b"a,b,c\nx,y,z\n", channels=("b",), time_column=None)
    assert "channel column 'b' not found" in message
    assert "'0', '1', '2'" in message


def test_an_empty_cell_counts_as_a_number_for_header_detection():
    series = load(b"a,b\n1,\n2,3\n", time_column=None)
    assert series.values.tolist() == [[1, 3], [2, 3]]


# --- missing values --------------------------------------------------------------------------


def test_missing_channel_values_fill_forward_then_backward_then_zero():
    raw = b"time,a,b,c\n0,,NaN,\n1,1,null,\n2,,N/A,\n3,4,inf,\n4,,5,\n5,6,,\n"
    series = load(raw, channels=("a", "b", "c"))
    assert series.values[:, 0].tolist() == [1, 1, 1, 4, 4, 6]
    assert series.values[:, 1].tolist() == [5, 5, 5, 5, 5, 5]
    assert series.values[:, 2].tolist() == [0] * 6


def test_cells_missing_from_a_short_row_are_missing_values():
    assert load(b"time,a,b\n0,1,2\n1,3\n").values.tolist() == [[1, 2], [3, 2]]


def test_missing_tokens_in_a_text_column():
    series = load({"time": [0, 1, 2], "a": ["1", " none ", ""], "b": [None, 2, float("nan")]})
    assert series.values.tolist() == [[1, 2], [1, 2], [1, 2]]


# --- errors ----------------------------------------------------------------------------------


def test_a_non_numeric_channel_cell_is_named():
    message = error(b"time,a,b\n0,1,2\n1,3,abc\n")
    assert "channel column 'b'" in message
    assert "data row 2" in message
    assert "'abc'" in message


def test_a_bad_cell_deep_in_a_large_file_is_found_without_warnings():
    rows = 100_000
    raw = ("time,a,b\n" + "".join(f"{i},{i},1\n" for i in range(rows)) + f"{rows},x1,1\n").encode()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = error(raw)
    assert f"data row {rows + 1}" in message
    assert "'x1'" in message


def test_json_cells_holding_lists_are_not_numbers():
    assert "channel column 'a', data row 1: [1] is not a number" in error({"time": [0], "a": [[1]], "b": [2]})
    assert "data row 2" in error({"time": [0, [1]], "a": [1, 2], "b": [2, 3]}, time_format="%Q")


def test_a_missing_channel_lists_the_columns():
    message = error(b"time,a,c\n0,1,2\n")
    assert "channel column 'b' not found" in message
    assert "'time', 'a', 'c'" in message


def test_a_missing_time_column_lists_the_columns():
    message = error({"t": [0], "a": [1], "b": [2]})
    assert "time column 'time' not found" in message
    assert "'t', 'a', 'b'" in message


def test_a_missing_time_value_is_named():
    message = error(b"time,a,b\n0,1,2\n,3,4\n")
    assert "time column 'time'" in message
    assert "data row 2" in message
    assert "missing" in message


def test_a_non_numeric_time_column_needs_a_time_format():
    message = error(b"time,a,b\n2024-01-01,1,2\n2024-01-02,3,4\n")
    assert "time column 'time' is not numeric" in message
    assert "'2024-01-01'" in message
    assert "timeFormat" in message


def test_a_decreasing_time_column_is_refused():
    message = error(b"time,a,b\n0,1,2\n2,3,4\n1,5,6\n")
    assert "time column 'time' decreases at data row 3" in message
    assert "2 then 1" in message


def test_a_decreasing_datetime_column_shows_the_cells():
    message = error(b"time,a,b\n2024-01-02,1,2\n2024-01-01,3,4\n", time_format="%Y-%m-%d")
    assert "'2024-01-02' then '2024-01-01'" in message


def test_a_time_that_does_not_match_the_format_is_named():
    message = error(b"time,a,b\n2024-01-01,1,2\n01/02/2024,3,4\n", time_format="%Y-%m-%d")
    assert "time column 'time', data row 2" in message
    assert "'01/02/2024'" in message
    assert "%Y-%m-%d" in message


def test_a_format_that_cannot_be_parsed_is_named():
    message = error(b"time,a,b\n01 2024,1,2\n", time_format="%U %Y")
    assert "time column 'time'" in message
    assert "%U" in message


def test_an_infinite_time_is_refused():
    assert "data row 2" in error(b"time,a,b\n0,1,2\ninf,3,4\n")


@pytest.mark.parametrize("raw", [b"", b"  \n\n", "", b"\xef\xbb\xbf"])
def test_empty_data_is_refused(raw):
    assert "empty" in error(raw)


@pytest.mark.parametrize("raw", [b"time,a,b\n", b"time,a,b\n\n\n", {"time": [], "a": [], "b": []}, []])
def test_no_data_rows_is_refused(raw):
    assert "no data rows" in error(raw)


def test_ragged_csv_is_refused():
    assert "cannot parse the CSV" in error(b"time,a,b\n0,1,2\n1,2,3,4\n")


def test_undecodable_bytes_are_refused():
    assert "not UTF-8" in error(b"time,a,b\n0,1,\xff\n")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"time": [0, 1], "a": [1, 2', "not valid JSON"),
        ([1, 2, 3], "list of row objects"),
        ({"time": [0, 1], "a": [1, 2], "b": 3}, "JSON column 'b' is not a list"),
        ({"time": [0, 1], "a": [1, 2], "b": [3]}, "differ in length"),
        (12, "cannot read"),
    ],
)
def test_bad_json_is_refused(raw, fragment):
    assert fragment in error(raw)


def test_errors_without_a_task_id_have_no_prefix():
    with pytest.raises(TaskDataError) as caught:
        load_series(b"", target())
    assert caught.value.task_id is None
    assert str(caught.value) == "the time series data is empty"


# --- properties ------------------------------------------------------------------------------

finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    values=hnp.arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 4)), elements=finite32),
    steps=st.lists(st.integers(0, 10**6), min_size=30, max_size=30),
    sep=st.sampled_from([",", ";", "\t", "|"]),
    header=st.booleans(),
)
def test_csv_written_from_a_frame_reads_back_the_same(values, steps, sep, header):
    rows, width = values.shape
    time = np.cumsum(steps[:rows]) / 1000.0
    names = [f"ch{i}" for i in range(width)]
    frame = pd.DataFrame(values.astype(np.float64), columns=names)
    frame.insert(0, "time", time)
    raw = frame.to_csv(index=False, header=header, sep=sep).encode()
    channels = names if header else [str(i + 1) for i in range(width)]
    series = load(raw, channels=channels, time_column="time" if header else "0", sep=sep)
    assert series.time.tolist() == time.tolist()
    np.testing.assert_array_equal(series.values, values)


@settings(max_examples=30, deadline=None)
@given(
    columns=st.lists(st.lists(st.one_of(st.none(), finite32), min_size=5, max_size=5), min_size=1, max_size=3)
)
def test_inline_json_fills_like_csv(columns):
    names = [f"c{i}" for i in range(len(columns))]
    data = {"time": list(range(5)), **dict(zip(names, columns, strict=True))}
    csv = "time," + ",".join(names) + "\n" + "".join(
        f"{t}," + ",".join("" if col[t] is None else repr(col[t]) for col in columns) + "\n" for t in range(5)
    )
    from_json = load(json.dumps(data), channels=names)
    from_csv = load(csv.encode(), channels=names)
    np.testing.assert_array_equal(from_json.values, from_csv.values)
    assert np.isfinite(from_json.values).all()
