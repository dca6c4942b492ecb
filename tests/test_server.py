"""The service over real HTTP: protocol, background training, isolation, auth."""

import time
from pathlib import Path

import pytest
import requests
from support import CONFIG, add_recordings, trained_project

from harness import synthetic
from harness.fakels import KEY
from segmenter import store
from segmenter.store import TrainingState


def test_health_setup_and_predict_before_training(backend, ls, payload):
    b = backend()
    assert b.get("/health").json()["status"] == "UP"
    assert b.get("/").status_code == 200
    assert b.post("/setup", payload("setup.json")).json() == {"model_version": "untrained"}
    body = payload("predict_batch.json")
    results = b.post("/predict", body).json()["results"]
    assert results == [{"result": [], "score": 0.0, "model_version": "untrained"}] * len(body["tasks"])


@pytest.mark.parametrize(
    "name",
    [
        "health_get.json",
        "setup.json",
        "predict_batch.json",
        "predict_interactive.json",
        "webhook_ANNOTATION_CREATED.json",
        "webhook_ANNOTATION_CREATED_datetime.json",
        "webhook_ANNOTATION_UPDATED.json",
        "webhook_ANNOTATIONS_DELETED.json",
        "webhook_START_TRAINING.json",
        "webhook_TASKS_CREATED.json",
        "webhook_PROJECT_UPDATED.json",
    ],
)
def test_every_captured_request_is_answered(backend, name):
    import json

    captured = json.loads((Path(__file__).parent / "payloads" / name).read_text())
    b = backend(label_studio_url="http://127.0.0.1:9")  # nothing listens: trainings fail, recorded
    response = requests.request(captured["method"], b.url + captured["path"], json=captured["json"], timeout=10)
    assert response.status_code == 200, response.text
    if captured["path"] == "/predict":
        assert len(response.json()["results"]) == len(captured["json"]["tasks"])
    if captured["path"] == "/webhook":
        scheduled = response.json()["scheduled"]
        assert scheduled == (captured["json"]["action"] not in ("TASKS_CREATED", "PROJECT_UPDATED"))
        if scheduled:
            status = b.wait_idle(captured["json"]["project"]["id"])
            assert status["state"] == "failed"
            assert "127.0.0.1:9" in status["last_error"]


def test_webhook_trains_then_predictions_carry_the_new_version(backend, ls):
    b = backend()
    project = ls.add_project(CONFIG)
    tasks = add_recordings(ls, project, 3)
    assert b.setup(project, ls).json()["model_version"] == "untrained"
    ack = b.webhook("ANNOTATION_CREATED", project, annotation={"id": 1}, task=tasks[0])
    assert ack.status_code == 200
    assert ack.json()["scheduled"] is True
    status = b.wait_idle(project)
    assert status["state"] == "idle", status
    version = status["model_version"]
    assert version.startswith("v1-")
    assert status["models"][0]["validation"]["balanced_accuracy"] is not None
    assert status["models"][0]["context"]["sequence_size"] >= 2
    assert status["models"][0]["device"] == "cpu"
    assert b.setup(project, ls).json()["model_version"] == version
    assert b.get("/versions", params={"project": project}).json()["versions"] == [version]
    results = b.predict(project, tasks).json()["results"]
    assert len(results) == 3
    assert all(r["model_version"] == version for r in results)
    assert all(isinstance(r["score"], float) for r in results)
    # training data came from the export API, never from /api/tasks/<id>; the write-back after
    # it lists tasks only with review=true, which never makes Label Studio call /predict
    assert ls.calls(prefix="/api/projects/")
    assert all(c.path == "/api/tasks/" and "review=true" in c.query for c in ls.calls(prefix="/api/tasks"))


@pytest.mark.slow
def test_events_during_a_training_coalesce_into_one_follow_up(backend, ls):
    b = backend()
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 2)
    ls.export_delay = 2.0  # the training is surely still running while the events arrive
    b.setup(project, ls)
    b.webhook("START_TRAINING", project)
    deadline = time.monotonic() + 30
    while b.get(f"/status/{project}").json()["state"] != "training":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(5):
        assert b.webhook("ANNOTATION_UPDATED", project).json()["scheduled"] is True
    status = b.wait_idle(project, timeout=120)
    exports = [c for c in ls.calls(prefix=f"/api/projects/{project}/export")]
    assert len(exports) == 2, exports
    assert status["model_version"].startswith("v2-")


def test_start_training_each_n_updates(backend, ls):
    b = backend(start_training_each_n_updates=3)
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 2)
    b.setup(project, ls)
    assert [b.webhook("ANNOTATION_CREATED", project).json()["scheduled"] for _ in range(3)] == [False, False, True]
    b.wait_idle(project)
    assert b.webhook("START_TRAINING", project).json()["scheduled"] is True


def test_failed_training_is_recorded_and_previous_model_keeps_serving(backend, ls):
    b = backend()
    project, tasks = trained_project(b, ls)
    good = b.get(f"/status/{project}").json()["model_version"]
    ls.add_task(project, {"csv_url": "/data/upload/x/missing.csv"}, annotations=[[]])
    for task in tasks:
        ls.tasks[task["id"]]["annotations"] = []  # nothing usable is left
    b.webhook("START_TRAINING", project)
    status = b.wait_idle(project)
    assert status["state"] == "failed"
    assert "no task" in status["last_error"]
    assert status["model_version"] == good
    results = b.predict(project, tasks).json()["results"]
    assert all(r["model_version"] == good for r in results)


def test_two_projects_train_concurrently_and_stay_isolated(backend, ls):
    b = backend()
    walk_only = synthetic.label_config().replace('<Label value="Run"/>', "")
    p1 = ls.add_project(CONFIG)
    p2 = ls.add_project(walk_only)
    t1 = add_recordings(ls, p1, 2, seed=0)
    t2 = add_recordings(ls, p2, 2, seed=50)
    b.setup(p1, ls)
    b.setup(p2, ls, schema=walk_only)
    b.webhook("START_TRAINING", p1)
    b.webhook("START_TRAINING", p2)
    s1, s2 = b.wait_idle(p1), b.wait_idle(p2)
    assert s1["state"] == s2["state"] == "idle", (s1.get("last_error"), s2.get("last_error"))
    m1 = store.load(b.runtime.settings.model_dir, p1, s1["model_version"])[0]
    m2 = store.load(b.runtime.settings.model_dir, p2, s2["model_version"])[0]
    assert m1.target.labels == ("Run", "Walk")
    assert m2.target.labels == ("Walk",)
    # each project's prediction uses its own model and config
    r2 = b.predict(p2, t2, label_config=walk_only).json()["results"]
    assert all(r["model_version"] == s2["model_version"] for r in r2)
    assert all(reg["value"]["timeserieslabels"] == ["Walk"] for r in r2 for reg in r["result"])
    # a project without a model never borrows another's
    assert b.predict(99, t1).json()["results"][0] == {"result": [], "score": 0.0, "model_version": "untrained"}


def test_a_changed_label_config_is_never_given_an_old_model(backend, ls):
    b = backend()
    project, tasks = trained_project(b, ls)
    changed = CONFIG.replace('column="sensor2"', 'column="sensor3"')
    results = b.predict(project, tasks, label_config=changed).json()["results"]
    assert all(r["result"] == [] for r in results)


def test_a_broken_task_gets_an_empty_result_not_a_500(backend, ls):
    b = backend()
    project, tasks = trained_project(b, ls)
    broken = ls.add_file("broken.csv", b"time,sensor1\n0,1\n", project)  # no sensor2
    batch = [tasks[0], {"id": 999, "data": {"csv_url": broken}, "project": project}, tasks[1]]
    response = b.predict(project, batch)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    assert results[1]["result"] == []


def test_a_label_studio_without_key_gives_empty_predictions_not_a_500(backend, ls, caplog):
    b = backend()
    project, tasks = trained_project(b, ls)
    b.setup(project, ls, token="")  # Label Studio sent no usable key, none configured
    response = b.predict(project, tasks)
    assert response.status_code == 200
    assert [r["result"] for r in response.json()["results"]] == [[], []]
    assert "LABEL_STUDIO_API_KEY" in caplog.text


def test_bad_bodies_get_400_with_a_message(backend):
    b = backend()
    r = requests.post(b.url + "/predict", data="not json", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400
    assert "JSON object" in r.json()["error"]
    assert b.post("/predict", {"tasks": "x", "project": "1.2"}).status_code == 400
    r = b.post("/predict", {"tasks": [{"id": 1, "data": {}}]})
    assert r.status_code == 400
    assert "names no project" in r.json()["error"]
    assert b.post("/webhook", {"project": {"id": 1}}).status_code == 400
    assert b.post("/setup", {"project": "abc"}).status_code == 400
    assert b.get("/versions", params={"project": "../etc"}).status_code == 400
    assert b.get("/status/abc").status_code == 400


def test_listings_skip_folders_that_are_no_project(backend):
    b = backend()
    b.post("/setup", {"project": "7.1", "schema": CONFIG})
    (b.runtime.settings.model_dir / "model_project_notes").mkdir()
    assert [p["project"] for p in b.get("/status").json()["projects"]] == ["7"]
    assert b.get("/versions").json() == {"versions": []}


def test_basic_auth_guards_all_but_webhooks_of_connected_projects(backend, ls):
    b = backend(basic_auth_user="u", basic_auth_pass="p")
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 2)
    assert b.get("/health").status_code == 401
    assert b.get("/health", auth=("u", "wrong")).status_code == 401
    assert b.get("/health", auth=("u", "p")).status_code == 200
    assert b.webhook("ANNOTATION_CREATED", project).status_code == 403  # never connected
    body = {"project": f"{project}.1", "schema": CONFIG, "hostname": ls.url, "access_token": KEY}
    assert b.post("/setup", body).status_code == 401
    assert b.post("/setup", body, auth=("u", "p")).status_code == 200
    # Label Studio sends event webhooks without Basic auth: they still train
    assert b.webhook("ANNOTATION_CREATED", project).json()["scheduled"] is True
    assert store.read_status(b.runtime.settings.model_dir, project).state in (
        TrainingState.QUEUED, TrainingState.TRAINING, TrainingState.IDLE
    )
