"""Predict speed and memory: one 2-channel series from CSV bytes to regions.

    .venv/bin/python -m bench.speed [--rows 10000 100000 1000000] [--context 251]

Each size runs in a fresh process so its peak RSS is its own.  Prints the
time of each stage (CSV parse, network, regions) and the peak RSS.  ``--context``
fixes the window (rows) instead of the one the annotations give (85 here); a
window over 200 rows brings the network's merged positions and their dilated
convolutions.  Target
(README, Benchmarks): 1,000,000 rows <= 10 s and <= 1 GB on 2 cores (stretch 5 s).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def model(context: int | None = None):
    """A model briefly trained on synthetic recordings (timing does not depend on its quality),
    its window ``context`` rows (None: chosen from the annotations)."""
    from harness import synthetic
    from segmenter.config import Settings
    from segmenter.learning.training import train_project

    tasks, files = synthetic.annotated_tasks(2, 2000, n_events=6)
    settings = replace(Settings.from_env().training, sequence_size=context, epochs=15, patience=5)
    return train_project(synthetic.label_config(), tasks, files, settings)[0]


def one(rows: int, context: int | None = None) -> dict:
    """Time every stage for one series of ``rows`` rows (run in its own process)."""
    from harness import synthetic
    from segmenter.config import Settings, bootstrap
    from segmenter.learning.regions import task_score, to_results
    from segmenter.reading.series import load_series

    bootstrap(Settings.from_env())
    m = model(context)
    data = synthetic.make_recording(rows, seed=7, n_events=max(1, rows // 2000)).frame.to_csv(index=False).encode()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    series = load_series(data, m.target, task_id=1)
    t1 = time.perf_counter()
    probs = m.probabilities(series)
    t2 = time.perf_counter()
    regions, _ = to_results(series, probs, m.target, m.instant_classes, m.min_segment_rows)
    t3 = time.perf_counter()
    task_score(m.reference.familiarity(m.normalise(series.values), m.sequence_size))  # the task score's novelty part
    t4 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows": rows, "csv_mb": round(len(data) / 1e6, 1), "parse_s": round(t1 - t0, 3),
            "network_s": round(t2 - t1, 3), "regions_s": round(t3 - t2, 3), "novelty_s": round(t4 - t3, 3),
            "total_s": round(t4 - t0, 3),
            "regions": len(regions), "window": m.sequence_size,
            "rows_merged": m.net.merge, "dilations": list(m.net.dilations),
            "peak_rss_mb": round(peak / 1024), "rss_before_mb": round(base / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--context", type=int, help="the model's window in rows (default: from the annotations)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.context)))
        return
    window = [] if args.context is None else ["--context", str(args.context)]
    for rows in args.rows:
        out = subprocess.run([sys.executable, "-m", "bench.speed", "--one", str(rows), *window], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
