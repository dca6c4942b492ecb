"""Training status: telling a live training from a dead one, without false alarms."""

import threading

from segmenter import jobs, store


def write_status(model_dir, project, **status):
    store.write_json(store.project_dir(model_dir, project) / jobs.STATUS_FILE, status)


def test_a_training_whose_process_died_reads_as_failed(tmp_path):
    write_status(tmp_path, 1, state="training", requests=1, started_request=1)
    status = jobs.read_status(tmp_path, 1)
    assert status["state"] == "failed" and "interrupted" in status["last_error"]


def test_a_live_training_reads_as_training(tmp_path):
    write_status(tmp_path, 1, state="training", requests=1, started_request=1)
    holding, release = threading.Event(), threading.Event()

    def train():
        with jobs._flock(jobs._training_lock(tmp_path, "1")):
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=train)
    worker.start()
    holding.wait(10)
    try:
        assert jobs.read_status(tmp_path, 1)["state"] == "training"
    finally:
        release.set()
        worker.join()


def test_a_training_that_ends_while_status_is_read_is_not_called_interrupted(tmp_path, monkeypatch):
    # The status file said "training" when read; by the time the lock is probed
    # the training has finished, recorded "idle" and released its lock.
    write_status(tmp_path, 1, state="idle", requests=1, started_request=1, version="v1")
    real_read = store.read_json
    reads = []

    def stale_first(path, default=None):
        value = real_read(path, default)
        if str(path).endswith(jobs.STATUS_FILE) and not reads:
            reads.append(path)
            return {**value, "state": "training"}
        return value

    monkeypatch.setattr(store, "read_json", stale_first)
    status = jobs.read_status(tmp_path, 1)
    assert reads and status["state"] == "idle" and not status.get("last_error")
