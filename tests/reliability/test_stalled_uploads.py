"""Stalled uploads against gunicorn started as ./start.sh does, with Basic auth on.

A stalled upload sends its headers and most of its body, then nothing.  The
worker decides from the headers before it reads a body (401 without valid
credentials where Basic auth guards the path, 413 over ``MAX_REQUEST_MB``),
and the bodies it holds at once, across every connection, stay within
``MAX_BUFFERED_MB``: past it a body gets a JSON 503 with Retry-After at once,
so N stalled clients cost at most that much of the worker's memory (those
without credentials at most half of it), while ``/health`` keeps answering and
``/predict`` works again once they go away.
"""

import base64
import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from harness import synthetic
from harness.processes import start_backend
from model import TimeSeriesSegmenter
from segmenter.config import Settings
from segmenter.errors import ConfigError
from segmenter.service.app import create_app
from segmenter.service.runtime import Runtime

AUTH = ("ml", "s3cret")
TOKEN = base64.b64encode(":".join(AUTH).encode()).decode()
REQUEST_MB = 16
BUFFERED_MB = 32
BODY = REQUEST_MB * 2**20  # what each stalled client announces
SENT = 15 * 2**20  # what it sends before stalling
ANSWER_S = 5.0  # "at once": well under the 100 s a stalled body may take


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("stalled")
    service = start_backend(tmp / "models", tmp / "gunicorn.log", timeout=60, extra_env={
        "LOG_LEVEL": "WARNING", "BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1],
        "MAX_REQUEST_MB": str(REQUEST_MB), "MAX_BUFFERED_MB": str(BUFFERED_MB)})
    try:
        yield service
    finally:
        service.stop()


def head(port: int, path: str, length: int, auth: bool) -> bytes:
    """Request headers announcing a JSON body of ``length`` bytes."""
    credentials = f"Authorization: Basic {TOKEN}\r\n" if auth else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{credentials}"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def answer(s: socket.socket) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, headers and body of the one response on ``s``, which the server closes after it."""
    s.settimeout(ANSWER_S)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines[1:])}
    return int(lines[0].split(b" ", 2)[1]), headers, body


def headers_only(port: int, path: str, length: int, auth: bool) -> tuple[int, dict[bytes, bytes], bytes]:
    """The answer to headers announcing a body that is never sent (a timeout if the server waits for it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S) as s:
        s.sendall(head(port, path, length, auth))
        return answer(s)


@contextmanager
def stalled(port: int, n: int, path: str = "/webhook", auth: bool = False):
    """``n`` uploads (by default unauthenticated, to /webhook: the one path Basic auth leaves open) that
    announce ``BODY`` bytes, send ``SENT`` of them without waiting for an answer, and stall until the block ends."""
    socks: list[socket.socket] = []

    def upload() -> None:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(s)
        try:
            s.sendall(head(port, path, BODY, auth=auth) + b"{" + b" " * (SENT - 1))
        except OSError:  # refused and closed by the server before it was all sent
            pass

    threads = [threading.Thread(target=upload, daemon=True) for _ in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        time.sleep(0.5)  # the worker has taken in what it will take
        yield
    finally:
        for s in socks:
            s.close()


def predict_body() -> dict:
    """A /predict for a project nothing was trained for: served with an empty result."""
    return {"project": "7.1", "label_config": synthetic.label_config(),
            "tasks": [{"id": 1, "data": {"csv_url": "/data/upload/7/never-read.csv"}}]}


def predict(url: str) -> requests.Response:
    return requests.post(url + "/predict", json=predict_body(), auth=AUTH, timeout=10)


def served_again(url: str, within_s: float = 15.0) -> bool:
    """Whether an ordinary /predict is served (200) within ``within_s`` once stalled clients have gone."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predict(url).status_code == 200:
            return True
        time.sleep(0.2)
    return False


def worker_rss_mb(master_pid: int) -> float:
    """VmRSS of gunicorn's (only) worker, the child process of ``master_pid``."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            children.append(stat.parent)
    assert len(children) == 1, f"expected one worker under {master_pid}, found {children}"
    for line in (children[0] / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/predict", "/setup", "/status"])
@pytest.mark.parametrize("length", [2**20, BODY * 4])
def test_unauthenticated_body_gets_401_before_it_is_sent(backend, path, length):
    status, headers, body = headers_only(backend.port, path, length, auth=False)
    assert status == 401
    assert headers[b"www-authenticate"].startswith(b"Basic")
    assert body == b"authentication required"  # the same answer as the app's own


@pytest.mark.slow
def test_wrong_password_gets_401_before_the_body(backend):
    wrong = base64.b64encode(b"ml:wrong").decode()
    with socket.create_connection(("127.0.0.1", backend.port), timeout=ANSWER_S) as s:
        s.sendall(head(backend.port, "/predict", 2**20, auth=False).replace(
            b"\r\n\r\n", f"\r\nAuthorization: Basic {wrong}\r\n\r\n".encode()))
        assert answer(s)[0] == 401


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/predict", "/webhook"])
def test_authenticated_body_over_max_request_mb_gets_413_at_once(backend, path):
    status, _, body = headers_only(backend.port, path, BODY + 1, auth=True)
    assert status == 413
    assert "MAX_REQUEST_MB" in json.loads(body)["error"]


def assert_busy(port: int, path: str, auth: bool) -> None:
    """A body announced on ``path`` is refused from its headers with a JSON 503 and Retry-After."""
    status, headers, body = headers_only(port, path, BODY, auth=auth)
    assert status == 503, (path, auth, status, body)
    assert int(headers[b"retry-after"]) > 0
    assert "MAX_BUFFERED_MB" in json.loads(body)["error"]


@pytest.mark.slow
def test_stalled_uploads_past_max_buffered_mb_get_503_while_health_and_predict_go_on(backend):
    url, port = backend.url, backend.port
    # Strangers' bodies (no credentials) may take half the budget: one 16 MB body of 32 MB.
    with stalled(port, 2):
        assert_busy(port, "/webhook", auth=False)
        for _ in range(5):
            assert requests.get(url + "/health", auth=AUTH, timeout=2).json()["status"] == "UP"
        assert predict(url).status_code == 200  # Label Studio's own requests still fit
        # Authenticated uploads take the rest: then every body is refused until they go.
        with stalled(port, 1, "/predict", auth=True):
            assert_busy(port, "/predict", auth=True)
            assert requests.get(url + "/health", auth=AUTH, timeout=2).json()["status"] == "UP"
            response = predict(url)
            assert response.status_code == 503
            assert "Retry-After" in response.headers
    assert served_again(url)
    assert len(predict(url).json()["results"]) == 1


@pytest.mark.slow
def test_chunked_body_past_the_budget_gets_503_as_it_arrives(backend):
    url, port = backend.url, backend.port
    with stalled(port, 1):  # the strangers' half is taken
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S) as s:
            s.sendall(f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n".encode())
            s.sendall(b"%x\r\n%s\r\n" % (65536, b" " * 65536))  # no final chunk: the answer must not wait
            status, headers, body = answer(s)
        assert status == 503
        assert b"retry-after" in headers
        assert "MAX_BUFFERED_MB" in json.loads(body)["error"]
    assert served_again(url)


@pytest.mark.slow
def test_worker_memory_with_stalled_uploads_stays_within_max_buffered_mb(backend):
    url = backend.url
    assert served_again(url)  # a served /predict first: its one-off allocations are in the baseline
    before = worker_rss_mb(backend.process.pid)
    with stalled(backend.port, 16):  # 16 x 15 MB sent: 240 MB if every body were held
        held = worker_rss_mb(backend.process.pid) - before
        assert requests.get(url + "/health", auth=AUTH, timeout=2).status_code == 200
    # At most MAX_BUFFERED_MB of bodies (half of it here: no credentials), plus allocator slack;
    # nowhere near the 16 bodies sent.
    assert held < 1.5 * BUFFERED_MB, f"worker RSS grew {held:.0f} MB with 16 stalled uploads"
    assert served_again(url)


def test_max_buffered_mb_below_max_request_mb_stops_start_up():
    with pytest.raises(ConfigError, match="MAX_BUFFERED_MB=8 must be at least MAX_REQUEST_MB=16"):
        Settings.from_env({"MAX_REQUEST_MB": "16", "MAX_BUFFERED_MB": "8"})
    assert Settings.from_env({"MAX_REQUEST_MB": "16"}).max_buffered_mb == 32  # twice, by default


def test_non_ascii_password_is_checked_not_a_500(tmp_path):
    """The one credential check (segmenter.service.auth) compares bytes: a non-ASCII password works."""
    settings = replace(Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache"),
                       basic_auth_user="ml", basic_auth_pass="pässwörd")
    client = create_app(Runtime.start(settings), TimeSeriesSegmenter).test_client()

    def health(credentials: bytes):
        return client.get("/health", headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()})

    assert health("ml:pässwörd".encode()).status_code == 200
    assert health(b"ml:passwort").status_code == 401
    assert health(b"ml:\xff").status_code == 401
