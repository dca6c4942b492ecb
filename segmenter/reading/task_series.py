"""One task's series for one target: the task's data value, fetched if it is a
reference, parsed with the UI's rules.  Shared by training and inference."""

from __future__ import annotations

from typing import Protocol

from segmenter.errors import TaskDataError
from segmenter.reading.labelconfig import Target
from segmenter.reading.series import Series, load_series


class Fetcher(Protocol):
    """Anything that turns a URL or path found in task data into bytes."""

    def fetch(self, ref: str, task_id: object = None) -> bytes: ...


def _is_reference(value: str) -> bool:
    text = value.strip()
    return not text.startswith(("{", "[")) and "\n" not in text


def read_task_series(task: dict, target: Target, fetcher: Fetcher) -> Series:
    """The series ``target`` labels in ``task``; ``TaskDataError`` names the task on failure."""
    task_id = task.get("id")
    data = task.get("data")
    if not isinstance(data, dict):
        raise TaskDataError("task has no data object", task_id)
    if target.data_key not in data:
        raise TaskDataError(
            f"task data has no key {target.data_key!r} (config value=\"${target.data_key}\"); "
            f"keys: {sorted(data)}",
            task_id,
        )
    value = data[target.data_key]
    try:
        if isinstance(value, str) and _is_reference(value):
            raw: bytes | str | dict | list = fetcher.fetch(value, task_id)
        else:
            raw = value
        return load_series(raw, target, task_id)
    except TaskDataError as exc:
        raise exc.for_task(task_id) from None
