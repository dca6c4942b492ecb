"""Training progress in /status: what is recorded, how often, and the queue of waiting projects."""

import time

import pytest
import requests
from support import CONFIG, add_recordings

from harness.waiting import wait_until_idle
from segmenter import store
from segmenter.learning.training import EpochReport, Validation
from segmenter.service.progress import StatusProgress
from segmenter.store import TrainingStatus


def report(epoch, loss, bacc, f1, left=10, target="label"):
    return EpochReport(target, epoch, 100, loss + 0.1, Validation(loss, bacc, f1, {}), epoch, left)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def training(model_dir, project):
    store.write_json(store.project_dir(model_dir, project) / "status.json",
                     {"state": "training", "requests": 1, "started_request": 1})


def test_progress_is_written_at_most_once_per_interval_with_best_scores_and_an_estimate(tmp_path):
    training(tmp_path, 1)
    clock = Clock()
    progress = StatusProgress(tmp_path, "1", interval=1.0, clock=clock)
    scores = [(0.9, 0.5, 0.2), (0.7, 0.8, 0.6), (0.8, 0.6, 0.4)]
    for epoch, (loss, bacc, f1) in enumerate(scores * 10, start=1):
        clock.t = epoch * 0.25  # four epochs a second
        progress(report(epoch, loss, bacc, f1, left=20))
        progress("a plain line is only logged")
    assert progress.writes == 8  # 30 epochs in 7.5 s: the first, then one a second
    recorded = store.stored_status(tmp_path, 1).progress
    assert recorded["epoch"] == 29
    assert recorded["max_epochs"] == 100
    assert recorded["best"] == {"balanced_accuracy": 0.8, "min_class_f1": 0.6, "loss": 0.7}
    assert recorded["elapsed_seconds"] == 7.2  # 29 * 0.25 - 0: clock started at 0
    assert recorded["seconds_per_epoch"] == 0.25
    assert recorded["estimated_remaining_seconds"] == 5.0


def test_progress_never_overwrites_a_finished_training_and_a_claim_clears_it(tmp_path):
    store.write_json(store.project_dir(tmp_path, 2) / "status.json", {"state": "idle", "requests": 1})
    StatusProgress(tmp_path, "2")(report(1, 0.5, 0.5, 0.5))
    assert store.stored_status(tmp_path, 2).progress is None
    training(tmp_path, 3)
    StatusProgress(tmp_path, "3")(report(1, 0.5, 0.5, 0.5))
    assert store.stored_status(tmp_path, 3).progress["epoch"] == 1

    def ask(status: TrainingStatus) -> None:
        status.requests += 1

    store.update_status(tmp_path, 3, ask)
    assert store.update_status(tmp_path, 3, TrainingStatus.claim)
    assert store.stored_status(tmp_path, 3).progress is None


def test_queue_lists_waiting_projects_oldest_request_first(tmp_path):
    store.write_json(store.project_dir(tmp_path, 1) / "status.json",
                     {"state": "queued", "requests": 1, "last_request": {"reason": "x", "at": "2026-01-02T00:00:00Z"}})
    store.write_json(store.project_dir(tmp_path, 2) / "status.json",
                     {"state": "training", "requests": 2, "started_request": 1,
                      "last_request": {"reason": "x", "at": "2026-01-01T00:00:00Z"}})
    training(tmp_path, 3)  # training, nothing pending
    store.write_json(store.project_dir(tmp_path, 4) / "status.json", {"state": "idle"})
    assert [(w["project"], w["state"]) for w in store.queue(tmp_path, store.projects(tmp_path))] == [
        ("2", "training"), ("1", "queued")]


@pytest.mark.slow
def test_status_shows_progress_while_a_training_runs_and_clears_it_after(backend, ls):
    from segmenter.config import TrainingSettings

    b = backend(training=TrainingSettings(epochs=400, patience=400, batch_size=32))
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 3, rows=600)
    b.setup(project, ls)
    b.webhook("START_TRAINING", project)
    seen, deadline = None, time.monotonic() + 60
    while seen is None and time.monotonic() < deadline:
        status = requests.get(f"{b.url}/status/{project}", timeout=10).json()
        if status["state"] == "training" and status.get("progress"):
            seen = status["progress"]
        time.sleep(0.05)
    assert seen is not None, "no progress seen while training"
    assert seen["max_epochs"] == 400
    assert 1 <= seen["epoch"] <= 400
    assert seen["target"]
    assert set(seen["best"]) == {"balanced_accuracy", "min_class_f1", "loss"}
    assert seen["elapsed_seconds"] >= 0
    assert seen["estimated_remaining_seconds"] >= 0
    assert "queue" in requests.get(f"{b.url}/status", timeout=10).json()
    done = wait_until_idle(b.url, project, 300)
    assert done["state"] == "idle"
    assert done["progress"] is None
