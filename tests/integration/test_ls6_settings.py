"""Per-project ``model_*`` settings through a real Label Studio.

Label Studio 1.23.2 accepts the attributes on ``<TimeSeriesLabels>`` and on ``<Label>``;
the backend trains with the project's window and epoch cap (shown by ``/status``) and
applies its score threshold: at 1.0 no region is proposed, and back at 0 (changed in
Label Studio) the same model proposes regions again without a training.
"""

from __future__ import annotations

from harness import synthetic
from harness.lsdriver import of_version, wait_for_training
from harness.waiting import backend_status
from integration.support import module_marks

pytestmark = module_marks()

SETTINGS = 'model_context="40 rows" model_max_epochs="3" model_score_threshold="1" model_merge_gap="0.5"'


def test_a_project_with_model_settings_trains_and_predicts_with_them(label_studio, backend):
    api = label_studio.api
    recordings = synthetic.write_recordings(label_studio.tmp / "csv-settings", 3, "numeric", n_rows=600, seed=400)
    config = synthetic.project_config("numeric").replace(
        '<TimeSeriesLabels name="label" toName="ts">', f'<TimeSeriesLabels name="label" toName="ts" {SETTINGS}>'
    ).replace('<Label value="Run"/>', '<Label value="Run" model_min_duration="12 rows"/>')
    project = api.create_project("Sensors (model settings)", config)["id"]  # Label Studio accepts the config
    tasks = api.import_csv_tasks(project, [r.path for r in recordings])
    api.connect_backend(project, backend.url, title="Time-series segmenter")
    for task, rec in zip(tasks[:2], recordings[:2]):
        api.annotate(task, rec.annotation())
    status = wait_for_training(backend, project, backend_status(backend.url, project).get("requests", 0))
    assert status["state"] == "idle", status
    assert status["model_version"] != "untrained", status

    assert status["settings_problems"] == [], status["settings_problems"]
    settings = status["settings"]["label"]
    assert settings["model_context"] == "40 rows"
    assert settings["model_max_epochs"] == 3
    assert settings["labels"]["Run"]["model_min_duration"] == "12 rows"
    [model] = status["models"]
    assert model["context"]["sequence_size"] == 40
    assert model["context"]["chosen_by"] == "model_context"
    assert model["epochs"] <= 3
    assert model["trained_with"] == {"context": "40 rows", "max_epochs": 3}

    api.retrieve_predictions(project)
    latest = of_version({t: api.predictions(t) for t in tasks}, status["model_version"])
    assert set(latest) == set(tasks)
    assert all(p["result"] == [] for p in latest.values()), latest  # threshold 1: no region proposed

    # A predict-time setting changed in Label Studio applies to the same model, with no training.
    api.call("PATCH", f"/api/projects/{project}", json={"label_config": config.replace(
        'model_score_threshold="1"', 'model_score_threshold="0"')})
    for prediction in latest.values():  # Label Studio asks again only for tasks without a prediction
        api.call("DELETE", f"/api/predictions/{prediction['id']}/", expect=(204,))
    api.retrieve_predictions(project)
    after = backend_status(backend.url, project)
    assert after["requests"] == status["requests"]
    assert after["settings"]["label"]["model_score_threshold"] == 0
    latest = of_version({t: api.predictions(t) for t in tasks}, status["model_version"])
    assert any(p["result"] for p in latest.values()), latest

