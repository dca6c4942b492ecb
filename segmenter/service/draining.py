"""The loop a training job and a write-back share: work through what is claimable under a lock
that every process sharing MODEL_DIR respects, and look again after letting the lock go.

A request that arrives while the holder is letting the lock go finds it taken
and returns, trusting the holder to see it: so after releasing, the holder
asks ``again()`` and, if work is waiting, takes the lock once more.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")


class Drained(StrEnum):
    """How a ``drain`` ended."""

    EMPTY = "empty"  # nothing left to claim
    STOPPED = "stopped"  # ``work`` asked to stop
    HELD_ELSEWHERE = "held elsewhere"  # another thread or process holds the lock, and sees what waits


def drain(lock: Callable[[], AbstractContextManager[bool]], claim: Callable[[], T | None],
          work: Callable[[T], bool], again: Callable[[], bool]) -> Drained:
    """Under ``lock()`` (yields whether it is held), run ``work`` on each ``claim()`` until there is none;
    then, with the lock released, start over while ``again()``.  ``work`` returns False to stop at once."""
    while True:
        with lock() as mine:
            if not mine:
                return Drained.HELD_ELSEWHERE
            while (job := claim()) is not None:
                if not work(job):
                    return Drained.STOPPED
        if not again():
            return Drained.EMPTY
