"""Exceptions raised on bad input, each naming what was wrong and where.

They travel up to the service and the command line, which turn them into an
empty prediction plus a logged message, a 400 answer or a non-zero exit; none of
them is allowed to kill the service.
"""

from __future__ import annotations

from segmenter.redaction import redact


class SegmenterError(Exception):
    """Base class of every error this package raises on bad input.

    Messages often quote URLs and answers from other hosts: they are redacted
    here, once, so no key or URL password travels on in an error.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigError(SegmenterError):
    """An environment variable holds a value that cannot be used."""


class LabelConfigError(SegmenterError):
    """The Label Studio labeling config cannot be used for time-series segmentation."""


class TaskDataError(SegmenterError):
    """The data of one task cannot be read: unreadable file, missing column, bad cell."""

    def __init__(self, message: str, task_id: object = None) -> None:
        self.task_id = task_id
        self.detail = redact(message)
        prefix = f"task {task_id}: " if task_id is not None else ""
        super().__init__(prefix + message)

    def for_task(self, task_id: object) -> TaskDataError:
        """The same error, attributed to ``task_id`` when it was raised without one."""
        if self.task_id is not None:
            return self
        return TaskDataError(self.detail, task_id)


class DownloadError(TaskDataError):
    """A task's file could not be fetched: refused host, HTTP error, size cap."""

