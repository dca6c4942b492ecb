"""Predictions for every task, right after each training: the write-back to Label Studio.

Label Studio asks for predictions only when a task is opened or on Retrieve
Predictions, so after a training the Data Manager's score column is empty or
stale.  A successful training ``schedule``s a write-back of its version
(``PREDICT_AFTER_TRAINING``: the unlabelled tasks, all tasks, or off); ``run``
then, on the executor that trained (never a web request), pages through the
project's tasks by id, ``PREDICT_BATCH_SIZE`` at a time, predicts them with
that version's models and posts them through the SDK's bulk prediction import,
about a tenth of the project per import (``import_size``: Label Studio's cost
per import grows with the project), pausing ``PREDICT_BATCH_PAUSE`` seconds
after each so Label Studio keeps answering its users.  The next page is listed
and predicted while one is imported (one page ahead, never more).  The seconds of each stage are
summed in the status (``writeback.seconds``: where the time goes).

Its state is the ``writeback`` entry of the project's ``TrainingStatus`` (so
``/status`` shows it): version, mode, state, the last task id written, tasks
seen and predictions written, times, last error.  After each batch the cursor
is recorded, so a restarted service resumes after the last task written
(``Scheduler.resume``).  Only the newest version is written: a newer training
supersedes an unfinished write-back, and a pending or running training makes the
write-back wait (or stop between batches), to be resumed after that training
(which supersedes it when it succeeds): writing a version a running training is
about to replace would only leave stale predictions in Label Studio.  A failure
is logged and recorded here only: the training stays successful and the service
keeps serving.  Predictions of older versions stay
in Label Studio (Retrieve Predictions keeps them too).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from segmenter import shutdown, store
from segmenter.config import MAX_PREDICT_BATCH
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.labelstudio.client import LabelStudioClient
from segmenter.labelstudio.errors import Backoff, LabelStudioError
from segmenter.learning.inference import predict_task
from segmenter.learning.trained_model import TrainedModel
from segmenter.reading.project_settings import ProjectSettings
from segmenter.reading.task_series import Fetcher
from segmenter.redaction import redact
from segmenter.service.draining import drain
from segmenter.service.project import Project
from segmenter.store import TrainingState, TrainingStatus, WritebackState
from segmenter.store.status import Step, this_process

log = logging.getLogger(__name__)

OFF = "off"
ALL = "all"
UNLABELLED = "unlabelled"
OUR_VERSION = re.compile(r"^v\d+-[0-9TZ]+$")  # as segmenter.store names versions
# How many times one batch is sent again without the tasks deleted meanwhile before its 400 counts as a failure.
GONE_ROUNDS = 5
# About how many imports a write-back posts (``import_size``).
IMPORT_ROUNDS = 10
# Task ids per lookup of a refused import's tasks: they travel in the URL, which servers cap (gunicorn at 4 KB).
LOOKUP_IDS = 100


def schedule(status: TrainingStatus, version: str, mode: str) -> None:
    """Plan the write-back of ``version`` in ``status`` (in the same update that records the
    training), replacing any unfinished one of an older version; nothing when ``mode`` is off."""
    status.schedule_writeback(version, mode)


def unfinished(status: TrainingStatus) -> bool:
    """Whether a write-back waits to be started or resumed."""
    return status.writeback_unfinished


def unlabelled(task: dict) -> bool:
    """Whether a listed task has no annotation at all (submitted or skipped)."""
    counts = [task.get("total_annotations"), task.get("cancelled_annotations")]
    if all(isinstance(c, int) for c in counts):
        return sum(counts) == 0
    return not task.get("annotations")


def has_version(task: dict, version: str) -> bool:
    """Whether Label Studio already holds a prediction of ``version`` for the task (written before a
    restart, or asked of /predict when someone opened it)."""
    return any(isinstance(p, dict) and p.get("model_version") == version for p in task.get("predictions") or [])


class _Clock:
    """Seconds spent per stage of a write-back since the last ``take``: where its time goes.  Stages
    run in two threads (the page ahead is listed and predicted during the import), so their sum
    can exceed the wall time."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.spent[stage] = self.spent.get(stage, 0.0) + time.perf_counter() - started

    def take(self) -> dict[str, float]:
        """The seconds since the last take; "predicting" without the downloads made inside it."""
        with self._lock:
            spent, self.spent = self.spent, {}
        if "predicting" in spent:
            spent["predicting"] -= spent.get("downloads", 0.0)
        return spent


class _TimedFetcher:
    """A fetcher whose downloads count as their own stage."""

    def __init__(self, fetcher: Fetcher, clock: _Clock) -> None:
        self.fetcher, self.clock = fetcher, clock

    def fetch(self, ref: str, task_id: object = None) -> bytes:
        with self.clock.timing("downloads"):
            return self.fetcher.fetch(ref, task_id)


@dataclass
class _Job:
    """The write-back being run: what to write and where it stands."""

    version: str
    mode: str
    after: int
    seen: int


def run(access: LabelStudioAccess, project: str, handle: Project | None = None) -> None:
    """Write the project's unfinished write-back, if any, and any that a newer training schedules
    meanwhile; returns at once if another thread or process is writing it, and between batches
    when a training request is pending.  ``handle``: the training job's, whose Label Studio
    client and project record it reuses."""
    model_dir = access.settings.model_dir

    def again() -> bool:  # a training that ended while the lock was being released found it taken
        status = store.stored_status(model_dir, project)
        return status.writeback_unfinished and not training_ahead(model_dir, project, status)

    def write(job: _Job) -> bool:
        if _write(handle or Project(project, None, access), job):
            return True
        store.update_status(model_dir, project, lambda s: s.writeback.pause() if _is(s, job.version) else None)
        return False

    drain(lambda: store.writeback_lock(model_dir, project, tries=10), lambda: _claim(model_dir, project), write,
          again)


def training_ahead(model_dir: object, project: str, status: TrainingStatus) -> bool:
    """Whether a training of ``project`` goes before its write-back: one is pending, or one runs
    (its lock is held; a training whose process died holds none and blocks nothing)."""
    return status.pending or (status.state is TrainingState.TRAINING and store.training_running(model_dir, project))


def _is(status: TrainingStatus, version: str) -> bool:
    return status.writeback is not None and status.writeback.version == version


def _is_running(status: TrainingStatus, version: str) -> bool:
    """Whether the write-back of ``version`` is still the one running (no newer version replaced it)."""
    return _is(status, version) and status.writeback.state is WritebackState.RUNNING


def _claim(model_dir: object, project: str) -> _Job | None:
    """The write-back to run now, marked running; None when there is none, or a training is
    pending or running (it goes first, and may supersede this one)."""
    newest = store.latest_version(model_dir, project)

    def claim(status: TrainingStatus) -> _Job | None:
        wb = status.writeback
        if not status.writeback_unfinished or training_ahead(model_dir, project, status):
            return None
        if wb.version != newest:  # its models were replaced or set aside
            wb.supersede()
            return None
        wb.start(this_process())
        return _Job(wb.version, wb.mode, wb.after, wb.seen)

    return store.update_status(model_dir, project, claim)


def _write(project: Project, job: _Job) -> bool:
    """Write ``job`` batch by batch; returns whether to look for more work (False: a training is
    pending).  Any failure is recorded in the status, never raised."""
    settings, model_dir, key = project.settings, project.settings.model_dir, project.key
    try:
        client = project.require_client()
        label_studio_id = store.label_studio_id(key)
        backoff = Backoff(settings.predict_retries, settings.predict_retry_wait)
        info = project.label_studio_project(backoff)
        # The models that fit the config Label Studio has now, cleaned up with its model_* settings, as /predict does.
        models: list[TrainedModel] = project.models_of(job.version)
        current = info.get("model_version")
        log.info("project %s: writing predictions of %s (%s tasks) after task %d", key, job.version, job.mode,
                 job.after)
        clock = _Clock()
        fetcher = _TimedFetcher(project.fetcher, clock)

        def prepare(after: int) -> tuple[list[dict], int, list[dict]]:
            """The page of tasks after ``after``, how many tasks follow ``after``, and their predictions."""
            with clock.timing("listing"):
                tasks, above = backoff.call(
                    f"listing the tasks of project {key}",
                    lambda: client.tasks_page(label_studio_id, 1, settings.predict_batch_size, after=after),
                )
            chosen = [t for t in tasks if (job.mode == ALL or unlabelled(t)) and not has_version(t, job.version)]
            with clock.timing("predicting"):
                batch = _predictions(models, chosen, fetcher, job.version, project.project_settings) \
                    if models else []
            return tasks, above, batch

        # One page ahead: the next page is listed and predicted while this one is imported and
        # the pause runs; the cursor moves only once a page is imported, so a stop or a restart
        # never skips one.  Leaving the block waits for the page ahead (one page, bounded).  Pages
        # are gathered into imports of ``import_size`` tasks listed.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"writeback-{key}") as ahead:
            coming = ahead.submit(prepare, job.after)
            end, listed, waiting, size = job.after, 0, [], 0
            while True:
                tasks, above, batch = coming.result()
                last = len(tasks) >= above  # nothing after this page: no further request, no pause
                end = max([end, *(t["id"] for t in tasks)])
                if not last:
                    coming = ahead.submit(prepare, end)
                listed, waiting = listed + len(tasks), waiting + batch
                total = job.seen + listed + above - len(tasks)
                size = size or import_size(total, settings.predict_batch_size)
                if not last and listed < size and not shutdown.requested() \
                        and not training_ahead(model_dir, key, store.stored_status(model_dir, key)):
                    continue
                written = 0
                if waiting:
                    with clock.timing("import"):
                        written = _import(client, label_studio_id, waiting, job.version, backoff)
                job.after, job.seen = end, job.seen + listed
                listed, waiting = 0, []
                if last and _is_running(store.stored_status(model_dir, key), job.version):
                    # Before "done" is recorded: whoever reads it finds the score column ready.
                    _point_project(client, key, job.version, current, backoff)
                step = _advance(model_dir, key, job, written, total, clock.take(), done=last)
                if step in (Step.DONE, Step.SUPERSEDED):
                    return True
                if step is Step.GO_ON:
                    with clock.timing("pauses"):
                        time.sleep(settings.predict_batch_pause)
                if step is Step.YIELD or training_ahead(model_dir, key, store.stored_status(model_dir, key)):
                    log.info("project %s: write-back of %s yields to a training", key, job.version)
                    return False
                if shutdown.requested():  # pending again; the next start resumes it (Scheduler.resume)
                    log.info("project %s: write-back of %s stops with the service", key, job.version)
                    return False
    except Exception as exc:  # Label Studio down, bad models: recorded; the training stays good
        log.exception("project %s: writing the predictions of %s failed", key, job.version)
        error = redact(f"{type(exc).__name__}: {exc}")
        store.update_status(model_dir, key, lambda s: s.writeback.fail(error) if _is(s, job.version) else None)
        return True


def import_size(total: int, page: int) -> int:
    """How many listed tasks one import of a write-back covers, for a project of ``total`` tasks
    listed ``page`` at a time.

    Label Studio 1.23 recounts the counters of every task of the project after each prediction
    import (``ImportPredictionsAPI._create_legacy``, the default unless its
    ``fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short`` is on), so an
    import costs in proportion to the project's size: a write-back made of a fixed number of
    imports (``IMPORT_ROUNDS``) costs in proportion to the project's size, not to its square.
    Never less than a page, never more than ``MAX_PREDICT_BATCH`` predictions in one post."""
    return max(page, min(MAX_PREDICT_BATCH, -(-total // IMPORT_ROUNDS)))


def _predictions(models: list[TrainedModel], tasks: list[dict], fetcher: Fetcher, version: str,
                 settings: dict[str, ProjectSettings]) -> list[dict]:
    """The predictions to post for ``tasks``, cleaned up with the project's ``settings``; a task whose
    series cannot be read is left out (and logged), so Label Studio still asks /predict when it is
    opened rather than show a 0 score."""
    out = []
    for task in tasks:
        try:
            prediction = predict_task(models, task, fetcher, settings=settings)
        except Exception as exc:  # one broken task must not cost the others their predictions
            log.warning("task %s: no prediction written: %s", task.get("id"), redact(str(exc)))
            continue
        out.append({"task": task["id"], "result": prediction["result"], "score": prediction["score"],
                    "model_version": version})
    return out


def _import(client: LabelStudioClient, project: int, batch: list[dict], version: str, backoff: Backoff) -> int:
    """Post ``batch`` through the bulk import; returns how many of its tasks now hold its prediction.

    Label Studio refuses the whole batch with a 400 when one of its tasks was deleted since it
    was listed (naming only the first such task): the batch's tasks are looked up again by id
    and the batch sent again without the ones gone, at most ``GONE_ROUNDS`` times; a 400 with no
    task gone is about the predictions themselves, a real failure.  A transient failure is
    retried after the backoff's waits, without the tasks that meanwhile hold a prediction of
    ``version`` (an import whose answer was lost may have been stored), so none gets it twice.
    """
    waits = iter(backoff.waits())
    rounds = stored = 0
    while batch:
        try:
            return stored + client.import_predictions(project, batch)
        except LabelStudioError as exc:
            if exc.transient and (wait := next(waits, None)) is not None:
                log.warning("project %s: importing %d predictions failed, trying again in %.1f s: %s",
                            project, len(batch), wait, exc)
                time.sleep(wait)
            elif exc.status == 400 and rounds < GONE_ROUNDS:
                rounds += 1
            else:
                raise
            left, holding = _still_to_write(client, project, batch, version, backoff)
            if exc.status == 400 and len(left) == len(batch):
                raise
            gone = len(batch) - len(left) - holding
            if gone:
                log.info("project %s: %d of %d tasks of the batch were deleted meanwhile; sending the rest",
                         project, gone, len(batch))
            batch, stored = left, stored + holding
    return stored


def _still_to_write(client: LabelStudioClient, project: int, batch: list[dict], version: str,
                    backoff: Backoff) -> tuple[list[dict], int]:
    """The predictions of ``batch`` whose task still exists and holds none of ``version``, and how many
    of its tasks hold one, from listings of the batch's tasks by id, ``LOOKUP_IDS`` at a time (the
    ids travel in the URL; one page each, or a few where Label Studio caps the page size)."""
    ids = [p["task"] for p in batch]
    found: list[dict] = []
    for first in range(0, len(ids), LOOKUP_IDS):
        chunk, seen = ids[first:first + LOOKUP_IDS], 0
        for page in range(1, len(chunk) + 1):
            tasks, total = backoff.call(
                f"looking up {len(chunk)} tasks of project {project}",
                lambda: client.tasks_page(project, page, len(chunk), only=chunk, resolve_uri=False),  # noqa: B023
            )
            found += tasks
            seen += len(tasks)
            if not tasks or seen >= total:
                break
    holding = {t["id"] for t in found if has_version(t, version)}
    waiting = {t["id"] for t in found} - holding
    return [p for p in batch if p["task"] in waiting], len(holding & set(ids))


def _point_project(client: LabelStudioClient, project: str, version: str, current: object, backoff: Backoff) -> None:
    """Make the written version the project's model version, unless the project was pointed at
    predictions of someone else's.

    Label Studio 1.23's Data Manager scores a task by its predictions of the project's model
    version, which connecting a backend sets to the backend's title: no prediction of a live
    backend ever matches it, and the score column stays empty.  Pointed at the newest version,
    the column (and uncertainty sampling) shows its scores and no older version's.
    """
    label_studio_id = store.label_studio_id(project)
    backends = backoff.call(f"reading the ML backends of project {project}",
                            lambda: client.ml_backends(label_studio_id))
    titles = {b.get("title") for b in backends}
    if current and current not in titles and not OUR_VERSION.match(str(current)):
        log.info("project %s: model version %r left as the project chose it", project, current)
        return
    if current != version:
        backoff.call(f"pointing project {project} at {version}",
                     lambda: client.set_model_version(label_studio_id, version))


def _advance(model_dir: object, project: str, job: _Job, written: int, total: int, seconds: dict[str, float],
             done: bool) -> Step:
    """Record a batch and the seconds its stages took; returns what comes next."""

    def record(status: TrainingStatus) -> Step:
        if status.writeback is None:
            return Step.SUPERSEDED
        step = status.writeback.advance(job.version, job.after, job.seen, written, total, done,
                                        training_ahead(model_dir, project, status), seconds)
        if step is Step.DONE:
            log.info("project %s: wrote %d predictions of %s; seconds per stage %s", project,
                     status.writeback.written, job.version, status.writeback.seconds)
        return step

    return store.update_status(model_dir, project, record)
