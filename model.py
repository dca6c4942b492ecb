"""TimeSeriesSegmenter: the Label Studio ML backend model of this project.

``predict`` applies the project's newest trained LSTM to each task's series and
returns predicted segments; ``fit`` turns annotation webhooks into background
trainings.  The numerics live in the ``segmenter`` package; this file only
wires them to Label Studio's protocol.
"""

from __future__ import annotations

import logging
import time

from segmenter import store
from segmenter.errors import SegmenterError
from segmenter.labelstudio.access import connection_to_keep
from segmenter.learning.inference import predict_tasks
from segmenter.service import metrics
from segmenter.service.mlbase import LabelStudioMLBase
from segmenter.service.project import Served
from segmenter.store import TrainingState

log = logging.getLogger(__name__)

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED")
TRAIN_EVENT = "START_TRAINING"
PROJECT_EVENT = "PROJECT_UPDATED"  # Label Studio sends it when the labeling config is saved
CONFIG_CHANGED = "label config changed"


class TimeSeriesSegmenter(LabelStudioMLBase):
    """Segments ``<TimeSeries>`` into ``<TimeSeriesLabels>`` ranges and instants."""

    def connect(self, hostname: str | None, access_token: str | None, extra_params: object) -> None:
        """Keep Label Studio's address, token and config for background trainings."""
        connection = connection_to_keep(self.settings, hostname, access_token)
        before = self.project.connected().get("hostname")
        if before and connection["hostname"] and before != connection["hostname"]:
            log.warning("project %s: /setup now names Label Studio %s; it named %s before",
                        self.project_id, connection["hostname"], before)
        store.save_connection(self.settings.model_dir, self.project_id,
                              {**connection, "label_config": self.label_config})
        self.log_problems()

    def log_problems(self) -> None:
        """A warning for each bad ``model_*`` attribute of the config (it keeps its default)."""
        try:
            problems = self.project.config.problems if self.project.config is not None else []
        except SegmenterError as exc:
            problems = [str(exc)]
        for problem in problems:
            log.warning("project %s: label config: %s", self.project_id, problem)

    def applicable_models(self) -> Served:
        """The newest version and its models that fit the current label config.

        A model trained for other labels, channels, time handling or training-time
        settings is never applied: its target is left out until a training on the
        new config, which the first request that finds it so asks for at once.
        """
        served = self.project.served
        if served.unfit:
            log.warning(
                "project %s: %d model(s) of version %s were trained for another label config or other "
                "model_* settings; not applied", self.project_id, served.unfit, served.version,
            )
            self.train_for_changed_config()
        return served

    def train_for_changed_config(self) -> bool:
        """Ask for a training on the current config now, unless one is queued or running, or this
        config already had one; returns whether it asked.

        The request's reason names the config's hash, so a training that fails
        on this config is not asked for again on every ``/predict``.
        """
        reason = f"{CONFIG_CHANGED} ({self.project.config.digest})"
        status = self.project.status()
        if status.state in (TrainingState.QUEUED, TrainingState.TRAINING, TrainingState.INTERRUPTED):
            return False
        if (status.last_request or {}).get("reason") == reason:
            return False
        log.info("project %s: %s, training requested", self.project_id, reason)
        return self.runtime.scheduler.request(self.project_id, reason)

    def config_changed(self) -> bool:
        """Whether a served model does not fit the label config this request came with."""
        try:
            return self.project.served.unfit > 0
        except SegmenterError:
            return False

    def remember_config(self) -> None:
        """Keep the config a ``/predict`` came with for ``/status``, for a project connected through ``/setup``."""
        connection = self.project.connected()
        if connection and self.label_config and connection.get("label_config") != self.label_config:
            store.save_connection(self.settings.model_dir, self.project_id,
                                  {**connection, "label_config": self.label_config})
            self.log_problems()

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: object) -> list[dict]:
        """One prediction per task; empty results before the first training (counted in /metrics).

        Each predicted task's dashboard view is reduced and stored in the background (``TaskViews.keeper``).
        """
        started, rows = time.monotonic(), [0]
        served, fetcher = None, None
        try:
            self.remember_config()
            served = self.applicable_models()
            if served.models:
                fetcher = self.project.fetcher
        except SegmenterError as exc:  # bad config, unusable Label Studio URL or key
            log.error("project %s: cannot predict: %s", self.project_id, exc)
        version = served.version if served is not None else self.model_version
        if fetcher is None:
            predictions = [{"result": [], "score": 0.0} for _ in tasks]
        else:
            keep = self.runtime.task_views.keeper(self.settings.model_dir, self.project_id, version)
            predictions = predict_tasks(
                served.models, tasks, fetcher, rows=lambda n: rows.__setitem__(0, rows[0] + n),
                settings=self.project.project_settings, keep=keep,
            )
        metrics.predicted(len(tasks), rows[0], time.monotonic() - started)
        metrics.models_in_memory(len(self.runtime.versions.cached_projects()))
        return [{**p, "model_version": version} for p in predictions]

    def fit(self, event: str, data: dict, **kwargs: object) -> dict:
        """Schedule a background training for annotation events and Start Training, and at once
        for an event whose config the served model does not fit (changed labels or training-time settings)."""
        scheduler = self.runtime.scheduler
        if event == TRAIN_EVENT:
            return {"scheduled": scheduler.request(self.project_id, event)}
        if event in ANNOTATION_EVENTS:
            every = self.settings.start_training_each_n_updates
            if every > 1 and self.config_changed() and self.train_for_changed_config():
                return {"scheduled": True}  # the served model does not fit the config any more
            if scheduler.request(self.project_id, event, every=every):
                return {"scheduled": True}
            return {"scheduled": False, "reason": "waiting for more annotation events"}
        if event == PROJECT_EVENT and self.config_changed():
            return {"scheduled": self.train_for_changed_config(), "reason": "the served model does not fit the config"}
        return {"scheduled": False, "reason": f"{event} does not train"}
