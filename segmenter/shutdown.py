"""Stopping a service process cleanly: its trainings and write-backs end at their next step.

A thread still inside torch when the interpreter exits makes the process abort
(``terminate called without an active exception``, then SIGABRT).  So a
gunicorn worker that is told to stop (SIGTERM) calls ``request`` at once, and
its ``worker_exit`` hook calls ``stop``, which waits for the job threads
(``track``) within the graceful timeout.  Long jobs look between steps: the
training loop calls ``check`` between batches and tasks (``Interrupted``, which
the job records as an interrupted training, run again at the next start), the
write-back between batches (it stays pending and resumes at the next start).
A forked child starts not stopping.
"""

from __future__ import annotations

import os
import threading
import time

_stopping = threading.Event()
_since = 0.0  # time.monotonic() of the first request
_threads: list[threading.Thread] = []
_lock = threading.Lock()


class Interrupted(Exception):
    """A job ended early because its process is stopping."""


def request() -> None:
    """This process is stopping: jobs end at their next step."""
    global _since
    if not _stopping.is_set():
        _since = time.monotonic()
        _stopping.set()


def requested() -> bool:
    """Whether this process is stopping."""
    return _stopping.is_set()


def check() -> None:
    """Raise ``Interrupted`` if this process is stopping (called between the steps of a job)."""
    if _stopping.is_set():
        raise Interrupted("the service is stopping")


def track(thread: threading.Thread) -> None:
    """Remember a job thread, for ``stop`` to wait for."""
    with _lock:
        _threads[:] = [t for t in _threads if t.is_alive()] + [thread]


def stop(within: float) -> list[str]:
    """Request the stop and wait for the job threads until ``within`` seconds after the first
    request; returns the names of those still running then."""
    request()
    deadline = _since + within
    with _lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


def _forked() -> None:
    """A forked child is not stopping, and runs none of its parent's threads."""
    global _stopping, _lock
    _stopping, _lock = threading.Event(), threading.Lock()
    _threads.clear()


os.register_at_fork(after_in_child=_forked)
