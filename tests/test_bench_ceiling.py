"""The ceiling bench scores the very recordings and series the suite trains and tests on."""

import io

import numpy as np
import pandas as pd

from bench.ceiling import padded
from bench.suite import draw, leads, recording_folds, unaligned


def test_the_draw_lays_out_the_suites_test_series():
    d = draw("italypower", 3)
    folds = recording_folds("italypower", 3)
    assert len(d.series) == len(folds) == 3
    for f, (parts, fold) in enumerate(zip(d.series, folds)):
        assert len(parts["test"]) == len(fold.test)
        for group, task, lead in zip(parts["test"], fold.test, leads(d, f), strict=True):
            assert 1 <= lead <= d.x[group[0]].shape[1] // 2  # part-way into the first recording, half of it kept
            frame = pd.read_csv(io.BytesIO(fold.files[task["data"]["csv_url"]]))
            expected = np.concatenate([d.x[i].T for i in group])[lead:]
            np.testing.assert_allclose(frame[["ch1"]].to_numpy(), expected)
            assert frame["time"].iloc[0] == lead
            labelled = sum(d.y[i] != d.classes[0] for i in group)
            assert len(task["annotations"][0]["result"]) == labelled
        assert set(np.concatenate(parts["train"])).isdisjoint(np.concatenate(parts["test"]))


def test_recordings_are_padded_with_their_last_value():
    out = padded([np.array([[1.0, 2.0]]), np.array([[3.0, 4.0, 5.0]])], 3)
    np.testing.assert_array_equal(out, [[[1.0, 2.0, 2.0]], [[3.0, 4.0, 5.0]]])


def test_a_test_series_drops_rows_of_its_first_recording_and_its_regions_keep_their_rows():
    frame = pd.DataFrame({"time": np.arange(30), "ch1": np.arange(30.0)})
    regions = [{"id": name, "value": {"start": start, "end": start + 9, "timeserieslabels": ["x"]}}
               for name, start in (("a", 0), ("b", 10), ("c", 20))]
    out, kept = unaligned(frame, regions, 4)
    assert out["time"].tolist() == list(range(4, 30))
    assert [(r["id"], r["value"]["start"], r["value"]["end"]) for r in kept] == [("a", 4, 9), ("b", 10, 19),
                                                                                  ("c", 20, 29)]
    _, kept = unaligned(frame, regions, 12)
    assert [(r["id"], r["value"]["start"]) for r in kept] == [("b", 12), ("c", 20)]
    assert regions[0]["value"]["start"] == 0  # the caller's regions are left as they were
