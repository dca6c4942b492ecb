"""Background training: requests, coalescing, one training per project at a time.

A request (an annotation webhook, Start Training) bumps the project's request
counter in ``status.json`` and hands the project to an executor: a thread of
this process (``TRAINING_BACKEND=thread``, the default) or an RQ queue on Redis
(``TRAINING_BACKEND=rq``, run ``rq worker`` beside the service).  Either way the
job is ``drain(project)``: it takes the project's training lock (a file lock,
so two processes or machines sharing ``MODEL_DIR`` never train one project at
once), trains while requests newer than the last started training are pending,
and records the outcome in ``status.json``.  Requests arriving during a training
coalesce into at most one follow-up.  A failed training is recorded with its
error and the previous model keeps serving.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from segmenter import store
from segmenter.config import Settings
from segmenter.fetching import DataFetcher
from segmenter.labelstudio import LabelStudioClient, LabelStudioClients, same_origin
from segmenter.redaction import redact, without_credentials
from segmenter.training import train_project

log = logging.getLogger(__name__)

IDLE, QUEUED, TRAINING, FAILED = "idle", "queued", "training", "failed"
CONNECTION_FILE = "connection.json"
STATUS_FILE = "status.json"


@contextmanager
def _flock(path: Path, blocking: bool = True, tries: int = 1) -> Iterator[bool]:
    """An exclusive file lock; without ``blocking``, ``tries`` attempts 20 ms apart, then False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(tries):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if attempt == tries - 1:
                    yield False
                    return
                time.sleep(0.02)
        yield True
    finally:
        os.close(fd)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _training_lock(model_dir: Path, project: str) -> Path:
    return store.project_dir(model_dir, project) / "train.lock"


def update_status(model_dir: Path, project: object, change: Callable[[dict], None]) -> dict:
    """Read-modify-write the project's status under a lock shared by all processes."""
    folder = store.project_dir(model_dir, project)
    with _flock(folder / "status.lock"):
        status = store.read_json(folder / STATUS_FILE, {}) or {}
        change(status)
        store.write_json(folder / STATUS_FILE, status, durable=False)
    return status


def _stored_status(model_dir: Path, project: str) -> dict:
    """``status.json`` as stored, with its state ("idle" before anything happened)."""
    status = dict(store.read_json(store.project_dir(model_dir, project) / STATUS_FILE, {}) or {})
    status.setdefault("state", IDLE)
    return status


def read_status(model_dir: Path, project: object) -> dict:
    """The project's training state, current version, metrics and last error."""
    key = store.project_key(project)
    status = _stored_status(model_dir, key)
    if status["state"] == TRAINING:
        with _flock(_training_lock(model_dir, key), blocking=False) as free:
            # The training may have ended between the read above and the probe:
            # only the status read while holding its lock tells a dead one.
            if free:
                status = _stored_status(model_dir, key)
                if status["state"] == TRAINING:
                    status["state"] = FAILED
                    status["last_error"] = "training was interrupted: the process running it ended"
    version = store.latest_version(model_dir, key)
    status["project"] = key
    status["model_version"] = version
    broken = store.broken(model_dir, key)
    if broken:  # model files that did not load, set aside (see store)
        status["broken"] = broken
    if version != store.INITIAL_VERSION:
        meta = store.metadata(model_dir, key, version)
        keys = ("trained_at", "train_seconds", "epochs", "stopped_because", "validation", "data")
        status["models"] = [
            {"from_name": t["target"]["from_name"], **{k: t["info"].get(k) for k in keys}}
            for t in meta.get("targets", [])
        ]
    return status


def save_connection(model_dir: Path, project: object, connection: dict) -> None:
    """Remember what ``/setup`` said (Label Studio URL, token, label config); owner-only file."""
    path = store.project_dir(model_dir, project) / CONNECTION_FILE
    if store.read_json(path) != connection:
        store.write_json(path, connection, mode=0o600)


def load_connection(model_dir: Path, project: object) -> dict:
    """What ``/setup`` said for the project ({} if it never came)."""
    return store.read_json(store.project_dir(model_dir, project) / CONNECTION_FILE, {}) or {}


# One client per Label Studio and key, so a Personal Access Token's access
# token is reused until it expires instead of being exchanged on every request.
_clients = LabelStudioClients()


def connection_target(settings: Settings, connection: dict) -> tuple[str, str]:
    """The (Label Studio URL, key) pair a project uses; each key travels only with its own host.

    ``LABEL_STUDIO_URL`` wins over any ``/setup``: with it, the project uses the
    operator's key, or else the ``/setup`` token only when that ``/setup`` named
    the same Label Studio.  Without it, the ``/setup`` hostname goes with the
    ``/setup`` token.  The operator's key never pairs with a ``/setup`` host.
    """
    hostname = (connection.get("hostname") or "").rstrip("/")
    token = connection.get("access_token") or ""
    if settings.label_studio_url:
        if settings.label_studio_api_key:
            return settings.label_studio_url, settings.label_studio_api_key
        return settings.label_studio_url, token if same_origin(hostname, settings.label_studio_url) else ""
    return hostname, token


def connection_to_keep(settings: Settings, hostname: object, access_token: object) -> dict:
    """What to store of a ``/setup``: its host without credentials, its token only where usable."""
    host = without_credentials(hostname.strip()).rstrip("/") if isinstance(hostname, str) else ""
    token = access_token.strip() if isinstance(access_token, str) else ""
    if settings.label_studio_url and not same_origin(host, settings.label_studio_url):
        if host:
            log.warning(
                "/setup names Label Studio %s but LABEL_STUDIO_URL is %s: the project keeps using "
                "LABEL_STUDIO_URL and the /setup token is not kept", host, settings.label_studio_url,
            )
        token = ""
    if settings.label_studio_api_key:
        token = ""  # the operator's key is used; keep no second secret on disk
    return {"hostname": host, "access_token": token}


def label_studio_for(settings: Settings, project: object) -> LabelStudioClient | None:
    """A client for the project's Label Studio (see ``connection_target``); None without a URL."""
    url, key = connection_target(settings, load_connection(settings.model_dir, project))
    if not url:
        return None
    return _clients.get(url, key)


def fetcher_for(settings: Settings, project: object) -> DataFetcher:
    """The downloader of task data for one project, with the configured limits."""
    return DataFetcher(
        label_studio_for(settings, project),
        allowed_hosts=settings.allowed_hosts,
        local_root=settings.local_files_root,
        max_bytes=settings.max_download_mb * 1024 * 1024,
        cache_dir=settings.cache_dir,
    )


def run_training(settings: Settings, project: str) -> str:
    """Train a project from Label Studio's export and store it; returns the new version."""
    client = label_studio_for(settings, project)
    if client is None:
        raise RuntimeError(
            "no Label Studio URL: set LABEL_STUDIO_URL or connect the backend in Label Studio (/setup)"
        )
    project_info = client.get_json(f"/api/projects/{project}")
    label_config = (project_info.get("label_config") if isinstance(project_info, dict) else None) or (
        load_connection(settings.model_dir, project).get("schema")
    )
    tasks = client.export_tasks(int(project))
    log.info("project %s: training on %d exported tasks", project, len(tasks))
    models = train_project(label_config, tasks, fetcher_for(settings, project), settings.training, log.debug)
    version = store.save(settings.model_dir, project, models, keep=settings.keep_versions)
    log.info("project %s: trained version %s", project, version)
    return version


def _claim(status: dict) -> None:
    """Mark a pending request as started (status change for ``update_status``)."""
    status["claimed"] = status.get("requests", 0) > status.get("started_request", 0)
    if status["claimed"]:
        status.update(state=TRAINING, started_request=status.get("requests", 0), started_at=_now())


def _pending(model_dir: Path, project: str) -> bool:
    status = _stored_status(model_dir, project)
    return status.get("requests", 0) > status.get("started_request", 0)


def _train_once(settings: Settings, project: str) -> None:
    """One training, its outcome recorded in the status either way."""
    try:
        version = run_training(settings, project)
    except Exception as exc:  # any failure is recorded; the old model keeps serving
        log.exception("project %s: training failed", project)
        outcome = {"state": FAILED, "last_error": redact(f"{type(exc).__name__}: {exc}"), "failed_at": _now()}
    else:
        outcome = {"state": IDLE, "version": version, "last_trained_at": _now(), "last_error": None}
    update_status(settings.model_dir, project, lambda status: status.update(outcome))


def drain(project: str, settings: Settings | None = None) -> None:
    """Train ``project`` until no request is pending; returns at once if another process trains it."""
    if settings is None:  # an RQ worker process
        settings = Settings.from_env()
        settings.apply_torch_threads()
        settings.guard_secrets()
    while True:
        # A few tries: /status probes the same lock for an instant to tell a live
        # training from one whose process died, and must not make a request be lost.
        with _flock(_training_lock(settings.model_dir, project), blocking=False, tries=10) as mine:
            if not mine:
                return
            while update_status(settings.model_dir, project, _claim)["claimed"]:
                _train_once(settings, project)
        # A request that came while the lock was being released found it taken: look again.
        if not _pending(settings.model_dir, project):
            return


class Scheduler:
    """Turns training requests into background jobs on the configured executor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._queue = None
        if settings.training_backend == "rq":
            from redis import Redis
            from rq import Queue

            self._queue = Queue(settings.rq_queue, connection=Redis.from_url(settings.redis_url))

    def request(self, project: object, reason: str, every: int = 1) -> bool:
        """Count a request for a training of ``project``; start one on every ``every``-th.

        Returns whether a training was scheduled.  Returns immediately: the
        counting is one locked read-modify-write of the status file.
        """
        key = store.project_key(project)
        due = {}

        def ask(status: dict) -> None:
            status["events"] = status.get("events", 0) + 1
            due["yes"] = status["events"] >= every
            if due["yes"]:
                status["requests"] = status.get("requests", 0) + 1
                status["events"] = 0
                status["last_request"] = {"reason": reason, "at": _now()}
                if status.get("state") != TRAINING:
                    status["state"] = QUEUED

        update_status(self.settings.model_dir, key, ask)
        if not due["yes"]:
            return False
        if self._queue is not None:
            self._queue.enqueue(drain, key, job_timeout=24 * 3600, result_ttl=3600, failure_ttl=86400)
            return True
        # Every request makes its own attempt: an attempt that finds the project's
        # lock taken returns at once, and the holder sees the request before it stops.
        thread = threading.Thread(target=self._run, args=(key,), name=f"train-{key}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return True

    def _run(self, project: str) -> None:
        try:
            drain(project, self.settings)
        except Exception:
            log.exception("project %s: training job crashed", project)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for this process's training threads (tests, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
