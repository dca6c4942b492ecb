"""Sensor recordings with planted events, for tests, benchmarks and the demo.

Background is slow drift plus noise; a "Run" event is a fast, strong
oscillation, a "Walk" event a slower one with an offset, and a "Spike" is a
one-sample jolt (an instant).  The planted events come back as Label Studio
regions so a recording and its annotation are made together.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def regions(events: list[tuple[int, int, str]], axis: np.ndarray | list | None = None) -> list[dict]:
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
