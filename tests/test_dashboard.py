"""The dashboard: pages and charts after real trainings, numbers equal to /status, auth and bad input."""

import re

from support import CONFIG, add_recordings

from harness.fakels import KEY
from segmenter.service.dashboard.task_view import TaskViews  # noqa: E402

VIEWS = TaskViews()  # a runtime's task views, shared by this module's calls as one process's are

PNG = b"\x89PNG\r\n\x1a\n"


def cell(html: str, cls: str) -> str:
    match = re.search(rf'class="{cls}">([^<]*)<', html)
    assert match, cls
    return match.group(1).strip()


def test_dashboard_shows_what_status_says_after_two_trainings(backend, ls):
    b = backend()
    project = ls.add_project(CONFIG)
    tasks = add_recordings(ls, project, 2)
    b.setup(project, ls)
    b.webhook("START_TRAINING", project)
    assert b.wait_idle(project)["state"] == "idle"
    add_recordings(ls, project, 2, seed=5)
    b.webhook("START_TRAINING", project)
    status = b.wait_idle(project, 120)
    assert status["state"] == "idle"
    assert status["dashboard"] == f"/dashboard/project/{project}"
    assert b.get("/status").json()["dashboard"] == "/dashboard"
    [model] = status["models"]

    page = b.get("/dashboard")
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    html = page.text
    assert f'href="/dashboard/project/{project}"' in html
    assert cell(html, "version") == status["model_version"]
    assert cell(html, "tasks") == str(model["data"]["tasks"]) == "4"
    assert cell(html, "rows") == str(model["data"]["rows"])
    assert cell(html, "bacc") == str(model["validation"]["balanced_accuracy"])
    assert "http" not in re.sub(r'href="/[^"]*"|src="/[^"]*"', "", html)  # nothing from another site

    html = b.get(f"/dashboard/project/{project}").text
    assert re.search(r'id="state">idle<', html)
    assert f'id="version">{status["model_version"]}<' in html
    assert cell(html, "minf1") == str(model["validation"]["min_class_f1"])
    assert model["stopped_because"] in html
    assert KEY not in html
    assert html.count("<tr><td>v") == 2  # one row per training
    for kind in ("learning", "f1", "balance", "epochs", "confusion"):
        chart = b.get(f"/dashboard/project/{project}/chart/{kind}/0.png")
        assert chart.status_code == 200, kind
        assert chart.content.startswith(PNG), kind

    task_id = tasks[0]["id"]
    assert b.get(f"/dashboard/project/{project}/task?id={task_id}").url.endswith(f"/task/{task_id}")
    assert b.get(f"/dashboard/project/{project}/task?id=x").status_code == 400
    html = b.get(f"/dashboard/project/{project}/task/{task_id}").text
    assert f'id="version">{status["model_version"]}<' in html
    assert f"/task/{task_id}/0.png" in html
    chart = b.get(f"/dashboard/project/{project}/task/{task_id}/0.png")
    assert chart.status_code == 200
    assert chart.content.startswith(PNG)
    assert b.get(f"/dashboard/project/{project}/task/{task_id}/1.png").status_code == 404  # one target
    assert "no task" in b.get(f"/dashboard/project/{project}/task/999999/0.png").json()["error"]
    assert b.get(f"/dashboard/project/{project}/task/999999").status_code == 404


def test_a_task_only_predicted_shows_and_the_project_lists_its_tasks(backend, ls):
    """Tasks come from Label Studio's task list with review=true (never /api/tasks/<id>, never one that
    makes Label Studio call /predict), once per page view; a predicted task's view is the one /predict stored."""
    from segmenter import store

    b = backend()
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 2)
    b.setup(project, ls)
    b.webhook("START_TRAINING", project)
    version = b.wait_idle(project)["model_version"]
    [fresh] = add_recordings(ls, project, 1, seed=9, annotate=False)
    [prediction] = b.predict(project, [fresh]).json()["results"]
    ls.tasks[fresh["id"]]["predictions"].append({**prediction, "model_version": version})
    assert b.runtime.task_views.flush(30)
    assert store.load_view(b.runtime.settings.model_dir, str(project), version, fresh["id"]) is not None
    ls.clear_requests()

    html = b.get(f"/dashboard/project/{project}/task/{fresh['id']}").text
    assert cell(html, "annotated") == "not annotated"
    assert cell(html, "score") == str(prediction["score"])
    chart = b.get(f"/dashboard/project/{project}/task/{fresh['id']}/0.png")
    assert chart.status_code == 200
    assert chart.content.startswith(PNG)
    reads = [r for r in ls.requests if r.path.startswith("/api/")]
    assert [r.path for r in reads] == ["/api/tasks/"]  # one read for the page and its chart
    assert "review=true" in reads[0].query
    assert ls.evaluations == []

    html = b.get(f"/dashboard/project/{project}").text
    listed = re.findall(r'<tr data-task="(\d+)">', html)
    assert listed == [str(t["id"]) for t in ls.tasks.values() if t["project"] == project]
    assert f'href="/dashboard/project/{project}/task/{fresh["id"]}"' in html
    assert html.count(str(prediction["score"])) >= 1
    assert "yes (1)" in html
    assert ls.evaluations == []
    assert not any(r.path.startswith("/api/tasks/") and r.path != "/api/tasks/"
                   for r in ls.requests)


def test_dashboard_bad_input_is_a_clear_4xx(backend):
    b = backend()
    assert b.get("/dashboard").status_code == 200  # no project yet
    assert b.get("/dashboard/project/abc").status_code == 400
    assert "project" in b.get("/dashboard/project/abc").json()["error"]
    assert b.get("/dashboard/project/77").status_code == 404
    b.webhook("START_TRAINING", 3)  # a project that exists (its training fails: no Label Studio)
    b.runtime.scheduler.wait(30)
    assert b.get("/dashboard/project/3").status_code == 200
    assert b.get("/dashboard/project/3/chart/pie/0.png").status_code == 404
    assert b.get("/dashboard/project/3/chart/f1/0.png").status_code == 404  # nothing trained yet
    html = b.get("/dashboard").text
    assert "failed" in html


def test_dashboard_is_behind_basic_auth(backend):
    b = backend(basic_auth_user="u", basic_auth_pass="p")
    assert b.get("/dashboard").status_code == 401
    assert b.get("/dashboard/project/1").status_code == 401
    assert b.get("/dashboard", auth=("u", "p")).status_code == 200


def test_task_view_reduction_keeps_extremes_and_short_events():
    import numpy as np

    from segmenter.service.dashboard import task_view

    rows = 1_000_000
    starts = task_view.columns(rows)
    assert len(starts) == task_view.POINTS
    assert starts[0] == 0
    values = np.zeros((rows, 1))
    values[123_457] = 9.0  # one spike
    low, high = task_view.reduce_values(values, starts)
    assert high.max() == 9.0
    assert low.min() == 0.0
    classes = np.zeros(rows, dtype=np.int64)
    classes[600_000:600_010] = 2  # a 10-row event inside a 500-row column
    reduced = task_view.reduce_classes(classes, starts, 3)
    assert reduced.tolist().count(2) == 1
    assert set(reduced.tolist()) == {0, 2}
    assert task_view.columns(5).tolist() == [0, 1, 2, 3, 4]  # short series: one column per row


def test_task_view_of_a_model_whose_labels_overlap_draws_each_labels_presence():
    """A multi-label model gives one presence per label (no background column): the view
    lines them up with the classes it draws, and the chart is drawn."""
    from harness import synthetic
    from segmenter.config import TrainingSettings
    from segmenter.learning.training import train_project
    from segmenter.service.dashboard import charts

    tasks, files = synthetic.layered_tasks(2, 600, seed=10)
    [model] = train_project(synthetic.layered_config(), tasks, files, TrainingSettings(epochs=3, patience=1))
    assert model.multi_label
    [view] = VIEWS.view("1", "v1", tasks[0], [model], files)
    assert view.probabilities.shape[1] == len(view.labels) == len(model.target.labels) + 1
    assert view.predicted.max() < len(view.labels)
    assert charts.task_chart(view).startswith(b"\x89PNG")


class NoFetch:
    """A fetcher that fails: a view read from the store never parses the task's file."""

    def fetch(self, ref: str, task_id: object = None) -> bytes:
        raise AssertionError(f"fetched {ref}")


def predicted_and_stored(model_dir):
    """A trained model, its task files, the stored version and a task /predict predicted (its view stored)."""
    from harness import synthetic
    from segmenter import store
    from segmenter.config import TrainingSettings
    from segmenter.learning.inference import predict_tasks
    from segmenter.learning.training import train_project

    tasks, files = synthetic.annotated_tasks(2, 600, seed=4)
    [model] = train_project(synthetic.label_config(), tasks, files, TrainingSettings(epochs=2, patience=1))
    version = store.save(model_dir, "1", [model])
    task = {**tasks[0], "id": 7}
    predict_tasks([model], [task], files, keep=VIEWS.keeper(model_dir, "1", version))
    assert VIEWS.flush(30)
    return model, files, version, task


def test_a_predicted_tasks_view_is_stored_and_served_without_parsing_or_predicting(tmp_path):
    """/predict's keeper stores each task's reduced view in the background; the dashboard reads it,
    placing the annotation as it is now, and gets what computing it would give."""
    import numpy as np

    from segmenter import store

    model, files, version, task = predicted_and_stored(tmp_path)
    assert store.load_view(tmp_path, "1", version, 7) is not None

    [stored] = VIEWS.view("1", version, task, [model], NoFetch(), model_dir=tmp_path)
    [computed] = VIEWS.view("1", version, {**task, "id": 8}, [model], files)
    for name in ("x", "low", "high", "annotated", "predicted", "probabilities"):
        assert np.allclose(getattr(stored, name), getattr(computed, name), atol=1e-6), name
    assert stored.rows == computed.rows == 600
    assert stored.labels == computed.labels

    unannotated = {**task, "annotations": []}  # an annotation deleted after the prediction
    [view] = VIEWS.view("1", version, unannotated, [model], NoFetch(), model_dir=tmp_path)
    assert view.annotated is None
    assert np.array_equal(view.predicted, stored.predicted)
    edited = {**task, "data": {**task["data"], "extra": 1}}  # other task data: computed again, stored
    [view] = VIEWS.view("1", version, edited, [model], files, model_dir=tmp_path)
    assert np.array_equal(view.predicted, stored.predicted)


def test_stored_task_views_are_bounded(tmp_path):
    """Only the newest views of a project stay, and none of a version no longer stored."""
    import os

    import numpy as np

    from segmenter import store
    from segmenter.store import task_views

    folder = store.project_dir(tmp_path, "1")
    folder.mkdir()
    for version in ("v1-20260101T000000Z", "v2-20260102T000000Z"):
        (folder / f"{version}.pt").touch()
    for task_id in range(5):
        store.save_view(tmp_path, "1", "v2-20260102T000000Z", task_id, {"a": np.arange(3)}, {"n": task_id})
        path = folder / task_views.VIEWS_DIR / "v2-20260102T000000Z" / f"task_{task_id}.npz"
        os.utime(path, (1000 + task_id, 1000 + task_id))
    store.save_view(tmp_path, "1", "v1-20260101T000000Z", 9, {"a": np.arange(3)}, {})
    arrays, meta = store.load_view(tmp_path, "1", "v2-20260102T000000Z", 4)
    assert meta == {"n": 4}
    assert arrays["a"].tolist() == [0, 1, 2]
    (folder / "v1-20260101T000000Z.pt").unlink()  # a pruned version
    debris = folder / task_views.VIEWS_DIR / "v2-20260102T000000Z" / ".task_5.npz.999999999@elsewhere.x.tmp"
    debris.write_bytes(b"half")
    os.utime(debris, (1, 1))  # written long ago on another host
    task_views.prune(tmp_path, "1", keep=3)
    left = sorted(p.name for p in (folder / task_views.VIEWS_DIR).rglob("*.npz"))
    assert left == ["task_2.npz", "task_3.npz", "task_4.npz"]
    assert not debris.exists()
    assert store.load_view(tmp_path, "1", "v1-20260101T000000Z", 9) is None
    (folder / task_views.VIEWS_DIR / "v2-20260102T000000Z" / "task_4.npz").write_bytes(b"garbage")
    assert store.load_view(tmp_path, "1", "v2-20260102T000000Z", 4) is None  # damaged: computed again


def test_task_view_cleans_up_with_the_projects_settings_and_restores_a_view_made_under_others(tmp_path):
    """The predicted classes drawn are those /predict proposes: a per-project minimum duration
    of one row keeps the flicker the automatic clean-up removes; a view stored under other settings is made again."""
    import numpy as np

    from harness import synthetic
    from segmenter.config import TrainingSettings
    from segmenter.reading.project_settings import read_settings
    from segmenter.reading.task_series import read_task_series

    model, files, version, task = predicted_and_stored(tmp_path)
    [plain] = VIEWS.view("1", version, task, [model], NoFetch(), model_dir=tmp_path)

    config = synthetic.label_config().replace("<TimeSeriesLabels ", '<TimeSeriesLabels model_min_duration="1rows" ')
    settings = read_settings(config, TrainingSettings())
    own = settings[model.target.from_name]
    assert own.problems == ()
    [strict] = VIEWS.view("1", version, task, [model], files, model_dir=tmp_path, settings=settings)
    series = read_task_series(task, model.target, files)
    classes = model.cleanup(series, own).apply(model.probabilities(series).argmax(axis=1), model.instant_classes)
    assert np.array_equal(strict.predicted, classes)  # 600 rows: one column per row
    assert not np.array_equal(strict.predicted, plain.predicted)  # no clean-up: the flicker the automatic one hid
    np.testing.assert_allclose(strict.probabilities, plain.probabilities)
    [again] = VIEWS.view("1", version, task, [model], NoFetch(), model_dir=tmp_path, settings=settings)
    assert np.array_equal(again.predicted, strict.predicted)  # the view made under these settings was stored
