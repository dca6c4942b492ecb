"""TimeSeriesSegmenter: the Label Studio ML backend model of this project.

``predict`` applies the project's newest trained LSTM to each task's series and
returns predicted segments; ``fit`` turns annotation webhooks into background
trainings.  The numerics live in the ``segmenter`` package; this file only
wires them to Label Studio's protocol.
"""

from __future__ import annotations

import logging
import time

from segmenter import metrics, store, taskview
from segmenter.access import connection_to_keep
from segmenter.errors import SegmenterError
from segmenter.inference import fitting_models, predict_tasks
from segmenter.mlbase import LabelStudioMLBase
from segmenter.trained import TrainedModel

log = logging.getLogger(__name__)

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED")
TRAIN_EVENT = "START_TRAINING"


class TimeSeriesSegmenter(LabelStudioMLBase):
    """Segments ``<TimeSeries>`` into ``<TimeSeriesLabels>`` ranges and instants."""

    def connect(self, hostname: str | None, access_token: str | None, extra_params: object) -> None:
        """Keep Label Studio's address, token and config for background trainings."""
        connection = connection_to_keep(self.settings, hostname, access_token)
        store.save_connection(self.settings.model_dir, self.project_id, {**connection, "schema": self.label_config})

    def applicable_models(self) -> tuple[str, list[TrainedModel]]:
        """The newest version and its models that fit the current label config.

        A model trained for other labels, channels or time handling is never
        applied: its target is left out until a training on the new config.
        """
        version, models = self.runtime.cache.get(self.project_id)
        if not models or not self.label_config:
            return version, models
        fitting = fitting_models(models, self.label_config)
        if len(fitting) < len(models):
            log.warning(
                "project %s: %d model(s) of version %s were trained for another label config; not applied",
                self.project_id, len(models) - len(fitting), version,
            )
        return version, fitting

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: object) -> list[dict]:
        """One prediction per task; empty results before the first training (counted in /metrics).

        Each predicted task's dashboard view is reduced and stored in the background (``taskview.keeper``).
        """
        started, rows = time.monotonic(), [0]
        version, models, fetcher = self.model_version, [], None
        try:
            version, models = self.applicable_models()
            if models:
                fetcher = self.runtime.access.fetcher_for(self.project_id)
        except SegmenterError as exc:  # bad config, unusable Label Studio URL or key
            log.error("project %s: cannot predict: %s", self.project_id, exc)
        if fetcher is None:
            predictions = [{"result": [], "score": 0.0} for _ in tasks]
        else:
            keep = taskview.keeper(self.settings.model_dir, store.project_key(self.project_id), version)
            predictions = predict_tasks(
                models, tasks, fetcher, rows=lambda n: rows.__setitem__(0, rows[0] + n), keep=keep
            )
        metrics.predicted(len(tasks), rows[0], time.monotonic() - started)
        metrics.models_in_memory(len(self.runtime.cache.cached_projects()))
        return [{**p, "model_version": version} for p in predictions]

    def fit(self, event: str, data: dict, **kwargs: object) -> dict:
        """Schedule a background training for annotation events and Start Training."""
        scheduler = self.runtime.scheduler
        if event == TRAIN_EVENT:
            return {"scheduled": scheduler.request(self.project_id, event)}
        if event in ANNOTATION_EVENTS:
            if scheduler.request(self.project_id, event, every=self.settings.start_training_each_n_updates):
                return {"scheduled": True}
            return {"scheduled": False, "reason": "waiting for more annotation events"}
        return {"scheduled": False, "reason": f"{event} does not train"}
