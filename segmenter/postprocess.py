"""Per-row probabilities -> cleaned-up regions: the pure-numpy steps, owned here once.

The backend (``segmenter.learning.regions``, ``segmenter.reading.project_settings``)
and the exported runner (``segmenter.export.runner``, which the export copies
beside the model) both use this module, so a model run outside the backend gives
the regions ``/predict`` gives.  It imports nothing but numpy and the standard
library: it must load where neither torch nor the rest of this package is installed.

All steps are whole-array operations: run-length encoding of the per-row
classes, the clean-up (``RowCleanup``: short background gaps inside a label
filled, runs shorter than their class's minimum dropped, regions scored below
a threshold left out), per-segment mean probabilities from a cumulative sum.
The only Python loops run over segments, never over rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LOW_CONFIDENCE_FRACTION = 0.05
BOUNDARY_MARGIN = 2
MAX_DURATION_ROWS = 1_000_000_000  # more rows than any series a backend can hold in memory


@dataclass(frozen=True)
class Duration:
    """A length of time: ``amount`` rows, or ``amount`` in the time column's units."""

    amount: float
    in_rows: bool

    def rows(self, spacing: float) -> int:
        """Whole rows for a series whose rows are ``spacing`` time units apart, at most ``MAX_DURATION_ROWS``.

        The cap keeps the count a small int64 whatever the spacing (a tiny one
        would make any time a huge or infinite number of rows).
        """
        amount = self.amount if self.in_rows or spacing <= 0 else self.amount / spacing
        return int(round(amount)) if amount < MAX_DURATION_ROWS else MAX_DURATION_ROWS

    def __str__(self) -> str:
        amount = int(self.amount) if float(self.amount).is_integer() else self.amount
        return f"{amount} rows" if self.in_rows else str(amount)


def spacing_of(time: np.ndarray, time_kind: str) -> float:
    """Time units per row: the typical step of the time column (seconds for datetimes), 1 for row indices."""
    if time_kind == "index" or len(time) < 2:
        return 1.0
    steps = np.diff(time)
    steps = steps[steps > 0]
    if len(steps) == 0:
        return 1.0
    median = np.median(steps)
    # The mean of the steps near the median: gaps do not count, and epoch-ms steps rounded
    # to the float grid (0.2 ms reads as 0.19995 or 0.20019) average out.
    spacing = float(steps[np.abs(steps - median) <= 0.5 * median].mean())
    return spacing / 1000.0 if time_kind == "datetime" else spacing  # datetimes are epoch ms


# One class's clean-up rule: its minimum duration (None: the model's automatic one) and merged gap (None: off).
Rule = tuple[Duration | None, Duration | None]


def rule_rows(rules: Sequence[Rule], spacing: float, auto_rows: int) -> tuple[list[int], list[int]]:
    """The minimum run and merged gap in rows per class (0: background, k: label k) for rows ``spacing`` apart."""
    min_rows = [auto_rows if low is None else low.rows(spacing) for low, _ in rules]
    gaps = [0 if gap is None else gap.rows(spacing) for _, gap in rules]
    gaps[0] = 0  # background is what gets merged, never the merging label
    return min_rows, gaps


@dataclass
class Segments:
    """Runs of equal class: first row, last row (inclusive) and class of each run."""

    starts: np.ndarray
    ends: np.ndarray
    classes: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts + 1


@dataclass(frozen=True)
class RowCleanup:
    """The clean-up of one series' per-row classes, in rows, indexed by class (0: background).

    ``min_rows[c]``: runs of class c shorter than this are dropped (``drop_short_runs``);
    ``merge_gap_rows[c]``: background runs shorter than this between two runs of c become c;
    ``score_threshold``: regions whose score is below are not proposed.
    """

    min_rows: np.ndarray
    merge_gap_rows: np.ndarray
    score_threshold: float = 0.0

    @classmethod
    def uniform(cls, min_rows: int, n_classes: int) -> RowCleanup:
        """The automatic clean-up: one minimum for every class, no gap merging, no threshold."""
        return cls(np.full(n_classes, min_rows, np.int64), np.zeros(n_classes, np.int64))

    @classmethod
    def of_rules(cls, rules: Sequence[Rule], spacing: float, auto_rows: int, threshold: float) -> RowCleanup:
        """The clean-up ``rules`` (one per class) ask for on rows ``spacing`` apart."""
        min_rows, gaps = rule_rows(rules, spacing, auto_rows)
        return cls(np.asarray(min_rows, np.int64), np.asarray(gaps, np.int64), threshold)

    def apply(self, classes: np.ndarray, keep: frozenset[int]) -> np.ndarray:
        """Gaps merged, then short runs dropped (runs of classes in ``keep`` stay)."""
        return drop_short_runs(merge_gaps(classes, self.merge_gap_rows), self.min_rows, keep)

    def of_label(self, k: int) -> RowCleanup:
        """The two-class (absent / present) clean-up of label ``k`` (class k) of a multi-label model."""
        return RowCleanup(self.min_rows[[0, k]], np.array([0, self.merge_gap_rows[k]]), self.score_threshold)


def run_lengths(classes: np.ndarray) -> Segments:
    """Run-length encode a per-row class array."""
    if len(classes) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Segments(empty, empty, empty)
    change = np.flatnonzero(classes[1:] != classes[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change - 1, [len(classes) - 1]]).astype(np.int64)
    return Segments(starts, ends, classes[starts].astype(np.int64))


def drop_short_runs(classes: np.ndarray, min_rows: int | np.ndarray, keep: frozenset[int]) -> np.ndarray:
    """Give runs shorter than ``min_rows`` the class of the previous long run.

    ``min_rows`` is one minimum for all classes or one per class.  Runs of
    classes in ``keep`` (those labelled with instants) stay whatever their
    length.  Runs before the first long run take the next long run's class.
    This removes the flicker that over-segments a recording.
    """
    minimum = np.asarray(min_rows)
    if (minimum <= 1).all() or len(classes) == 0:
        return classes
    seg = run_lengths(classes)
    kept = np.isin(seg.classes, list(keep))
    needed = minimum if minimum.ndim == 0 else minimum[seg.classes]
    short = (seg.lengths < needed) & ~kept
    donor = ~short & ~kept
    if not short.any() or not donor.any():
        return classes
    order = np.arange(len(short))
    previous_long = np.maximum.accumulate(np.where(donor, order, -1))
    next_long = np.minimum.accumulate(np.where(donor, order, len(short))[::-1])[::-1]
    source = np.where(previous_long >= 0, previous_long, next_long)
    new = np.where(short, seg.classes[source], seg.classes)
    return np.repeat(new, seg.lengths)


def merge_gaps(classes: np.ndarray, gap_rows: np.ndarray) -> np.ndarray:
    """Background runs shorter than ``gap_rows[c]`` between two runs of class c become c."""
    if len(classes) == 0 or (gap_rows <= 0).all():
        return classes
    seg = run_lengths(classes)
    before = np.concatenate([[0], seg.classes[:-1]])
    after = np.concatenate([seg.classes[1:], [0]])
    fill = (seg.classes == 0) & (before == after) & (before != 0) & (seg.lengths < gap_rows[before])
    if not fill.any():
        return classes
    return np.repeat(np.where(fill, before, seg.classes), seg.lengths)


def task_score(confidence: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Mean top-class probability over the least confident 5% of rows (at least one row).

    A recording that is clear everywhere scores near 1; one with any stretch
    the model hesitates on scores low, so sorting the Data Manager by
    prediction score ascending brings the tasks that need a human first.
    Given the per-row ``classes``, rows within ``BOUNDARY_MARGIN`` of a class
    change are left out: every boundary is a little uncertain, and counting
    them would rank recordings by their number of events instead.
    """
    if classes is not None and len(classes) > 1:
        change = np.flatnonzero(classes[1:] != classes[:-1])
        near = np.zeros(len(classes) + 1, dtype=np.int64)
        np.add.at(near, np.clip(change - BOUNDARY_MARGIN + 1, 0, None), 1)
        np.add.at(near, np.minimum(change + BOUNDARY_MARGIN + 1, len(classes)), -1)
        interior = np.cumsum(near[:-1]) == 0
        if interior.any():
            confidence = confidence[interior]
    if len(confidence) == 0:
        return 0.0
    k = max(1, int(len(confidence) * LOW_CONFIDENCE_FRACTION))
    lowest = np.partition(confidence, k - 1)[:k]
    return float(lowest.mean())


@dataclass(frozen=True)
class Control:
    """The Label Studio names regions are written for: the control, the object it labels, its labels."""

    from_name: str
    to_name: str
    labels: tuple[str, ...]


def region_id(from_name: str, start: int, end: int, label: str) -> str:
    """A stable id: the same region predicted twice gets the same id."""
    key = f"{from_name}|{start}|{end}|{label}".encode()
    return hashlib.sha1(key).hexdigest()[:10]


# A row's position on the time axis, in the form the Label Studio UI writes it.
Axis = Callable[[int], object]


def regions(
    probs: np.ndarray, control: Control, instant_classes: frozenset[int], cleanup: RowCleanup, axis: Axis
) -> tuple[list[dict], float]:
    """Regions for one series and its task score (see ``task_score``).

    ``probs`` is (rows, classes) with class 0 background.  Segments of a class
    labelled with instants become one instant at their most probable row.
    """
    classes = cleanup.apply(probs.argmax(axis=1), instant_classes)
    own = probs[np.arange(len(classes)), classes]
    cumulative = np.concatenate([[0.0], np.cumsum(own, dtype=np.float64)])
    seg = run_lengths(classes)
    foreground = seg.classes != 0
    starts, ends, labels = seg.starts[foreground], seg.ends[foreground], seg.classes[foreground]
    scores = (cumulative[ends + 1] - cumulative[starts]) / (ends - starts + 1)
    results = []
    for start, end, cls, score in zip(starts.tolist(), ends.tolist(), labels.tolist(), scores.tolist()):
        instant = cls in instant_classes
        if instant and end > start:
            start = end = start + int(np.argmax(own[start : end + 1]))
            score = float(own[start])
        if score < cleanup.score_threshold:
            continue
        label = control.labels[cls - 1]
        results.append(
            {
                "id": region_id(control.from_name, start, end, label),
                "from_name": control.from_name,
                "to_name": control.to_name,
                "type": "timeserieslabels",
                "value": {
                    "start": axis(start),
                    "end": axis(end),
                    "instant": bool(instant and start == end),
                    "timeserieslabels": [label],
                },
                "score": round(float(score), 4),
            }
        )
    return results, task_score(probs.max(axis=1), classes)


def layered_regions(
    probs: np.ndarray, control: Control, instant_classes: frozenset[int], cleanup: RowCleanup, axis: Axis
) -> tuple[list[dict], float]:
    """Regions of a multi-label model, whose labels may overlap, and the task score.

    ``probs`` is (rows, labels), each column one label's presence probability.
    Every label is segmented on its own, as a two-class problem (absent /
    present), by ``regions`` with that label's clean-up (``cleanup`` indexed
    by class as for a single-label model: 0 background, k label k); the task
    score is the lowest over labels.
    """
    results: list[dict] = []
    scores: list[float] = []
    for k, label in enumerate(control.labels):
        p = probs[:, k : k + 1]
        two = np.concatenate([1.0 - p, p], axis=1)
        instant = frozenset({1}) if k + 1 in instant_classes else frozenset()
        one = Control(control.from_name, control.to_name, (label,))
        found, score = regions(two, one, instant, cleanup.of_label(k + 1), axis)
        results.extend(found)
        scores.append(score)
    return results, min(scores) if scores else 0.0
