"""Per-row scores: the backend's ``class_scores`` against scikit-learn's definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from segmenter.learning.evaluation import class_scores, timestep_scores


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # on purpose, see below
@pytest.mark.parametrize("seed", range(6))
def test_class_scores_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 7))
    truth = rng.integers(0, n_classes - 1, 500)  # the last class never true: its recall and F1 are 0
    pred = np.where(rng.random(500) < 0.7, truth, rng.integers(0, n_classes, 500))
    pred[:3] = n_classes - 1
    labels = np.arange(n_classes)
    s = class_scores(truth, pred, n_classes)
    np.testing.assert_array_equal(s.confusion, confusion_matrix(truth, pred, labels=labels))
    np.testing.assert_allclose(s.recall, recall_score(truth, pred, labels=labels, average=None, zero_division=0))
    np.testing.assert_allclose(s.f1, f1_score(truth, pred, labels=labels, average=None, zero_division=0))
    assert s.balanced_accuracy == pytest.approx(balanced_accuracy_score(truth, pred))


def test_a_class_neither_true_nor_predicted_scores_zero_and_is_left_out_of_macro_f1() -> None:
    truth, pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    s = class_scores(truth, pred, 3)
    assert s.f1[2] == 0 and s.recall[2] == 0
    scores = timestep_scores(truth, pred, ["bg", "a", "b"])
    assert scores["timestep_macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"), abs=1e-4)
    assert set(scores["per_class_f1"]) == {"bg", "a"}
