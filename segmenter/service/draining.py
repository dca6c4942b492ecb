"""The loop a training job and a write-back share: work through what is claimable under a lock
that every process sharing MODEL_DIR respects, and look again after letting the lock go.

A request that arrives while the holder is letting the lock go finds it taken
and returns, trusting the holder to see it: so after releasing, the holder
asks ``again()`` and, if work is waiting, takes the lock once more.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

T = TypeVar("T")


def drain(lock: Callable[[], AbstractContextManager[bool]], claim: Callable[[], T | None],
          work: Callable[[T], bool], again: Callable[[], bool]) -> bool:
    """Under ``lock()`` (yields whether it is held), run ``work`` on each ``claim()`` until there is none;
    then, with the lock released, start over while ``again()``.  ``work`` returns False to stop at once.

    Returns False when ``work`` stopped the drain, True when nothing was left (or another holds the lock).
    """
    while True:
        with lock() as mine:
            if not mine:
                return True
            while (job := claim()) is not None:
                if not work(job):
                    return False
        if not again():
            return True
