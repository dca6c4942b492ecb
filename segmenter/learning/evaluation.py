"""Accuracy of predicted regions against annotated ones, as a user would judge it.

Both sides go through the same path: regions -> per-row classes
(``annotations.row_labels``), so what is scored is exactly what an annotator
would see.  Two views:

- per row (timestep): macro F1 over the classes present in truth or
  prediction (background included), balanced accuracy and the confusion
  matrix, as ``sklearn.metrics`` defines them (computed here: see ``class_scores``);
- per event: a predicted segment matches a true segment of the same label when
  their intersection over union is at least 0.5; instants (one-row segments
  of instant-labelled classes) match when within ``instant_tolerance`` rows.
  Matching is one-to-one, best overlap first.  Adjacent regions of one label
  count as one segment.  (scikit-learn has no segment matching: that part is ours.)

``score`` runs both over a set of annotated tasks; the command line's
``evaluate``, the benchmarks and the end-to-end tests all call it.  The Label
Studio integration suite and the demo score predictions stored in Label Studio
with ``match_events`` (harness/lsdriver.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from segmenter.errors import SegmenterError
from segmenter.learning.regions import run_lengths
from segmenter.learning.trained_model import TrainedModel
from segmenter.reading.annotations import choose_annotation, row_labels
from segmenter.reading.project_settings import ProjectSettings
from segmenter.reading.task_series import Fetcher, read_task_series

IOU_THRESHOLD = 0.5


@dataclass
class ClassScores:
    """Per-class F1 and recall, with the confusion matrix they come from (rows: truth)."""

    confusion: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    @property
    def true_count(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def pred_count(self) -> np.ndarray:
        return self.confusion.sum(axis=0)

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes present in the truth (``balanced_accuracy_score``)."""
        seen = self.true_count > 0
        return float(self.recall[seen].mean()) if seen.any() else 0.0


def class_scores(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> ClassScores:
    """F1, recall and the confusion matrix of every class from per-row true and predicted classes.

    Ours, not ``sklearn.metrics``: training scores its validation rows every epoch, and scikit-learn's
    three calls validated their inputs for 10 ms an epoch, 15% of a small project's training
    (the results are the same: ``tests/test_evaluation.py`` holds them against scikit-learn's).
    """
    confusion = np.bincount(
        np.asarray(truth, dtype=np.int64) * n_classes + np.asarray(pred, dtype=np.int64), minlength=n_classes ** 2
    ).reshape(n_classes, n_classes)
    hits = np.diag(confusion).astype(np.float64)
    true_count, pred_count = confusion.sum(axis=1), confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true_count > 0, hits / true_count, 0.0)
        f1 = np.where(true_count + pred_count > 0, 2 * hits / (true_count + pred_count), 0.0)
    return ClassScores(confusion=confusion, recall=recall, f1=f1)


def timestep_scores(truth: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    """Macro F1, balanced accuracy, per-class F1 and the confusion matrix over all rows."""
    s = class_scores(truth, pred, len(classes))
    active = (s.true_count + s.pred_count) > 0
    return {
        "timestep_macro_f1": round(float(s.f1[active].mean()), 4) if active.any() else 0.0,
        "balanced_accuracy": round(s.balanced_accuracy, 4),
        "per_class_f1": {classes[c]: round(float(s.f1[c]), 4) for c in range(len(classes)) if active[c]},
        "confusion": {"classes": classes, "rows": s.confusion.tolist()},
    }


def _segments(rows: np.ndarray) -> list[tuple[int, int, int]]:
    seg = run_lengths(rows)
    keep = seg.classes != 0
    return list(zip(seg.starts[keep].tolist(), seg.ends[keep].tolist(), seg.classes[keep].tolist()))


def match_events(
    truth: np.ndarray,
    pred: np.ndarray,
    instant_classes: frozenset[int],
    instant_tolerance: int,
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[int, int, int]:
    """(matched, true segments, predicted segments) for one series; ranges match at IoU >= ``iou_threshold``."""
    true_segments, pred_segments = _segments(truth), _segments(pred)
    candidates = []
    for i, (ts, te, tc) in enumerate(true_segments):
        for j, (ps, pe, pc) in enumerate(pred_segments):
            if tc != pc:
                continue
            if tc in instant_classes and ts == te:
                distance = abs((ps + pe) / 2 - ts)
                if distance <= instant_tolerance:
                    candidates.append((1.0 - distance / (instant_tolerance + 1), i, j))
                continue
            inter = min(te, pe) - max(ts, ps) + 1
            if inter <= 0:
                continue
            iou = inter / (max(te, pe) - min(ts, ps) + 1)
            if iou >= iou_threshold:
                candidates.append((iou, i, j))
    used_true, used_pred, matched = set(), set(), 0
    for _, i, j in sorted(candidates, reverse=True):
        if i not in used_true and j not in used_pred:
            used_true.add(i)
            used_pred.add(j)
            matched += 1
    return matched, len(true_segments), len(pred_segments)


def event_f1(matched: int, n_true: int, n_pred: int) -> float:
    """F1 of segment matching; 1.0 when there is nothing to find and nothing found."""
    if n_true == 0 and n_pred == 0:
        return 1.0
    precision = matched / n_pred if n_pred else 0.0
    recall = matched / n_true if n_true else 0.0
    return round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0


def score(
    models: list[TrainedModel],
    tasks: list[dict],
    fetcher: Fetcher,
    settings: dict[str, ProjectSettings] | None = None,
    rows: Callable[[int], None] | None = None,
    predicted: Callable[[], None] | None = None,
) -> dict:
    """Predict every annotated task with ``models`` and score the regions against its annotation.

    ``settings`` (by control name) give the clean-up, as ``/predict`` applies it; without, the automatic one.

    Classes of several targets are scored together, each named ``from_name:label``.
    A multi-label model's labels are scored layer by layer (present / absent),
    with each label's event F1 under ``per_label_event_f1_iou50``.  For progress
    bars, ``rows`` is told each predicted series' length and ``predicted`` is
    called after each (target, annotated task).
    """
    truth_rows, pred_rows, classes = [], [], ["__background__"]
    per_label: dict[str, list[int]] = {}
    matched = n_true = n_pred = 0
    predict_seconds = 0.0
    for model in models:
        target = model.target
        offset = len(classes) - 1
        classes += [f"{target.from_name}:{label}" for label in target.labels]
        tolerance = max(1, model.sequence_size // 10)
        for task in tasks:
            annotation = choose_annotation(task)
            if annotation is None:
                continue
            series = read_task_series(task, target, fetcher)
            started = time.monotonic()
            regions, _ = model.results(series, (settings or {}).get(target.from_name))
            predict_seconds += time.monotonic() - started
            if rows is not None:
                rows(len(series))
            if predicted is not None:
                predicted()
            truth_labels = row_labels(series, annotation.get("result") or [], target, task.get("id"))
            pred_labels = row_labels(series, regions, target, task.get("id"))
            if model.multi_label:  # each label is its own layer: scored as present / absent
                layers = [
                    (k, ((truth_labels.presence >> k) & 1) * (k + 1), ((pred_labels.presence >> k) & 1) * (k + 1))
                    for k in range(len(target.labels))
                ]
            else:
                layers = [(-1, truth_labels.class_ids, pred_labels.class_ids)]
            for k, truth, pred in layers:
                m, t, p = match_events(truth, pred, model.instant_classes, tolerance)
                matched, n_true, n_pred = matched + m, n_true + t, n_pred + p
                if model.multi_label:
                    name = f"{target.from_name}:{target.labels[k]}"
                    counts = per_label.setdefault(name, [0, 0, 0])
                    counts[0], counts[1], counts[2] = counts[0] + m, counts[1] + t, counts[2] + p
                truth_rows.append(np.where(truth > 0, truth + offset, 0))
                pred_rows.append(np.where(pred > 0, pred + offset, 0))
    if not truth_rows:
        raise SegmenterError("no annotated test task to evaluate on")
    report = timestep_scores(np.concatenate(truth_rows), np.concatenate(pred_rows), classes)
    report.update(
        event_f1_iou50=event_f1(matched, n_true, n_pred),
        n_true_segments=n_true,
        n_pred_segments=n_pred,
        n_test_tasks=len(tasks),
        predict_seconds=round(predict_seconds, 3),
    )
    if per_label:
        report["per_label_event_f1_iou50"] = {name: event_f1(*counts) for name, counts in per_label.items()}
    return report
