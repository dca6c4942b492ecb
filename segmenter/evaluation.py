"""Accuracy of predicted regions against annotated ones, as a user would judge it.

Both sides go through the same path: regions -> per-row classes
(``annotations.row_labels``), so what is scored is exactly what an annotator
would see.  Two views:

- per row (timestep): macro F1 over the classes present in truth or
  prediction (background included) and balanced accuracy;
- per event: a predicted segment matches a true segment of the same label when
  their intersection over union is at least 0.5; instants (one-row segments
  of instant-labelled classes) match when within ``instant_tolerance`` rows.
  Matching is one-to-one, best overlap first.  Adjacent regions of one label
  count as one segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segmenter.regions import run_lengths

IOU_THRESHOLD = 0.5


@dataclass
class ClassScores:
    """Per-class row counts, recall and F1 from a confusion matrix."""

    true_count: np.ndarray
    pred_count: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes present in the truth."""
        seen = self.true_count > 0
        return float(self.recall[seen].mean()) if seen.any() else 0.0


def class_scores(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> ClassScores:
    """Recall and F1 of every class from per-row true and predicted classes."""
    k = n_classes
    confusion = np.bincount(truth * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diag(confusion)
    true_count, pred_count = confusion.sum(axis=1), confusion.sum(axis=0)
    f1 = np.divide(2 * tp, true_count + pred_count, out=np.zeros(k), where=(true_count + pred_count) > 0)
    recall = np.divide(tp, true_count, out=np.zeros(k), where=true_count > 0)
    return ClassScores(true_count, pred_count, recall, f1)


def timestep_scores(truth: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    """Macro F1, balanced accuracy and per-class F1 over all rows."""
    s = class_scores(truth, pred, len(classes))
    active = (s.true_count + s.pred_count) > 0
    return {
        "timestep_macro_f1": round(float(s.f1[active].mean()), 4) if active.any() else 0.0,
        "balanced_accuracy": round(s.balanced_accuracy, 4),
        "per_class_f1": {classes[c]: round(float(s.f1[c]), 4) for c in range(len(classes)) if active[c]},
    }


def _segments(rows: np.ndarray) -> list[tuple[int, int, int]]:
    seg = run_lengths(rows)
    keep = seg.classes != 0
    return list(zip(seg.starts[keep].tolist(), seg.ends[keep].tolist(), seg.classes[keep].tolist()))


def match_events(
    truth: np.ndarray, pred: np.ndarray, instant_classes: frozenset[int], instant_tolerance: int
) -> tuple[int, int, int]:
    """(matched, true segments, predicted segments) for one series."""
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
            if iou >= IOU_THRESHOLD:
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
