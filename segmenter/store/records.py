"""A project's records beside its models: its training status, its history of trainings, what
``/setup`` said, and the locks every process sharing MODEL_DIR respects.

``status.json`` holds a ``TrainingStatus`` (``store.status``: the types and their
transitions); it is read and written here only, through ``update_status`` (a
read-modify-write under ``status.lock``, whose change function may return a
result to the caller) and ``read_status`` (which also tells a training or a
write-back whose process died from a live one by probing its lock).
``history.jsonl`` gets one line per successful training, appended, never
rewritten.  ``connection.json`` holds what ``/setup`` sent, owner-only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from segmenter.store.files import StorageError, flock, read_json, write_json
from segmenter.store.identity import belongs_to
from segmenter.store.layout import project_dir, project_key
from segmenter.store.status import TrainingState, TrainingStatus, WritebackState
from segmenter.store.versions import INITIAL_VERSION, broken, latest_version, metadata

STATUS_FILE = "status.json"
HISTORY_FILE = "history.jsonl"
CONNECTION_FILE = "connection.json"
HISTORY_SHOWN = 500  # newest trainings /status and the dashboard show
T = TypeVar("T")


def _status_path(model_dir: Path, project: str) -> Path:
    return project_dir(model_dir, project) / STATUS_FILE


def stored_status(model_dir: Path, project: object) -> TrainingStatus:
    """``status.json`` as stored (idle before anything happened)."""
    return TrainingStatus.from_json(read_json(_status_path(model_dir, project_key(project))))


def update_status(model_dir: Path, project: object, change: Callable[[TrainingStatus], T]) -> T:
    """Apply ``change`` to the project's status under a lock shared by all processes; returns its result."""
    key = project_key(project)
    with flock(project_dir(model_dir, key) / "status.lock"):
        raw = read_json(_status_path(model_dir, key))
        if isinstance(raw, dict) and isinstance(raw.get("history"), list):
            _append_history(model_dir, key, raw["history"])  # kept in status.json before history.jsonl
        status = TrainingStatus.from_json(raw)
        result = change(status)
        write_json(_status_path(model_dir, key), status.to_json(), durable=False)
    return result


def _append_history(model_dir: Path, key: str, entries: list[dict]) -> None:
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    try:
        with open(project_dir(model_dir, key) / HISTORY_FILE, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
    except OSError as exc:
        raise StorageError(f"cannot record the training history of project {key}: {exc}") from exc


def remember_training(model_dir: Path, project: object, summary: dict) -> None:
    """Append one successful training's summary to the project's history (``history.jsonl``)."""
    _append_history(model_dir, project_key(project), [summary])


def history(model_dir: Path, project: object, newest: int = HISTORY_SHOWN) -> list[dict]:
    """The newest ``newest`` training summaries, oldest first (a torn last line, from a full disk, is skipped)."""
    key = project_key(project)
    path = project_dir(model_dir, key) / HISTORY_FILE
    legacy = read_json(_status_path(model_dir, key), {})
    entries = list(legacy.get("history") or []) if isinstance(legacy, dict) else []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return [e for e in entries if isinstance(e, dict)][-newest:]


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


def training_running(model_dir: Path, project: object) -> bool:
    """Whether a process holds the project's training lock now: a probe for an instant, never waits."""
    with training_lock(model_dir, project) as free:
        return not free


def _read_if_free(model_dir: Path, key: str) -> TrainingStatus | None:
    """The status read while holding the training lock for an instant (no training runs), or None
    when a process holds it.  Never waits."""
    with training_lock(model_dir, key) as free:
        return stored_status(model_dir, key) if free else None


def orphaned_training(model_dir: Path, project: object) -> TrainingStatus | None:
    """The project's status if it says a training runs but no process holds its lock (the process,
    or machine, running it ended), else None."""
    key = project_key(project)
    if stored_status(model_dir, key).state is not TrainingState.TRAINING:
        return None
    # The training may have ended between the read above and the probe:
    # only the status read while holding its lock tells a dead one.
    status = _read_if_free(model_dir, key)
    return status if status is not None and status.state is TrainingState.TRAINING else None


def read_status(model_dir: Path, project: object) -> TrainingStatus:
    """The project's status; a training whose process ended reads as interrupted (until it is taken
    over), and a write-back whose process ended as interrupted (resumed at the service's next start)."""
    key = project_key(project)
    status = stored_status(model_dir, key)
    if status.state is TrainingState.TRAINING and (fresh := _read_if_free(model_dir, key)) is not None:
        status = fresh
        if status.state is TrainingState.TRAINING:
            status.died()
    if status.writeback is not None and status.writeback.state is WritebackState.RUNNING:
        with writeback_lock(model_dir, key) as free:
            if free:
                fresh = stored_status(model_dir, key).writeback
                if fresh is not None and fresh.state is WritebackState.RUNNING:
                    fresh.state = WritebackState.INTERRUPTED
                    status.writeback = fresh
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
    out = {**read_status(model_dir, key).to_json(), "history": history(model_dir, key)}
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
    """What ``/setup`` said for the project ({} if it never came); the label config last seen is its
    ``label_config`` (files written before this name called it ``schema``, as ``/setup``'s body does)."""
    found = read_json(project_dir(model_dir, project) / CONNECTION_FILE, {})
    if not isinstance(found, dict):
        return {}
    if "schema" in found:
        found.setdefault("label_config", found.pop("schema"))
    return found
