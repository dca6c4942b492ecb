"""A write-back finishes through what an ordinary Label Studio does meanwhile: tasks deleted
between the listing and the import, a passing 5xx on an import or a listing page.  A Label
Studio that keeps failing ends it ``failed`` after a bounded number of tries, the failure
recorded with the key masked.  The fake Label Studio over HTTP throughout, answering as
Label Studio 1.23.2 does (a batch naming a deleted task is refused whole with a 400)."""

from collections import Counter

import pytest

from harness import synthetic
from harness.fakels import KEY, FakeLabelStudio
from segmenter import store
from segmenter.config import Settings, TrainingSettings
from segmenter.errors import ConfigError
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.learning.training import train_project
from segmenter.service import writeback

CONFIG = synthetic.label_config()
FAST = TrainingSettings(epochs=3, patience=1, batch_size=32, hidden_size=8)
RETRIES = 3


@pytest.fixture(scope="module")
def models():
    tasks, fetcher = synthetic.annotated_tasks(2, 300, seed=5)
    return train_project(CONFIG, tasks, fetcher, FAST)


def setup(tmp_path, ls: FakeLabelStudio, models, unlabelled: int) -> tuple[LabelStudioAccess, int, list[int], str]:
    """A project of one annotated and ``unlabelled`` unannotated tasks, a stored version with its
    write-back scheduled (batches of 4, quick retries); the access, project, free task ids, version."""
    project = ls.add_project(CONFIG)
    ls.add_recordings(project, 1, seed=0)
    free = [t["id"] for t in ls.add_recordings(project, unlabelled, seed=50, annotate=False)]
    settings = Settings.from_env({
        "MODEL_DIR": str(tmp_path / "models"), "CACHE_DIR": str(tmp_path / "cache"), "LABEL_STUDIO_URL": ls.url,
        "LABEL_STUDIO_API_KEY": KEY, "PREDICT_BATCH_SIZE": "4", "PREDICT_BATCH_PAUSE": "0",
        "PREDICT_RETRIES": str(RETRIES), "PREDICT_RETRY_WAIT": "0.01",
    })
    version = store.save(settings.model_dir, project, models)
    store.update_status(settings.model_dir, project, lambda s: writeback.schedule(s, version, "unlabelled"))
    return LabelStudioAccess(settings), project, free, version


def predictions_per_task(ls: FakeLabelStudio, version: str) -> Counter:
    """How many predictions of ``version`` each task still in Label Studio holds."""
    return Counter(p["task"] for t in ls.tasks.values() for p in t["predictions"] if p["model_version"] == version)


def imports(ls: FakeLabelStudio, project: int) -> int:
    return len(ls.calls("POST", f"/api/projects/{project}/import/predictions"))


def test_tasks_deleted_between_the_listing_and_the_import_cost_the_others_nothing(tmp_path, ls, models):
    access, project, free, version = setup(tmp_path, ls, models, 12)
    deleted = [free[5], free[6], free[9]]  # two in the second batch, one in the third
    batches = []

    def delete_meanwhile(body):
        batches.append([p["task"] for p in body])
        if len(batches) in (2, 4):  # the first try of the second and of the third batch
            for task in deleted[:2] if len(batches) == 2 else deleted[2:]:
                ls.delete_task(task)

    ls.before_import = delete_meanwhile
    writeback.run(access, str(project))

    wb = store.stored_status(access.settings.model_dir, project).writeback
    remaining = [t for t in free if t not in deleted]
    assert wb.state == "done", wb
    assert wb.last_error is None, wb
    assert predictions_per_task(ls, version) == Counter(remaining), "every remaining task exactly once"
    assert wb.written == len(remaining)
    assert batches[2] == [t for t in batches[1] if t not in deleted], "the batch sent again without the gone"
    lookups = [c for c in ls.calls("GET", "/api/tasks/") if "selectedItems" in c.query]
    assert len(lookups) == 2, "one listing by id per refused batch"

    access, project, free, version = setup(tmp_path, ls, models, 3)  # a 400 with no task gone is a real failure
    ls.fail("POST", f"/api/projects/{project}/import/predictions", 400, times=None)
    writeback.run(access, str(project))
    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert wb.state == "failed"
    assert "HTTP 400" in wb.last_error
    assert imports(ls, project) == 1, "not sent again: no task was gone"


def test_one_500_on_an_import_and_one_on_a_listing_page_lose_and_repeat_nothing(tmp_path, ls, models):
    access, project, free, version = setup(tmp_path, ls, models, 10)
    ls.fail("POST", f"/api/projects/{project}/import/predictions", 500)
    armed = []

    def fail_next_listing(body):
        if not armed:
            armed.append(True)
            ls.fail("GET", "/api/tasks/", 500)

    ls.before_import = fail_next_listing
    writeback.run(access, str(project))

    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert wb.state == "done", wb
    assert wb.last_error is None, wb
    assert predictions_per_task(ls, version) == Counter(free), "none lost, none written twice"
    assert wb.written == len(free)
    assert wb.seen == len(free) + 1
    assert imports(ls, project) == len(ls.imported) + 1, "the failed import was tried once more"


@pytest.mark.parametrize("status", [500, 504])
def test_an_import_whose_answer_is_lost_is_not_written_twice(tmp_path, ls, models, status):
    access, project, free, version = setup(tmp_path, ls, models, 6)
    ls.fail("POST", f"/api/projects/{project}/import/predictions", status, served=True)
    writeback.run(access, str(project))

    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert wb.state == "done", wb
    assert predictions_per_task(ls, version) == Counter(free)
    assert wb.written == len(free), "the stored batch counts as written"


def test_a_large_import_is_looked_up_in_listings_of_bounded_ids(tmp_path, ls, models, monkeypatch):
    """The ids of a refused import travel in the URL, which servers cap: they are looked up a
    bounded number at a time (imports grow to 1,000 predictions in large projects)."""
    monkeypatch.setattr(writeback, "LOOKUP_IDS", 2)
    access, project, free, version = setup(tmp_path, ls, models, 4)
    ls.fail("POST", f"/api/projects/{project}/import/predictions", 500, served=True)
    writeback.run(access, str(project))

    assert predictions_per_task(ls, version) == Counter(free), "none lost, none written twice"
    lookups = [c for c in ls.calls("GET", "/api/tasks/") if "selectedItems" in c.query]
    assert len(lookups) == 2, "the first import's three ids looked up two, then one"
    assert ["page_size=2" in lookups[0].query, "page_size=1" in lookups[1].query] == [True, True], lookups


def test_a_label_studio_that_keeps_failing_ends_the_write_back_failed_after_bounded_retries(tmp_path, ls, models):
    access, project, free, version = setup(tmp_path, ls, models, 6)
    ls.fail("POST", f"/api/projects/{project}/import/predictions", 500, times=None)
    writeback.run(access, str(project))

    status = store.stored_status(access.settings.model_dir, project)
    wb = status.writeback
    assert wb.state == "failed"
    assert wb.written == 0
    assert "HTTP 500" in wb.last_error
    assert "import/predictions" in wb.last_error
    assert imports(ls, project) == 1 + RETRIES, "the first try and the bounded retries, no more"
    assert status.last_error is None
    assert store.latest_version(access.settings.model_dir, project) == version
    on_disk = (store.project_dir(access.settings.model_dir, project) / "status.json").read_text()
    assert KEY not in wb.last_error
    assert KEY not in on_disk

    ls.fail("GET", "/api/tasks/", 503, times=None)  # a listing page that keeps failing ends the same way
    store.update_status(access.settings.model_dir, project, lambda s: writeback.schedule(s, version, "unlabelled"))
    before = len(ls.calls("GET", "/api/tasks/"))
    writeback.run(access, str(project))
    wb = store.stored_status(access.settings.model_dir, project).writeback
    assert wb.state == "failed"
    assert "HTTP 503" in wb.last_error
    assert len(ls.calls("GET", "/api/tasks/")) - before == 1 + RETRIES


def test_the_backoff_is_bounded_and_read_from_the_environment():
    from segmenter.labelstudio.errors import MAX_RETRY_WAIT_S, Backoff

    assert Backoff(4, 1.0).waits() == [1.0, 2.0, 4.0, 8.0]
    assert Backoff(10, 30.0).waits() == [MAX_RETRY_WAIT_S] * 10
    default = Settings.from_env({})
    assert (default.predict_retries, default.predict_retry_wait) == (4, 1.0)
    chosen = Settings.from_env({"PREDICT_RETRIES": "0", "PREDICT_RETRY_WAIT": "2.5"})
    assert (chosen.predict_retries, chosen.predict_retry_wait) == (0, 2.5)
    for name, value in [("PREDICT_RETRIES", "-1"), ("PREDICT_RETRIES", "11"), ("PREDICT_RETRY_WAIT", "31"),
                        ("PREDICT_RETRY_WAIT", "soon")]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})
