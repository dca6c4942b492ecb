"""Training status: a type read and written in one place; telling a live training from a dead one."""

import threading

from harness import synthetic
from harness.fakels import KEY
from segmenter import store
from segmenter.store import TrainingState, TrainingStatus
from segmenter.store.status import MAX_TAKEOVERS, this_process


def write_status(model_dir, project, **status):
    store.write_json(store.project_dir(model_dir, project) / "status.json", status)


def test_a_training_whose_process_died_reads_as_interrupted_until_taken_over(tmp_path):
    write_status(tmp_path, 1, state="training", requests=1, started_request=1)
    status = store.read_status(tmp_path, 1)
    assert status.state is TrainingState.INTERRUPTED
    assert "process running it ended" in status.last_error
    assert store.orphaned_training(tmp_path, 1) is not None
    assert store.stored_status(tmp_path, 1).state is TrainingState.TRAINING, "reading changes nothing stored"


def test_a_take_over_runs_the_request_again_a_bounded_number_of_times():
    status = TrainingStatus(state=TrainingState.TRAINING, requests=4, started_request=4, progress={"epoch": 3})
    for attempt in range(1, MAX_TAKEOVERS + 1):
        assert status.take_over() is True
        assert (status.state, status.pending, status.takeovers) == (TrainingState.QUEUED, True, attempt)
        assert status.progress is None
        assert status.claim("host:1")
        assert (status.state, status.started_request, status.worker) == (TrainingState.TRAINING, 4, "host:1")
    assert status.take_over() is False, "a training that kills its process every time is not tried forever"
    assert status.state is TrainingState.FAILED
    assert f"{MAX_TAKEOVERS + 1} times in a row" in status.last_error
    assert not status.pending
    assert status.takeovers == 0
    assert TrainingStatus(state=TrainingState.IDLE).take_over() is False


def test_a_training_that_succeeds_after_a_take_over_starts_counting_again():
    status = TrainingStatus(state=TrainingState.TRAINING, requests=1, started_request=1)
    assert status.take_over()
    assert status.claim()
    status.succeed("v2-x")
    assert status.takeovers == 0
    assert status.last_error is None


def test_the_next_job_takes_over_a_training_whose_process_died(tmp_path, ls, monkeypatch):
    """A worker killed mid-training leaves "training" in the status and its lock free: the next job
    for the project (an RQ retry, the service's next start) trains the request again."""
    from segmenter.config import Settings, TrainingSettings
    from segmenter.labelstudio.access import LabelStudioAccess
    from segmenter.service import jobs, writeback

    project = ls.add_project(synthetic.label_config())
    ls.add_recordings(project, 2, rows=300, n_events=2)
    settings = Settings(model_dir=tmp_path, label_studio_url=ls.url, label_studio_api_key=KEY,
                        training=TrainingSettings(epochs=3, patience=1))
    store.save_connection(tmp_path, project, {"hostname": ls.url, "access_token": KEY, "label_config": ""})
    write_status(tmp_path, project, state="training", requests=1, started_request=1, worker="gone:7",
                 progress={"epoch": 5})
    monkeypatch.setattr(writeback, "run", lambda *args: None)
    scheduler = jobs.Scheduler(LabelStudioAccess(settings))
    assert scheduler.resume() == [str(project)], "the service's start finds the orphaned training"
    scheduler.wait(120)
    status = store.stored_status(tmp_path, project)
    assert status.state is TrainingState.IDLE, status
    assert status.version.startswith("v1-")
    assert status.worker == this_process()
    assert status.takeovers == 0
    assert len(ls.calls(prefix=f"/api/projects/{project}/export")) == 1


def test_a_live_training_reads_as_training(tmp_path):
    write_status(tmp_path, 1, state="training", requests=1, started_request=1)
    holding, release = threading.Event(), threading.Event()

    def train():
        with store.training_lock(tmp_path, "1") as held:
            assert held
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=train)
    worker.start()
    holding.wait(10)
    try:
        assert store.read_status(tmp_path, 1).state is TrainingState.TRAINING
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
        if str(path).endswith("status.json") and not reads:
            reads.append(path)
            return {**value, "state": "training"}
        return value

    monkeypatch.setattr(store.records, "read_json", stale_first)
    status = store.read_status(tmp_path, 1)
    assert reads
    assert status.state is TrainingState.IDLE
    assert not status.last_error


def test_status_round_trips_and_tolerates_old_or_damaged_files(tmp_path):
    write_status(tmp_path, 2, state="queued", requests=3, started_request=2, claimed=True, unknown="x")
    status = store.stored_status(tmp_path, 2)
    assert status.state is TrainingState.QUEUED
    assert status.pending
    assert TrainingStatus.from_json(status.to_json()) == status
    assert status.to_json()["state"] == "queued"
    write_status(tmp_path, 3, state="exploded")
    assert store.stored_status(tmp_path, 3).state is TrainingState.IDLE
    (store.project_dir(tmp_path, 4) / "status.json").parent.mkdir(parents=True)
    (store.project_dir(tmp_path, 4) / "status.json").write_text("[1, 2")
    assert store.stored_status(tmp_path, 4) == TrainingStatus()


def test_a_claim_returns_its_result_and_writes_no_flag(tmp_path):
    write_status(tmp_path, 5, requests=2, started_request=1)
    assert store.update_status(tmp_path, 5, TrainingStatus.claim) is True
    assert store.update_status(tmp_path, 5, TrainingStatus.claim) is False
    stored = store.read_json(store.project_dir(tmp_path, 5) / "status.json")
    assert stored["state"] == "training"
    assert stored["started_request"] == 2
    assert "claimed" not in stored


def test_a_request_during_a_training_leaves_it_to_the_training_instead_of_spinning(tmp_path, monkeypatch):
    """Each webhook starts a job; while another holds the training lock, that job returns at
    once (the holder sees the request).  It used to loop until the training ended, one busy
    thread per webhook, and doubled /health's latency during a training."""
    from segmenter.config import Settings
    from segmenter.labelstudio.access import LabelStudioAccess
    from segmenter.service import jobs, writeback

    access = LabelStudioAccess(Settings(model_dir=tmp_path))
    write_status(tmp_path, 1, state="training", requests=2, started_request=1)  # one request waits
    looked = []
    monkeypatch.setattr(writeback, "run", lambda *args: looked.append(args))
    with store.training_lock(tmp_path, "1") as held:  # a training runs
        assert held
        done = threading.Thread(target=jobs.drain, args=("1", access), daemon=True)
        done.start()
        done.join(5)
        assert not done.is_alive(), "the job still runs while the training it waits for does"
    assert looked == [], "no write-back is looked for: the training's own job writes back"
    assert store.stored_status(tmp_path, "1").pending, "the request stays for the holder to see"
