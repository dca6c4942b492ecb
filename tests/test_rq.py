"""Training on RQ: a real redis-server and a real `rq worker` process."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import synthetic
from harness.fakels import KEY
from harness.ports import free_port
from segmenter import store
from segmenter.config import Settings, TrainingSettings
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.service.jobs import RQ_RETRIES, Scheduler
from segmenter.store import TrainingState

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow,  # redis-server and an RQ worker process that trains
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")]


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    from redis import Redis

    deadline = time.monotonic() + 10
    while True:
        try:
            Redis.from_url(url).ping()
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_rq_worker_trains_the_project(redis_url, tmp_path, ls):
    model_dir = tmp_path / "models"
    env = {**os.environ, "MODEL_DIR": str(model_dir), "TRAIN_EPOCHS": "3", "EARLY_STOPPING_PATIENCE": "1",
           "LOG_LEVEL": "WARNING"}
    project = ls.add_project(synthetic.label_config())
    ls.add_recordings(project, 2, rows=300, n_events=2)
    settings = Settings(model_dir=model_dir, training_backend="rq", redis_url=redis_url, rq_queue="segmenter",
                        training=TrainingSettings(epochs=3, patience=1))
    store.save_connection(model_dir, project, {"hostname": ls.url, "access_token": KEY, "schema": ""})
    scheduler = Scheduler(LabelStudioAccess(settings))
    scheduler.request(project, "START_TRAINING")
    assert store.read_status(model_dir, project).state is TrainingState.QUEUED
    worker = subprocess.run(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url, "segmenter"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    status = store.report(model_dir, project)
    assert status["state"] == "idle", status
    assert status["model_version"].startswith("v1-")
    assert ls.calls(prefix=f"/api/projects/{project}/export")
    # The job counted its training where the service's /metrics adds every process up.
    from prometheus_client.multiprocess import MultiProcessCollector

    files = [str(f) for f in (model_dir / ".metrics").glob("*/*.db")]
    samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
               for m in MultiProcessCollector.merge(files) for x in m.samples}
    assert samples[("segmenter_trainings_started_total", ())] == 1
    assert samples[("segmenter_trainings_total", (("outcome", "succeeded"),))] == 1


def start_worker(redis_url: str, env: dict, log: Path) -> subprocess.Popen:
    """A real `rq worker` process (not burst) on the project's queue, its output in ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, "segmenter"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def wait_until(what, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(interval)
    return found


@pytest.mark.parametrize("stage", ["training", "write-back"])
def test_a_job_whose_process_is_killed_is_taken_over_with_nothing_lost_or_written_twice(
        redis_url, tmp_path, ls, stage):
    """SIGKILL of the process running the job (what the kernel's OOM killer does) mid-training or
    mid-write-back: RQ retries the job on a worker, whose drain takes over what the dead one left."""
    model_dir = tmp_path / "models"
    env = {**os.environ, "MODEL_DIR": str(model_dir), "TRAIN_EPOCHS": "3", "EARLY_STOPPING_PATIENCE": "1",
           "LOG_LEVEL": "INFO", "PREDICT_BATCH_SIZE": "1", "PREDICT_BATCH_PAUSE": "0.3"}
    project = ls.add_project(synthetic.label_config())
    ls.add_recordings(project, 2, rows=300, n_events=2)
    free = [t["id"] for t in ls.add_recordings(project, 8, rows=300, seed=50, annotate=False)]
    settings = Settings(model_dir=model_dir, training_backend="rq", redis_url=redis_url, rq_queue="segmenter")
    store.save_connection(model_dir, project, {"hostname": ls.url, "access_token": KEY, "schema": ""})
    if stage == "training":
        ls.export_delay = 30  # the training to be killed sits in the export
    workers = [start_worker(redis_url, env, tmp_path / f"worker{i}.log") for i in (1, 2)]
    try:
        Scheduler(LabelStudioAccess(settings)).request(project, "START_TRAINING")

        def doomed() -> int | None:
            status = store.stored_status(model_dir, project)
            if stage == "training":
                ready = status.state is TrainingState.TRAINING and ls.calls(prefix=f"/api/projects/{project}/export")
            else:
                ready = len(ls.imported) >= 2
            running = status.worker if stage == "training" else status.writeback and status.writeback.worker
            return int(running.rsplit(":", 1)[1]) if ready and running else None

        victim = wait_until(doomed, 60)
        assert victim not in (w.pid for w in workers), "the job runs in a work horse, not the worker itself"
        os.kill(victim, signal.SIGKILL)
        ls.export_delay = 0
        written_before = len(ls.imported)

        def settled() -> bool:
            status = store.stored_status(model_dir, project)
            return status.state is TrainingState.IDLE and status.writeback is not None \
                and status.writeback.state == "done"

        wait_until(settled, 120, interval=0.2)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    logs = "".join((tmp_path / f"worker{i}.log").read_text() for i in (1, 2))
    status = store.stored_status(model_dir, project)
    assert status.version.startswith("v1-"), "one training: the killed one made no version"
    assert not (status.worker if stage == "training" else status.writeback.worker).endswith(f":{victim}")
    predictions = [p for batch in ls.imported for p in batch]
    assert sorted(p["task"] for p in predictions) == free, "every unlabelled task once: none lost, none twice"
    assert {p["model_version"] for p in predictions} == {status.version}
    assert "Work-horse terminated unexpectedly" in logs, logs
    from redis import Redis
    from rq.job import Job
    from rq.registry import FinishedJobRegistry

    redis = Redis.from_url(redis_url)
    [job_id] = FinishedJobRegistry("segmenter", connection=redis).get_job_ids()
    assert Job.fetch(job_id, connection=redis).retries_left == RQ_RETRIES - 1, "the same job, run again once"
    if stage == "training":
        assert "taking over a training whose process ended" in logs, logs
        assert len(ls.calls(prefix=f"/api/projects/{project}/export")) == 2
    else:
        assert written_before >= 2
        assert len(ls.calls(prefix=f"/api/projects/{project}/export")) == 1, "the write-back resumed, no retraining"
