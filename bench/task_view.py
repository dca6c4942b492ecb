"""The dashboard's view of a long task: what /predict adds, and the first open with and without its stored view.

    .venv/bin/python -m bench.task_view [--rows 1000000] [--repeat 3] [--served]

1. The predict path (``inference.predict_tasks``, as ``/predict`` runs it) of one
   task with and without the view keeper, alternated, median of ``--repeat``;
   how long the background thread still worked after it; the keeper's call on
   the request thread; the background thread's work (reduce + store) alone.
2. First open with the view ``/predict`` stored (read it, place the annotation,
   draw the PNG; the first chart of a process also imports matplotlib).
3. First open cold (no stored view: parse, predict, reduce, store, draw), and a
   second look (in-memory cache) and draw.
``--served`` instead measures the service over HTTP: gunicorn with 2 workers and
the fake Label Studio; a 1M-row task is predicted through ``/predict``, then its
task page and chart are fetched on new connections (either worker), and
likewise for a task never predicted (cold).
Target (README, Dashboard): a 1M-row task view served in under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.speed import model
from segmenter.service.dashboard.task_view import TaskViews

VIEWS = TaskViews()  # a runtime's task views, shared by this module's calls as one process's are


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--served", action="store_true", help="measure the service over HTTP")
    args = parser.parse_args()
    if args.served:
        served(args.rows)
        return

    from harness import synthetic
    from segmenter.config import Settings, bootstrap
    from segmenter.learning.inference import predict_tasks
    from segmenter.reading.task_series import read_task_series
    from segmenter.service.dashboard import charts

    bootstrap(Settings.from_env())
    trained = model()
    tasks, files = synthetic.annotated_tasks(1, args.rows, seed=3, n_events=40)
    task = {**tasks[0], "id": 1}
    with tempfile.TemporaryDirectory() as warm_dir, tempfile.TemporaryDirectory() as cold_dir:
        warm, cold = Path(warm_dir), Path(cold_dir)
        for folder in (warm, cold):  # the store keeps views of stored versions only: name one
            (folder / "model_project_1").mkdir()
            (folder / "model_project_1" / "v1-20260101T000000Z.pt").touch()
        plain, kept, stored = [], [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            predict_tasks([trained], [task], files)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            predict_tasks([trained], [task], files, keep=VIEWS.keeper(warm, "1", "v1-20260101T000000Z"))
            kept.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert VIEWS.flush(60)
            stored.append(time.perf_counter() - started)
        print(f"{args.rows:,} rows, 2 channels; medians of {args.repeat}")
        print(f"  predict without the view keeper: {statistics.median(plain):.3f} s "
              f"({', '.join(f'{t:.3f}' for t in plain)})")
        print(f"  predict with the view keeper:    {statistics.median(kept):.3f} s "
              f"({', '.join(f'{t:.3f}' for t in kept)})")
        print(f"  then the background store finished after {statistics.median(stored):.3f} s more")
        calls = []
        keep = VIEWS.keeper(warm, "1", "v1-20260101T000000Z")

        def timed_keep(task: dict, parts: list) -> None:
            started = time.perf_counter()
            keep(task, parts)
            calls.append(time.perf_counter() - started)

        predict_tasks([trained], [task], files, keep=timed_keep)
        assert VIEWS.flush(60)
        series = read_task_series(task, trained.target, files)
        parts = [(trained, series, trained.probabilities(series), None)]
        started = time.perf_counter()
        keep(task, parts)
        assert VIEWS.flush(60)
        writer = time.perf_counter() - started
        print(f"  the keeper's call on the request thread: {calls[0] * 1e6:.0f} us; "
              f"the background thread's work alone (reduce + store): {writer:.3f} s")
        files_kept = list(warm.rglob("*.npz"))
        print(f"  stored view: {sum(f.stat().st_size for f in files_kept) / 1e6:.1f} MB")

        timings = {}
        started = time.perf_counter()
        views = VIEWS.view("1", "v1-20260101T000000Z", task, [trained], files, model_dir=warm)
        timings["first open, view stored by predict: read + annotation"] = time.perf_counter() - started
        started = time.perf_counter()
        png = charts.task_chart(views[0])
        timings[f"  + draw, first chart of the process ({len(png):,} bytes PNG)"] = time.perf_counter() - started
        started = time.perf_counter()
        other = {**task, "id": 2}  # not in the in-memory cache either
        views = VIEWS.view("1", "v1-20260101T000000Z", other, [trained], files, model_dir=cold)
        timings["first open cold: parse + predict + reduce + store"] = time.perf_counter() - started
        started = time.perf_counter()
        charts.task_chart(views[0])
        timings["  + draw"] = time.perf_counter() - started
        started = time.perf_counter()
        views = VIEWS.view("1", "v1-20260101T000000Z", other, [trained], files, model_dir=cold)
        timings["again (in-memory cache)"] = time.perf_counter() - started
        print(f"  {len(views[0].x):,} columns")
        for name, seconds in timings.items():
            print(f"  {name}: {seconds:.3f} s")


def served(rows: int) -> None:
    """Task page + chart of a 1M-row task over HTTP, after /predict stored its view and cold."""
    import requests

    from harness import synthetic
    from harness.fakels import FakeLabelStudio
    from harness.processes import start_backend
    from harness.waiting import wait_until_idle

    config = synthetic.label_config()
    with tempfile.TemporaryDirectory() as tmp, FakeLabelStudio(legacy_token="bench") as ls:
        project = ls.add_project(config)
        ls.add_recordings(project, 2, rows=2000, n_events=6)
        env = {"WORKERS": "2", "THREADS": "4", "LOG_LEVEL": "WARNING", "TRAIN_EPOCHS": "10"}
        server = start_backend(Path(tmp) / "models", Path(tmp) / "backend.log", label_studio_url=ls.url,
                               api_key="bench", extra_env=env, timeout=60)
        url = server.url
        try:
            requests.post(url + "/setup", json={"project": f"{project}.1", "schema": config, "hostname": ls.url,
                                                "access_token": "bench"}, timeout=5)
            requests.post(url + "/webhook", json={"action": "START_TRAINING", "project": {"id": project}}, timeout=5)
            version = wait_until_idle(url, project, timeout=600, interval=0.2)["model_version"]
            [big] = ls.add_recordings(project, 1, seed=9, rows=rows, n_events=40)
            [cold] = ls.add_recordings(project, 1, seed=10, rows=rows, n_events=40)
            body = {"tasks": [big], "project": f"{project}.1", "label_config": config}
            started = time.perf_counter()
            requests.post(url + "/predict", json=body, timeout=300).raise_for_status()
            print(f"{rows:,} rows; /predict of the task: {time.perf_counter() - started:.2f} s ({version})")
            stored = Path(tmp) / "models" / f"model_project_{project}" / "task_views" / version
            while not (stored / f"task_{big['id']}.npz").exists():
                time.sleep(0.01)
            for name, task in (("view stored by /predict", big), ("cold", cold)):
                for attempt in range(3):
                    page_url = f"{url}/dashboard/project/{project}/task/{task['id']}"
                    started = time.perf_counter()
                    requests.get(page_url, timeout=60).raise_for_status()
                    page = time.perf_counter() - started
                    requests.get(page_url + "/0.png", timeout=60).raise_for_status()
                    total = time.perf_counter() - started
                    print(f"  {name} #{attempt + 1}: page {page:.3f} s, page + chart {total:.3f} s")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
