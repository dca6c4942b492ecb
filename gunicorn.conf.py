"""gunicorn settings from the same environment variables as the backend
(PORT, WORKERS, THREADS, MAX_REQUEST_MB, MAX_BUFFERED_MB, LOG_LEVEL); see README."""

import sys

from segmenter import shutdown
from segmenter.config import Settings
from segmenter.errors import ConfigError
from segmenter.service import metrics
from segmenter.service.dashboard import charts

try:
    _settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.workers
threads = _settings.threads
# Reads whole requests on an event loop before one of the `threads` runs the app,
# so slow clients hold sockets, not threads; checks Basic auth and the size before reading a body,
# caps bodies at MAX_REQUEST_MB each and MAX_BUFFERED_MB in all per worker.
worker_class = "segmenter.service.gunicorn_worker.BufferingWorker"
# Label Studio waits up to 100 s for /predict; leave room above that.
timeout = 180
graceful_timeout = 30
loglevel = _settings.log_level.lower()
accesslog = "-"


def on_starting(server: object) -> None:
    """Before the workers fork: this host's METRICS_DIR folder, less the files of processes that ended,
    which every worker counts into (/metrics); matplotlib loaded once, for every worker's first chart."""
    metrics.use_directory(_settings.metrics_dir, clean=True)
    charts.preload()


def worker_exit(server: object, worker: object) -> None:
    """In a worker that ends: its trainings and write-backs stop at their next step (a training is
    recorded as interrupted and runs again at the next start); wait for them, within the graceful
    timeout, since a thread still inside torch when the interpreter exits aborts the process."""
    running = shutdown.stop(within=graceful_timeout - 2)
    if running:
        server.log.warning("worker %s exits with jobs still running: %s", worker.pid, ", ".join(running))


def child_exit(server: object, worker: object) -> None:
    """A worker that ended no longer holds models: drop its live gauges."""
    metrics.process_ended(worker.pid)
