"""Predictions for every task after a training, written to (a fake) Label Studio in batches."""

from dataclasses import replace

import pytest

from harness import synthetic
from harness.fakels import KEY, FakeLabelStudio
from segmenter import store
from segmenter.config import Settings, TrainingSettings
from segmenter.errors import ConfigError
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.learning.training import train_project
from segmenter.service import jobs, writeback
from segmenter.store import TrainingStatus, WritebackState, WritebackStatus

CONFIG = synthetic.label_config()
FAST = TrainingSettings(epochs=4, patience=2, batch_size=32)


class Died(BaseException):
    """The process ending mid-way (not an error the write-back could catch and record)."""


@pytest.fixture(scope="module")
def models():
    tasks, fetcher = synthetic.annotated_tasks(2, 300, seed=5)
    return train_project(CONFIG, tasks, fetcher, FAST)


def settings_for(tmp_path, ls: FakeLabelStudio, **changes) -> Settings:
    base = Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache", training=FAST,
                    label_studio_url=ls.url, label_studio_api_key=KEY, predict_batch_size=2,
                    predict_batch_pause=0.0, predict_retry_wait=0.01)
    return replace(base, **changes)


def project_with(ls: FakeLabelStudio, annotated: int, unannotated: int) -> tuple[int, list[int], list[int]]:
    """A project of annotated and unannotated recordings, interleaved by id; their task ids."""
    project = ls.add_project(CONFIG)
    labelled = [t["id"] for t in ls.add_recordings(project, annotated, seed=0)]
    free = [t["id"] for t in ls.add_recordings(project, unannotated, seed=50, annotate=False)]
    return project, labelled, free


def written(ls: FakeLabelStudio) -> list[int]:
    return [p["task"] for batch in ls.imported for p in batch]


def saved(tmp_path, project: int, models, mode: str = "unlabelled") -> str:
    """A stored version with its write-back scheduled, as a training leaves it."""
    version = store.save(tmp_path / "models", project, models)
    store.update_status(tmp_path / "models", project, lambda s: writeback.schedule(s, version, mode))
    return version


def test_a_training_writes_predictions_for_the_unlabelled_tasks_in_batches(tmp_path, ls):
    project, labelled, free = project_with(ls, 2, 5)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    store.update_status(access.settings.model_dir, project, lambda s: setattr(s, "requests", 1))
    jobs.drain(str(project), access)
    status = store.stored_status(access.settings.model_dir, project)
    assert status.state.value == "idle"
    assert status.version
    assert sorted(written(ls)) == free
    assert all(len(batch) <= 2 for batch in ls.imported)
    for prediction in (p for batch in ls.imported for p in batch):
        assert prediction["model_version"] == status.version
        assert 0 <= prediction["score"] <= 1
        assert isinstance(prediction["result"], list)
    wb = status.writeback
    assert wb.state == "done"
    assert wb.version == status.version
    assert wb.mode == "unlabelled"
    assert (wb.seen, wb.written, wb.total, wb.after) == (7, 5, 7, max(free))
    assert wb.started_at
    assert wb.finished_at
    assert wb.last_error is None
    assert ls.projects[project]["model_version"] == status.version, "the score column shows the new version"
    listings = ls.calls("GET", "/api/tasks/")
    assert listings
    assert all("review=true" in c.query and "fields=all" in c.query for c in listings)
    assert not ls.calls(prefix="/api/tasks/", method="GET")[len(listings):], "a task was opened one by one"


def test_all_mode_writes_every_task_and_off_mode_none(tmp_path, ls, models):
    project, labelled, free = project_with(ls, 1, 2)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    saved(tmp_path, project, models, mode="all")
    writeback.run(access, str(project))
    assert sorted(written(ls)) == sorted(labelled + free)

    ls.imported.clear()
    status = TrainingStatus(writeback=WritebackStatus(version="v1", state=WritebackState.RUNNING))
    writeback.schedule(status, "v2", "off")
    assert status.writeback.state == "superseded"
    assert not writeback.unfinished(status)
    assert TrainingStatus().writeback is None
    writeback.schedule(fresh := TrainingStatus(), "v2", "off")
    assert fresh.writeback is None


def test_a_write_back_killed_midway_resumes_after_the_last_task_written(tmp_path, ls, models, monkeypatch):
    project, labelled, free = project_with(ls, 1, 6)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    version = saved(tmp_path, project, models)
    pauses = []

    def die_at_second_pause(seconds):
        pauses.append(seconds)
        if len(pauses) == 2:
            raise Died

    monkeypatch.setattr(writeback.time, "sleep", die_at_second_pause)
    with pytest.raises(Died):
        writeback.run(access, str(project))
    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert wb.state == "running"
    assert wb.after > 0
    assert 0 < wb.written < len(free)
    shown = store.read_status(access.settings.model_dir, project).writeback
    assert shown.state == "interrupted", "/status tells a write-back whose process ended"
    first = written(ls)

    monkeypatch.undo()
    scheduler = jobs.Scheduler(access)
    assert scheduler.resume() == [str(project)]
    scheduler.wait(60)
    assert sorted(written(ls)) == free, "every unlabelled task once: none repeated, none lost"
    assert written(ls)[: len(first)] == first
    assert min(written(ls)[len(first):]) > wb.after
    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert wb.state == "done"
    assert wb.written == len(free)
    assert wb.version == version
    assert jobs.Scheduler(access).resume() == []


def test_a_queue_that_cannot_take_the_resumed_job_does_not_stop_the_start(tmp_path, ls, models):
    project, _, _ = project_with(ls, 0, 1)
    saved(tmp_path, project, models)

    class DownQueue:
        def enqueue(self, *args, **kwargs):
            raise ConnectionError("Redis is down")

    scheduler = jobs.Scheduler(LabelStudioAccess(settings_for(tmp_path, ls)))
    scheduler._queue = DownQueue()
    assert scheduler.resume() == [str(project)]
    assert writeback.unfinished(store.stored_status(tmp_path / "models", project))


def test_tasks_already_holding_the_version_are_not_predicted_again(tmp_path, ls, models):
    project, _, free = project_with(ls, 0, 3)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    version = saved(tmp_path, project, models)
    ls.tasks[free[1]]["predictions"].append({"id": 999, "model_version": version, "result": [], "score": 0.5})
    writeback.run(access, str(project))
    assert written(ls) == [free[0], free[2]]


def test_the_project_is_pointed_at_the_new_version_unless_it_chose_other_predictions(tmp_path, ls, models):
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    for current, expected in [("Segmenter", None), ("v1-20260101T000000Z", None), ("imported-v7", "imported-v7")]:
        project, _, _ = project_with(ls, 0, 1)
        ls.ml.append({"id": project, "project": project, "title": "Segmenter", "url": "http://backend"})
        ls.projects[project]["model_version"] = current
        version = saved(tmp_path, project, models)
        writeback.run(access, str(project))
        assert ls.projects[project]["model_version"] == (expected or version)


def test_the_score_column_is_ready_when_the_status_says_done(tmp_path, ls, models, monkeypatch):
    """Seen in bench.writeback: a Data Manager page read as soon as /status said "done" showed no
    scores, because the project was pointed at the version only after "done" was recorded."""
    project, _, free = project_with(ls, 0, 5)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    version = saved(tmp_path, project, models)
    recorded = writeback._advance
    pointed_when_done = []

    def advance(*args, done, **kwargs):
        if done:
            pointed_when_done.append(ls.projects[project]["model_version"])
        return recorded(*args, done=done, **kwargs)

    monkeypatch.setattr(writeback, "_advance", advance)
    writeback.run(access, str(project))
    assert pointed_when_done == [version]
    assert store.stored_status(access.settings.model_dir, project).writeback.state == "done"


def test_a_task_that_cannot_be_read_gets_no_prediction_and_the_others_do(tmp_path, ls, models):
    project, _, free = project_with(ls, 0, 2)
    broken = ls.add_task(project, {"csv_url": "/data/upload/1/missing.csv"})["id"]
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    saved(tmp_path, project, models)
    writeback.run(access, str(project))
    assert written(ls) == free
    assert broken not in written(ls)
    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert (wb.state, wb.seen, wb.written) == ("done", 3, 2)


def test_a_damaged_write_back_record_reads_as_none(tmp_path):
    store.write_json(store.project_dir(tmp_path, 3) / "status.json", {"state": "idle", "writeback": [1, 2]})
    status = store.stored_status(tmp_path, 3)
    assert status.writeback is None
    assert not writeback.unfinished(status)


def test_a_failing_label_studio_leaves_the_training_successful(tmp_path, ls):
    project, _, free = project_with(ls, 2, 3)
    ls.fail_imports_after = 0
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    store.update_status(access.settings.model_dir, project, lambda s: setattr(s, "requests", 1))
    jobs.drain(str(project), access)
    status = store.stored_status(access.settings.model_dir, project)
    assert status.state.value == "idle"
    assert status.version
    assert status.last_error is None
    assert status.writeback.state == "failed"
    assert "500" in status.writeback.last_error
    assert KEY not in status.writeback.last_error
    assert store.latest_version(access.settings.model_dir, project) == status.version


def test_a_training_request_stops_the_write_back_between_batches(tmp_path, ls, models, monkeypatch):
    project, _, free = project_with(ls, 0, 5)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    saved(tmp_path, project, models)

    seen_while_writing = []

    def request_training(seconds):
        seen_while_writing.append(store.read_status(access.settings.model_dir, project).writeback.state)
        store.update_status(access.settings.model_dir, project, lambda s: setattr(s, "requests", s.requests + 1))

    monkeypatch.setattr(writeback.time, "sleep", request_training)
    writeback.run(access, str(project))
    assert seen_while_writing == ["running"], "a writer holding the lock reads as running"
    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert wb.state == "pending", "stopped after one batch, to be resumed"
    assert len(written(ls)) == 2, "stopped after one batch, to be resumed"
    assert store.read_status(access.settings.model_dir, project).writeback.state == "pending"


def test_imports_are_sized_by_the_project_so_label_studio_recounts_it_a_bounded_number_of_times():
    assert writeback.import_size(2_000, 100) == 200
    assert writeback.import_size(10_000, 100) == 1_000
    assert writeback.import_size(100_000, 100) == 1_000, "never more than one post can hold"
    assert writeback.import_size(50, 100) == 100, "never less than a page"
    assert writeback.import_size(25, 2) == 3


def test_pages_are_gathered_into_imports_of_a_tenth_of_the_project(tmp_path, ls, models):
    project, _, free = project_with(ls, 0, 40)
    access = LabelStudioAccess(settings_for(tmp_path, ls))  # pages of 2 tasks
    saved(tmp_path, project, models)
    writeback.run(access, str(project))
    assert sorted(written(ls)) == free
    assert [len(batch) for batch in ls.imported] == [4] * 10, "ten imports of four: two pages each"
    listings = ls.calls("GET", "/api/tasks/")
    assert all("page_size=2" in c.query for c in listings), "listed a page at a time all the same"
    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert (wb.state, wb.seen, wb.written, wb.after) == ("done", 40, 40, max(free))


def test_a_training_request_flushes_the_gathered_pages_and_stops(tmp_path, ls, models, monkeypatch):
    project, _, free = project_with(ls, 0, 40)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    saved(tmp_path, project, models)
    real_predictions = writeback._predictions

    def request_after_first_page(*args, **kwargs):
        out = real_predictions(*args, **kwargs)
        store.update_status(access.settings.model_dir, project, lambda s: setattr(s, "requests", 1))
        return out

    monkeypatch.setattr(writeback, "_predictions", request_after_first_page)
    writeback.run(access, str(project))
    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert wb.state == "pending", "stopped for the training, to be resumed"
    assert written(ls) == free[:2], "the page gathered so far is written, not lost or held"
    assert wb.after == free[1]


def test_a_running_training_goes_before_the_write_back_it_will_supersede(tmp_path, ls, models):
    """Seen against Label Studio 1.23: a training claimed between the previous one's end and its
    write-back's start left the older version's predictions on every task next to the new ones."""
    project, _, free = project_with(ls, 0, 3)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    model_dir = access.settings.model_dir
    saved(tmp_path, project, models)
    store.update_status(model_dir, project, lambda s: setattr(s, "requests", s.requests + 1))
    assert store.update_status(model_dir, project, TrainingStatus.claim)  # the next training starts

    with store.training_lock(model_dir, project) as mine:  # ... and runs, holding its lock
        assert mine
        writeback.run(access, str(project))
    assert written(ls) == [], "nothing written while the training that replaces it runs"
    assert store.stored_status(model_dir, project).writeback.state == "pending"

    writeback.run(access, str(project))  # its process died: the lock is free, the write-back goes on
    assert sorted(written(ls)) == free
    assert store.stored_status(model_dir, project).writeback.state == "done"


def test_a_newer_version_supersedes_an_unfinished_write_back(tmp_path, ls, models):
    project, _, free = project_with(ls, 0, 3)
    access = LabelStudioAccess(settings_for(tmp_path, ls))
    old = saved(tmp_path, project, models)
    model_dir = access.settings.model_dir
    def left_running(status):  # as a writer that died after its first task leaves it
        status.writeback.state, status.writeback.after = WritebackState.RUNNING, free[0]

    store.update_status(model_dir, project, left_running)
    new = saved(tmp_path, project, models)
    writeback.run(access, str(project))
    assert {p["model_version"] for batch in ls.imported for p in batch} == {new} != {old}
    assert sorted(written(ls)) == free, "the new version starts from the first task"

    store.update_status(access.settings.model_dir, project, lambda s: writeback.schedule(s, old, "unlabelled"))
    writeback.run(access, str(project))  # not the newest stored version: never written
    assert store.stored_status(access.settings.model_dir, project).writeback.state == "superseded"


def test_settings_read_and_check_the_write_back_variables():
    default = Settings.from_env({})
    assert (default.predict_after_training, default.predict_batch_size, default.predict_batch_pause) == (
        "unlabelled", 100, 0.5)
    chosen = Settings.from_env({"PREDICT_AFTER_TRAINING": "ALL", "PREDICT_BATCH_SIZE": "25",
                                "PREDICT_BATCH_PAUSE": "0"})
    assert (chosen.predict_after_training, chosen.predict_batch_size, chosen.predict_batch_pause) == ("all", 25, 0)
    for name, value in [("PREDICT_AFTER_TRAINING", "some"), ("PREDICT_BATCH_SIZE", "0"),
                        ("PREDICT_BATCH_SIZE", "5000"), ("PREDICT_BATCH_PAUSE", "-1")]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


def test_written_predictions_are_cleaned_up_with_the_projects_settings(tmp_path, ls, models):
    """The write-back proposes what /predict would: a score threshold of 1 in the project's
    config leaves no region, though the task score still says how sure the model is."""
    strict = CONFIG.replace("<TimeSeriesLabels ", '<TimeSeriesLabels model_score_threshold="1" ')
    project = ls.add_project(strict)
    free = [t["id"] for t in ls.add_recordings(project, 3, seed=50, annotate=False)]
    saved(tmp_path, project, models)
    writeback.run(LabelStudioAccess(settings_for(tmp_path, ls)), str(project))
    predictions = [p for batch in ls.imported for p in batch]
    assert sorted(p["task"] for p in predictions) == free
    assert all(p["result"] == [] and 0 < p["score"] <= 1 for p in predictions)

    loose = ls.add_project(CONFIG)
    ls.add_recordings(loose, 3, seed=50, annotate=False)
    ls.imported.clear()
    saved(tmp_path, loose, models)
    writeback.run(LabelStudioAccess(settings_for(tmp_path, ls)), str(loose))
    assert any(p["result"] for batch in ls.imported for p in batch), "without the threshold regions are proposed"
