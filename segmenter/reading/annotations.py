"""Label Studio annotations -> one class per row of a series.

Which annotation of a task counts: a ground-truth annotation alone when the
task has one, else the most recently updated submitted annotation.  Cancelled
(skipped) annotations never count.  A submitted annotation without regions
says "all background".

Class 0 is background wherever no region covers a row.  A range covers the
rows whose time lies in [start, end]; an instant (``instant: true`` or
start == end) marks the nearest sample.  ``start``/``end`` arrive as row
indices, raw numeric time values, strings in ``timeFormat`` (UTC) or epoch
milliseconds for datetime axes: all are accepted.  Ranges are applied in
order (a later one wins where they overlap), instants last.  A region that
lies wholly outside the series is skipped and one that runs past it is
clipped, each with a warning naming the task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from segmenter.reading.labelconfig import Target
from segmenter.reading.series import Series
from segmenter.reading.timeformat import parse_time

log = logging.getLogger(__name__)
# Labels that can overlap are tracked as bits of one int64 per row.
MAX_LAYERED_LABELS = 62


def choose_annotation(task: dict) -> dict | None:
    """The annotation of ``task`` that training uses, or None when none counts."""
    submitted = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not submitted:
        return None
    truth = [a for a in submitted if a.get("ground_truth")]
    pool = truth or submitted

    def recency(annotation: dict) -> tuple[str, str, int]:
        return (
            str(annotation.get("updated_at") or ""),
            str(annotation.get("created_at") or ""),
            int(annotation.get("id") or 0),
        )

    return max(pool, key=recency)


@dataclass
class RowLabels:
    """Per-row classes of one series plus what the regions said about their shape."""

    class_ids: np.ndarray  # int64 (n,), 0 = background, k = target.labels[k - 1] (names live in Target.labels)
    instant_classes: frozenset[int]  # classes that were marked with instants
    range_lengths: list[int]  # rows covered by each range region (for post-processing)
    range_classes: frozenset[int] = frozenset()  # classes that were marked with ranges
    # int64 (n,) bit k-1 set where class k's regions cover the row (several bits: labels overlap)
    presence: np.ndarray | None = None

    @property
    def overlaps(self) -> bool:
        """Whether some row lies under regions of two different labels."""
        p = self.presence
        return p is not None and bool(((p & (p - 1)) != 0).any())


def _to_axis(value: object, series: Series, target: Target) -> float:
    """A region's start or end as a value on ``series.time``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if series.time_kind == "datetime" and target.time_format:
        try:
            return parse_time(text, target.time_format)
        except ValueError:
            pass
    return float(text)


def _nearest(time: np.ndarray, t: float) -> int:
    i = int(np.searchsorted(time, t))
    if i == 0:
        return 0
    if i >= len(time):
        return len(time) - 1
    return i if time[i] - t < t - time[i - 1] else i - 1


def regions_of(annotation_result: list[dict], target: Target) -> list[dict]:
    """The results of an annotation that belong to ``target``."""
    return [
        r
        for r in annotation_result or []
        if r.get("from_name") == target.from_name
        and r.get("to_name", target.to_name) == target.to_name
        and isinstance(r.get("value"), dict)
        and r["value"].get("timeserieslabels")
    ]


def row_labels(series: Series, results: list[dict], target: Target, task_id: object = None) -> RowLabels:
    """Per-row classes of ``series`` from an annotation's ``result`` list."""
    n = len(series)
    class_ids = np.zeros(n, dtype=np.int64)
    presence = np.zeros(n, dtype=np.int64)
    index = {name: k + 1 for k, name in enumerate(target.labels)}
    instants: list[tuple[int, int]] = []
    instant_classes: set[int] = set()
    range_lengths: list[int] = []
    range_classes: set[int] = set()
    for region in regions_of(results, target):
        value = region["value"]
        names = [name for name in value["timeserieslabels"] if name in index]
        if not names:
            log.warning(
                "task %s: region %s has label(s) %s, not in the config of %r; skipped",
                task_id, region.get("id"), value["timeserieslabels"], target.from_name,
            )
            continue
        cls = index[names[0]]
        try:
            start = _to_axis(value.get("start"), series, target)
            end = _to_axis(value.get("end", value.get("start")), series, target)
        except (TypeError, ValueError):
            log.warning(
                "task %s: region %s has start=%r end=%r, not times of this series; skipped",
                task_id, region.get("id"), value.get("start"), value.get("end"),
            )
            continue
        if start > end:
            start, end = end, start
        first, last = float(series.time[0]), float(series.time[-1])
        if end < first or start > last:
            # Nothing of the series lies under it: labelling the nearest edge row would
            # invent an event there and skew the clean-up learned from real regions.
            log.warning(
                "task %s: region %s (start=%r end=%r) lies outside the series (%s to %s); skipped",
                task_id, region.get("id"), value.get("start"), value.get("end"), series.time[0], series.time[-1],
            )
            continue
        if value.get("instant") or start == end:
            instants.append((_nearest(series.time, start), cls))
            instant_classes.add(cls)
            if cls <= MAX_LAYERED_LABELS:
                presence[instants[-1][0]] |= 1 << (cls - 1)
            continue
        lo = int(np.searchsorted(series.time, start, side="left"))
        hi = int(np.searchsorted(series.time, end, side="right"))
        if hi <= lo:
            lo = _nearest(series.time, (start + end) / 2)
            hi = lo + 1
        class_ids[lo:hi] = cls
        if cls <= MAX_LAYERED_LABELS:
            presence[lo:hi] |= 1 << (cls - 1)
        range_classes.add(cls)
        if start < first or end > last:
            log.warning(
                "task %s: region %s (start=%r end=%r) runs past the series (%s to %s); clipped to it",
                task_id, region.get("id"), value.get("start"), value.get("end"), series.time[0], series.time[-1],
            )
        else:  # a clipped region's length says nothing about how long such events are
            range_lengths.append(hi - lo)
    for row, cls in instants:
        class_ids[row] = cls
    return RowLabels(class_ids, frozenset(instant_classes), range_lengths, frozenset(range_classes), presence)
