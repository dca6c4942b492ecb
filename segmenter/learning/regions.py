"""Per-row class probabilities of a series -> Label Studio ``timeserieslabels`` regions.

The numerics (run lengths, gap merging, short-run dropping, scores, instants,
layered labels) live in ``segmenter.postprocess``, which the exported runner
shares; this module adds what the backend knows: the ``Series`` and its time
axis in the form the UI writes, the ``Target`` and the project's settings.
"""

from __future__ import annotations

import numpy as np

from segmenter import postprocess
from segmenter.postprocess import (
    BOUNDARY_MARGIN,
    LOW_CONFIDENCE_FRACTION,
    Segments,
    drop_short_runs,
    merge_gaps,
    run_lengths,
    task_score,
)
from segmenter.reading.labelconfig import Target
from segmenter.reading.project_settings import ProjectSettings, row_spacing
from segmenter.reading.series import Series
from segmenter.reading.timeformat import format_time

__all__ = [
    "BOUNDARY_MARGIN", "LOW_CONFIDENCE_FRACTION", "RowCleanup", "Segments", "drop_short_runs", "layered_results",
    "merge_gaps", "run_lengths", "task_score", "to_results",
]


class RowCleanup(postprocess.RowCleanup):
    """``postprocess.RowCleanup`` made from a project's settings."""

    @classmethod
    def of(cls, settings: ProjectSettings, labels: tuple[str, ...], series: Series, auto_rows: int) -> RowCleanup:
        """The clean-up the project's ``model_*`` settings ask for on ``series`` (``auto_rows``: the automatic one)."""
        return cls.of_rules(settings.rules(labels), row_spacing(series), auto_rows, settings.score_threshold)


def _axis(series: Series, target: Target) -> postprocess.Axis:
    """A row's position in the form the Label Studio UI writes it."""

    def value(row: int) -> object:
        t = float(series.time[row])
        if series.time_kind == "index":
            return int(row)
        if series.time_kind == "datetime" and target.time_format:
            return format_time(t, target.time_format)
        return int(t) if t.is_integer() else t

    return value


def _control(target: Target) -> postprocess.Control:
    return postprocess.Control(target.from_name, target.to_name, target.labels)


def to_results(
    series: Series,
    probs: np.ndarray,
    target: Target,
    instant_classes: frozenset[int],
    cleanup: int | postprocess.RowCleanup,
) -> tuple[list[dict], float]:
    """Regions for one series and its task score (``postprocess.regions``).

    ``probs`` is (rows, classes) with class 0 background.  ``cleanup`` is a
    ``RowCleanup`` or one minimum run length for all classes.
    """
    if not isinstance(cleanup, postprocess.RowCleanup):
        cleanup = RowCleanup.uniform(cleanup, probs.shape[1])
    return postprocess.regions(probs, _control(target), instant_classes, cleanup, _axis(series, target))


def layered_results(
    series: Series,
    probs: np.ndarray,
    target: Target,
    instant_classes: frozenset[int],
    cleanup: int | postprocess.RowCleanup,
) -> tuple[list[dict], float]:
    """Regions of a multi-label model, whose labels may overlap, and the task score
    (``postprocess.layered_regions``); ``probs`` is (rows, labels) of presence probabilities."""
    if not isinstance(cleanup, postprocess.RowCleanup):
        cleanup = RowCleanup.uniform(cleanup, len(target.labels) + 1)
    return postprocess.layered_regions(probs, _control(target), instant_classes, cleanup, _axis(series, target))
