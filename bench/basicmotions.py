"""UEA BasicMotions as a Label Studio segmentation project (bundled in the aeon wheel, BSD-3).

Each series concatenates 10 recordings of one split (6 channels, 100 steps
each) in seeded random order; Standing is background, Walking / Running /
Badminton are ranges.  40 recordings per split give 4 series per split.
``write_project`` writes the CSVs, a labeling config and Label Studio exports.

``resample`` changes the rows per second of the same recordings: each channel
is linearly interpolated at the new row positions (8.0: eight rows per
original row; 0.5: every second row kept) and every row takes the label of
its nearest original row, so only the timescale in rows changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from aeon.datasets import load_basic_motions

CHANNELS = ("accx", "accy", "accz", "gyrx", "gyry", "gyrz")
LABELS = {"walking": "Walking", "running": "Running", "badminton": "Badminton"}
PER_SERIES = 10

LABEL_CONFIG = (
    '<View><TimeSeriesLabels name="label" toName="ts">'
    + "".join(f'<Label value="{v}"/>' for v in LABELS.values())
    + '</TimeSeriesLabels><TimeSeries name="ts" valueType="url" value="$csv_url" timeColumn="time">'
    + "".join(f'<Channel column="{c}"/>' for c in CHANNELS)
    + "</TimeSeries></View>"
)


def resample(values: np.ndarray, regions: list[dict], factor: float) -> tuple[np.ndarray, list[dict]]:
    """``values`` (rows, channels) and their row ``regions`` at ``factor`` times the rows."""
    if factor == 1:
        return values, regions
    n = len(values)
    positions = np.arange(int(round(n * factor))) / factor
    out = np.stack([np.interp(positions, np.arange(n), values[:, c]) for c in range(values.shape[1])], axis=1)
    nearest = np.clip(np.rint(positions), 0, n - 1)
    moved = []
    for region in regions:
        rows = np.flatnonzero((nearest >= region["value"]["start"]) & (nearest <= region["value"]["end"]))
        if len(rows):
            value = {**region["value"], "start": int(rows[0]), "end": int(rows[-1])}
            moved.append({**region, "value": value})
    return out, moved


def concatenate(
    recordings: list[np.ndarray], labels: list[str | None], channels: tuple[str, ...], prefix: str = "r"
) -> tuple[pd.DataFrame, list[dict]]:
    """One series from ``recordings`` (each channels x steps) laid end to end, with its regions.

    Every recording whose label is not None becomes one Label Studio region over
    its rows (adjacent ones of one label read as one event); None is background.
    """
    values = np.concatenate([r.T for r in recordings])
    regions, start = [], 0
    for j, (recording, label) in enumerate(zip(recordings, labels, strict=True)):
        steps = recording.shape[1]
        if label is not None:
            regions.append(
                {
                    "id": f"{prefix}_{j}",
                    "from_name": "label",
                    "to_name": "ts",
                    "type": "timeserieslabels",
                    "value": {"start": start, "end": start + steps - 1, "instant": False,
                              "timeserieslabels": [label]},
                }
            )
        start += steps
    frame = pd.DataFrame(values, columns=list(channels))
    frame.insert(0, "time", np.arange(len(frame)))
    return frame, regions


def build_series(split: str, seed: int, factor: float = 1.0) -> list[tuple[pd.DataFrame, list[dict]]]:
    """Series of one split: (frame with time + channels, Label Studio regions), ``factor`` x the rows."""
    x, y = load_basic_motions(split=split)
    order = np.random.default_rng(seed).permutation(len(y))
    out = []
    for k in range(0, len(order) - PER_SERIES + 1, PER_SERIES):
        chosen = order[k : k + PER_SERIES]
        frame, regions = concatenate([x[i] for i in chosen], [LABELS.get(str(y[i])) for i in chosen], CHANNELS,
                                     f"r{k}")
        values, regions = resample(frame[list(CHANNELS)].to_numpy(), regions, factor)
        frame = pd.DataFrame(values, columns=list(CHANNELS))
        frame.insert(0, "time", np.arange(len(frame)))
        out.append((frame, regions))
    return out


def write_project(
    folder: Path, seed: int, factor: float = 1.0, train_series: int | None = None
) -> tuple[Path, Path, Path]:
    """Write CSVs, config and train/test exports into ``folder``; returns their paths.

    ``train_series`` keeps only the first that many TRAIN series (few-task learning).
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.xml"
    config.write_text(LABEL_CONFIG)
    exports = []
    for split in ("train", "test"):
        tasks = []
        built = build_series(split, seed, factor)
        if split == "train" and train_series is not None:
            built = built[:train_series]
        for n, (frame, regions) in enumerate(built):
            name = f"{split}_{n}.csv"
            frame.to_csv(folder / name, index=False)
            tasks.append({"id": len(tasks) + 1, "data": {"csv_url": name},
                          "annotations": [{"id": n + 1, "result": regions}]})
        path = folder / f"{split}.json"
        path.write_text(json.dumps(tasks))
        exports.append(path)
    return config, exports[0], exports[1]
