"""Tasks the dashboard read from Label Studio, kept a few seconds so that a page's charts do not
read them again, and read once however many requests ask at the same time."""

from __future__ import annotations

import threading
import time

from cachetools import TTLCache

from segmenter import store
from segmenter.labelstudio.client import LabelStudioClient
from segmenter.service.singleflight import SingleFlight

FETCHED_FOR = 30.0  # seconds a task read for a page serves that page's charts
KEPT = 16  # tasks kept at most


class TaskReads:
    """One runtime's recently read tasks, by (Label Studio URL, project, task id)."""

    def __init__(self, kept: int = KEPT, seconds: float = FETCHED_FOR) -> None:
        self._tasks: TTLCache[tuple[str, str, int], dict | None] = TTLCache(kept, seconds, timer=time.monotonic)
        self._lock = threading.Lock()
        self._reading = SingleFlight()

    def get(self, client: LabelStudioClient, project: str, task_id: int) -> dict | None:
        """The task (None when the project has none in Label Studio)."""
        key = (client.url, project, task_id)
        with self._lock:
            if key in self._tasks:
                return self._tasks[key]
        return self._reading.run(key, lambda: self._read(client, key))

    def _read(self, client: LabelStudioClient, key: tuple[str, str, int]) -> dict | None:
        task = client.task(store.label_studio_id(key[1]), key[2])
        with self._lock:
            self._tasks[key] = task
        return task
