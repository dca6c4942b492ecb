"""Where the dashboard's charts are drawn: one thread per app, a bounded queue, identical work merged.

Drawing a chart (and, for a task chart, parsing and predicting the task) is
CPU work of up to seconds, while the request threads (``THREADS`` of them)
are also the ones that serve Label Studio's ``/predict`` and ``/webhook`` and
``/health``.  So a chart request never draws: it hands a job, keyed by what
the chart shows, to the app's chart thread and waits for it.

- A key asked for while its job is queued or drawing is not queued again: the
  later requests wait for the same job (single-flight).
- At most ``waiting`` request threads wait for charts at once (half of
  ``THREADS``): the others stay free for Label Studio.  A chart request past
  that, a full queue (``QUEUED`` jobs) or a wait past ``WAIT`` seconds raises
  ``Busy`` (the dashboard answers 503 with Retry-After); the job itself goes
  on, and its PNG is kept, so the next ask is served at once.
- The last ``KEPT`` PNGs drawn stay in memory by key.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

QUEUED = 8  # jobs waiting for the chart thread
WAIT = 20.0  # seconds a request waits for its chart before a 503
KEPT = 32  # PNGs kept in memory (a chart is 50-250 KB)


class Busy(Exception):
    """The chart cannot be served now; ask again after ``retry_after`` seconds."""

    def __init__(self, why: str, retry_after: int) -> None:
        super().__init__(why)
        self.retry_after = retry_after


class ChartWorker:
    """One chart thread, its bounded queue, the jobs in flight by key and the PNGs last drawn."""

    def __init__(self, waiting: int, queued: int = QUEUED, wait: float = WAIT, kept: int = KEPT) -> None:
        self._waiting = threading.BoundedSemaphore(max(1, waiting))
        self._queue: queue.Queue = queue.Queue(queued)
        self._wait, self._kept_at_most = wait, kept
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future] = {}
        self._kept: OrderedDict[str, bytes] = OrderedDict()
        self._thread: threading.Thread | None = None

    def kept(self, key: str) -> bytes | None:
        """The PNG drawn for ``key``, if still in memory."""
        with self._lock:
            png = self._kept.get(key)
            if png is not None:
                self._kept.move_to_end(key)
            return png

    def draw(self, key: str, job: Callable[[], bytes]) -> bytes:
        """The PNG for ``key``: kept, or drawn by ``job`` on the chart thread (once however many ask)."""
        png = self.kept(key)
        if png is not None:
            return png
        if not self._waiting.acquire(blocking=False):
            raise Busy("charts are being drawn for other requests", 1)
        try:
            future = self._submit(key, job)
            try:
                return future.result(timeout=self._wait)
            except TimeoutError:
                raise Busy(f"chart not drawn within {self._wait:g} s; it is still being drawn", 2) from None
        finally:
            self._waiting.release()

    def _submit(self, key: str, job: Callable[[], bytes]) -> Future:
        with self._lock:
            future = self._in_flight.get(key)
            if future is not None:
                return future
            future = Future()
            try:
                self._queue.put_nowait((key, job, future))
            except queue.Full:
                raise Busy("too many charts waiting to be drawn", 1) from None
            self._in_flight[key] = future
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="charts", daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        """The chart thread: run each job, keep its PNG, hand it to whoever waits."""
        while True:
            key, job, future = self._queue.get()
            try:
                png = job()
            except Exception as exc:  # said to the requests waiting (a 502 for bad task data, else a 500)
                with self._lock:
                    del self._in_flight[key]
                future.set_exception(exc)
                continue
            with self._lock:
                self._kept[key] = png
                while len(self._kept) > self._kept_at_most:
                    self._kept.popitem(last=False)
                del self._in_flight[key]
            future.set_result(png)
