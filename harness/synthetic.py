"""Sensor recordings with planted events, for tests, benchmarks and the demo.

Background is slow drift plus noise; a "Run" event is a fast, strong
oscillation, a "Walk" event a slower one with an offset, and a "Spike" is a
one-sample jolt (an instant).  The planted events come back as Label Studio
annotation results so a recording and its annotation are made together.

Three ways to use them:

* in memory: ``annotated_tasks`` gives exported-task dicts and a ``MemoryFiles``
  fetcher, for training and scoring without any server;
* in the fake Label Studio: ``FakeLabelStudio.add_recordings`` (``harness.fakels``);
* as CSV files in the three time-axis forms Label Studio knows (numeric time
  column, datetime strings, row indices): ``write_recordings`` and ``RecordingFile``,
  for a real Label Studio (``harness.lsdriver``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

LABELS = ("Run", "Walk")
INSTANT_LABEL = "Spike"


@dataclass
class Recording:
    """One synthetic recording and its planted events as (first row, last row, label)."""

    frame: pd.DataFrame  # columns: time, then the channels
    events: list[tuple[int, int, str]]


def make_recording(
    n_rows: int,
    seed: int,
    channels: int = 2,
    n_events: int = 4,
    event_rows: tuple[int, int] = (40, 120),
    spikes: int = 0,
) -> Recording:
    """A recording of ``n_rows`` with ``n_events`` non-overlapping range events and ``spikes`` instants."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows, dtype=np.float64)
    values = 0.3 * np.sin(2 * np.pi * t[:, None] / 400.0 + rng.uniform(0, 6, channels)) + rng.normal(
        0, 0.15, (n_rows, channels)
    )
    events: list[tuple[int, int, str]] = []
    slots = max(1, n_events)
    slot = n_rows // slots
    for k in range(n_events):
        length = int(rng.integers(event_rows[0], event_rows[1] + 1))
        if slot <= length + 10:
            break
        start = k * slot + int(rng.integers(5, slot - length - 5))
        end = start + length - 1
        label = LABELS[k % len(LABELS)]
        phase = np.arange(length)
        if label == "Run":
            values[start : end + 1] += 1.5 * np.sin(2 * np.pi * phase / 6.0)[:, None]
        else:
            values[start : end + 1] += 0.8 + 0.6 * np.sin(2 * np.pi * phase / 20.0)[:, None]
        events.append((start, end, label))
    busy = np.zeros(n_rows, dtype=bool)
    for start, end, _ in events:
        busy[max(0, start - 5) : end + 6] = True
    free = np.flatnonzero(~busy[5:-5]) + 5 if n_rows > 10 else np.zeros(0, dtype=np.int64)
    for row in rng.choice(free, size=min(spikes, len(free)), replace=False) if len(free) else []:
        values[row, 0] += 6.0
        events.append((int(row), int(row), INSTANT_LABEL))
    frame = pd.DataFrame(values, columns=[f"sensor{c + 1}" for c in range(channels)])
    frame.insert(0, "time", t)
    return Recording(frame, sorted(events))


OVERLAP_LABEL = "Alarm"


def make_layered_recording(n_rows: int, seed: int, n_events: int = 4) -> Recording:
    """Two label layers that overlap: Run/Walk on sensors 1-2 and Alarm on sensor 3.

    Each Alarm starts inside a Run or Walk event and runs past its end, so
    rows carry two labels at once; one more Alarm lies alone between events.
    """
    base = make_recording(n_rows, seed, channels=3, n_events=n_events)
    rng = np.random.default_rng(seed + 10_000)
    values = base.frame[["sensor1", "sensor2", "sensor3"]].to_numpy().copy()
    values[:, 2] = rng.normal(0, 0.15, n_rows)
    events = list(base.events)
    for start, end, _ in base.events:
        a = start + (end - start) // 2
        b = min(n_rows - 1, end + int(rng.integers(20, 40)))
        values[a : b + 1, 2] += 2.0
        events.append((a, b, OVERLAP_LABEL))
    if len(base.events) >= 2:  # one alarm alone, between the first two events
        gap_start, gap_end = base.events[0][1] + 75, base.events[1][0] - 5  # 35+ rows after the first alarm
        if gap_end - gap_start > 30:
            a = gap_start
            b = min(gap_end, a + 40)
            values[a : b + 1, 2] += 2.0
            events.append((a, b, OVERLAP_LABEL))
    frame = pd.DataFrame(values, columns=["sensor1", "sensor2", "sensor3"])
    frame.insert(0, "time", base.frame["time"].to_numpy())
    return Recording(frame, sorted(events))


def layered_config() -> str:
    """The labeling config of ``make_layered_recording``: Run, Walk and Alarm over three sensors."""
    labels = "".join(f'<Label value="{name}"/>' for name in LABELS + (OVERLAP_LABEL,))
    chans = "".join(f'<Channel column="sensor{c + 1}"/>' for c in range(3))
    return (
        f'<View><TimeSeriesLabels name="label" toName="ts">{labels}</TimeSeriesLabels>'
        f'<TimeSeries name="ts" valueType="url" value="$csv_url" timeColumn="time">{chans}</TimeSeries></View>'
    )


def layered_tasks(count: int, rows: int, seed: int = 0) -> tuple[list[dict], MemoryFiles]:
    """``count`` exported tasks of ``make_layered_recording`` with their fetcher."""
    files, tasks = MemoryFiles(), []
    for i in range(count):
        rec = make_layered_recording(rows, seed=seed + i)
        name = f"layered{seed + i}.csv"
        files[name] = csv_bytes(rec)
        tasks.append({"id": i + 1, "data": {"csv_url": name}, "annotations": [{"id": i, "result": annotation(rec)}]})
    return tasks, files


def label_config(channels: int = 2, with_spikes: bool = False, time_column: str | None = "time",
                 time_format: str | None = None, value_key: str = "csv_url") -> str:
    """A labeling config for recordings made by ``make_recording``."""
    labels = "".join(f'<Label value="{name}"/>' for name in LABELS + ((INSTANT_LABEL,) if with_spikes else ()))
    time_attr = f' timeColumn="{time_column}"' if time_column else ""
    format_attr = f' timeFormat="{time_format}"' if time_format else ""
    chans = "".join(f'<Channel column="sensor{c + 1}"/>' for c in range(channels))
    return (
        f'<View><TimeSeriesLabels name="label" toName="ts">{labels}</TimeSeriesLabels>'
        f'<TimeSeries name="ts" valueType="url" value="${value_key}"{time_attr}{format_attr}>{chans}'
        "</TimeSeries></View>"
    )


def annotation_results(events: list[tuple[int, int, str]], axis: np.ndarray | list | None = None) -> list[dict]:
    """Label Studio annotation results for ``events``; ``axis`` maps rows to start/end values."""
    out = []
    for k, (start, end, label) in enumerate(events):
        s = start if axis is None else axis[start]
        e = end if axis is None else axis[end]
        out.append(
            {
                "id": f"ev{k}",
                "from_name": "label",
                "to_name": "ts",
                "type": "timeserieslabels",
                "value": {"start": s, "end": e, "instant": start == end, "timeserieslabels": [label]},
            }
        )
    return out


def csv_bytes(recording: Recording) -> bytes:
    """The recording as the CSV bytes a task's file holds (numeric ``time`` column)."""
    return recording.frame.to_csv(index=False).encode()


def annotation(recording: Recording) -> list[dict]:
    """The planted events as annotation results on the recording's own ``time`` column."""
    return annotation_results(recording.events, recording.frame["time"].to_numpy())


# --------------------------------------------------------------------------- in memory


class MemoryFiles(dict):
    """Task files held in memory by reference: a fetcher for training, prediction and scoring."""

    def fetch(self, ref: str, task_id: object = None) -> bytes:
        """The bytes stored under ``ref``."""
        return self[ref]


def annotated_tasks(count: int, rows: int, seed: int = 0, **recording: object) -> tuple[list[dict], MemoryFiles]:
    """``count`` exported tasks (ids 1..count), each a recording of ``rows`` rows annotated with its
    planted events, and the fetcher holding their files; ``recording`` goes to ``make_recording``."""
    files, tasks = MemoryFiles(), []
    for i in range(count):
        rec = make_recording(rows, seed=seed + i, **recording)  # type: ignore[arg-type]
        name = f"rec{seed + i}.csv"
        files[name] = csv_bytes(rec)
        tasks.append({"id": i + 1, "data": {"csv_url": name}, "annotations": [{"id": i, "result": annotation(rec)}]})
    return tasks, files


# --------------------------------------------------------------------------- as CSV files

AXES = ("numeric", "datetime", "index")
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATETIME_ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
NUMERIC_STEP = 0.5  # seconds between samples in the numeric-time CSVs: float axis values


@dataclass
class RecordingFile:
    """A synthetic recording written as CSV, and how its rows appear on the time axis."""

    path: Path
    recording: Recording
    axis: list  # row -> the value Label Studio writes for that row (number, string or row index)
    kind: str = "numeric"  # one of AXES

    def row_of(self, value: object) -> int:
        """The row of an axis value as found in a region; ValueError when it is not one."""
        if self.kind == "index":
            if not isinstance(value, int) or not 0 <= value < len(self.axis):
                raise ValueError(f"{value!r} is not a row index of {self.path.name}")
            return value
        if self.kind == "datetime":
            return self.axis.index(value)
        if isinstance(value, (str, bool)):
            raise ValueError(f"{value!r} is not a numeric time of {self.path.name}")
        row = round(float(value) / NUMERIC_STEP)  # type: ignore[arg-type]
        if not 0 <= row < len(self.axis) or abs(self.axis[row] - float(value)) > 1e-6:  # type: ignore[arg-type]
            raise ValueError(f"{value!r} is not a time value of {self.path.name}")
        return row

    def annotation(self) -> list[dict]:
        """The planted events as the UI would save them (axis values in the project's form)."""
        result = annotation_results(self.recording.events, self.axis)
        for region in result:
            for key in ("start", "end"):
                value = region["value"][key]
                region["value"][key] = value.item() if hasattr(value, "item") else value
        return result


def time_format(axis: str) -> str | None:
    """The label config's ``timeFormat`` for an axis kind."""
    return DATETIME_FORMAT if axis == "datetime" else None


def project_config(axis: str, channels: int = 2) -> str:
    """The label config for recordings written by ``write_recordings`` with ``axis``."""
    return label_config(channels=channels, time_column=None if axis == "index" else "time",
                        time_format=time_format(axis))


def write_recordings(folder: Path, count: int, axis: str = "numeric", n_rows: int = 600, channels: int = 2,
                     n_events: int = 4, seed: int = 0, prefix: str = "rec") -> list[RecordingFile]:
    """``count`` CSVs with planted events; ``axis``: numeric time, datetime strings or no time column."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(count):
        recording = make_recording(n_rows, seed=seed + k, channels=channels, n_events=n_events)
        frame = recording.frame.copy()
        rows = range(len(frame))
        if axis == "numeric":
            values: list = [int(t) if float(t).is_integer() else t for t in (r * NUMERIC_STEP for r in rows)]
            frame["time"] = [str(v) for v in values]
        elif axis == "datetime":
            values = [(DATETIME_ORIGIN + timedelta(seconds=r)).strftime(DATETIME_FORMAT) for r in rows]
            frame["time"] = values
        else:
            frame = frame.drop(columns=["time"])
            values = list(rows)
        path = folder / f"{prefix}-{axis}-{k + 1:02d}.csv"
        frame.to_csv(path, index=False, float_format="%.5g")
        out.append(RecordingFile(path, recording, values, axis))
    return out
