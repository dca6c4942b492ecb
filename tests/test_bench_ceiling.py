"""The ceiling bench scores the very recordings and series the suite trains and tests on."""

import io

import numpy as np
import pandas as pd

from bench.ceiling import padded
from bench.suite import draw, recording_folds


def test_the_draw_lays_out_the_suites_test_series():
    d = draw("italypower", 3)
    folds = recording_folds("italypower", 3)
    assert len(d.series) == len(folds) == 3
    for parts, fold in zip(d.series, folds):
        assert len(parts["test"]) == len(fold.test)
        for group, task in zip(parts["test"], fold.test):
            frame = pd.read_csv(io.BytesIO(fold.files[task["data"]["csv_url"]]))
            expected = np.concatenate([d.x[i].T for i in group])
            np.testing.assert_allclose(frame[["ch1"]].to_numpy(), expected)
            labelled = sum(d.y[i] != d.classes[0] for i in group)
            assert len(task["annotations"][0]["result"]) == labelled
        assert set(np.concatenate(parts["train"])).isdisjoint(np.concatenate(parts["test"]))


def test_recordings_are_padded_with_their_last_value():
    out = padded([np.array([[1.0, 2.0]]), np.array([[3.0, 4.0, 5.0]])], 3)
    np.testing.assert_array_equal(out, [[[1.0, 2.0, 2.0]], [[3.0, 4.0, 5.0]]])
