"""Training on RQ: a real redis-server and a real `rq worker` process."""

import os
import shutil
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
from segmenter.service.jobs import Scheduler
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
