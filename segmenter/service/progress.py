"""A running training's progress, written into the project's ``TrainingStatus``.

``StatusProgress`` is the ``progress`` callback of ``train_project`` inside a
training job: it keeps the best validation scores seen so far and writes a
``progress`` record (epoch, maximum, best scores, elapsed time, an estimate of
the rest) through ``store.update_status`` at most once per ``interval``
seconds, so fast epochs never turn into a stream of status writes.  It also
keeps every epoch's losses and scores (``curves``), which the job saves with
the model for the dashboard.  ``/status``
shows the record while the project trains; the job's outcome clears it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from segmenter import store
from segmenter.learning.training import EpochReport
from segmenter.store import TrainingState, TrainingStatus

log = logging.getLogger(__name__)


class StatusProgress:
    """Records a training's progress into ``status.json`` at a bounded rate."""

    def __init__(
        self, model_dir: Path, project: str, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.model_dir, self.project, self.interval, self.clock = model_dir, project, interval, clock
        self.started = clock()
        self._target: str | None = None
        self._target_started = self.started
        self._best: dict[str, float] = {}
        self._last_write: float | None = None
        self._last_epoch_at = self.started
        self.writes = 0
        self.curves: dict[str, list[list[float]]] = {}  # per target: [epoch, train loss, val loss, bal acc, min F1]

    def __call__(self, message: object) -> None:
        log.debug("project %s: %s", self.project, message)
        if not isinstance(message, EpochReport):
            return
        now = self.clock()
        if message.target != self._target:  # a config with several targets trains them one after another
            self._target, self._target_started, self._best = message.target, self._last_epoch_at, {}
        self._last_epoch_at = now
        v = message.validation
        self.curves.setdefault(message.target, []).append([
            message.epoch, round(message.train_loss, 5), round(v.loss, 5),
            round(v.balanced_accuracy, 4), round(v.min_class_f1, 4),
        ])
        best = self._best
        best["balanced_accuracy"] = max(best.get("balanced_accuracy", 0.0), round(v.balanced_accuracy, 4))
        best["min_class_f1"] = max(best.get("min_class_f1", 0.0), round(v.min_class_f1, 4))
        best["loss"] = min(best.get("loss", float("inf")), round(v.loss, 5))
        if self._last_write is not None and now - self._last_write < self.interval:
            return
        self._last_write = now
        per_epoch = (now - self._target_started) / message.epoch
        record = {
            "target": message.target,
            "epoch": message.epoch,
            "max_epochs": message.max_epochs,
            "epochs_left_at_most": message.epochs_left_at_most,
            "best_epoch": message.best_epoch,
            "best": dict(best),
            "latest": {
                "train_loss": round(message.train_loss, 5),
                "loss": round(v.loss, 5),
                "balanced_accuracy": round(v.balanced_accuracy, 4),
                "min_class_f1": round(v.min_class_f1, 4),
            },
            "elapsed_seconds": round(now - self.started, 1),
            "seconds_per_epoch": round(per_epoch, 3),
            # Early stopping ends the fit within ``epochs_left_at_most`` epochs unless the loss improves again.
            "estimated_remaining_seconds": round(per_epoch * message.epochs_left_at_most, 1),
            "updated_at": store.now(),
        }

        def record_progress(status: TrainingStatus) -> None:
            if status.state is TrainingState.TRAINING:
                status.progress = record

        try:
            store.update_status(self.model_dir, self.project, record_progress)
            self.writes += 1
        except OSError as exc:  # progress is informative: a failed write never stops the training
            log.warning("project %s: cannot record training progress: %s", self.project, exc)
