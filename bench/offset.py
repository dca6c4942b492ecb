"""Robustness to a recording's offset and gain: global vs per-series normalisation (issue 18).

    .venv/bin/python -m bench.offset [--seeds 0 1] [--json out.json]

Trains on synthetic recordings (``harness.synthetic``, as the suite's synthetic set:
two channels, Run/Walk ranges and Spike instants) once per seed and normalisation
(``series_norm`` False / True), then scores fresh recordings as they are and with
every channel shifted by a constant, scaled by a gain, or both, as a sensor with
another calibration would record them, and recordings holding fewer events or rows
than the training ones (whose own statistics then differ).  Prints timestep macro-F1 and event F1 per
normalisation and distortion (mean over seeds, worst in brackets).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from harness import synthetic
from segmenter.config import TrainingSettings

TRAIN_TASKS, TEST_TASKS, ROWS = 6, 6, 1200
TEST_SEED = 5000  # test recordings: none of the training ones
# (name, gain, offset, events per recording, rows): every channel becomes gain * value + offset; the last
# two check the cost of per-series statistics, which follow what a recording holds (fewer events: other std)
DISTORTIONS = (
    ("as recorded", 1.0, 0.0, 8, ROWS),
    ("offset +2", 1.0, 2.0, 8, ROWS),
    ("offset -5", 1.0, -5.0, 8, ROWS),
    ("gain x2", 2.0, 0.0, 8, ROWS),
    ("gain x0.5", 0.5, 0.0, 8, ROWS),
    ("gain x3, offset +10", 3.0, 10.0, 8, ROWS),
    ("2 events, not 8", 1.0, 0.0, 2, ROWS),
    ("300 rows, 2 events", 1.0, 0.0, 2, 300),
)


def distorted_tasks(gain: float, offset: float, events: int, rows: int) -> tuple[list[dict], synthetic.MemoryFiles]:
    """The test recordings (``events`` ranges and 3 spikes in ``rows``) with every channel as
    ``gain * value + offset``, annotated as planted."""
    files, tasks = synthetic.MemoryFiles(), []
    for i in range(TEST_TASKS):
        rec = synthetic.make_recording(rows, seed=TEST_SEED + i, n_events=events, spikes=3)
        channels = [c for c in rec.frame.columns if c != "time"]
        rec.frame[channels] = gain * rec.frame[channels].to_numpy() + offset
        name = f"test{i}.csv"
        files[name] = synthetic.csv_bytes(rec)
        tasks.append({"id": i + 1, "data": {"csv_url": name},
                      "annotations": [{"id": i, "result": synthetic.annotation(rec)}]})
    return tasks, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--json", type=Path, help="write every score here")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import torch

    from segmenter.learning.evaluation import score
    from segmenter.learning.training import train_project

    torch.set_num_threads(1)
    config = synthetic.label_config(channels=2, with_spikes=True)
    train, files = synthetic.annotated_tasks(TRAIN_TASKS, ROWS, seed=1234, n_events=8, spikes=3)
    tests = {name: distorted_tasks(*how) for name, *how in DISTORTIONS}
    runs = []
    for series_norm in (False, True):
        for seed in args.seeds:
            started = time.perf_counter()
            [model] = train_project(config, train, files, TrainingSettings(seed=seed, series_norm=series_norm))
            seconds = round(time.perf_counter() - started, 1)
            for name, (tasks, test_files) in tests.items():
                report = score([model], tasks, test_files)
                run = {"series_norm": series_norm, "seed": seed, "distortion": name, "train_seconds": seconds,
                       "macro_f1": report["timestep_macro_f1"], "event_f1": report["event_f1_iou50"]}
                runs.append(run)
                print(json.dumps(run), flush=True)
    print("| distortion | global: macro-F1 mean (worst) | event F1 mean (worst) "
          "| per-series: macro-F1 mean (worst) | event F1 mean (worst) |")
    print("|---|---|---|---|---|")
    for name, *_ in DISTORTIONS:
        cells = []
        for series_norm in (False, True):
            mine = [r for r in runs if r["distortion"] == name and r["series_norm"] is series_norm]
            for metric in ("macro_f1", "event_f1"):
                values = [r[metric] for r in mine]
                cells.append(f"{statistics.fmean(values):.3f} ({min(values):.3f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
