"""/health and /predict while slow clients hold connections open (issue 7, finding 4).

    .venv/bin/python bench/slow_clients.py [--clients 16] [--workers 1] [--threads 8]
    .venv/bin/python bench/slow_clients.py --url http://127.0.0.1:9090 --clients 64 [--auth user:pass]

Without --url it starts the backend as ./start.sh does (gunicorn -c
gunicorn.conf.py _wsgi:app) on a free loopback port; --worker-class gthread
runs the worker used before issue 7 for comparison.  Each slow client sends
``POST /webhook`` headers announcing a 100,000-byte body, then one byte a
second.  Meanwhile it times ``/health`` on fresh connections (at most
--requests of them, each with a --timeout, counted as failures when they do
not answer 200) and sends one ``/predict`` alongside for a project nothing was trained
for (an empty result is the expected answer: the point is that it is served).
Everything stops after --duration seconds at most.  Target: /health p99 <
100 ms and /predict served.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from segmenter import synthetic  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def started_backend(args: argparse.Namespace):
    """gunicorn on a free 127.0.0.1 port with a throwaway MODEL_DIR; yields its URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PORT": str(port), "WORKERS": str(args.workers), "THREADS": str(args.threads),
               "MODEL_DIR": str(Path(tmp) / "models"), "LOG_LEVEL": "WARNING"}
        if args.auth:
            env["BASIC_AUTH_USER"], env["BASIC_AUTH_PASS"] = args.auth
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
        if args.worker_class:
            command += ["--worker-class", args.worker_class]
        server = subprocess.Popen([*command, "_wsgi:app"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(url + "/health", timeout=2, auth=args.auth).ok:
                        break
                except requests.RequestException:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("backend did not start")
                time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


class SlowClients:
    """``n`` connections sending a /webhook body of 100,000 bytes one byte a second, until stopped."""

    def __init__(self, host: str, port: int, n: int) -> None:
        self.host, self.port, self.n = host, port, n
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()
        self.dropped = 0
        self.thread = threading.Thread(target=self._dribble, daemon=True)

    def __enter__(self) -> SlowClients:
        head = (f"POST /webhook HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                "Content-Length: 100000\r\n\r\n{").encode()
        for _ in range(self.n):
            s = socket.create_connection((self.host, self.port), timeout=5)
            s.sendall(head)
            self.socks.append(s)
        self.thread.start()
        return self

    def _dribble(self) -> None:
        sent = 1
        while sent < 100_000 and not self.stop.wait(1.0):
            for s in list(self.socks):
                try:
                    s.send(b" ")
                except OSError:
                    self.socks.remove(s)
                    self.dropped += 1
            sent += 1

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for s in self.socks:
            s.close()


def predict_body() -> dict:
    return {"project": "987654.1", "label_config": synthetic.label_config(),
            "tasks": [{"id": 1, "data": {"csv_url": "/data/upload/987654/never-read.csv"}}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running backend (default: start one on 127.0.0.1)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200, help="/health requests at most")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds at most")
    parser.add_argument("--timeout", type=float, default=5.0, help="per /health request")
    parser.add_argument("--auth", type=lambda v: tuple(v.split(":", 1)), help="user:pass for Basic auth")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--worker-class", help="override gunicorn.conf.py's (e.g. gthread, the worker before)")
    args = parser.parse_args()

    with (started_backend(args) if not args.url else _given(args.url)) as url:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        stop_at = time.monotonic() + args.duration
        health, failures = [], 0
        predicted: dict[str, object] = {}

        def predict() -> None:
            t0 = time.perf_counter()
            try:
                r = requests.post(url + "/predict", json=predict_body(), timeout=max(stop_at - time.monotonic(), 1),
                                  auth=args.auth)
                predicted["ok"] = r.status_code == 200 and len(r.json()["results"]) == 1
                predicted["status"] = r.status_code
            except requests.RequestException as exc:
                predicted["ok"], predicted["status"] = False, type(exc).__name__
            predicted["seconds"] = time.perf_counter() - t0

        with SlowClients(host, port, args.clients) as slow:
            time.sleep(1.0)  # every slow client has sent its headers and is in its body
            predictor = threading.Thread(target=predict, daemon=True)
            predictor.start()
            for _ in range(args.requests):
                if time.monotonic() > stop_at:
                    break
                t0 = time.perf_counter()
                try:
                    ok = requests.get(url + "/health", timeout=args.timeout, auth=args.auth).status_code == 200
                except requests.RequestException:
                    ok = False
                health.append(time.perf_counter() - t0)
                failures += not ok
                time.sleep(0.01)
            predictor.join(timeout=max(stop_at - time.monotonic(), 0))
            still_open = len(slow.socks)

    ms = np.array(health) * 1000
    print(f"slow clients: {args.clients} ({still_open} still connected at the end)")
    if len(ms):
        print(f"/health: n={len(ms)} p50={np.percentile(ms, 50):.1f} ms p99={np.percentile(ms, 99):.1f} ms "
              f"max={ms.max():.1f} ms failures={failures}")
    if predicted:
        print(f"/predict: {'ok' if predicted.get('ok') else 'FAILED'} (status {predicted.get('status')}, "
              f"{predicted.get('seconds', 0):.2f} s)")
    else:
        print("/predict: FAILED (no answer within --duration)")


@contextmanager
def _given(url: str):
    yield url.rstrip("/")


if __name__ == "__main__":
    main()
