"""Predictions for every task, right after each training: the write-back to Label Studio.

Label Studio asks for predictions only when a task is opened or on Retrieve
Predictions, so after a training the Data Manager's score column is empty or
stale.  A successful training ``schedule``s a write-back of its version
(``PREDICT_AFTER_TRAINING``: the unlabelled tasks, all tasks, or off); ``run``
then, on the executor that trained (never a web request), pages through the
project's tasks by id, ``PREDICT_BATCH_SIZE`` at a time, predicts them with
that version's models and posts each batch through the SDK's bulk prediction
import, pausing ``PREDICT_BATCH_PAUSE`` seconds between batches so Label
Studio keeps answering its users.

Its state is the ``writeback`` entry of the project's ``TrainingStatus`` (so
``/status`` shows it): version, mode, state, the last task id written, tasks
seen and predictions written, times, last error.  After each batch the cursor
is recorded, so a restarted service resumes after the last task written
(``Scheduler.resume``).  Only the newest version is written: a newer training
supersedes an unfinished write-back, and a pending training request makes the
write-back stop between batches, to be resumed after that training (which may
supersede it).  A failure is logged and recorded here only: the training stays
successful and the service keeps serving.  Predictions of older versions stay
in Label Studio (Retrieve Predictions keeps them too).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from dataclasses import dataclass
from enum import StrEnum

from segmenter import shutdown, store
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.labelstudio.client import Backoff, LabelStudioClient, LabelStudioError
from segmenter.learning.inference import fitting_models, predict_task
from segmenter.learning.trained_model import TrainedModel
from segmenter.reading.project_settings import ProjectSettings, read_settings
from segmenter.reading.task_series import Fetcher
from segmenter.redaction import redact
from segmenter.store import TrainingStatus

log = logging.getLogger(__name__)

OFF = "off"
ALL = "all"
UNLABELLED = "unlabelled"


class WritebackState(StrEnum):
    """Where a version's write-back stands."""

    PENDING = "pending"  # scheduled, not started
    RUNNING = "running"  # started; resumes after the last task written
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"  # a newer version was trained before it finished


UNFINISHED = (WritebackState.PENDING.value, WritebackState.RUNNING.value)
OUR_VERSION = re.compile(r"^v\d+-[0-9TZ]+$")  # as segmenter.store names versions
# How many times one batch is sent again without the tasks deleted meanwhile before its 400 counts as a failure.
GONE_ROUNDS = 5


def schedule(status: TrainingStatus, version: str, mode: str) -> None:
    """Plan the write-back of ``version`` in ``status`` (in the same update that records the
    training), replacing any unfinished one of an older version; nothing when ``mode`` is off."""
    previous = status.writeback or {}
    if mode == OFF:
        if previous.get("state") in UNFINISHED:
            status.writeback = {**previous, "state": WritebackState.SUPERSEDED.value, "finished_at": store.now()}
        return
    status.writeback = {
        "version": version, "mode": mode, "state": WritebackState.PENDING.value, "after": 0,
        "total": None, "seen": 0, "written": 0, "started_at": None, "finished_at": None, "last_error": None,
    }


def unfinished(status: TrainingStatus) -> bool:
    """Whether a write-back waits to be started or resumed."""
    return (status.writeback or {}).get("state") in UNFINISHED


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


@dataclass
class _Job:
    """The write-back being run: what to write and where it stands."""

    version: str
    mode: str
    after: int
    seen: int


def run(access: LabelStudioAccess, project: str) -> None:
    """Write the project's unfinished write-back, if any, and any that a newer training schedules
    meanwhile; returns at once if another thread or process is writing it, and between batches
    when a training request is pending."""
    model_dir = access.settings.model_dir
    while True:
        with store.writeback_lock(model_dir, project, tries=10) as mine:
            if not mine:
                return
            while (job := _claim(model_dir, project)) is not None:
                if not _write(access, project, job):
                    store.update_status(model_dir, project, functools.partial(_pause, version=job.version))
                    return
        # A training that ended while the lock was being released found it taken: look again.
        status = store.stored_status(model_dir, project)
        if status.pending or not unfinished(status):
            return


def _pause(status: TrainingStatus, version: str) -> None:
    """Back to pending while a training goes first: "running" means a writer holds the lock."""
    wb = status.writeback or {}
    if wb.get("version") == version and wb.get("state") == WritebackState.RUNNING.value:
        wb["state"] = WritebackState.PENDING.value


def _claim(model_dir: object, project: str) -> _Job | None:
    """The write-back to run now, marked running; None when there is none, or a training is
    pending (it goes first, and may supersede this one)."""
    newest = store.latest_version(model_dir, project)

    def claim(status: TrainingStatus) -> _Job | None:
        wb = status.writeback
        if not unfinished(status) or status.pending:
            return None
        if wb.get("version") != newest:  # its models were replaced or set aside
            wb.update(state=WritebackState.SUPERSEDED.value, finished_at=store.now())
            return None
        wb.update(state=WritebackState.RUNNING.value, started_at=wb.get("started_at") or store.now())
        return _Job(wb["version"], wb.get("mode", UNLABELLED), int(wb.get("after") or 0), int(wb.get("seen") or 0))

    return store.update_status(model_dir, project, claim)


def _write(access: LabelStudioAccess, project: str, job: _Job) -> bool:
    """Write ``job`` batch by batch; returns whether to look for more work (False: a training is
    pending).  Any failure is recorded in the status, never raised."""
    settings, model_dir = access.settings, access.settings.model_dir
    try:
        client = access.client_for(project)
        if client is None:
            raise LabelStudioError("no Label Studio URL: set LABEL_STUDIO_URL or connect the backend in Label Studio")
        label_studio_id = store.label_studio_id(project)
        backoff = Backoff(settings.predict_retries, settings.predict_retry_wait)
        info = backoff.call(f"reading project {project}", lambda: client.get_json(f"/api/projects/{label_studio_id}"))
        info = info if isinstance(info, dict) else {}
        wrong = store.mismatch(model_dir, project, info.get("created_at"))
        if wrong:
            raise LabelStudioError(wrong)
        label_config = info.get("label_config")
        models: list[TrainedModel] = store.load(model_dir, project, job.version)
        cleanup: dict[str, ProjectSettings] = {}
        if label_config:  # the models that fit the config, cleaned up with its model_* settings, as /predict does
            models = fitting_models(models, label_config)
            cleanup = read_settings(label_config, settings.training)
        fetcher = access.fetcher_for(project)
        current = info.get("model_version")
        log.info("project %s: writing predictions of %s (%s tasks) after task %d",
                 project, job.version, job.mode, job.after)
        while True:
            tasks, above = backoff.call(
                f"listing the tasks of project {project}",
                lambda: client.tasks_page(label_studio_id, 1, settings.predict_batch_size, after=job.after),
            )
            chosen = [t for t in tasks if (job.mode == ALL or unlabelled(t)) and not has_version(t, job.version)]
            written = 0
            batch = _predictions(models, chosen, fetcher, job.version, cleanup) if models else []
            if batch:
                written = _import(client, label_studio_id, batch, job.version, backoff)
            job.after = max([job.after, *(t["id"] for t in tasks)])
            job.seen += len(tasks)
            last = len(tasks) >= above  # nothing after this page: no further request, no pause
            step = _advance(model_dir, project, job, written, job.seen + above - len(tasks), done=last)
            if step == "done":
                _point_project(client, project, job.version, current, backoff)
            if step in ("done", "superseded"):
                return True
            if step == "go on":
                time.sleep(settings.predict_batch_pause)
            if step == "yield" or store.stored_status(model_dir, project).pending:
                log.info("project %s: write-back of %s yields to a training request", project, job.version)
                return False
            if shutdown.requested():  # pending again; the next start resumes it (Scheduler.resume)
                log.info("project %s: write-back of %s stops with the service", project, job.version)
                return False
    except Exception as exc:  # Label Studio down, bad models: recorded; the training stays good
        log.exception("project %s: writing the predictions of %s failed", project, job.version)
        error = redact(f"{type(exc).__name__}: {exc}")

        def failed(status: TrainingStatus) -> None:
            wb = status.writeback or {}
            if wb.get("version") != job.version:
                return
            if wb.get("state") == WritebackState.RUNNING.value:
                wb.update(state=WritebackState.FAILED.value, finished_at=store.now())
            wb["last_error"] = error  # a done write-back whose project could not be pointed at it

        store.update_status(model_dir, project, failed)
        return True


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
    of its tasks hold one, from a listing of the batch's tasks by id (one page, or a few where Label
    Studio caps the page size)."""
    ids = [p["task"] for p in batch]
    found: list[dict] = []
    for page in range(1, len(ids) + 1):
        tasks, total = backoff.call(
            f"looking up {len(ids)} tasks of project {project}",
            lambda: client.tasks_page(project, page, len(ids), only=ids, resolve_uri=False),  # noqa: B023
        )
        found += tasks
        if not tasks or len(found) >= total:
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


def _advance(model_dir: object, project: str, job: _Job, written: int, total: int, done: bool) -> str:
    """Record a batch; returns what comes next: "done", "superseded" (a newer training replaced
    the job), "yield" (a training request is pending) or "go on"."""

    def record(status: TrainingStatus) -> str:
        wb = status.writeback or {}
        if wb.get("version") != job.version or wb.get("state") != WritebackState.RUNNING.value:
            return "superseded"
        wb.update(after=job.after, seen=job.seen, written=int(wb.get("written") or 0) + written, total=total)
        if done:
            wb.update(state=WritebackState.DONE.value, finished_at=store.now(), last_error=None)
            log.info("project %s: wrote %d predictions of %s", project, wb["written"], job.version)
            return "done"
        return "yield" if status.pending else "go on"

    return store.update_status(model_dir, project, record)
