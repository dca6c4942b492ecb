"""Whole requests are read on the event loop before a thread runs the Flask app.

A request thread that reads its own body is held for as long as the client
takes to send it: a few clients sending a byte a second used to take every
thread of a worker and stall ``/health``.  ``BufferedWSGI`` is the ASGI app
the gunicorn worker (``segmenter.service.gunicorn_worker``) serves: it reads the body
on the event loop, where a waiting connection costs no thread, and only then
hands the request, complete, to the WSGI app in a pool of ``THREADS`` threads
(a2wsgi).

Before it reads a byte of a body it decides from the headers alone: a request
Basic auth guards without valid credentials gets a 401 (``segmenter.service.auth``,
the app's own rule), a Content-Length over ``MAX_REQUEST_MB`` a JSON 413, and
a body that would take the worker's bodies past ``MAX_BUFFERED_MB`` a JSON 503
with Retry-After.  The announced length is claimed from that budget until the
response is sent (a chunked body claims as it arrives, and gets the 413 or the
503 as soon as it passes either limit), so stalled uploads hold at most
``MAX_BUFFERED_MB`` of a worker's memory however many there are, and those
without credentials at most half of it.  Past the
budget a body is refused, not spooled to disk: the app parses every body in
memory anyway, so spooling would only move the exhaustion to the disk.  A body
still arriving after ``BODY_TIMEOUT_S`` gets a 408.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from a2wsgi import WSGIMiddleware

from segmenter.service.auth import CHALLENGE, REFUSAL, BasicAuth

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Label Studio gives up on a /predict after 100 s: a body still arriving by
# then will never be answered usefully, and its connection is better closed.
BODY_TIMEOUT_S = 100.0
# Bodies in the budget are being read or served; a few seconds frees most of it.
RETRY_AFTER_S = 10


def too_large_message(limit_mb: int) -> str:
    """The 413 message, the same from gunicorn and from Flask alone."""
    return f"request body is larger than the {limit_mb} MB limit (MAX_REQUEST_MB)"


def busy_message(limit_mb: int) -> str:
    """The 503 message when this worker already holds ``MAX_BUFFERED_MB`` of bodies."""
    return (f"this worker already holds {limit_mb} MB of request bodies (MAX_BUFFERED_MB); "
            f"try again in {RETRY_AFTER_S} s")


class _TooLarge(Exception):
    pass


class _Full(Exception):
    pass


class _Gone(Exception):
    pass


class _Budget:
    """Body bytes claimed across all connections of a worker (one event loop: no lock needed).

    Bodies sent without credentials while Basic auth is on (only ``/webhook`` takes them) may
    claim half of it at most, so strangers can never keep Label Studio's own requests out.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.open_used = 0

    def take(self, size: int, anonymous: bool) -> bool:
        if self.used + size > self.limit or (anonymous and self.open_used + size > self.limit // 2):
            return False
        self.used += size
        self.open_used += size if anonymous else 0
        return True

    def give(self, size: int, anonymous: bool) -> None:
        self.used -= size
        self.open_used -= size if anonymous else 0


class _Claim:
    """One request's share of the budget, grown as its body grows, given back once."""

    def __init__(self, budget: _Budget, anonymous: bool) -> None:
        self.budget = budget
        self.anonymous = anonymous
        self.size = 0

    def cover(self, size: int) -> bool:
        """Claim up to ``size`` bytes in all; False (nothing more claimed) when the budget cannot."""
        if size <= self.size:
            return True
        if not self.budget.take(size - self.size, self.anonymous):
            return False
        self.size = size
        return True

    def release(self) -> None:
        self.budget.give(self.size, self.anonymous)
        self.size = 0


class _Body:
    """A body as it arrives, costing about its size in memory however the client cuts it up.

    Large pieces are kept as they come (never copied while the body grows: a growing
    buffer leaves freed copies behind in the heap); small ones are packed together
    (a Python object per byte-sized piece would cost forty times the byte).
    """

    LARGE = 64 * 2**10
    PACK = 2**20

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.small = bytearray()
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(chunk) >= self.LARGE:
            self._pack()
            self.pieces.append(chunk)
            return
        self.small += chunk
        if len(self.small) >= self.PACK:
            self._pack()

    def whole(self) -> bytes:
        self._pack()
        body = b"".join(self.pieces)
        self.pieces.clear()
        return body

    def _pack(self) -> None:
        if self.small:
            self.pieces.append(bytes(self.small))
            self.small = bytearray()


class BufferedWSGI:
    """ASGI app serving a WSGI app one whole, size-checked, budgeted request at a time."""

    def __init__(self, wsgi_app: Callable[..., Any], threads: int, max_request_mb: int,
                 max_buffered_mb: int | None = None, auth: BasicAuth | None = None,
                 body_timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.inner = WSGIMiddleware(wsgi_app, workers=threads)
        self.limit_mb = max_request_mb
        self.max_bytes = max_request_mb * 2**20
        self.buffered_mb = max_buffered_mb if max_buffered_mb is not None else 2 * max_request_mb
        self.budget = _Budget(self.buffered_mb * 2**20)
        self.auth = auth or BasicAuth()
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (a2wsgi answers it)
            await self.inner(scope, receive, send)
            return
        announced = _content_length(scope)
        authenticated = self.auth.accepts(_header(scope, b"authorization"))
        if announced or _header(scope, b"transfer-encoding") is not None:
            # A body is coming: decide on the headers alone, before reading any of it.
            if self.auth.guards(_app_path(scope)) and not authenticated:
                await _reply(send, 401, REFUSAL, [(b"www-authenticate", CHALLENGE.encode())], text=True)
                return
            if announced is not None and announced > self.max_bytes:
                await _reply(send, 413, too_large_message(self.limit_mb))
                return
        claim = _Claim(self.budget, anonymous=not authenticated)
        try:
            if announced and not claim.cover(announced):
                await self._busy(send)
                return
            await self._serve(scope, receive, send, claim)
        finally:
            claim.release()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, claim: _Claim) -> None:
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(receive, claim)
        except _TooLarge:
            await _reply(send, 413, too_large_message(self.limit_mb))
            return
        except _Full:
            await self._busy(send)
            return
        except TimeoutError:
            await _reply(send, 408, f"request body did not arrive within {self.body_timeout_s:g} s")
            return
        except _Gone:
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-length", b"transfer-encoding")]
        # The WSGI app sees a plain body of known length, whichever framing the client used.
        headers.append((b"content-length", str(len(body)).encode()))
        pending = [body]
        del body  # from here the app's copy is the one that counts

        async def replay() -> Message:
            if not pending:
                return await receive()
            return {"type": "http.request", "body": pending.pop(), "more_body": False}

        await self.inner({**scope, "headers": headers}, replay, send)

    async def _read_body(self, receive: Receive, claim: _Claim) -> bytes:
        body = _Body()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size = body.size + len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            if not claim.cover(size):
                raise _Full
            body.add(chunk)
            if not message.get("more_body", False):
                return body.whole()

    async def _busy(self, send: Send) -> None:
        await _reply(send, 503, busy_message(self.buffered_mb), [(b"retry-after", str(RETRY_AFTER_S).encode())])


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value
    return None


def _app_path(scope: Scope) -> str:
    """The path inside the app (PATH_INFO), as a2wsgi hands it to Flask."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _reply(send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None,
                 text: bool = False) -> None:
    """A JSON error (plain ``message`` with ``text``); the connection closes after it (its body may be unread)."""
    body, kind = (message.encode(), b"text/html; charset=utf-8") if text else (
        json.dumps({"error": message}).encode(), b"application/json")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff"), (b"connection", b"close"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
