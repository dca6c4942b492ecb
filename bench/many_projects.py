"""Many projects on one backend: 100 trainings and write-backs asked for at once.

    .venv/bin/python -m bench.many_projects [--projects 100] [--trainings 1] [--writebacks 2]

Starts the backend under gunicorn (one worker, ``TRAINING_BACKEND=thread``) and a
fake Label Studio (harness/fakels.py) holding ``--projects`` projects of 2 annotated
and 8 unannotated 300-row recordings, then sends every project's Start Training at
once.  Until every project has trained and written its predictions back it measures
``/health`` and ``/predict`` (one task) round trips, the most trainings and write-backs
seen at once in the projects' ``status.json`` (sampled every 0.1 s), and the
service's RSS (master and worker, from /proc).  Then it asks ``/predict`` of every
project (each with a model in use) and measures the RSS again.  The order in which
trainings started comes from the fake Label Studio's export calls: "passed by" is, per
project, how many projects that asked later started training first.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from harness import synthetic
from harness.fakels import FakeLabelStudio
from harness.processes import start_backend
from segmenter import store


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"n={len(ms)} p50={np.percentile(ms, 50):.1f} ms p99={np.percentile(ms, 99):.1f} ms max={ms.max():.1f} ms"


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MiB (Linux /proc)."""
    pids, total = [pid], 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry.name))
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--trainings", default="1", help="MAX_CONCURRENT_TRAININGS")
    parser.add_argument("--writebacks", default="2", help="MAX_CONCURRENT_WRITEBACKS")
    parser.add_argument("--epochs", default="5")
    args = parser.parse_args()
    config = synthetic.label_config()
    with tempfile.TemporaryDirectory() as tmp, FakeLabelStudio(legacy_token="bench") as ls:
        projects, first_task = [], {}
        for i in range(args.projects):
            project = ls.add_project(config)
            first_task[project] = ls.add_recordings(project, 2, seed=i)[0]
            ls.add_recordings(project, 8, seed=1000 + i, annotate=False)
            projects.append(project)
        model_dir = Path(tmp) / "models"
        env = {"WORKERS": "1", "THREADS": "8", "LOG_LEVEL": "WARNING", "TRAIN_EPOCHS": args.epochs,
               "EARLY_STOPPING_PATIENCE": args.epochs, "MAX_CONCURRENT_TRAININGS": args.trainings,
               "MAX_CONCURRENT_WRITEBACKS": args.writebacks, "PREDICT_BATCH_PAUSE": "0.1"}
        server = start_backend(model_dir, Path(tmp) / "backend.log", label_studio_url=ls.url, api_key="bench",
                               extra_env=env, timeout=90)
        url, pid = server.url, server.process.pid
        session = requests.Session()
        try:
            print(f"{args.projects} projects, MAX_CONCURRENT_TRAININGS={args.trainings}, "
                  f"MAX_CONCURRENT_WRITEBACKS={args.writebacks}, TRAIN_EPOCHS={args.epochs}")
            print(f"RSS idle: {rss_mb(pid):.0f} MiB")
            started = time.monotonic()
            for project in projects:  # in this order: the order of the requests
                session.post(url + "/webhook", json={"action": "START_TRAINING", "project": {"id": project}},
                             timeout=5)
            sent = time.monotonic() - started
            peaks = {"training": 0, "writeback": 0}
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    statuses = [store.stored_status(model_dir, p) for p in projects]
                    peaks["training"] = max(peaks["training"], sum(s.state.value == "training" for s in statuses))
                    running = sum(s.writeback is not None and s.writeback.state == "running" for s in statuses)
                    peaks["writeback"] = max(peaks["writeback"], running)
                    if all(s.version and s.state.value == "idle" and s.writeback is not None
                           and s.writeback.state == "done" for s in statuses):
                        done.set()
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            health, predict, rss = [], [], []
            probe = projects[0]
            body = {"tasks": [first_task[probe]], "project": f"{probe}.1", "label_config": config}
            deadline = time.monotonic() + 3600
            while not done.is_set() and time.monotonic() < deadline:
                t0 = time.perf_counter()
                session.get(url + "/health", timeout=10)
                health.append(time.perf_counter() - t0)
                if len(health) % 10 == 0:
                    t0 = time.perf_counter()
                    session.post(url + "/predict", json=body, timeout=30)
                    predict.append(time.perf_counter() - t0)
                    rss.append(rss_mb(pid))
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            done.set()
            sampler.join(5)
            order = [int(r.path.split("/")[3]) for r in ls.calls("GET", prefix="/api/projects/")
                     if r.path.endswith("/export")]
            rank = {p: i for i, p in enumerate(projects)}
            passed = [sum(rank[q] > rank[p] for q in order[:order.index(p)]) for p in projects if p in order]
            print(f"requests sent in {sent:.1f} s; all trained and written back in {elapsed:.0f} s "
                  f"({len(order)} trainings for {len(projects)} projects)")
            print(f"most trainings at once: {peaks['training']} (bound {args.trainings}); "
                  f"most write-backs at once: {peaks['writeback']} (bound {args.writebacks})")
            print(f"passed by later requesters: max {max(passed)}, mean {np.mean(passed):.2f}")
            print(f"/health during: {percentiles(health)}")
            print(f"/predict (1 task x 300 rows) during: {percentiles(predict)}")
            print(f"RSS during: max {max(rss):.0f} MiB")
            for project in projects:  # every project's model in use once
                session.post(url + "/predict", json={"tasks": [first_task[project]], "project": f"{project}.1",
                                                     "label_config": config}, timeout=60)
            print(f"RSS after /predict on all {len(projects)} projects: {rss_mb(pid):.0f} MiB "
                  "(MODEL_CACHE_SIZE=8 models kept in memory per worker)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
