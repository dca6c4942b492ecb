"""Per-project settings: ``model_*`` attributes on ``<TimeSeriesLabels>`` and its ``<Label>``s.

One backend serves projects sampled at 50 Hz and at 5 kHz; each project tunes
its own window, epochs and clean-up in its labeling config, the way Label
Studio users tune other ML backends.  ``read_settings`` turns the attributes of
every control into a ``ProjectSettings`` with the environment's defaults where
an attribute is absent.  A bad value never stops anything: that attribute keeps
its default and a message naming the attribute, the tag and the value is
collected in ``problems`` (logged, and shown by ``/status``).

Two kinds of settings: training-time ones (``model_context``,
``model_max_epochs``) shape the network, so a model trained with others is not
applied (``training_key``); predict-time ones (minimum duration, gap merging,
score threshold) only change the clean-up of the probabilities and apply to
the model served at once.

Durations: a plain number is in the time column's units (seconds for a
datetime time column, the column's own numbers for a numeric one, rows when
the ``<TimeSeries>`` has no ``timeColumn``); a ``rows`` suffix (``25rows``,
``25 rows``) counts rows.  ``Duration.rows`` converts with the series' median
row spacing.

Ranges keep one project from exhausting a backend others share: a context
is at most ``MAX_CONTEXT_ROWS`` rows (and, at training, no longer than the
typical annotated series: ``training.choose_context``); a duration is finite,
at most ``MAX_DURATION_ROWS`` rows or ``MAX_TIME_AMOUNT`` time units, and a
conversion to rows never exceeds ``MAX_DURATION_ROWS`` (longer than any series
a backend holds, so the clean-up means the same).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from segmenter.config import TrainingSettings
from segmenter.postprocess import MAX_DURATION_ROWS, Duration, Rule, rule_rows, spacing_of
from segmenter.reading.series import Series

PREFIX = "model_"
CONTEXT, MAX_EPOCHS = "model_context", "model_max_epochs"
MIN_DURATION, MERGE_GAP, SCORE_THRESHOLD = "model_min_duration", "model_merge_gap", "model_score_threshold"
CONTROL_ATTRIBUTES = (CONTEXT, MAX_EPOCHS, MIN_DURATION, MERGE_GAP, SCORE_THRESHOLD)
LABEL_ATTRIBUTES = (MIN_DURATION, MERGE_GAP)
MAX_EPOCHS_LIMIT = 100_000
MIN_CONTEXT_ROWS = 2
MAX_CONTEXT_ROWS = 4096  # the automatic context's cap too: the strided convolution's kernel grows with it
MAX_TIME_AMOUNT = 1e15  # in the time column's units: 31 million years of seconds, 11 days of nanoseconds
AUTO = "auto"
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(rows?)?\s*$", re.IGNORECASE)


def row_spacing(series: Series) -> float:
    """Time units per row: the typical step of the time column (seconds for datetimes), 1 for row indices."""
    return spacing_of(series.time, series.time_kind)


@dataclass(frozen=True)
class LabelCleanup:
    """One label's clean-up; ``min_duration`` None is automatic, ``merge_gap`` None is off."""

    min_duration: Duration | None
    merge_gap: Duration | None


@dataclass(frozen=True)
class ProjectSettings:
    """The settings in force for one ``<TimeSeriesLabels>`` control."""

    from_name: str
    context: Duration | None  # None: chosen from the annotations (or SEQUENCE_SIZE)
    max_epochs: int
    max_epochs_set: bool  # whether the config set it (else TRAIN_EPOCHS)
    score_threshold: float
    control: LabelCleanup
    labels: tuple[tuple[str, LabelCleanup], ...]  # every label, the control's values where it sets none
    problems: tuple[str, ...] = ()

    def training_key(self) -> dict:
        """What a model trained under these settings records; a model with another is not applied."""
        return {"context": AUTO if self.context is None else str(self.context),
                "max_epochs": self.max_epochs if self.max_epochs_set else None}

    def describe(self) -> dict:
        """The settings as plain values, for ``/status``."""

        def text(d: Duration | None, none: str) -> str:
            return none if d is None else str(d)

        return {
            CONTEXT: text(self.context, AUTO),
            MAX_EPOCHS: self.max_epochs,
            MIN_DURATION: text(self.control.min_duration, AUTO),
            MERGE_GAP: text(self.control.merge_gap, "0"),
            SCORE_THRESHOLD: self.score_threshold,
            "labels": {
                label: {MIN_DURATION: text(c.min_duration, AUTO), MERGE_GAP: text(c.merge_gap, "0")}
                for label, c in self.labels
            },
        }

    def cleanup_rows(self, labels: tuple[str, ...], series: Series, auto_rows: int) -> tuple[list[int], list[int]]:
        """The minimum run and merged gap in rows for ``series``, per class: class 0 (background)
        follows the control, class k label k.

        ``auto_rows`` is the model's automatic minimum (half the shortest annotated range).
        """
        return rule_rows(self.rules(labels), row_spacing(series), auto_rows)

    def rules(self, labels: tuple[str, ...]) -> list[Rule]:
        """Per class, its (minimum duration, merged gap): class 0 (background) the control's, class k label k's."""
        by_label = dict(self.labels)
        chosen = (self.control, *(by_label.get(label, self.control) for label in labels))
        return [(r.min_duration, r.merge_gap) for r in chosen]


def default_settings(from_name: str, labels: tuple[str, ...], defaults: TrainingSettings) -> ProjectSettings:
    """The settings of a control without any ``model_*`` attribute."""
    control = LabelCleanup(None, None)
    return ProjectSettings(from_name, None, defaults.epochs, False, 0.0, control,
                           tuple((label, control) for label in labels))


class _Reader:
    """Reads attributes of one tag, collecting a problem for each bad value."""

    def __init__(self, node: ET.Element, where: str, problems: list[str], plain_rows: bool = False) -> None:
        self.node, self.where, self.problems = node, where, problems
        self.plain_rows = plain_rows  # a plain number counts rows: the control's series have no time column

    def bad(self, name: str, why: str, default: object) -> None:
        self.problems.append(f"{self.where} {name}={self.node.get(name)!r}: {why}; using the default {default}")

    def duration(self, name: str, default: Duration | None, auto: bool, positive: bool,
                 shown: str, max_rows: int = MAX_DURATION_ROWS) -> Duration | None:
        """A duration within range: finite, above 0 (``positive``) or at least 0, at most ``max_rows``
        rows (a ``rows`` suffix, or a plain number where it counts rows) or ``MAX_TIME_AMOUNT`` time units."""
        raw = self.node.get(name)
        if raw is None:
            return default
        if auto and raw.strip().lower() == AUTO:
            return None
        match = _DURATION.match(raw)
        syntax = "'auto', " if auto else ""
        bound = "above 0" if positive else "of at least 0"
        if not match:
            self.bad(name, f"expected {syntax}a number {bound} in the time column's units, or rows ('25 rows')", shown)
            return default
        amount = float(match.group(1))
        if not math.isfinite(amount) or (positive and amount <= 0):
            self.bad(name, "must be a finite number above 0" if positive else "must be finite", shown)
            return default
        in_rows = match.group(2) is not None
        if (in_rows or self.plain_rows) and amount > max_rows:
            self.bad(name, f"must be at most {max_rows} rows", shown)
            return default
        if amount > MAX_TIME_AMOUNT:
            self.bad(name, f"must be at most {MAX_TIME_AMOUNT:.0e} in the time column's units", shown)
            return default
        return Duration(amount, in_rows)

    def integer(self, name: str, default: int, low: int, high: int) -> tuple[int, bool]:
        raw = self.node.get(name)
        if raw is None:
            return default, False
        try:
            value = int(raw.strip())
        except ValueError:
            self.bad(name, "not an integer", default)
            return default, False
        if not low <= value <= high:
            self.bad(name, f"must lie between {low} and {high}", default)
            return default, False
        return value, True

    def fraction(self, name: str, default: float) -> float:
        raw = self.node.get(name)
        if raw is None:
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            self.bad(name, "not a number", default)
            return default
        if not 0.0 <= value <= 1.0:  # also rejects nan
            self.bad(name, "must lie between 0 and 1", default)
            return default
        return value

    def unknown(self, known: tuple[str, ...]) -> None:
        for name in self.node.keys():
            if name.startswith(PREFIX) and name not in known:
                self.problems.append(f"{self.where} {name}: unknown attribute (known here: {', '.join(known)})")


def control_settings(control: ET.Element, defaults: TrainingSettings, plain_rows: bool = False) -> ProjectSettings:
    """The settings one ``<TimeSeriesLabels>`` element sets, validated.

    ``plain_rows``: the series it labels have no time column, so a plain number counts rows.
    """
    name = control.get("name") or ""
    problems: list[str] = []
    read = _Reader(control, f"<TimeSeriesLabels name={name!r}>", problems, plain_rows)
    read.unknown(CONTROL_ATTRIBUTES)
    objects = [n.strip() for n in (control.get("toName") or "").split(",")]
    if len(set(objects)) < len(objects):
        problems.append(f"<TimeSeriesLabels name={name!r}> toName={control.get('toName')!r}: names an object "
                        "more than once; each is trained and predicted once")
    context = read.duration(CONTEXT, None, auto=True, positive=True, shown=AUTO, max_rows=MAX_CONTEXT_ROWS)
    max_epochs, epochs_set = read.integer(MAX_EPOCHS, defaults.epochs, 1, MAX_EPOCHS_LIMIT)
    threshold = read.fraction(SCORE_THRESHOLD, 0.0)
    own = LabelCleanup(
        read.duration(MIN_DURATION, None, auto=True, positive=False, shown=AUTO),
        read.duration(MERGE_GAP, None, auto=False, positive=False, shown="0"),
    )
    labels = []
    for node in control.iter("Label"):
        value = node.get("value")
        if not value or value in dict(labels):
            continue
        label = _Reader(node, f"<Label value={value!r}> of <TimeSeriesLabels name={name!r}>", problems, plain_rows)
        label.unknown(LABEL_ATTRIBUTES)
        labels.append((value, LabelCleanup(
            label.duration(MIN_DURATION, own.min_duration, auto=True, positive=False,
                           shown=str(own.min_duration or AUTO)),
            label.duration(MERGE_GAP, own.merge_gap, auto=False, positive=False, shown=str(own.merge_gap or 0)),
        )))
    merge = tuple((label, LabelCleanup(c.min_duration, None if _off(c.merge_gap) else c.merge_gap))
                  for label, c in labels)
    control_gap = None if _off(own.merge_gap) else own.merge_gap
    return ProjectSettings(name, context, max_epochs, epochs_set, threshold,
                           LabelCleanup(own.min_duration, control_gap), merge, tuple(problems))


def _off(gap: Duration | None) -> bool:
    return gap is None or gap.amount == 0


def read_settings(label_config: str, defaults: TrainingSettings) -> dict[str, ProjectSettings]:
    """The settings of every ``<TimeSeriesLabels>`` of ``label_config``, by control name.

    Expects a config ``parse_label_config`` accepts; an unparsable one has no settings.  Of
    controls sharing a name the first counts, as in ``parse_label_config``; the others are a problem.
    """
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return {}
    untimed = {node.get("name") for node in root.iter("TimeSeries") if not (node.get("timeColumn") or "").strip()}
    found: dict[str, ProjectSettings] = {}
    for node in root.iter("TimeSeriesLabels"):
        name = node.get("name") or ""
        objects = {n.strip() for n in (node.get("toName") or "").split(",")}
        if name in found:
            problem = f"<TimeSeriesLabels name={name!r}>: a second control of this name is ignored"
            found[name] = replace(found[name], problems=(*found[name].problems, problem))
            continue
        found[name] = control_settings(node, defaults, plain_rows=objects <= untimed)
    return found


def problems(label_config: str, defaults: TrainingSettings) -> list[str]:
    """Every problem of the ``model_*`` attributes of ``label_config``."""
    return [p for s in read_settings(label_config, defaults).values() for p in s.problems]


def settings_report(label_config: str | None, defaults: TrainingSettings, models: list[dict] | None = None) -> dict:
    """``/status``'s ``settings`` (per control, plain values) and ``settings_problems`` for a config.

    ``models`` (``/status``'s records of the served models) add the problems their trainings
    found with settings that fit this config: a ``model_context`` too long for the series.
    """
    if not label_config:
        return {"settings": {}, "settings_problems": []}
    try:
        ET.fromstring(label_config)
    except ET.ParseError as exc:
        return {"settings": {}, "settings_problems": [f"label config is not valid XML: {exc}"]}
    found = read_settings(label_config, defaults)
    trained = [
        f"<TimeSeriesLabels name={m['from_name']!r}> {m['context']['problem']}" for m in models or []
        if (m.get("context") or {}).get("problem") and m["from_name"] in found
        and m.get("trained_with") == found[m["from_name"]].training_key()
    ]
    return {
        "settings": {name: s.describe() for name, s in found.items()},
        "settings_problems": [p for s in found.values() for p in s.problems] + trained,
    }
