"""Service latency while a training runs, and /predict throughput.

    .venv/bin/python -m bench.service [--workers 1] [--threads 8]

Starts the backend under gunicorn and a fake Label Studio (harness/fakels.py)
on loopback, starts a training, and while it runs measures ``/health`` and
``/webhook`` round trips (bounded: at most 400 of each, 60 s).  Then times
``/predict`` for 10 tasks of 10,000 rows.  Targets (README, Benchmarks): webhook p99 <
100 ms, /health p99 < 50 ms during training, /predict 10 x 10k < 2 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from harness import synthetic
from harness.fakels import FakeLabelStudio
from harness.processes import start_backend
from harness.waiting import wait_until_idle


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"n={len(ms)} p50={np.percentile(ms, 50):.1f} ms p99={np.percentile(ms, 99):.1f} ms max={ms.max():.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1")
    parser.add_argument("--threads", default="8")
    args = parser.parse_args()
    config = synthetic.label_config()
    with tempfile.TemporaryDirectory() as tmp, FakeLabelStudio(legacy_token="bench") as ls:
        project = ls.add_project(config)
        tasks = ls.add_recordings(project, 4, rows=10_000, n_events=20)
        tasks += ls.add_recordings(project, 6, seed=4, rows=10_000, n_events=20, annotate=False)
        env = {"WORKERS": args.workers, "THREADS": args.threads, "LOG_LEVEL": "WARNING", "TRAIN_EPOCHS": "30",
               "EARLY_STOPPING_PATIENCE": "30"}
        server = start_backend(Path(tmp) / "models", Path(tmp) / "backend.log", label_studio_url=ls.url,
                               api_key="bench", extra_env=env, timeout=60)
        url = server.url
        try:
            session = requests.Session()
            session.post(url + "/setup", json={"project": f"{project}.1", "schema": config, "hostname": ls.url,
                                               "access_token": "bench"}, timeout=5)
            session.post(url + "/webhook", json={"action": "START_TRAINING", "project": {"id": project}}, timeout=5)
            while session.get(f"{url}/status/{project}", timeout=5).json()["state"] != "training":
                time.sleep(0.05)
            health, webhook = [], []
            body = {"action": "ANNOTATION_UPDATED", "project": {"id": project, "label_config": config},
                    "annotation": {"id": 1}, "task": {"id": tasks[0]["id"]}}
            stop = time.monotonic() + 60
            while time.monotonic() < stop and len(health) < 400:
                if session.get(f"{url}/status/{project}", timeout=5).json()["state"] != "training":
                    break
                t0 = time.perf_counter()
                session.get(url + "/health", timeout=5)
                health.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                session.post(url + "/webhook", json=body, timeout=5)
                webhook.append(time.perf_counter() - t0)
                time.sleep(0.02)
            print(f"/health during training:  {percentiles(health)}")
            print(f"/webhook during training: {percentiles(webhook)}")
            status = wait_until_idle(url, project, timeout=600, interval=0.2)
            print(f"training: {status['state']}, version {status['model_version']}")
            predict = {"tasks": tasks, "project": f"{project}.1", "label_config": config}
            session.post(url + "/predict", json=predict, timeout=120)  # warm: model load, downloads cached
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                results = session.post(url + "/predict", json=predict, timeout=120).json()["results"]
                times.append(time.perf_counter() - t0)
            regions = sum(len(r["result"]) for r in results)
            print(f"/predict 10 tasks x 10k rows: median {np.median(times):.2f} s, max {max(times):.2f} s, "
                  f"{regions} regions")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
