"""The predict path: a trained model + tasks -> Label Studio predictions.

Read top to bottom: ``fitting_models`` (which trained models apply to the
config as it is now) and ``predict_task`` (series -> per-row probabilities of
the ``TrainedModel`` -> regions -> one prediction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from segmenter.errors import SegmenterError
from segmenter.learning.trained_model import TrainedModel
from segmenter.reading.project_config import ProjectConfig
from segmenter.reading.project_settings import ProjectSettings
from segmenter.reading.series import Series
from segmenter.reading.task_series import Fetcher, read_task_series

log = logging.getLogger(__name__)


def fitting_models(models: list[TrainedModel], config: ProjectConfig) -> list[TrainedModel]:
    """The models trained for a target of ``config`` exactly as it is now.

    A model trained for other labels, channels or time handling, or under
    other training-time settings (``model_context``, ``model_max_epochs``), is
    never applied to a changed config.  Predict-time settings need no new model.
    One model per target: a version trained when a repeated ``toName`` made
    identical targets holds copies, which would predict every region again.
    """
    fitting: dict[str, TrainedModel] = {}
    for m in models:
        if config.wants(m.target, m.trained_with()):
            fitting.setdefault(m.target.signature(), m)
    return list(fitting.values())


# Told each predicted task with, per model, its series, per-row probabilities and the project's
# settings for its target (the dashboard's views, cleaned up as the prediction was).
Keep = Callable[[dict, list[tuple[TrainedModel, Series, np.ndarray, ProjectSettings | None]]], None]


def predict_task(
    models: list[TrainedModel],
    task: dict,
    fetcher: Fetcher,
    rows: Callable[[int], None] | None = None,
    settings: dict[str, ProjectSettings] | None = None,
    keep: Keep | None = None,
) -> dict:
    """One Label Studio prediction (``result`` + task ``score``) over all targets.

    The task score is the lowest of the targets' scores: the task is as
    uncertain as its most uncertain series.  ``rows`` is told the length of
    every series predicted (metrics, progress bars).  ``settings`` (by control
    name) give each target's clean-up; without, the automatic one.  ``keep`` is
    handed what was computed, once the prediction is made.
    """
    results: list[dict] = []
    scores: list[float] = []
    parts = []
    for model in models:
        series = read_task_series(task, model.target, fetcher)
        own = (settings or {}).get(model.target.from_name)
        probs = model.probabilities(series)
        regions, score = model.results(series, own, probs)
        if rows is not None:
            rows(len(series))
        results.extend(regions)
        scores.append(score)
        parts.append((model, series, probs, own))
    if keep is not None:
        keep(task, parts)
    return {"result": results, "score": round(min(scores), 4) if scores else 0.0}


def predict_tasks(
    models: list[TrainedModel],
    tasks: list[dict],
    fetcher: Fetcher,
    rows: Callable[[int], None] | None = None,
    settings: dict[str, ProjectSettings] | None = None,
    keep: Keep | None = None,
) -> list[dict]:
    """One prediction per task, in order; a task that fails gets an empty result and a log line."""
    out = []
    for task in tasks:
        try:
            out.append(predict_task(models, task, fetcher, rows, settings, keep))
        except SegmenterError as exc:
            log.error("prediction skipped for task %s: %s", task.get("id"), exc)
            out.append({"result": [], "score": 0.0})
        except Exception:  # one broken task must not cost the others their predictions
            log.exception("prediction failed for task %s", task.get("id"))
            out.append({"result": [], "score": 0.0})
    return out
