"""Where a write-back's time goes: its seconds per stage, recorded in the status."""

from dataclasses import replace

from harness import synthetic
from harness.fakels import KEY
from segmenter import store
from segmenter.config import Settings, TrainingSettings
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.service import jobs
from segmenter.store import WritebackStatus

CONFIG = synthetic.label_config()


def test_a_write_back_records_the_seconds_of_each_stage(tmp_path, ls):
    project = ls.add_project(CONFIG)
    ls.add_recordings(project, 2, seed=0)
    ls.add_recordings(project, 5, seed=50, annotate=False)
    settings = replace(Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache",
                                training=TrainingSettings(epochs=3, patience=2), label_studio_url=ls.url,
                                label_studio_api_key=KEY, predict_retry_wait=0.01),
                       predict_batch_size=2, predict_batch_pause=0.05)
    access = LabelStudioAccess(settings)
    store.update_status(settings.model_dir, project, lambda s: setattr(s, "requests", 1))
    jobs.drain(str(project), access)
    wb = store.stored_status(settings.model_dir, project).writeback
    assert wb.state == "done"
    assert wb.written == 5
    assert set(wb.seconds) == {"listing", "downloads", "predicting", "import", "pauses"}
    assert all(v >= 0 for v in wb.seconds.values())
    assert wb.seconds["pauses"] >= 0.149, "four pages of two: a pause after each but the last"
    assert wb.seconds["downloads"] > 0, "the recordings are files fetched from Label Studio"


def test_stored_seconds_that_are_not_numbers_read_as_none():
    assert WritebackStatus.from_json({"version": "v1", "seconds": {"listing": "x"}}).seconds == {}
    assert WritebackStatus.from_json({"version": "v1", "seconds": [1]}).seconds == {}
    assert WritebackStatus.from_json({"version": "v1", "seconds": {"listing": 1.5}}).seconds == {"listing": 1.5}
