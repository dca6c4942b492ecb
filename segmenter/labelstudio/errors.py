"""What can go wrong talking to Label Studio, and how a caller that can wait tries again.

Apart from the client so that code which only handles these (fetching task
data, the write-back's retries) does not import label-studio-sdk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from segmenter.errors import SegmenterError

logger = logging.getLogger(__name__)

# Answers that say Label Studio (or a proxy before it) failed for a passing reason: worth a retry.
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
# The longest single wait between two tries, whatever the backoff's first wait.
MAX_RETRY_WAIT_S = 30.0
_T = TypeVar("_T")


class LabelStudioError(SegmenterError):
    """Label Studio could not be reached, refused the key or answered something unusable.

    ``status`` is the HTTP status Label Studio answered (None when there was no answer);
    ``transient`` says whether the same request may well succeed a little later (a 5xx
    from a server or proxy, a refused connection, a timeout).
    """

    def __init__(self, message: str, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


@dataclass(frozen=True)
class Backoff:
    """How a caller that can wait (the write-back, never a web request) retries a Label Studio call
    that failed for a passing reason: ``retries`` more tries, the first after ``first_wait`` seconds,
    each wait twice the one before and at most ``MAX_RETRY_WAIT_S``, so the total wait is bounded."""

    retries: int = 4
    first_wait: float = 1.0

    def waits(self) -> list[float]:
        """The waits before each retry, in order."""
        return [min(self.first_wait * 2**n, MAX_RETRY_WAIT_S) for n in range(self.retries)]

    def call(self, what: str, call: Callable[[], _T], sleep: Callable[[float], None] = time.sleep) -> _T:
        """``call()``, tried again after each wait while it raises a transient ``LabelStudioError``;
        the last error is raised when the retries are spent, any other error at once."""
        for wait in self.waits():
            try:
                return call()
            except LabelStudioError as exc:
                if not exc.transient:
                    raise
                logger.warning("%s failed, trying again in %.1f s: %s", what, wait, exc)
            sleep(wait)
        return call()
