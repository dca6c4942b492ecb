"""What the dashboard's charts cost, and what they cost everyone else while they are drawn.

    .venv/bin/python -m bench.charts [--labels 10 20 40 80] [--served] [--seconds 20] [--projects 3]

1. The confusion chart drawn in this process for N labels: CPU seconds and PNG size.
2. ``--served``: gunicorn as ./start.sh runs it (1 worker, 8 threads) over a MODEL_DIR of
   ``--projects`` projects whose served version has 80 labels; two viewers open each project's
   page in turn, asking its four charts at once as a browser does (without caching on their side), for
   ``--seconds`` while ``/health`` is asked every 50 ms: its latency (p50, p99, max)
   and how many charts were served (200) or deferred (503).
Target (README, Security): /health p99 under 0.25 s while two viewers open 80-label charts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

KINDS = ("f1", "balance", "confusion", "epochs")


def drawn(labels: list[int]) -> None:
    from harness.many_labels import confusion
    from segmenter.service.dashboard import charts

    charts.preload()
    print("confusion chart, drawn in this process")
    for n in labels:
        classes, rows = confusion(n)
        started = time.process_time()
        png = charts.confusion(classes, rows)
        print(f"  {n:3d} labels: {time.process_time() - started:.2f} s CPU, {len(png):,} bytes PNG")


def served(seconds: float, projects: int, labels: int) -> None:
    import requests

    from harness.many_labels import model_dir_with_labels
    from harness.processes import start_backend

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        model_dir_with_labels(models, projects, labels)
        server = start_backend(models, Path(tmp) / "backend.log", extra_env={"LOG_LEVEL": "WARNING"}, timeout=60)
        url, stop = server.url, threading.Event()
        answers: list[int] = []
        latencies: list[float] = []
        try:
            def fetch(session: requests.Session, path: str) -> None:
                try:
                    answers.append(session.get(url + path, timeout=120).status_code)
                except requests.RequestException:
                    answers.append(0)

            def viewer() -> None:
                """A browser opening each project's page: its charts asked at once, on parallel connections."""
                sessions = [requests.Session() for _ in KINDS]
                while not stop.is_set():
                    for p in range(1, projects + 1):
                        if stop.is_set():
                            return
                        asks = [threading.Thread(target=fetch, args=(s, f"/dashboard/project/{p}/chart/{k}/0.png"))
                                for s, k in zip(sessions, KINDS, strict=True)]
                        for ask in asks:
                            ask.start()
                        for ask in asks:
                            ask.join()

            viewers = [threading.Thread(target=viewer, daemon=True) for _ in range(2)]
            for v in viewers:
                v.start()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                started = time.perf_counter()
                requests.get(url + "/health", timeout=60).raise_for_status()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
            stop.set()
            for v in viewers:
                v.join(180)
        finally:
            server.stop()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"served: {projects} projects of {labels} labels, 2 viewers for {seconds:.0f} s (1 worker, 8 threads)")
    print(f"  /health: {len(latencies)} asked, p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms, "
          f"{sum(t > 0.1 for t in latencies)} over 100 ms")
    print(f"  charts: {answers.count(200)} served, {answers.count(503)} deferred (503), "
          f"{len(answers) - answers.count(200) - answers.count(503)} other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--served", action="store_true", help="measure /health while two viewers open charts")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--projects", type=int, default=3)
    args = parser.parse_args()
    if args.served:
        served(args.seconds, args.projects, max(args.labels))
    else:
        drawn(args.labels)


if __name__ == "__main__":
    main()
