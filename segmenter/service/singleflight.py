"""Identical work in flight done once: concurrent calls for one key share one computation.

Four people opening the same long task at once would otherwise parse and
predict it four times; with ``SingleFlight.run`` the first call computes and
the others wait for its result (or its exception).  Nothing is kept once the
computation ends: caching what was computed is the caller's business.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class SingleFlight:
    """Calls in flight by key; a call for a key already in flight waits for that one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, Future] = {}

    def run(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``, or the result of the call for ``key`` already running in another thread."""
        with self._lock:
            running = self._calls.get(key)
            if running is None:
                mine: Future = Future()
                self._calls[key] = mine
        if running is not None:
            return running.result()
        try:
            result = compute()
        except BaseException as exc:
            mine.set_exception(exc)
            raise
        else:
            mine.set_result(result)
            return result
        finally:
            with self._lock:
                del self._calls[key]
