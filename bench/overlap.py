"""Overlapping labels: a synthetic set with two label layers, per-label event F1.

    .venv/bin/python -m bench.overlap [--seeds 0 1 2]

Trains on 4 recordings of ``harness.synthetic.layered_tasks`` (Run/Walk on two
sensors, Alarm on a third overlapping them), tests on 2 others, default
settings, and prints whether a multi-label model was trained, each label's
event F1@IoU0.5 and how many overlapping region pairs each test prediction has.
Target (README, Benchmarks): overlapping regions predicted, every label >= 0.95.
"""

from __future__ import annotations

import argparse
import time

from harness import synthetic
from segmenter.config import TrainingSettings
from segmenter.learning.evaluation import score
from segmenter.learning.inference import predict_tasks
from segmenter.learning.training import train_project


def overlapping_pairs(result: list[dict]) -> int:
    """Pairs of ranges of different labels that share rows."""
    spans = [r["value"] for r in result if not r["value"]["instant"]]
    return sum(
        1
        for i, a in enumerate(spans)
        for b in spans[i + 1 :]
        if a["timeserieslabels"] != b["timeserieslabels"] and a["start"] <= b["end"] and b["start"] <= a["end"]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    config = synthetic.layered_config()
    tasks, files = synthetic.layered_tasks(4, 1200, seed=10)
    tests, test_files = synthetic.layered_tasks(2, 1200, seed=100)
    for seed in args.seeds:
        started = time.monotonic()
        [model] = train_project(config, tasks, files, TrainingSettings(seed=seed))
        seconds = time.monotonic() - started
        report = score([model], tests, test_files)
        pairs = [overlapping_pairs(p["result"]) for p in predict_tasks([model], tests, test_files)]
        print(
            f"seed {seed}: multi_label={model.multi_label} train_seconds={seconds:.1f} "
            f"timestep_macro_f1={report['timestep_macro_f1']} event_f1_iou50={report['event_f1_iou50']} "
            f"per_label={report.get('per_label_event_f1_iou50')} overlapping_pairs={pairs}",
            flush=True,
        )


if __name__ == "__main__":
    main()
