"""Background training: requests, coalescing, one training per project at a time.

A request (an annotation webhook, Start Training) bumps the project's request
counter in its ``TrainingStatus`` and hands the project to an executor: a
thread of this process (``TRAINING_BACKEND=thread``, the default) or an RQ
queue on Redis (``TRAINING_BACKEND=rq``, run ``rq worker`` beside the service,
which runs ``run_queued``).  Either way the job is ``drain``: it takes the
project's training lock (a file lock, so two processes or machines sharing
``MODEL_DIR`` never train one project at once), trains while requests newer
than the last started training are pending, and records the outcome.
Requests arriving during a training coalesce into at most one follow-up.  A
failed training is recorded with its error and the previous model keeps serving.
After the trainings, with the training lock released (a request arriving now
trains at once), the same job writes the new version's predictions to Label
Studio (``segmenter.service.writeback``).  A stopping service (``segmenter.shutdown``) ends a
training at its next batch and records it as interrupted; the next start runs
it again (``Scheduler.resume``).  A training whose process died (a worker killed, its machine
gone) is taken over by the next job that gets its lock: an RQ job is retried by a surviving worker
(RQ marks it abandoned once its heartbeats stop), a thread job by the service's next start; the
write-back resumes after the last task written.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from segmenter import shutdown, store
from segmenter.config import Settings, bootstrap
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.labelstudio.errors import LabelStudioError
from segmenter.learning.training import train_project
from segmenter.redaction import redact
from segmenter.service import metrics, writeback
from segmenter.service.draining import Drained
from segmenter.service.draining import drain as drain_under_lock
from segmenter.service.progress import StatusProgress
from segmenter.service.project import Project
from segmenter.service.slots import Slots, Unbounded
from segmenter.store import TrainingState, TrainingStatus
from segmenter.store.status import this_process

log = logging.getLogger(__name__)
UNBOUNDED = Unbounded()
# An RQ job whose worker died (its heartbeats stopped) or that crashed is run again this many times
# by another worker; its drain takes over the training or write-back the dead one left.
RQ_RETRIES = 3


def run_training(project: Project) -> str:
    """Train a project from Label Studio's export and store it; returns the new version."""
    settings = project.settings
    client = project.require_client()
    project.label_studio_project()  # its label config as it is now; refuses another Label Studio's project
    if project.config is None:
        raise LabelStudioError(f"project {project.key}: Label Studio sends no label config and /setup kept none")
    tasks = client.export_tasks(store.label_studio_id(project.key))
    log.info("project %s: training on %d exported tasks", project.key, len(tasks))
    progress = StatusProgress(settings.model_dir, project.key)
    models = train_project(project.label_config, tasks, project.fetcher, settings.training, progress)
    for model in models:  # every epoch's scores, for the dashboard's training curve
        model.info["curve"] = progress.curves.get(model.target.from_name, [])
    version = store.save(settings.model_dir, project.key, models, keep=settings.keep_versions)
    log.info("project %s: trained version %s", project.key, version)
    return version


def _summary(model_dir: object, project: str, version: str) -> dict:
    """One point of the project's learning curve: the version, its data and validation per target."""
    targets = []
    for t in store.metadata(model_dir, project, version).get("targets", []):
        info = t.get("info", {})
        val, data = info.get("validation", {}), info.get("data", {})
        targets.append({
            "from_name": t.get("target", {}).get("from_name"), "tasks": data.get("tasks"), "rows": data.get("rows"),
            "balanced_accuracy": val.get("balanced_accuracy"), "min_class_f1": val.get("min_class_f1"),
            "epochs": info.get("epochs"),
        })
    return {"version": version, "trained_at": store.now(), "targets": targets}


def _train_once(project: Project) -> None:
    """One training, its outcome recorded in the status (and counted) either way."""
    model_dir = project.settings.model_dir
    metrics.training_started()
    started = time.monotonic()
    try:
        version = run_training(project)
    except shutdown.Interrupted:
        log.warning("project %s: training interrupted: the service is stopping; it runs again at the next start",
                    project.key)
        store.update_status(model_dir, project.key, TrainingStatus.interrupt)
        return
    except Exception as exc:  # any failure is recorded; the old model keeps serving
        log.exception("project %s: training failed", project.key)
        metrics.training_ended(False, time.monotonic() - started)
        error = redact(f"{type(exc).__name__}: {exc}")
        store.update_status(model_dir, project.key, lambda status: status.fail(error))
        return
    metrics.training_ended(True, time.monotonic() - started)
    store.remember_training(model_dir, project.key, _summary(model_dir, project.key, version))
    mode = project.settings.predict_after_training

    def succeeded(status: TrainingStatus) -> None:
        status.succeed(version)
        status.schedule_writeback(version, mode)

    store.update_status(model_dir, project.key, succeeded)


def drain(project: str, access: LabelStudioAccess, trainings: Slots | Unbounded = UNBOUNDED,
          writebacks: Slots | Unbounded = UNBOUNDED) -> None:
    """Train ``project`` until no request is pending, then write the newest version's predictions
    to Label Studio; returns at once if another process trains it.

    Each training takes one of ``trainings`` and gives it back when it ends, so a project with
    another request pending queues again behind the projects already waiting; the write-back
    takes one of ``writebacks``.  A stopping service stops waiting for either."""
    model_dir = access.settings.model_dir
    latest: list[Project] = []  # the last training's handle: the write-back reuses its client and project record

    def claim() -> bool | None:
        if shutdown.requested():
            return None
        status = store.stored_status(model_dir, project)
        # Under the training lock: a training still marked running lost its process.
        if status.state is TrainingState.TRAINING:
            if store.update_status(model_dir, project, TrainingStatus.take_over):
                log.warning("project %s: taking over a training whose process ended", project)
            status = store.stored_status(model_dir, project)
        if not status.pending:
            return None  # nothing to wait for a slot for
        if not trainings.acquire(project, shutdown.requested):
            return None  # stays queued: the next start trains it (Scheduler.resume)
        try:
            if store.update_status(model_dir, project, lambda status: status.claim(this_process())):
                return True
        except BaseException:
            trainings.release(project)
            raise
        trainings.release(project)
        return None

    def train(_: bool) -> bool:
        try:
            latest[:] = [Project(project, store.load_connection(model_dir, project).get("label_config"), access)]
            _train_once(latest[0])
        finally:
            trainings.release(project)
        return True

    def again() -> bool:  # a request that came while the lock was being released found it taken
        return store.stored_status(model_dir, project).pending and not shutdown.requested()

    while not shutdown.requested():
        # A few tries: /status probes the same lock for an instant to tell a live
        # training from one whose process died, and must not make a request be lost.
        drained = drain_under_lock(lambda: store.training_lock(model_dir, project, tries=10), claim, train, again)
        # The holder sees this request before it lets go (and then writes back itself); going on
        # here would only spin, one thread per request, until that training ends.
        if drained is Drained.HELD_ELSEWHERE or shutdown.requested():  # a stopping service: its next start
            return
        # Outside the training lock: a request arriving now trains at once in another
        # thread, or (one RQ worker) after the write-back stops at its next batch.
        with writebacks.held(project, shutdown.requested) as mine:
            if not mine:
                return
            writeback.run(access, project, latest[0] if latest else None)
        if not store.stored_status(model_dir, project).pending:
            return


@functools.cache
def _worker_access() -> LabelStudioAccess:
    """The RQ worker process's settings (from its environment, read once) and clients."""
    return LabelStudioAccess(bootstrap(Settings.from_env()))


def run_queued(project: str) -> None:
    """The RQ job: ``drain`` in a worker process configured from its own environment; its trainings
    are counted in METRICS_DIR with the service's."""
    access = _worker_access()
    metrics.use_directory(access.settings.metrics_dir, clean=False)
    drain(project, access)


class Scheduler:
    """Turns training requests into background jobs on the configured executor."""

    def __init__(self, access: LabelStudioAccess) -> None:
        self.access = access
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._queue = None
        settings = access.settings
        # In this process only: RQ workers are bounded by how many of them run.
        self.trainings = Slots(settings.max_concurrent_trainings, "trainings")
        self.writebacks = Slots(settings.max_concurrent_writebacks, "write-backs")
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
        if not store.update_status(self.access.settings.model_dir, key, lambda s: s.request(reason, every)):
            return False
        self._start(key)
        return True

    def resume(self) -> list[str]:
        """Start a job for every project whose training the previous service stopped, left queued or
        lost with its process, or whose write-back was left unfinished (the process writing it
        ended); returns those projects.  Called once when the service starts."""
        model_dir = self.access.settings.model_dir
        found = []
        for key in store.projects(model_dir):
            status = store.stored_status(model_dir, key)
            if status.left_waiting:
                what = f"the {status.state.value} training"
            elif store.orphaned_training(model_dir, key) is not None:
                what = "the training whose process ended"
            elif writeback.unfinished(status):
                what = "the write-back of predictions"
            else:
                continue
            found.append(key)
            log.info("project %s: resuming %s", key, what)
            try:
                self._start(key)
            except Exception:  # Redis down: the service still starts; the next request trains or writes again
                log.exception("project %s: cannot resume %s", key, what)
        return found

    def _start(self, key: str) -> None:
        """Run ``drain`` for ``key`` on the configured executor."""
        if self._queue is not None:
            from rq import Retry

            self._queue.enqueue(run_queued, key, job_timeout=24 * 3600, result_ttl=3600, failure_ttl=86400,
                                retry=Retry(max=RQ_RETRIES))
            return
        # Every request makes its own attempt: an attempt that finds the project's
        # lock taken returns at once, and the holder sees the request before it stops.
        thread = threading.Thread(target=self._run, args=(key,), name=f"train-{key}", daemon=True)
        thread.start()  # before it is listed: a concurrent request prunes threads not alive, unstarted ones too
        shutdown.track(thread)  # a stopping worker waits for it (gunicorn.conf.py)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _run(self, project: str) -> None:
        try:
            drain(project, self.access, self.trainings, self.writebacks)
        except Exception:
            log.exception("project %s: training job crashed", project)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for this process's training threads (tests, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
