"""A project's status as types: where its training stands and where the write-back of its newest
version's predictions stands, with every transition of either written here and nowhere else.

``TrainingStatus`` is the content of ``status.json`` (``store.records`` reads
and writes it under its lock); its ``writeback`` is a ``WritebackStatus``.
Callers change a status only through these methods, inside
``store.update_status``, so a state can only move along the arrows below.

Training:   idle/failed/interrupted --request--> queued --claim--> training --> idle | failed | interrupted;
            training with no process alive --take_over--> queued (``MAX_TAKEOVERS`` times in a row, then failed).
Write-back: pending --start--> running --record/finish--> done;  running --pause--> pending;
            running --fail--> failed;  pending/running --supersede--> superseded;
            running with no writer alive reads as interrupted (``store.read_status``), resumed at the next start.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum

STOPPED = "training was interrupted: the service stopped; it runs again at the next start"
DIED = "training was interrupted: the process running it ended"
ORPHANED = DIED + "; it runs again once taken over (its RQ job's retry, or the service's next start)"
TAKEN_OVER = DIED + "; it runs again (taken over)"
# How many times in a row one request's training is run again after its process died: a machine
# lost or a worker killed is worth another try, a training that kills its process every time is not.
MAX_TAKEOVERS = 2


def now() -> str:
    """The current UTC time as the records write it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def this_process() -> str:
    """How a status names the process running a training or write-back: host and pid, so that with
    workers on several machines /status tells which one works on a project."""
    return f"{socket.gethostname()}:{os.getpid()}"


class TrainingState(StrEnum):
    """Where a project's training stands."""

    IDLE = "idle"
    QUEUED = "queued"
    TRAINING = "training"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its process stopped it (SIGTERM) or ended; it runs again (next start, takeover)


class WritebackState(StrEnum):
    """Where a version's write-back stands."""

    PENDING = "pending"  # scheduled, not started (or stopped for a training)
    RUNNING = "running"  # a writer holds the write-back lock; it resumes after the last task written
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"  # a newer version was trained before it finished
    INTERRUPTED = "interrupted"  # shown only: found running with no writer alive; resumed at the next start


class Step(StrEnum):
    """What a write-back does after recording a batch."""

    GO_ON = "go on"
    DONE = "done"
    SUPERSEDED = "superseded"  # a newer training replaced it
    YIELD = "yield"  # a training is pending or running: it goes first


@dataclass
class WritebackStatus:
    """The write-back of one version: what it writes, how far it got, how it ended."""

    version: str = ""
    mode: str = "unlabelled"  # which tasks: "unlabelled" or "all"
    state: WritebackState = WritebackState.PENDING
    after: int = 0  # the last task id written: a resumed write-back goes on after it
    total: int | None = None
    seen: int = 0
    written: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    last_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # time per stage, summed over its batches
    worker: str | None = None  # "host:pid" of the process that last started or resumed it

    @property
    def unfinished(self) -> bool:
        """Whether it waits to be started or resumed."""
        return self.state in (WritebackState.PENDING, WritebackState.RUNNING)

    def supersede(self) -> None:
        self.state, self.finished_at = WritebackState.SUPERSEDED, now()

    def start(self, worker: str | None = None) -> None:
        self.state, self.started_at, self.worker = WritebackState.RUNNING, self.started_at or now(), worker

    def pause(self) -> None:
        """Back to pending while a training goes first ("running" means a writer holds the lock)."""
        if self.state is WritebackState.RUNNING:
            self.state = WritebackState.PENDING

    def advance(self, version: str, after: int, seen: int, written: int, total: int, done: bool,
                training_ahead: bool, seconds: dict[str, float] | None = None) -> Step:
        """Record a batch of the write-back of ``version`` (and the ``seconds`` its stages took);
        returns what comes next."""
        if self.version != version or self.state is not WritebackState.RUNNING:
            return Step.SUPERSEDED
        self.after, self.seen, self.written, self.total = after, seen, self.written + written, total
        for stage, spent in (seconds or {}).items():
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + spent, 3)
        if done:
            self.state, self.finished_at, self.last_error = WritebackState.DONE, now(), None
            return Step.DONE
        return Step.YIELD if training_ahead else Step.GO_ON

    def fail(self, error: str) -> None:
        """A running write-back fails; a done one keeps the error of what followed (pointing the project)."""
        if self.state is WritebackState.RUNNING:
            self.state, self.finished_at = WritebackState.FAILED, now()
        self.last_error = error

    def to_json(self) -> dict:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, data: object) -> WritebackStatus | None:
        """The stored write-back (None for anything that is not one); unknown keys are dropped and bad
        values fall back to the defaults."""
        if not isinstance(data, dict):
            return None
        known = {f.name for f in fields(cls)} - {"state"}
        found = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(found.seconds, dict) or not all(
                isinstance(v, (int, float)) for v in found.seconds.values()):
            found.seconds = {}
        try:
            found.state = WritebackState(data.get("state", "pending"))
        except ValueError:
            found.state = WritebackState.FAILED
        return found


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
    worker: str | None = None  # "host:pid" of the process running the latest training (several machines)
    takeovers: int = 0  # times in a row the latest request's training lost its process and was run again
    writeback: WritebackStatus | None = None  # the newest version's predictions written back (service.writeback)

    @property
    def pending(self) -> bool:
        """Whether a request came after the latest training started."""
        return self.requests > self.started_request

    def request(self, reason: str, every: int = 1) -> bool:
        """Count an event; every ``every``-th is a training request; returns whether this one was."""
        self.events += 1
        if self.events < every:
            return False
        self.requests, self.events = self.requests + 1, 0
        self.last_request = {"reason": reason, "at": now()}
        if self.state is not TrainingState.TRAINING:
            self.state = TrainingState.QUEUED
        return True

    def claim(self, worker: str | None = None) -> bool:
        """Start training for the pending requests, if any, in ``worker``; returns whether there were some."""
        if not self.pending:
            return False
        self.state, self.started_request, self.started_at = TrainingState.TRAINING, self.requests, now()
        self.progress, self.worker = None, worker
        return True

    def succeed(self, version: str) -> None:
        """The training made ``version``."""
        self.state, self.version, self.last_error = TrainingState.IDLE, version, None
        self.last_trained_at, self.progress, self.takeovers = now(), None, 0

    def fail(self, error: str) -> None:
        """The training failed (the previous version keeps serving)."""
        self.state, self.last_error, self.failed_at, self.progress = TrainingState.FAILED, error, now(), None
        self.takeovers = 0

    def interrupt(self) -> None:
        """The running training ends unfinished because the service stops: its request is pending
        again, for the next start to run it (``Scheduler.resume``)."""
        self.state, self.last_error, self.progress = TrainingState.INTERRUPTED, STOPPED, None
        self.started_request = min(self.started_request, self.requests - 1)

    def died(self) -> None:
        """Shown only: a training whose process ended reads as interrupted until it is taken over."""
        self.state, self.last_error, self.progress = TrainingState.INTERRUPTED, ORPHANED, None

    def take_over(self) -> bool:
        """Called by the holder of the training lock: a training still marked running lost its process
        (killed, its machine gone).  Its request is pending again, ``MAX_TAKEOVERS`` times in a row
        at most, then it is recorded as failed; returns whether it runs again."""
        if self.state is not TrainingState.TRAINING:
            return False
        self.progress = None
        if self.takeovers >= MAX_TAKEOVERS:
            self.state, self.failed_at, self.takeovers = TrainingState.FAILED, now(), 0
            self.last_error = f"{DIED} {MAX_TAKEOVERS + 1} times in a row; it runs again at the next request"
            return False
        self.takeovers += 1
        self.state, self.last_error = TrainingState.QUEUED, TAKEN_OVER
        self.started_request = min(self.started_request, self.requests - 1)
        return True

    def schedule_writeback(self, version: str, mode: str) -> None:
        """Plan the write-back of ``version`` (in the same update that records the training), superseding
        any unfinished one of an older version; none when ``mode`` is ``"off"``."""
        if mode == "off":
            if self.writeback is not None and self.writeback.unfinished:
                self.writeback.supersede()
            return
        self.writeback = WritebackStatus(version=version, mode=mode)

    @property
    def writeback_unfinished(self) -> bool:
        """Whether a write-back waits to be started or resumed."""
        return self.writeback is not None and self.writeback.unfinished

    @property
    def left_waiting(self) -> bool:
        """Whether a training request waits with no process working on it once the service
        restarts: a training its service stopped, or a request queued as it stopped."""
        return self.pending and self.state in (TrainingState.INTERRUPTED, TrainingState.QUEUED)

    def to_json(self) -> dict:
        out = {**asdict(self), "state": self.state.value}
        out["writeback"] = self.writeback.to_json() if self.writeback is not None else None
        return out

    @classmethod
    def from_json(cls, data: object) -> TrainingStatus:
        """The status stored as ``data``; unknown keys and bad values fall back to the defaults."""
        data = data if isinstance(data, dict) else {}
        known = {f.name for f in fields(cls)} - {"state", "writeback"}
        status = cls(**{k: v for k, v in data.items() if k in known})
        try:
            status.state = TrainingState(data.get("state", "idle"))
        except ValueError:
            status.state = TrainingState.IDLE
        status.writeback = WritebackStatus.from_json(data.get("writeback"))
        return status
