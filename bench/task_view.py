"""The dashboard's task view of a long series: reading, predicting, reducing and drawing.

    .venv/bin/python -m bench.task_view [--rows 1000000]

Times ``taskview.view`` (CSV parse, model probabilities, reduction to at most 2,000
columns) the first time and again (the unchanged task's view is cached), and ``charts.task_chart``
(drawing the PNG).  Target (README, Dashboard): a 1M-row task drawn in under 1 s.
"""

from __future__ import annotations

import argparse
import time

from bench.speed import model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    from harness import synthetic
    from segmenter import charts, taskview
    from segmenter.config import Settings, bootstrap

    bootstrap(Settings.from_env())
    trained = model()
    tasks, files = synthetic.annotated_tasks(1, args.rows, seed=3, n_events=40)
    timings = {}
    for name in ("first view (parse + predict + reduce)", "again (unchanged task: cached)"):
        started = time.perf_counter()
        views = taskview.view("bench", "v1", tasks[0], [trained], files)
        timings[name] = time.perf_counter() - started
    for i in range(3):
        started = time.perf_counter()
        png = charts.task_chart(views[0])
        timings[f"draw #{i + 1} ({len(png):,} bytes PNG)"] = time.perf_counter() - started
    print(f"{args.rows:,} rows, {len(views[0].x):,} columns")
    for name, seconds in timings.items():
        print(f"  {name}: {seconds:.3f} s")


if __name__ == "__main__":
    main()
