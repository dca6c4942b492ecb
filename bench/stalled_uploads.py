"""What N stalled uploads cost a gunicorn worker: its RSS before, with them, and after.

    .venv/bin/python -m bench.stalled_uploads [--clients 16 64 200] [--body-mb 16] [--sent-mb 15]
        [--path /webhook] [--max-request-mb 100] [--max-buffered-mb 200]

For each N it starts the backend as ./start.sh does (1 worker, Basic auth on,
a throwaway MODEL_DIR, a free loopback port), serves one /predict, reads the
worker's VmRSS, then opens N unauthenticated connections that each announce a
--body-mb body on --path, send --sent-mb of it as fast as the server takes it,
and stall.  It reads the RSS again (with them), times /health meanwhile, closes
them, and reports the RSS after and how long until /predict is served again.
``/webhook`` is the one path Basic auth leaves open, so its bodies are what
MAX_BUFFERED_MB bounds; on a guarded path (``--path /predict``) each upload
gets a 401 from its headers.  Every step is bounded in time.
"""

from __future__ import annotations

import argparse
import select
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from harness import synthetic
from harness.processes import Service, start_backend

AUTH = ("bench", "stalled")


def worker_rss_mb(master_pid: int) -> float:
    """Summed VmRSS of gunicorn's workers (the children of ``master_pid``)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != master_pid:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
    return total


def upload(port: int, path: str, body_bytes: int, sent_bytes: int) -> tuple[socket.socket, str]:
    """One stalled upload; its socket (left open) and what the server did with it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_bytes}\r\n\r\n").encode()
    piece = b" " * 2**20
    try:
        s.sendall(head + b"{")
        select.select([s], [], [], 0.05)  # an answer to the headers alone shows up here (not waited for)
        left = sent_bytes - 1
        while left > 0:
            if select.select([s], [], [], 0)[0]:  # answered before the body was all sent
                break
            s.sendall(piece[: min(left, len(piece))])
            left -= min(left, len(piece))
        time.sleep(0.05)
        if not select.select([s], [], [], 0)[0]:
            return s, "held"
        answer = s.recv(64)
        return s, "answered " + answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "closed"
    except OSError:  # refused, and its answer lost to the reset of a connection closed with unread data
        return s, "closed"


def predict(url: str) -> int:
    body = {"project": "987654.1", "label_config": synthetic.label_config(),
            "tasks": [{"id": 1, "data": {"csv_url": "/data/upload/987654/never-read.csv"}}]}
    try:
        return requests.post(url + "/predict", json=body, auth=AUTH, timeout=10).status_code
    except requests.RequestException:
        return 0


def measure(server: Service, args: argparse.Namespace, n: int) -> str:
    url, pid = server.url, server.process.pid
    predict(url)
    before = worker_rss_mb(pid)
    with ThreadPoolExecutor(32) as pool:
        done = list(pool.map(lambda _: upload(server.port, args.path, int(args.body_mb * 2**20),
                                              int(args.sent_mb * 2**20)), range(n)))
    time.sleep(1.0)
    held = worker_rss_mb(pid)
    health = []
    for _ in range(50):
        t0 = time.perf_counter()
        ok = requests.get(url + "/health", auth=AUTH, timeout=5).status_code == 200
        health.append((time.perf_counter() - t0) * 1000 if ok else float("inf"))
    during = predict(url)
    outcomes: dict[str, int] = {}
    for s, outcome in done:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        s.close()
    t0 = time.monotonic()
    while predict(url) != 200 and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    back_s = time.monotonic() - t0
    time.sleep(1.0)
    after = worker_rss_mb(pid)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    return (f"N={n:4d}: worker RSS {before:.0f} MB -> {held:.0f} MB with them (+{held - before:.0f} MB) -> "
            f"{after:.0f} MB after; uploads: {kinds}; /health p99 {np.percentile(health, 99):.1f} ms; "
            f"/predict meanwhile {during}, served again after {back_s:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64, 200])
    parser.add_argument("--body-mb", type=float, default=16.0, help="announced by each upload")
    parser.add_argument("--sent-mb", type=float, default=15.0, help="sent by each upload before it stalls")
    parser.add_argument("--path", default="/webhook")
    parser.add_argument("--max-request-mb", type=int, help="MAX_REQUEST_MB (default: the backend's)")
    parser.add_argument("--max-buffered-mb", type=int, help="MAX_BUFFERED_MB (default: the backend's)")
    args = parser.parse_args()
    env = {"LOG_LEVEL": "WARNING", "BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1]}
    if args.max_request_mb:
        env["MAX_REQUEST_MB"] = str(args.max_request_mb)
    if args.max_buffered_mb:
        env["MAX_BUFFERED_MB"] = str(args.max_buffered_mb)
    for n in args.clients:
        with tempfile.TemporaryDirectory() as tmp:
            server = start_backend(Path(tmp) / "models", Path(tmp) / "backend.log", host="127.0.0.1",
                                   extra_env=env, timeout=60)
            try:
                print(measure(server, args, n), flush=True)
            finally:
                server.stop(timeout=60)


if __name__ == "__main__":
    main()
