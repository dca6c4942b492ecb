"""Per-project settings through the service over HTTP: /status, predict-time clean-up, retraining on a change."""

import logging

from support import CONFIG, trained_project

from segmenter import store

WITH_SETTINGS = CONFIG.replace(
    '<TimeSeriesLabels name="label" toName="ts">',
    '<TimeSeriesLabels name="label" toName="ts" model_max_epochs="3" model_score_threshold="2" model_merge_gap="4">',
).replace('<Label value="Run"/>', '<Label value="Run" model_min_duration="12 rows"/>')


def test_status_shows_the_settings_in_force_and_every_problem(backend, ls, caplog):
    b = backend()
    project = ls.add_project(WITH_SETTINGS)
    with caplog.at_level(logging.WARNING):
        b.setup(project, ls, schema=WITH_SETTINGS)
    status = b.get(f"/status/{project}").json()
    settings = status["settings"]["label"]
    assert settings["model_max_epochs"] == 3
    assert settings["model_context"] == "auto"
    assert settings["model_score_threshold"] == 0.0
    assert settings["model_merge_gap"] == "4"
    assert settings["labels"]["Run"] == {"model_min_duration": "12 rows", "model_merge_gap": "4"}
    [problem] = status["settings_problems"]
    assert "model_score_threshold='2'" in problem
    assert "between 0 and 1" in problem
    assert any("model_score_threshold='2'" in r.getMessage() for r in caplog.records)
    listed = [p for p in b.get("/status").json()["projects"] if p["project"] == str(project)]
    assert listed[0]["settings_problems"] == [problem]


def test_a_score_threshold_applies_to_the_served_model_without_retraining(backend, ls):
    b = backend()
    project, tasks = trained_project(b, ls)
    before = b.get(f"/status/{project}").json()
    plain = b.predict(project, tasks).json()["results"]
    assert any(r["result"] for r in plain)
    strict = CONFIG.replace('toName="ts">', 'toName="ts" model_score_threshold="1">')
    results = b.predict(project, tasks, label_config=strict).json()["results"]
    assert all(r["result"] == [] and r["model_version"] == before["model_version"] for r in results)
    after = b.get(f"/status/{project}").json()
    assert after["requests"] == before["requests"]
    assert after["settings"]["label"]["model_score_threshold"] == 1.0


def test_a_training_time_change_trains_at_once_and_only_once(backend, ls):
    b = backend(start_training_each_n_updates=5)
    project, tasks = trained_project(b, ls)
    old = b.get(f"/status/{project}").json()
    assert old["models"][0]["trained_with"] == {"context": "auto", "max_epochs": None}
    changed = CONFIG.replace('toName="ts">', 'toName="ts" model_max_epochs="2" model_context="20 rows">')
    ls.projects[project]["label_config"] = changed  # Label Studio's config, which the training reads
    ls.export_delay = 1.0  # the training is still on its way while the next predictions come
    first = b.predict(project, tasks, label_config=changed).json()["results"]
    assert all(r["result"] == [] for r in first)  # the old model is not applied to the changed config
    b.predict(project, tasks, label_config=changed)
    b.predict(project, tasks, label_config=changed)
    status = b.wait_idle(project)
    assert status["requests"] == old["requests"] + 1, status  # one request, not one per /predict
    assert status["last_request"]["reason"].startswith("label config changed")
    model = status["models"][0]
    assert model["trained_with"] == {"context": "20 rows", "max_epochs": 2}
    assert model["epochs"] <= 2
    assert model["context"]["sequence_size"] == 20
    assert model["context"]["chosen_by"] == "model_context"
    results = b.predict(project, tasks, label_config=changed).json()["results"]
    assert all(r["model_version"] == status["model_version"] for r in results)
    assert any(r["result"] for r in results)
    assert b.get(f"/status/{project}").json()["requests"] == status["requests"]  # the new model fits: no request
    saved = store.load_connection(b.runtime.settings.model_dir, project)["label_config"]
    assert saved == changed  # /status reads the config /predict came with


def test_an_annotation_event_under_a_changed_config_trains_without_waiting_for_more(backend, ls):
    b = backend(start_training_each_n_updates=5)
    project, _ = trained_project(b, ls)
    event = {"action": "ANNOTATION_CREATED", "project": {"id": project, "label_config": CONFIG}}
    assert b.post("/webhook", event).json()["scheduled"] is False  # counted: 1 of 5
    changed = CONFIG.replace('toName="ts">', 'toName="ts" model_max_epochs="2">')
    ls.projects[project]["label_config"] = changed
    event["project"]["label_config"] = changed
    assert b.post("/webhook", event).json()["scheduled"] is True
    status = b.wait_idle(project)
    assert status["models"][0]["trained_with"]["max_epochs"] == 2


def test_saving_a_changed_config_in_label_studio_trains_once(backend, ls):
    b = backend()
    project, _ = trained_project(b, ls)
    event = {"action": "PROJECT_UPDATED", "project": {"id": project, "label_config": CONFIG}}
    assert b.post("/webhook", event).json()["scheduled"] is False  # nothing changed
    changed = CONFIG.replace('toName="ts">', 'toName="ts" model_context="30 rows">')
    ls.projects[project]["label_config"] = changed
    ls.export_delay = 1.0
    event["project"]["label_config"] = changed
    assert b.post("/webhook", event).json()["scheduled"] is True
    assert b.post("/webhook", event).json()["scheduled"] is False  # already on its way
    status = b.wait_idle(project)
    assert status["models"][0]["trained_with"]["context"] == "30 rows"
    assert b.post("/webhook", event).json()["scheduled"] is False  # the new model fits
