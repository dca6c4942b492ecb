"""Whole requests are read on the event loop before a thread runs the Flask app.

A request thread that reads its own body is held for as long as the client
takes to send it: a few clients sending a byte a second used to take every
thread of a worker and stall ``/health``.  ``BufferedWSGI`` is the ASGI app
the gunicorn worker (``segmenter.gunicorn_worker``) serves: it reads the body
on the event loop, where a waiting connection costs no thread, refuses a body
over ``MAX_REQUEST_MB`` with a JSON 413 (before reading it when Content-Length
announces it, while reading when it is chunked), gives up on a body still
arriving after ``BODY_TIMEOUT_S`` with a 408, and only then hands the request,
complete, to the WSGI app in a pool of ``THREADS`` threads (a2wsgi).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from a2wsgi import WSGIMiddleware

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Label Studio gives up on a /predict after 100 s: a body still arriving by
# then will never be answered usefully, and its connection is better closed.
BODY_TIMEOUT_S = 100.0


def too_large_message(limit_mb: int) -> str:
    """The 413 message, the same from gunicorn and from Flask alone."""
    return f"request body is larger than the {limit_mb} MB limit (MAX_REQUEST_MB)"


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


class BufferedWSGI:
    """ASGI app serving a WSGI app one whole, size-checked request at a time."""

    def __init__(self, wsgi_app: Callable[..., Any], threads: int, max_request_mb: int,
                 body_timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.inner = WSGIMiddleware(wsgi_app, workers=threads)
        self.limit_mb = max_request_mb
        self.max_bytes = max_request_mb * 2**20
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (a2wsgi answers it)
            await self.inner(scope, receive, send)
            return
        announced = _content_length(scope)
        if announced is not None and announced > self.max_bytes:
            await _reply(send, 413, too_large_message(self.limit_mb))
            return
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(receive)
        except _TooLarge:
            await _reply(send, 413, too_large_message(self.limit_mb))
            return
        except TimeoutError:
            await _reply(send, 408, f"request body did not arrive within {self.body_timeout_s:g} s")
            return
        except _Gone:
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-length", b"transfer-encoding")]
        # The WSGI app sees a plain body of known length, whichever framing the client used.
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.inner({**scope, "headers": headers}, replay, send)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(send: Send, status: int, message: str) -> None:
    """A JSON error; the connection closes after it (its body may be unread)."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
