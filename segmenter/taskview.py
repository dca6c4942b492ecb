"""One task as the dashboard draws it: the series, annotated and predicted classes per row,
per-label probabilities, reduced to at most ``points`` columns so a million-row task draws fast.

``view`` turns a task and a served model into a ``TaskView`` of plain arrays;
the reduction keeps each column's minimum and maximum (so spikes survive) and
each column's most common class.  Probabilities are computed by the served
model exactly as ``/predict`` does.  The reduced views are kept in a small
in-memory cache by (project, version, task id, task data, annotation), so a
second look at an unchanged task costs only the drawing.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from segmenter.annotations import choose_annotation, row_labels
from segmenter.regions import drop_short_runs
from segmenter.taskdata import Fetcher, read_task_series
from segmenter.trained import TrainedModel

POINTS = 2000
_CACHED = 8
_views: OrderedDict[tuple, list] = OrderedDict()
_lock = threading.Lock()


@dataclass
class TaskView:
    """What the task chart of one target shows, already reduced to at most ``POINTS`` columns."""

    target: str
    labels: list[str]  # class names, background first
    channels: list[str]
    rows: int
    x: np.ndarray  # first row of each column
    low: np.ndarray  # (columns, channels) minimum per column
    high: np.ndarray  # (columns, channels) maximum per column
    annotated: np.ndarray | None  # (columns,) annotated class (see reduce_classes), None without an annotation
    predicted: np.ndarray  # (columns,) predicted class after the same clean-up as /predict
    probabilities: np.ndarray  # (columns, classes) mean probability per column


def columns(rows: int, points: int = POINTS) -> np.ndarray:
    """The first row of each column: ``rows`` split into at most ``points`` nearly equal parts."""
    return np.unique(np.linspace(0, rows, min(rows, points) + 1).astype(np.int64))[:-1]


def reduce_values(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of ``values`` (rows, k) over each column starting at ``starts``."""
    return np.minimum.reduceat(values, starts, axis=0), np.maximum.reduceat(values, starts, axis=0)


def reduce_classes(classes: np.ndarray, starts: np.ndarray, n_classes: int) -> np.ndarray:
    """Each column's most common labelled class, background only where no row of it is labelled
    (so a short event stays visible however long the series, as min-max keeps spikes)."""
    column = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(classes))))
    counts = np.zeros((len(starts), n_classes), dtype=np.int64)
    np.add.at(counts, (column, classes), 1)
    if n_classes == 1:
        return np.zeros(len(starts), dtype=np.int64)
    labelled = counts[:, 1:]
    return np.where(labelled.max(axis=1) > 0, labelled.argmax(axis=1) + 1, 0)


def view(project: str, version: str, task: dict, models: list[TrainedModel], fetcher: Fetcher,
         points: int = POINTS) -> list[TaskView]:
    """The task's view for every target of the served models (cached while the task is unchanged)."""
    annotation = choose_annotation(task)
    key = (project, version, task.get("id"), points, json.dumps([task.get("data"), annotation], sort_keys=True,
                                                                 default=str))
    with _lock:
        found = _views.get(key)
        if found is not None:
            _views.move_to_end(key)
            return found
    out = _compute(task, annotation, models, fetcher, points)
    with _lock:
        _views[key] = out
        while len(_views) > _CACHED:
            _views.popitem(last=False)
    return out


def _compute(task: dict, annotation: dict | None, models: list[TrainedModel], fetcher: Fetcher,
             points: int) -> list[TaskView]:
    out = []
    for model in models:
        target = model.target
        series = read_task_series(task, target, fetcher)
        probs = model.probabilities(series)
        if model.multi_label:  # one presence per label: a background column makes it one class per row
            probs = np.concatenate([1.0 - probs.max(axis=1, keepdims=True), probs], axis=1)
        n_classes = probs.shape[1]
        predicted = drop_short_runs(probs.argmax(axis=1), model.min_segment_rows, model.instant_classes)
        starts = columns(len(series), points)
        low, high = reduce_values(series.values, starts)
        annotated = None
        if annotation is not None:
            truth = row_labels(series, annotation.get("result") or [], target, task.get("id")).class_ids
            annotated = reduce_classes(truth, starts, n_classes)
        out.append(TaskView(
            target=target.from_name, labels=list(target.classes), channels=list(target.channels),
            rows=len(series), x=starts, low=low, high=high, annotated=annotated,
            predicted=reduce_classes(predicted, starts, n_classes),
            probabilities=np.add.reduceat(probs, starts, axis=0) / np.diff(np.append(starts, len(series)))[:, None],
        ))
    return out
