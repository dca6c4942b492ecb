"""One task as the dashboard draws it: the series, annotated and predicted classes per row,
per-label probabilities, reduced to at most ``points`` columns so a million-row task draws fast.

``view`` turns a task and a served model into a ``TaskView`` of plain arrays;
the reduction keeps each column's minimum and maximum (so spikes survive) and
each column's most common class.  Probabilities are those of ``/predict``.

A long task's parse and prediction take seconds, so ``/predict`` hands what it
computed to ``keeper``: one background thread per process reduces it (after
the response's regions are made, with a bounded queue that drops work rather
than ever making ``/predict`` wait) and stores it with
``store.save_view``.  ``view`` then only reads that file, places the current
annotation on the stored time axis and reduces it; without a stored view (a
task never predicted by this version, changed task data) it computes the view
and stores it.  The assembled views also stay in a small in-memory cache by
(project, version, task id, task data, annotation), and concurrent first looks
at one task share one computation (``SingleFlight``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cachetools import LRUCache

from segmenter import store
from segmenter.learning.trained_model import TrainedModel
from segmenter.reading.annotations import choose_annotation, row_labels
from segmenter.reading.project_settings import ProjectSettings
from segmenter.reading.series import Series
from segmenter.reading.task_series import Fetcher, read_task_series
from segmenter.service.singleflight import SingleFlight

log = logging.getLogger(__name__)

POINTS = 2000
PENDING = 4  # predicted tasks waiting to be reduced and stored; more are dropped (computed when looked at)
CACHED = 8  # assembled views kept in memory
_REDUCED = ("x", "low", "high", "predicted", "probabilities", "time")

# A model, the series it predicted, its per-row probabilities, the project's settings for its target (if any)
Part = tuple[TrainedModel, Series, np.ndarray, ProjectSettings | None]


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
    counts = np.bincount(column * n_classes + classes, minlength=len(starts) * n_classes).reshape(-1, n_classes)
    if n_classes == 1:
        return np.zeros(len(starts), dtype=np.int64)
    labelled = counts[:, 1:]
    return np.where(labelled.max(axis=1) > 0, labelled.argmax(axis=1) + 1, 0)


def reduce_prediction(model: TrainedModel, series: Series, probs: np.ndarray, settings: ProjectSettings | None = None,
                      points: int = POINTS) -> dict[str, np.ndarray]:
    """What one target's chart needs from a prediction, before any annotation, as named arrays.

    The predicted classes get the clean-up ``/predict`` applies with the project's ``settings``.

    The time axis stays whole (8 bytes a row) so that an annotation made after
    the prediction is placed on the rows exactly as training places it.
    """
    if model.multi_label:  # one presence per label: a background column makes it one class per row
        probs = np.concatenate([1.0 - probs.max(axis=1, keepdims=True), probs], axis=1)
    predicted = model.cleanup(series, settings).apply(probs.argmax(axis=1), model.instant_classes)
    starts = columns(len(series), points)
    low, high = reduce_values(series.values, starts)
    widths = np.diff(np.append(starts, len(series)))[:, None]
    return {
        "x": starts, "low": low, "high": high, "predicted": reduce_classes(predicted, starts, probs.shape[1]),
        "probabilities": (np.add.reduceat(probs, starts, axis=0) / widths).astype(np.float32),
        "time": series.time,
    }


def _assemble(model: TrainedModel, reduced: dict[str, np.ndarray], time_kind: str, task: dict,
              annotation: dict | None) -> TaskView:
    """The chart's view of one target: a reduced prediction plus the annotation placed on its rows."""
    time_axis, starts = reduced["time"], reduced["x"]
    annotated = None
    if annotation is not None:
        bare = Series(time_axis, np.empty((len(time_axis), 0), dtype=np.float32), time_kind)
        truth = row_labels(bare, annotation.get("result") or [], model.target, task.get("id")).class_ids
        annotated = reduce_classes(truth, starts, len(model.target.classes))
    return TaskView(
        target=model.target.from_name, labels=list(model.target.classes), channels=list(model.target.channels),
        rows=len(time_axis), x=starts, low=reduced["low"], high=reduced["high"], annotated=annotated,
        predicted=reduced["predicted"], probabilities=reduced["probabilities"],
    )


def _digest(data: object) -> str:
    """Which task data a stored view was made from (task data can be edited in Label Studio)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _store(model_dir: Path, project: str, version: str, task: dict, parts: list[tuple[TrainedModel, dict, str]],
           points: int, settings: dict[str, ProjectSettings]) -> None:
    arrays = {f"{i}.{name}": reduced[name] for i, (_, reduced, _) in enumerate(parts) for name in _REDUCED}
    meta = {
        "data": _digest(task.get("data")), "points": points,
        "settings": _digest(_cleanup_of(settings, [m for m, _, _ in parts])),
        "targets": [{"from_name": m.target.from_name, "classes": list(m.target.classes), "time_kind": kind}
                    for m, _, kind in parts],
    }
    store.save_view(model_dir, project, version, int(task["id"]), arrays, meta)


def _cleanup_of(settings: dict[str, ProjectSettings], models: list[TrainedModel]) -> list:
    """The predict-time settings each model's view is cleaned up with, comparable across processes."""
    found = [settings.get(m.target.from_name) for m in models]
    return [None if s is None else [s.score_threshold, repr(s.control), repr(s.labels)] for s in found]


def _stored(model_dir: Path, project: str, version: str, task: dict, models: list[TrainedModel],
            points: int, settings: dict[str, ProjectSettings]) -> list[tuple[TrainedModel, dict, str]] | None:
    """The stored reduced prediction of every model for ``task``, or None unless all are there and current
    (same task data, same clean-up settings)."""
    found = store.load_view(model_dir, project, version, int(task["id"]))
    if found is None:
        return None
    arrays, meta = found
    if meta.get("data") != _digest(task.get("data")) or meta.get("points") != points:
        return None
    if meta.get("settings") != _digest(_cleanup_of(settings, models)):
        return None
    by_name = {t.get("from_name"): (i, t) for i, t in enumerate(meta.get("targets", []))}
    out = []
    for model in models:
        i, described = by_name.get(model.target.from_name, (None, {}))
        if i is None or described.get("classes") != list(model.target.classes):
            return None
        out.append((model, {name: arrays[f"{i}.{name}"] for name in _REDUCED}, described["time_kind"]))
    return out


def _key(project: str, version: str, task: dict, models: list[TrainedModel], points: int,
         settings: dict[str, ProjectSettings]) -> tuple:
    annotation = choose_annotation(task)
    return (project, version, task.get("id"), points,
            json.dumps([task.get("data"), annotation, _cleanup_of(settings, models)], sort_keys=True, default=str))


def fingerprint(project: str, version: str, task: dict, models: list[TrainedModel], points: int = POINTS,
                settings: dict[str, ProjectSettings] | None = None) -> str:
    """What ``view`` would show, as a digest: equal while the task, its annotation, the settings and the
    version are unchanged (the dashboard's ETag of a task chart)."""
    return _digest(_key(project, version, task, models, points, settings or {}))


class TaskViews:
    """A runtime's task views: the assembled views in memory, the predicted tasks waiting to be
    reduced and stored, and the one background thread that stores them."""

    def __init__(self, cached: int = CACHED, pending: int = PENDING) -> None:
        self._views: LRUCache[tuple, list[TaskView]] = LRUCache(maxsize=cached)
        self._lock = threading.Lock()
        self._pending: queue.Queue = queue.Queue(pending)
        self._writer: threading.Thread | None = None
        self._computing = SingleFlight()

    def view(self, project: str, version: str, task: dict, models: list[TrainedModel], fetcher: Fetcher,
             points: int = POINTS, model_dir: Path | None = None,
             settings: dict[str, ProjectSettings] | None = None) -> list[TaskView]:
        """The task's view for every target of the served models, cleaned up with the project's ``settings``.

        With ``model_dir``, the view ``/predict`` stored is used when there is one,
        and a computed one is stored for every process.  Kept in memory while the
        task, its annotation, the settings and the version are unchanged; computed
        once however many ask for it at the same time.
        """
        settings = settings or {}
        key = _key(project, version, task, models, points, settings)
        with self._lock:
            found = self._views.get(key)
        if found is not None:
            return found
        return self._computing.run(key, lambda: self._compute(key, project, version, task, models, fetcher, points,
                                                              model_dir, settings))

    def _compute(self, key: tuple, project: str, version: str, task: dict, models: list[TrainedModel],
                 fetcher: Fetcher, points: int, model_dir: Path | None,
                 settings: dict[str, ProjectSettings]) -> list[TaskView]:
        """``view``'s work when the view is not in memory: read the stored one or compute it, then keep it."""
        parts = _stored(model_dir, project, version, task, models, points, settings) if model_dir else None
        if parts is None:
            parts = []
            for model in models:
                series = read_task_series(task, model.target, fetcher)
                own = settings.get(model.target.from_name)
                parts.append((model, reduce_prediction(model, series, model.probabilities(series), own, points),
                              series.time_kind))
            if model_dir is not None and isinstance(task.get("id"), int):
                try:
                    _store(model_dir, project, version, task, parts, points, settings)
                except OSError as exc:  # a full disk: the view is still served, only not kept
                    log.warning("project %s: task %s view not stored: %s", project, task.get("id"), exc)
        annotation = choose_annotation(task)
        out = [_assemble(model, reduced, kind, task, annotation) for model, reduced, kind in parts]
        with self._lock:
            self._views[key] = out
        return out

    def keeper(self, model_dir: Path, project: str, version: str) -> Callable[[dict, list[Part]], None]:
        """What ``/predict`` calls with each predicted task: queue it to be reduced and stored in the background.

        Only references are queued (no copy, no reduction on the request's
        thread); a full queue drops the task, whose view is then computed when
        someone looks at it.
        """
        def keep(task: dict, parts: list[Part]) -> None:
            if not parts or not isinstance(task.get("id"), int):
                return
            self._start_writer()
            try:
                self._pending.put_nowait((Path(model_dir), project, version, task, parts))
            except queue.Full:
                log.debug("project %s: task %s view not stored (writer busy)", project, task.get("id"))

        return keep

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_views, name="task-views", daemon=True)
                self._writer.start()

    def _write_views(self) -> None:
        """The background thread: reduce each predicted task and store its view; a failure costs only that view."""
        while True:
            model_dir, project, version, task, parts = self._pending.get()
            try:
                reduced = [
                    (m, reduce_prediction(m, series, probs, own), series.time_kind) for m, series, probs, own in parts
                ]
                settings = {m.target.from_name: own for m, _, _, own in parts if own is not None}
                _store(model_dir, project, version, task, reduced, POINTS, settings)
            except Exception as exc:  # a full disk, a removed folder: the dashboard computes the view instead
                log.warning("project %s: task %s view not stored: %s", project, task.get("id"), exc)
            finally:
                self._pending.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued view is stored (tests, benchmarks); False if still busy after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._pending.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True
