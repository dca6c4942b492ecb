import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from segmenter.learning.regions import drop_short_runs, run_lengths, task_score, to_results
from segmenter.learning.windows import WindowSource, window_starts
from segmenter.reading.annotations import row_labels
from segmenter.reading.labelconfig import Target
from segmenter.reading.series import Series

TARGET = Target("label", "ts", "csv_url", "url", ("Run", "Walk"), ("a",), None, None, ",")


def test_window_starts_cover_every_row():
    for n in (1, 5, 50, 51, 99, 100, 101, 1234):
        starts = window_starts(n, 50, 25)
        covered = np.zeros(max(n, 50), bool)
        for s in starts:
            covered[s : s + 50] = True
        assert covered[:n].all()
        assert starts.max() + 50 <= max(n, 50)


def test_window_source_never_straddles_series_and_pads_short_ones():
    a = np.arange(10, dtype=np.float32)[:, None]
    b = np.arange(100, 103, dtype=np.float32)[:, None]
    src = WindowSource.build([a, b], [np.ones(10, int), np.full(3, 2)], size=5)
    x, y = src.gather(src.starts(stride=2))
    for labels in y:
        kinds = set(labels.tolist()) - {-1}
        assert len(kinds) == 1  # one series per window
    short = [w for w, lab in zip(x, y) if 2 in lab]
    assert len(short) == 1
    assert (short[0][3:] == 0).all()  # padded with mask -1


@given(st.lists(st.integers(0, 3), min_size=1, max_size=200))
def test_run_lengths_round_trip(classes):
    arr = np.array(classes)
    seg = run_lengths(arr)
    assert (np.repeat(seg.classes, seg.lengths) == arr).all()
    assert (seg.classes[1:] != seg.classes[:-1]).all()


def test_drop_short_runs_removes_flicker_but_keeps_instant_classes():
    classes = np.array([0] * 20 + [1] * 2 + [0] * 20 + [1] * 30 + [2] * 1 + [1] * 10 + [3] + [2] * 2 + [1] * 5)
    out = drop_short_runs(classes, 5, keep=frozenset({3}))
    seg = run_lengths(out)
    assert seg.classes.tolist() == [0, 1, 3, 1]  # the short run after the instant takes the last long class
    assert out[20:22].tolist() == [0, 0]
    assert out[72] == 1


def test_task_score_is_low_when_part_of_the_series_is_uncertain():
    sure = np.full(1000, 0.99)
    unsure = sure.copy()
    unsure[:60] = 0.4
    assert task_score(sure) > 0.95
    assert task_score(unsure) < 0.5


def test_task_score_ignores_the_rows_next_to_boundaries():
    classes = np.repeat([0, 1, 0, 2, 0, 1, 0], 20)
    confidence = np.full(len(classes), 0.99)
    change = np.flatnonzero(np.diff(classes)) + 1
    for c in change:
        confidence[c - 2 : c + 2] = 0.55  # every boundary a little uncertain
    assert task_score(confidence) < 0.6
    assert task_score(confidence, classes) > 0.95
    confidence[50:58] = 0.4  # a hesitant stretch inside a segment still counts
    assert task_score(confidence, classes) < 0.6


def _probs(classes, n_classes=3, p=0.9):
    probs = np.full((len(classes), n_classes), (1 - p) / (n_classes - 1))
    probs[np.arange(len(classes)), classes] = p
    return probs


def test_to_results_index_axis_and_scores():
    classes = np.array([0] * 10 + [1] * 5 + [0] * 10 + [2] * 8)
    series = Series(np.arange(len(classes), dtype=float), np.zeros((len(classes), 1), np.float32), "index")
    results, score = to_results(series, _probs(classes), TARGET, frozenset(), 1)
    assert [(r["value"]["start"], r["value"]["end"], r["value"]["timeserieslabels"]) for r in results] == [
        (10, 14, ["Run"]),
        (25, 32, ["Walk"]),
    ]
    assert all(r["value"]["instant"] is False and abs(r["score"] - 0.9) < 1e-6 for r in results)
    assert all(r["from_name"] == "label" and r["to_name"] == "ts" and r["type"] == "timeserieslabels" for r in results)
    assert abs(score - 0.9) < 1e-6


def test_to_results_numeric_axis_and_instants():
    classes = np.array([0] * 10 + [2] * 3 + [0] * 10 + [1] * 6)
    time = np.arange(len(classes)) * 0.5 + 100
    series = Series(time, np.zeros((len(classes), 1), np.float32), "numeric")
    probs = _probs(classes)
    probs[11, 2] = 0.95  # the peak of the instant-class segment
    results, _ = to_results(series, probs, TARGET, frozenset({2}), 1)
    instant, run = results
    assert instant["value"] == {"start": 105.5, "end": 105.5, "instant": True, "timeserieslabels": ["Walk"]}
    assert run["value"]["start"] == 111.5
    assert run["value"]["end"] == 114
    assert run["value"]["instant"] is False


@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 30)), min_size=1, max_size=15),
    st.sampled_from(["index", "numeric"]),
)
def test_regions_row_labels_regions_round_trip(runs, kind):
    classes = np.concatenate([np.full(n, c) for c, n in runs])
    n = len(classes)
    time = np.arange(n, dtype=float) if kind == "index" else np.cumsum(np.full(n, 0.25)) + 7
    series = Series(time, np.zeros((n, 1), np.float32), kind)
    results, _ = to_results(series, _probs(classes), TARGET, frozenset(), 1)
    back = row_labels(series, results, TARGET).class_ids
    assert (back == classes).all()
    again, _ = to_results(series, _probs(back), TARGET, frozenset(), 1)
    assert [r["value"] for r in again] == [r["value"] for r in results]
