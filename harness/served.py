"""Serve a WSGI app over real HTTP on a free 127.0.0.1 port, in a thread of this process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from werkzeug.serving import WSGIRequestHandler, make_server


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


class Served:
    """A threaded werkzeug server for ``app``; ``url`` is known before ``start``."""

    def __init__(self, app: Callable, host: str = "127.0.0.1") -> None:
        # host: the address to listen on; loopback unless a test serves containers on a network
        # podman made (its gateway address).
        self._server = make_server(host, 0, app, threaded=True, request_handler=_Quiet)
        self.url = f"http://{host}:{self._server.server_port}"
        # Handler threads may sit on clients' keep-alive connections: do not wait for them on close.
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def start(self) -> None:
        """Start answering requests."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the socket (safe to call twice)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def serve(app: Callable) -> Iterator[str]:
    """Yield the base URL of ``app`` served by a threaded werkzeug server."""
    served = Served(app)
    served.start()
    try:
        yield served.url
    finally:
        served.stop()
