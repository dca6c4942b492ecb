"""What writing predictions for every task after a training does to a real Label Studio.

    .venv/bin/python -m bench.writeback [--tasks 10000] [--rows 200] [--batch 100] [--pause 0.5] [--samples 150]
                                        [--default-training]

Starts Label Studio 1.23 (``.labelstudio``, as the integration suite does) and the backend under
gunicorn on loopback; imports ``--tasks`` tasks of small inline-JSON series (``--rows``, 200 by
default, so our own prediction is cheap) in bulk, annotates four of them, connects the backend
by ``/setup`` and asks for a training (a short one, or with ``--default-training`` the backend's
defaults); it also prints the time from that request to the write-back's end, the loop's whole
delay from an annotation to fresh predictions on every task.  Label Studio's response time is
sampled, one request at a time, idle before the training and then while the write-back runs:
``GET /api/projects/{id}`` and a Data Manager page (``GET /api/tasks/?project=&page_size=30``).
Prints their p50/p99 and the write-back's throughput (predictions written per second, from the
first status poll that sees it running to the one that sees it done) and the write-back's own seconds per stage (the
``writeback.seconds`` of ``/status``: listing, downloads, predicting, import, pauses; the rest
of the wall time is status records and waiting on the CPU).  ``--fake`` runs the same against
the fake Label Studio (harness/fakels.py, in this process): our own costs, without Label
Studio's.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from harness import synthetic
from harness.lsdriver import LabelStudioAPI
from harness.processes import pristine_data_dir, start_backend, start_label_studio
from harness.waiting import backend_status, wait_for
from segmenter import store

CONFIG = synthetic.label_config().replace('valueType="url" value="$csv_url"', 'valueType="json" value="$ts"')
ROWS = 200  # --rows' default
ANNOTATED = 4


def inline_task(seed: int, rows: int = ROWS) -> tuple[dict, list[dict]]:
    """A task of one small inline series and the annotation of its planted events."""
    rec = synthetic.make_recording(rows, seed=seed, n_events=2, event_rows=(20, 50))
    columns = {c: [round(float(v), 3) for v in rec.frame[c]] for c in rec.frame.columns}
    return {"data": {"ts": columns}}, synthetic.annotation(rec)


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "n=0"
    ms = np.array(samples) * 1000
    return f"n={len(ms)} p50={np.percentile(ms, 50):.0f} ms p99={np.percentile(ms, 99):.0f} ms max={ms.max():.0f} ms"


class Sampler:
    """Times Label Studio's answers, one request at a time, until stopped or ``limit`` each."""

    def __init__(self, api: LabelStudioAPI, project: int, limit: int) -> None:
        self.paths = {"project": f"/api/projects/{project}", "dm page": f"/api/tasks/?project={project}&page_size=30"}
        self.api, self.limit = api, limit
        self.times: dict[str, list[float]] = {name: [] for name in self.paths}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and min(len(t) for t in self.times.values()) < self.limit:
            for name, path in self.paths.items():
                self.times[name].append(self.api.timed("GET", path)[1])
            time.sleep(0.1)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, list[float]]:
        self._stop.set()
        self._thread.join(120)
        return self.times


def stages(wb: dict, wall: float) -> str:
    """The write-back's seconds per stage, as a line."""
    spent = wb.get("seconds") or {}
    parts = ", ".join(f"{name} {value:.1f} s" for name, value in sorted(spent.items(), key=lambda kv: -kv[1]))
    return f"  seconds per stage: {parts}; other {wall - sum(spent.values()):.1f} s of {wall:.1f} s"


def fake(args: argparse.Namespace) -> None:
    """The write-back against the fake Label Studio: where our own time goes."""
    from harness.fakels import FakeLabelStudio

    with tempfile.TemporaryDirectory() as tmp, FakeLabelStudio(legacy_token="bench") as ls:
        project = ls.add_project(CONFIG)
        for seed in range(args.tasks):
            task, result = inline_task(seed)
            ls.add_task(project, task["data"], annotations=[result] if seed < ANNOTATED else [])
        env = {"WORKERS": "1", "THREADS": "4", "LOG_LEVEL": "WARNING", "TRAIN_EPOCHS": "15",
               "EARLY_STOPPING_PATIENCE": "5", "PREDICT_BATCH_SIZE": args.batch, "PREDICT_BATCH_PAUSE": args.pause}
        backend = start_backend(Path(tmp) / "models", Path(tmp) / "backend.log", label_studio_url=ls.url,
                                api_key="bench", extra_env=env)
        try:
            session = requests.Session()
            session.post(backend.url + "/setup", json={"project": f"{project}.1", "schema": CONFIG,
                                                       "hostname": ls.url, "access_token": "bench"}, timeout=10)
            session.post(backend.url + "/webhook", json={"action": "START_TRAINING", "project": {"id": project}},
                         timeout=10)
            wait_for(lambda: (backend_status(backend.url, project).get("writeback") or {}).get("state") == "running",
                     600, "the write-back to start", interval=0.2)
            began = time.monotonic()
            wb = wait_for(lambda: (w := backend_status(backend.url, project).get("writeback") or {}).get("state")
                          not in ("pending", "running") and w, 3600, "the write-back to finish", interval=0.5)
            seconds = time.monotonic() - began
            print(f"fake Label Studio, write-back: {wb['state']}, {wb['written']} predictions for {wb['seen']} "
                  f"tasks in {seconds:.0f} s = {wb['written'] / seconds:.0f} tasks/s "
                  f"(batch {args.batch}, pause {args.pause} s)")
            print(stages(wb, seconds))
        finally:
            backend.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of each task's series")
    parser.add_argument("--default-training", action="store_true", help="train with the backend's defaults")
    parser.add_argument("--batch", default="100")
    parser.add_argument("--pause", default="0.5")
    parser.add_argument("--samples", type=int, default=150, help="idle samples of each request")
    parser.add_argument("--fake", action="store_true", help="against the fake Label Studio")
    args = parser.parse_args()
    if args.fake:
        fake(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-writeback-"))
    password, token = secrets.token_urlsafe(12), secrets.token_hex(20)
    data_dir = tmp / "data"
    shutil.copytree(pristine_data_dir(log_path=tmp / "migrate.log"), data_dir)
    ls = start_label_studio(data_dir, tmp / "files", tmp / "label-studio.log", username="bench@example.com",
                            password=password, token=token)
    backend = None
    try:
        api = LabelStudioAPI(ls.url, token=token)
        created = api.create_project("Write-back bench", CONFIG)
        project = created["id"]
        key = f"{project}.{store.created_epoch(created.get('created_at'))}"  # as Label Studio names it
        started = time.monotonic()
        annotations: dict[int, list[dict]] = {}
        for first in range(0, args.tasks, 2000):
            chunk = [inline_task(seed, args.rows) for seed in range(first, min(first + 2000, args.tasks))]
            api.call("POST", f"/api/projects/{project}/import", json=[task for task, _ in chunk])
            if first == 0:
                annotations = {k: result for k, (_, result) in enumerate(chunk[:ANNOTATED])}
        ids = sorted(t["id"] for t in api.call(
            "GET", f"/api/tasks/?project={project}&page_size={ANNOTATED}&review=true").json()["tasks"])
        for k, task_id in enumerate(ids[:ANNOTATED]):
            api.annotate(task_id, annotations[k])
        print(f"imported {args.tasks} tasks and annotated {ANNOTATED} in {time.monotonic() - started:.0f} s")

        idle = Sampler(api, project, args.samples).start()
        idle._thread.join()
        idle_times = idle.times

        env = {"WORKERS": "1", "THREADS": "4", "LOG_LEVEL": "WARNING", "PREDICT_BATCH_SIZE": args.batch,
               "PREDICT_BATCH_PAUSE": args.pause}
        if not args.default_training:
            env |= {"TRAIN_EPOCHS": "15", "EARLY_STOPPING_PATIENCE": "5"}
        backend = start_backend(tmp / "models", tmp / "backend.log", label_studio_url=ls.url, api_key=token,
                                extra_env=env)
        session = requests.Session()
        session.post(backend.url + "/setup", json={"project": key, "schema": CONFIG,
                                                   "hostname": ls.url, "access_token": token}, timeout=10)
        requested = time.monotonic()
        session.post(backend.url + "/webhook", json={"action": "START_TRAINING", "project": {"id": project}},
                     timeout=10)

        def writing() -> dict | None:
            status = backend_status(backend.url, project)
            if status.get("state") == "failed":
                raise RuntimeError(f"training failed: {status.get('last_error')}")
            wb = status.get("writeback") or {}
            return status if wb.get("state") == "running" else None

        wait_for(writing, 600, "the write-back to start", interval=0.2)
        began = time.monotonic()
        busy = Sampler(api, project, 10**9).start()
        last: dict = {}

        def finished() -> dict | None:
            last.update(backend_status(backend.url, project).get("writeback") or {})
            return last if last.get("state") not in ("pending", "running") else None

        wb = wait_for(finished, 3600, "the write-back to finish", interval=0.5)
        seconds = time.monotonic() - began
        busy_times = busy.stop()
        print(f"write-back: {wb['state']}, {wb['written']} predictions for {wb['seen']} tasks in {seconds:.0f} s "
              f"= {wb['written'] / seconds:.0f} tasks/s (batch {args.batch}, pause {args.pause} s)")
        if wb.get("last_error"):
            print("  error:", wb["last_error"])
        print(stages(wb, seconds))
        print(f"from the training request to the last prediction written: {time.monotonic() - requested:.0f} s "
              f"({args.tasks} tasks x {args.rows} rows, {'default' if args.default_training else 'short'} training)")
        for name in idle_times:
            print(f"GET {name:8} idle:              {percentiles(idle_times[name])}")
            print(f"GET {name:8} during write-back: {percentiles(busy_times[name])}")
        listed = api.call("GET", f"/api/tasks/?project={project}&page_size=100&fields=all").json()["tasks"]
        scored = sum(t.get("predictions_score") is not None for t in listed)
        print(f"Data Manager page of {len(listed)} tasks: {scored} with a prediction score")
    finally:
        if backend is not None:
            backend.stop()
        ls.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
