import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenter.reading.annotations import choose_annotation, row_labels
from segmenter.reading.labelconfig import Target
from segmenter.reading.series import Series
from segmenter.reading.timeformat import format_time, parse_time

FMT = "%Y-%m-%d %H:%M:%S"
TARGET = Target("label", "ts", "csv_url", "url", ("Run", "Walk"), ("a",), "time", None, ",")
DT_TARGET = Target("label", "ts", "csv_url", "url", ("Run", "Walk"), ("a",), "time", FMT, ",")


def region(start, end, label="Run", instant=None, from_name="label"):
    value = {"start": start, "end": end, "timeserieslabels": [label]}
    if instant is not None:
        value["instant"] = instant
    return {"from_name": from_name, "to_name": "ts", "type": "timeserieslabels", "value": value}


def series(time, kind):
    time = np.asarray(time, dtype=float)
    return Series(time, np.zeros((len(time), 1), np.float32), kind)


def test_choice_prefers_ground_truth_then_latest_and_ignores_skips():
    a = {"id": 1, "updated_at": "2026-01-02T00:00:00Z", "result": ["a"]}
    b = {"id": 2, "updated_at": "2026-01-03T00:00:00Z", "result": ["b"]}
    skipped = {"id": 3, "updated_at": "2026-01-09T00:00:00Z", "was_cancelled": True, "result": []}
    truth = {"id": 4, "updated_at": "2026-01-01T00:00:00Z", "ground_truth": True, "result": ["t"]}
    assert choose_annotation({"annotations": [a, b, skipped]}) is b
    assert choose_annotation({"annotations": [a, truth, b]}) is truth
    assert choose_annotation({"annotations": [skipped]}) is None
    assert choose_annotation({"annotations": []}) is None


def test_row_index_ranges_cover_both_ends():
    s = series(range(10), "index")
    labels = row_labels(s, [region(2, 4), region(6, 8, "Walk")], TARGET).class_ids
    assert labels.tolist() == [0, 0, 1, 1, 1, 0, 2, 2, 2, 0]


def test_numeric_float_time_ranges_and_instants_between_samples():
    s = series([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], "numeric")
    rows = row_labels(s, [region(0.4, 1.6), region(2.3, 2.3, "Walk", instant=True)], TARGET)
    assert rows.class_ids.tolist() == [0, 1, 1, 1, 0, 2]
    assert rows.instant_classes == frozenset({2})
    assert rows.range_lengths == [3]


def test_datetime_regions_as_strings_and_as_epoch_ms():
    start = parse_time("2024-01-01 00:00:00", FMT)
    s = series(start + 1000 * np.arange(8), "datetime")
    as_text = region("2024-01-01 00:00:02", "2024-01-01 00:00:04")
    as_ms = region(start + 5000, start + 6000, "Walk")
    labels = row_labels(s, [as_text, as_ms], DT_TARGET).class_ids
    assert labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 0]


def test_unknown_label_and_other_controls_are_skipped_with_a_warning(caplog):
    s = series(range(5), "index")
    with caplog.at_level(logging.WARNING):
        labels = row_labels(s, [region(0, 1, "Swim"), region(2, 3, from_name="other")], TARGET, task_id=7).class_ids
    assert labels.tolist() == [0] * 5
    assert "task 7" in caplog.text
    assert "Swim" in caplog.text


def test_unparseable_bounds_are_skipped():
    s = series(range(5), "index")
    assert row_labels(s, [region("soon", "later")], TARGET).class_ids.tolist() == [0] * 5


def test_empty_annotation_is_all_background():
    assert row_labels(series(range(4), "index"), [], TARGET).class_ids.tolist() == [0, 0, 0, 0]


@given(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99), st.sampled_from(["Run", "Walk"])), max_size=6))
def test_later_regions_win_and_every_covered_row_is_labelled(spans):
    s = series(np.arange(100) * 10.0, "numeric")
    regions = [region(10.0 * a, 10.0 * b, label, instant=False) for a, b, label in spans]
    labels = row_labels(s, regions, TARGET).class_ids
    expected = np.zeros(100, int)
    instants = []
    for a, b, label in spans:
        lo, hi = min(a, b), max(a, b)
        if lo == hi:
            instants.append((lo, TARGET.labels.index(label) + 1))
        else:
            expected[lo : hi + 1] = TARGET.labels.index(label) + 1
    for row, cls in instants:
        expected[row] = cls
    assert labels.tolist() == expected.tolist()


@pytest.mark.parametrize("fmt", ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%LZ", "%d/%m/%Y %H:%M"])
def test_datetime_round_trip_through_the_ui_form(fmt):
    base = parse_time(format_time(1_700_000_000_000, fmt), fmt)
    step = 60_000 if "%S" not in fmt else 1000
    s = series(base + step * np.arange(20), "datetime")
    target = Target("label", "ts", "csv_url", "url", ("Run", "Walk"), ("a",), "time", fmt, ",")
    r = region(format_time(s.time[3], fmt), format_time(s.time[9], fmt))
    assert np.flatnonzero(row_labels(s, [r], target).class_ids).tolist() == list(range(3, 10))
