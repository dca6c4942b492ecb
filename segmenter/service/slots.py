"""A bounded number of slots for one kind of work, handed out in the order they were asked for.

One backend process serves many Label Studio projects; with ``TRAINING_BACKEND=thread``
each project's trainings and write-backs run in their own threads, so without a bound
a hundred projects asking at once would train a hundred networks on two cores.  A
``Slots`` lets ``limit`` holders work at once and queues the rest first come, first
served: a project that has just trained asks again at the back of the queue, so a
project that trains often or for long never passes one that waits.  The standard
library's semaphore makes no promise of order, hence this small queue.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Slots:
    """``limit`` slots, granted to waiters in arrival order."""

    def __init__(self, limit: int, name: str = "slots") -> None:
        if limit < 1:
            raise ValueError(f"{name}: limit must be at least 1, not {limit}")
        self.limit = limit
        self.name = name
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._holders: list[str] = []
        self._granted = 0
        self.peak = 0  # the most slots ever held at once, for tests and benches

    @property
    def busy(self) -> int:
        """Slots held now."""
        with self._cond:
            return len(self._holders)

    @property
    def waiting(self) -> int:
        """Waiters in the queue now."""
        with self._cond:
            return len(self._waiting)

    def granted(self) -> int:
        """How many slots have been granted since the start."""
        with self._cond:
            return self._granted

    def acquire(self, who: str, give_up: Callable[[], bool] = lambda: False, poll: float = 0.25) -> bool:
        """Wait for a slot in arrival order; False (and out of the queue) once ``give_up()`` says so."""
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            while self._waiting[0] is not ticket or len(self._holders) >= self.limit:
                if give_up():
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
                    return False
                self._cond.wait(poll)
            self._waiting.popleft()
            self._holders.append(who)
            self._granted += 1
            self.peak = max(self.peak, len(self._holders))
            self._cond.notify_all()  # the next in line may fit too
            return True

    def release(self, who: str) -> None:
        """Give back a slot taken by ``acquire(who)``."""
        with self._cond:
            self._holders.remove(who)
            self._cond.notify_all()

    @contextmanager
    def held(self, who: str, give_up: Callable[[], bool] = lambda: False) -> Iterator[bool]:
        """A slot for the block; yields False (holding nothing) if ``give_up()`` said so while waiting."""
        got = self.acquire(who, give_up)
        try:
            yield got
        finally:
            if got:
                self.release(who)


class Unbounded:
    """No bound: what an RQ worker uses, its concurrency being its number of worker processes."""

    def acquire(self, who: str, give_up: Callable[[], bool] = lambda: False, poll: float = 0.25) -> bool:
        """Always a slot at once."""
        return True

    def release(self, who: str) -> None:
        """Nothing to give back."""

    @contextmanager
    def held(self, who: str, give_up: Callable[[], bool] = lambda: False) -> Iterator[bool]:
        """A slot for the block, at once."""
        yield True
