"""A project's records beside its models: its training status, what ``/setup`` said,
and the locks every process sharing MODEL_DIR respects.

``status.json`` holds a ``TrainingStatus`` (with the state of the write-back of
predictions after a training); it is read and written here only,
through ``update_status`` (a read-modify-write under ``status.lock``, whose
change function may return a result to the caller) and ``read_status`` (which
also tells a training whose process died from a live one by probing
``train.lock``).  ``connection.json`` holds what ``/setup`` sent, owner-only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from segmenter.store.files import flock, read_json, write_json
from segmenter.store.identity import belongs_to
from segmenter.store.layout import project_dir, project_key
from segmenter.store.models import INITIAL_VERSION, broken, latest_version, metadata

STATUS_FILE = "status.json"
CONNECTION_FILE = "connection.json"
INTERRUPTED = "training was interrupted: the process running it ended"
STOPPED = "training was interrupted: the service stopped; it runs again at the next start"
# A write-back is "running" only while its writer holds writeback.lock (it goes back to
# "pending" when it stops for a training): one found running with the lock free had its process end.
WRITEBACK_RUNNING, WRITEBACK_INTERRUPTED = "running", "interrupted"
T = TypeVar("T")


class TrainingState(StrEnum):
    """Where a project's training stands."""

    IDLE = "idle"
    QUEUED = "queued"
    TRAINING = "training"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its process stopped it (SIGTERM); it runs again at the next start


def now() -> str:
    """The current UTC time as the records write it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class TrainingStatus:
    """The content of ``status.json``: requests counted, the training they started, its outcome."""

    state: TrainingState = TrainingState.IDLE
    events: int = 0  # annotation events since the last one that counted as a request
    requests: int = 0  # training requests counted so far
    started_request: int = 0  # the request the latest training started for
    last_request: dict | None = None  # {"reason": event, "at": time}
    started_at: str | None = None
    version: str | None = None  # made by the latest successful training
    last_trained_at: str | None = None
    last_error: str | None = None
    failed_at: str | None = None
    progress: dict | None = None  # while training: epoch, best scores, time (segmenter.service.progress)
    history: list = field(default_factory=list)  # one entry per successful training, oldest first
    writeback: dict | None = None  # the newest version's predictions written back (labelstudio.writeback)

    def remember(self, entry: dict, keep: int = 500) -> None:
        """Add a successful training's summary to ``history`` (the newest ``keep`` are kept)."""
        self.history = [*self.history, entry][-keep:]

    @property
    def pending(self) -> bool:
        """Whether a request came after the latest training started."""
        return self.requests > self.started_request

    def claim(self) -> bool:
        """Start training for the pending requests, if any; returns whether there were some."""
        if not self.pending:
            return False
        self.state, self.started_request, self.started_at = TrainingState.TRAINING, self.requests, now()
        self.progress = None
        return True

    def interrupt(self) -> None:
        """The running training ends unfinished because the service stops: its request is pending
        again, for the next start to run it (``Scheduler.resume``)."""
        self.state, self.last_error, self.progress = TrainingState.INTERRUPTED, STOPPED, None
        self.started_request = min(self.started_request, self.requests - 1)

    @property
    def left_waiting(self) -> bool:
        """Whether a training request waits with no process working on it once the service
        restarts: a training its service stopped, or a request queued as it stopped."""
        return self.pending and self.state in (TrainingState.INTERRUPTED, TrainingState.QUEUED)

    def to_json(self) -> dict:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, data: object) -> TrainingStatus:
        """The status stored as ``data``; unknown keys and bad values fall back to the defaults."""
        data = data if isinstance(data, dict) else {}
        known = {f.name for f in fields(cls)} - {"state"}
        status = cls(**{k: v for k, v in data.items() if k in known})
        try:
            status.state = TrainingState(data.get("state", "idle"))
        except ValueError:
            status.state = TrainingState.IDLE
        if not isinstance(status.writeback, dict):
            status.writeback = None
        return status


def _status_path(model_dir: Path, project: str) -> Path:
    return project_dir(model_dir, project) / STATUS_FILE


def stored_status(model_dir: Path, project: object) -> TrainingStatus:
    """``status.json`` as stored (idle before anything happened)."""
    return TrainingStatus.from_json(read_json(_status_path(model_dir, project_key(project))))


def update_status(model_dir: Path, project: object, change: Callable[[TrainingStatus], T]) -> T:
    """Apply ``change`` to the project's status under a lock shared by all processes; returns its result."""
    key = project_key(project)
    with flock(project_dir(model_dir, key) / "status.lock"):
        status = stored_status(model_dir, key)
        result = change(status)
        write_json(_status_path(model_dir, key), status.to_json(), durable=False)
    return result


@contextmanager
def training_lock(model_dir: Path, project: object, tries: int = 1) -> Iterator[bool]:
    """The project's training lock, without waiting: yields whether this process holds it."""
    with flock(project_dir(model_dir, project) / "train.lock", blocking=False, tries=tries) as held:
        yield held


@contextmanager
def writeback_lock(model_dir: Path, project: object, tries: int = 1) -> Iterator[bool]:
    """The project's write-back lock, without waiting: yields whether this process holds it.

    Apart from the training lock, so that a training never waits for predictions to be written.
    """
    with flock(project_dir(model_dir, project) / "writeback.lock", blocking=False, tries=tries) as held:
        yield held


def read_status(model_dir: Path, project: object) -> TrainingStatus:
    """The project's status; a training whose process ended reads as failed, and a write-back
    whose process ended as interrupted (resumed at the service's next start)."""
    key = project_key(project)
    status = stored_status(model_dir, key)
    if status.state is TrainingState.TRAINING:
        with training_lock(model_dir, key) as free:
            # The training may have ended between the read above and the probe:
            # only the status read while holding its lock tells a dead one.
            if free:
                status = stored_status(model_dir, key)
                if status.state is TrainingState.TRAINING:
                    status.state, status.last_error = TrainingState.FAILED, INTERRUPTED
                    status.progress = None
    if (status.writeback or {}).get("state") == WRITEBACK_RUNNING:
        with writeback_lock(model_dir, key) as free:
            if free:
                fresh = stored_status(model_dir, key).writeback or {}
                if fresh.get("state") == WRITEBACK_RUNNING:
                    status.writeback = {**fresh, "state": WRITEBACK_INTERRUPTED}
    return status


def queue(model_dir: Path, projects: list[str]) -> list[dict]:
    """The projects waiting for a training, oldest request first: queued ones, and training ones
    with a follow-up request."""
    waiting = []
    for key in projects:
        status = stored_status(model_dir, key)
        if status.state is TrainingState.QUEUED or (status.state is TrainingState.TRAINING and status.pending):
            since = (status.last_request or {}).get("at")
            waiting.append({"project": key, "state": status.state.value, "requested_at": since})
    return sorted(waiting, key=lambda w: w["requested_at"] or "")


def report(model_dir: Path, project: object) -> dict:
    """What ``/status`` shows of a project: its status, the version served, its models' records."""
    key = project_key(project)
    out = read_status(model_dir, key).to_json()
    version = latest_version(model_dir, key)
    out.update(project=key, model_version=version, label_studio_project=belongs_to(model_dir, key))
    set_aside = broken(model_dir, key)
    if set_aside:
        out["broken"] = set_aside
    if version != INITIAL_VERSION:
        keys = ("trained_at", "train_seconds", "epochs", "stopped_because", "validation", "data", "context", "device",
                "trained_with")
        out["models"] = [
            {"from_name": t["target"]["from_name"], **{k: t["info"].get(k) for k in keys}}
            for t in metadata(model_dir, key, version).get("targets", [])
        ]
    return out


def save_connection(model_dir: Path, project: object, connection: dict) -> None:
    """Remember what ``/setup`` said (Label Studio URL, token, label config); owner-only file."""
    path = project_dir(model_dir, project) / CONNECTION_FILE
    if read_json(path) != connection:
        write_json(path, connection, mode=0o600)


def load_connection(model_dir: Path, project: object) -> dict:
    """What ``/setup`` said for the project ({} if it never came)."""
    found = read_json(project_dir(model_dir, project) / CONNECTION_FILE, {})
    return found if isinstance(found, dict) else {}
