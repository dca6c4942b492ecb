"""Quality on UEA BasicMotions with the default settings, median of 3 seeds.

    .venv/bin/python -m bench.quality [--seeds 0 1 2] [--resample 8] [--train-series 1]

``--data-seed`` keeps the same recordings in the same order for every seed
(only the training seed varies).  ``--resample`` runs the same recordings at that many times the rows per second
(8: linear interpolation; 0.5: every second row); ``--train-series`` trains on
only the first that many annotated TRAIN series.

Targets (README, Benchmarks): timestep macro-F1 >= 0.97, event F1@IoU0.5 >= 0.90,
training <= 30 s on 2 cores.  Runs `python -m segmenter evaluate` per seed,
exactly as a user would, and prints each report and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.basicmotions import write_project

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--resample", type=float, default=1.0, help="rows per original row (8, 0.5, ...)")
    parser.add_argument("--train-series", type=int, default=None, help="train on the first N TRAIN series")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="order the recordings with this seed for every run (default: each run's seed)")
    args = parser.parse_args()
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            config, train, test = write_project(
                Path(tmp) / f"seed{seed}", seed if args.data_seed is None else args.data_seed,
                args.resample, args.train_series,
            )
            out = subprocess.run(
                [sys.executable, "-m", "segmenter", "evaluate", "--label-config", str(config), "--export",
                 str(train), "--test-export", str(test), "--seed", str(seed)],
                cwd=ROOT, capture_output=True, text=True, env={**os.environ, "LOG_LEVEL": "WARNING"}, check=True,
            )
            report = json.loads(out.stdout)
            reports.append(report)
            keys = ("timestep_macro_f1", "balanced_accuracy", "event_f1_iou50", "n_true_segments",
                    "n_pred_segments", "train_seconds", "predict_seconds")
            print(f"seed {seed}: " + ", ".join(f"{k}={report[k]}" for k in keys), flush=True)
    print("median of seeds " + " ".join(map(str, args.seeds)) + ":")
    for key in ("timestep_macro_f1", "balanced_accuracy", "event_f1_iou50", "train_seconds"):
        values = [r[key] for r in reports]
        print(f"  {key}: median {statistics.median(values)}, worst {max(values) if 'seconds' in key else min(values)}")


if __name__ == "__main__":
    main()
