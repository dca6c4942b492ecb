"""Bad input from Label Studio, a user or an attacker: a clear 4xx or a clear per-task error,
never a 500, never a directory the backend did not mean to make, never a skewed model."""

import json
import logging

import numpy as np
import pytest
import requests
from support import CONFIG, trained_project

from harness import synthetic
from segmenter.reading.annotations import row_labels
from segmenter.reading.labelconfig import parse_label_config
from segmenter.reading.series import load_series

BAD_PROJECTS = ["1" * 300, "²", "١", "１", "1²", "-1", "1.5e3", "..", "../etc", "", " ", "1/2", "1\x00", "abc"]
BAD_JSON_PROJECTS = [True, 1.5, -1, [], {}, [1], {"id": "²"}, {"id": "9" * 40}]
NON_STRINGS = [7, 1.5, True, [], ["<View/>"], {"a": 1}]
NON_OBJECTS = ["ctx", 7, 1.5, True, [], ["x"]]


@pytest.fixture
def b(backend):
    return backend()


def assert_clear_400(response):
    assert response.status_code == 400, response.text
    assert isinstance(response.json().get("error"), str)
    assert response.json()["error"]


def no_project_dirs(b):
    model_dir = b.runtime.settings.model_dir
    return not model_dir.exists() or not [p for p in model_dir.iterdir() if p.name.startswith("model_project_")]


@pytest.mark.parametrize("project", BAD_PROJECTS + BAD_JSON_PROJECTS)
def test_bad_project_ids_are_a_400_on_every_route(b, project):
    bodies = {
        "/setup": {"project": project, "schema": CONFIG},
        "/predict": {"project": project, "tasks": [], "label_config": CONFIG},
        "/webhook": {"action": "START_TRAINING", "project": project},
    }
    for route, body in bodies.items():
        assert_clear_400(b.post(route, body))
    if isinstance(project, str) and project.strip(". ") and "/" not in project and "\x00" not in project:
        assert_clear_400(b.get("/versions", params={"project": project}))
        assert_clear_400(b.get(f"/status/{requests.utils.quote(project)}"))
    assert no_project_dirs(b)
    assert b.get("/status").status_code == 200
    assert b.get("/versions").status_code == 200


def test_listings_survive_directories_the_backend_did_not_make(b):
    b.post("/setup", {"project": "7.1", "schema": CONFIG})
    model_dir = b.runtime.settings.model_dir
    for name in ["model_project_²", "model_project_١", "model_project_" + "1" * 30, "model_project_007",
                 "model_project_", "model_project_x"]:
        (model_dir / name).mkdir()
    (model_dir / "model_project_8").write_text("a file, not a folder")
    status = b.get("/status")
    assert status.status_code == 200
    assert [p["project"] for p in status.json()["projects"]] == ["7"]
    assert b.get("/versions").status_code == 200


@pytest.mark.parametrize("params", NON_OBJECTS)
def test_predict_params_that_are_no_object_are_a_400(b, params):
    response = b.post("/predict", {"project": "3.1", "tasks": [], "label_config": CONFIG, "params": params})
    assert_clear_400(response)
    assert "params" in response.json()["error"]


@pytest.mark.parametrize("context", NON_OBJECTS)
def test_predict_context_that_is_no_object_is_a_400(b, context):
    body = {"project": "3.1", "tasks": [], "label_config": CONFIG, "params": {"context": context}}
    assert_clear_400(b.post("/predict", body))


@pytest.mark.parametrize("label_config", NON_STRINGS)
def test_label_configs_that_are_no_string_are_a_400(b, label_config):
    response = b.post("/predict", {"project": "3.1", "tasks": [{"id": 1, "data": {}}], "label_config": label_config})
    assert_clear_400(response)
    assert "label_config" in response.json()["error"]
    assert_clear_400(b.post("/setup", {"project": "3.1", "schema": label_config}))
    assert_clear_400(b.post("/webhook", {"action": "X", "project": {"id": 3, "label_config": label_config}}))


@pytest.mark.parametrize("field", ["hostname", "access_token"])
@pytest.mark.parametrize("value", NON_STRINGS)
def test_setup_fields_that_are_no_string_are_a_400(b, field, value):
    assert_clear_400(b.post("/setup", {"project": "3.1", "schema": CONFIG, field: value}))


@pytest.mark.parametrize(
    "raw",
    ["", "null", "[]", '"text"', "7", "{", "{\"project\": 1", "\xff\xfe", json.dumps([{"project": 1}])],
)
@pytest.mark.parametrize("route", ["/setup", "/predict", "/webhook"])
def test_bodies_that_are_no_json_object_are_a_400(b, route, raw):
    response = requests.post(b.url + route, data=raw.encode("utf-8", "surrogateescape"),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert_clear_400(response)


@pytest.mark.parametrize("tasks", ["x", 7, {"id": 1}, [1, 2], [None], [[]], ["task"]])
def test_predict_tasks_that_are_no_list_of_objects_are_a_400(b, tasks):
    assert_clear_400(b.post("/predict", {"project": "3.1", "tasks": tasks, "label_config": CONFIG}))


def test_bad_task_data_of_every_form_gets_an_empty_result_for_that_task_only(b, ls):
    project, tasks = trained_project(b, ls)
    header = "time,sensor1,sensor2\n"
    bad_data = [
        None, "text", [], {}, {"other": "x"}, {"csv_url": None}, {"csv_url": 7}, {"csv_url": ""},
        {"csv_url": header}, {"csv_url": "time,sensor1\n0,1\n1,2\n"}, {"csv_url": header + "0,a,b\n"},
        {"csv_url": {"time": [0, 1], "sensor1": [1]}}, {"csv_url": {"time": "x"}}, {"csv_url": [1, 2, 3]},
        {"csv_url": "ftp://example.org/a.csv"}, {"csv_url": "http://example.org/a.csv"},
        {"csv_url": "/etc/passwd"}, {"csv_url": "file:///etc/passwd"}, {"csv_url": "/data/upload/1/missing.csv"},
        {"csv_url": "/data/upload/../../api/projects/1"}, {"csv_url": "x" * 10000},
    ]
    batch = [tasks[0]] + [{"id": 1000 + i, "data": d, "project": project} for i, d in enumerate(bad_data)] + [tasks[1]]
    response = b.predict(project, batch)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(batch)
    assert results[0]["result"]
    assert results[-1]["result"]
    assert all(r["result"] == [] and r["score"] == 0.0 for r in results[1:-1])


def _series_and_target(rows=300):
    target = parse_label_config(CONFIG)[0]
    rec = synthetic.make_recording(rows, seed=3, n_events=2)
    return rec, load_series(rec.frame.to_csv(index=False).encode(), target, 1), target


def test_a_region_outside_the_series_is_skipped_with_a_warning_naming_the_task(caplog):
    rec, series, target = _series_and_target()
    regions = synthetic.annotation(rec)
    outside = [
        {**regions[0], "id": "far", "value": {**regions[0]["value"], "start": 5000, "end": 5100}},
        {**regions[0], "id": "before", "value": {**regions[0]["value"], "start": -90, "end": -10}},
        {**regions[0], "id": "late-instant", "value": {**regions[0]["value"], "start": 7000, "end": 7000,
                                                         "instant": True}},
    ]
    clean = row_labels(series, regions, target, task_id=42)
    with caplog.at_level(logging.WARNING):
        dirty = row_labels(series, regions + outside, target, task_id=42)
    np.testing.assert_array_equal(dirty.class_ids, clean.class_ids)
    assert dirty.range_lengths == clean.range_lengths
    assert dirty.instant_classes == clean.instant_classes
    assert caplog.text.count("task 42: region") == 3
    assert "outside the series" in caplog.text


def test_a_region_running_past_the_series_is_clipped_and_does_not_set_the_clean_up(caplog):
    rec, series, target = _series_and_target()
    regions = synthetic.annotation(rec)
    past = {**regions[0], "id": "tail", "value": {**regions[0]["value"], "start": 295, "end": 5000}}
    with caplog.at_level(logging.WARNING):
        rows = row_labels(series, regions + [past], target, task_id=43)
    assert (rows.class_ids[295:] == 1).all()
    assert rows.range_lengths == row_labels(series, regions, target).range_lengths
    assert "task 43: region tail" in caplog.text
    assert "clipped" in caplog.text
