"""The gunicorn worker of ``gunicorn.conf.py``: gunicorn's asyncio worker serving
the WSGI app through ``segmenter.service.buffering.BufferedWSGI``.

Connections, headers and bodies are read on the worker's event loop; the
Flask app runs in ``THREADS`` threads only once a request is complete, so slow
clients hold sockets, not threads, and a worker holds at most ``MAX_BUFFERED_MB``
of bodies.  ``gunicorn -c gunicorn.conf.py _wsgi:app``
stays the command line: ``_wsgi:app`` is still the plain WSGI app.
"""

from __future__ import annotations

from gunicorn.workers.gasgi import ASGIWorker

from segmenter import shutdown
from segmenter.service.auth import BasicAuth
from segmenter.service.buffering import BufferedWSGI


class BufferingWorker(ASGIWorker):
    """gunicorn's asyncio worker with the WSGI app wrapped in ``BufferedWSGI``."""

    @classmethod
    def check_config(cls, cfg: object, log: object) -> None:
        """Nothing to warn about: ``threads`` sizes the pool the WSGI app runs in."""

    def load_wsgi(self) -> None:
        """Load ``_wsgi:app`` and wrap it, with the body limits and Basic auth the app itself was configured with."""
        super().load_wsgi()
        settings = self.asgi.extensions["segmenter"].settings  # the runtime create_app keeps
        self.asgi = BufferedWSGI(self.asgi, threads=self.cfg.threads, max_request_mb=settings.max_request_mb,
                                 max_buffered_mb=settings.max_buffered_mb, auth=BasicAuth.of(settings))

    def handle_exit_signal(self) -> None:
        """SIGTERM: trainings and write-backs stop at their next step while the requests in flight finish;
        ``worker_exit`` (gunicorn.conf.py) waits for them."""
        shutdown.request()
        super().handle_exit_signal()
