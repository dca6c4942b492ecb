"""Slow clients and oversized bodies against gunicorn started as ./start.sh does.

A slow client sends a request's headers and then its body a byte at a time;
none of them may keep ``/health`` or ``/predict`` from being served.  A body
over ``MAX_REQUEST_MB`` gets a JSON 413 whether its size is announced
(Content-Length) or only found out while reading (chunked).
"""

import asyncio
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

AUTH = ("ml", "secret")
SLOW_CLIENTS = 16
LIMIT_MB = 1


@contextmanager
def gunicorn(tmp_path: Path, **extra: str):
    """gunicorn with ./start.sh's command line and defaults (1 worker, 8 threads) on a free loopback port."""
    backend = start_backend(tmp_path / "models", tmp_path / "gunicorn.log", timeout=60,
                            extra_env={"LOG_LEVEL": "WARNING", "MAX_REQUEST_MB": str(LIMIT_MB), **extra})
    try:
        yield backend.url, backend.port
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with gunicorn(tmp_path_factory.mktemp("plain")) as served:
        yield served


@pytest.fixture(scope="module")
def backend_with_auth(tmp_path_factory):
    with gunicorn(tmp_path_factory.mktemp("auth"), BASIC_AUTH_USER=AUTH[0], BASIC_AUTH_PASS=AUTH[1]) as served:
        yield served


@contextmanager
def slow_clients(port: int, n: int):
    """``n`` connections that announce a 100,000-byte /webhook body and send one byte a second."""
    socks = []
    stop = threading.Event()
    head = (f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n{").encode()
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(head)
            socks.append(s)

        def dribble():
            while not stop.wait(1.0):
                for s in socks:
                    try:
                        s.send(b" ")
                    except OSError:
                        pass

        thread = threading.Thread(target=dribble, daemon=True)
        thread.start()
        time.sleep(1.0)  # let the server take them all in
        yield
    finally:
        stop.set()
        for s in socks:
            s.close()


def predict_body() -> dict:
    """A /predict for a project nothing was trained for: served with an empty result."""
    return {"project": "7.1", "label_config": synthetic.label_config(),
            "tasks": [{"id": 1, "data": {"csv_url": "/data/upload/7/never-read.csv"}}]}


def assert_served_meanwhile(url: str, auth=None) -> None:
    for _ in range(10):
        response = requests.get(url + "/health", timeout=2, auth=auth)
        assert response.status_code == 200
        assert response.json()["status"] == "UP"
    response = requests.post(url + "/predict", json=predict_body(), timeout=10, auth=auth)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


@pytest.mark.slow
def test_slow_clients_do_not_stall_health_or_predict(backend):
    url, port = backend
    with slow_clients(port, SLOW_CLIENTS):
        assert_served_meanwhile(url)


@pytest.mark.slow
def test_slow_clients_do_not_stall_health_with_basic_auth(backend_with_auth):
    url, port = backend_with_auth
    with slow_clients(port, SLOW_CLIENTS):
        assert_served_meanwhile(url, auth=AUTH)
        assert requests.get(url + "/health", timeout=2).status_code == 401


def read_response(s: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the one response on ``s`` (the server closes the connection after it)."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    if {k.strip().lower() for k in headers} & {b"transfer-encoding"}:
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return status, json.loads(body)


def assert_too_large(status: int, body: dict) -> None:
    assert status == 413
    assert f"{LIMIT_MB} MB" in body["error"]
    assert "MAX_REQUEST_MB" in body["error"]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/predict", "/webhook"])
def test_announced_body_over_the_limit_is_a_413_before_it_is_read(backend_with_auth, path):
    url, port = backend_with_auth
    token = base64.b64encode(":".join(AUTH).encode()).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        # Only the headers: the answer must not wait for a body it will refuse.
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {LIMIT_MB * 2**20 + 1}\r\n\r\n").encode())
        assert_too_large(*read_response(s))
    assert requests.get(url + "/health", timeout=2, auth=AUTH).ok


@pytest.mark.slow
def test_chunked_body_over_the_limit_is_a_413(backend):
    url, port = backend
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        # One chunk past the limit and no terminating chunk: the server must stop reading by itself.
        for _ in range(LIMIT_MB * 2**20 // len(chunk) + 1):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert_too_large(*read_response(s))
    assert requests.get(url + "/health", timeout=2).ok


@pytest.mark.slow
def test_chunked_body_under_the_limit_is_served(backend):
    url, port = backend
    body = json.dumps(predict_body()).encode()
    response = requests.post(url + "/predict", data=iter([body[:100], body[100:]]), timeout=10,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_flask_alone_answers_the_same_413(tmp_path):
    """The development server path (python _wsgi.py) has the same limit and answer."""
    settings = replace(Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache"),
                       max_request_mb=LIMIT_MB)
    client = create_app(Runtime.start(settings), TimeSeriesSegmenter).test_client()
    response = client.post("/predict", data=b"x" * (LIMIT_MB * 2**20 + 1), content_type="application/json")
    assert_too_large(response.status_code, response.get_json())


@pytest.mark.parametrize("value", ["0", "ten", "-5"])
def test_bad_max_request_mb_names_the_variable(value):
    with pytest.raises(ConfigError, match="MAX_REQUEST_MB"):
        Settings.from_env({"MAX_REQUEST_MB": value})


def test_max_request_mb_default():
    assert Settings.from_env({}).max_request_mb == 100


def run_buffered(messages, headers=(), body_timeout_s=5.0):
    """Status and body BufferedWSGI answers to a request whose body arrives as ``messages`` (None: never)."""
    from segmenter.service.buffering import BufferedWSGI

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.input"].read()]

    async def exchange():
        pending = list(messages)
        sent = []

        async def receive():
            if not pending or pending[0] is None:
                await asyncio.sleep(3600)
            return pending.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "headers": list(headers),
                 "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1234)}
        await BufferedWSGI(app, threads=1, max_request_mb=LIMIT_MB, body_timeout_s=body_timeout_s)(
            scope, receive, send)
        return sent

    sent = asyncio.run(exchange())
    if not sent:
        return None, b""
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_buffered_body_reaches_the_app_whole_with_its_length():
    status, body = run_buffered([{"type": "http.request", "body": b"ab", "more_body": True},
                                 {"type": "http.request", "body": b"cd", "more_body": False}])
    assert (status, body) == (200, b"abcd")


def test_body_that_stops_arriving_is_a_408():
    status, body = run_buffered([{"type": "http.request", "body": b"{", "more_body": True}, None],
                                body_timeout_s=0.2)
    assert status == 408
    assert "did not arrive" in json.loads(body)["error"]


def test_client_gone_mid_body_gets_no_answer():
    assert run_buffered([{"type": "http.request", "body": b"{", "more_body": True},
                         {"type": "http.disconnect"}]) == (None, b"")
