"""After a training, the project's tasks carry the new version's predictions without anyone opening them.

The backend writes them back itself (``PREDICT_AFTER_TRAINING=unlabelled``, the default): the
Data Manager lists them with their scores (the project's model version now names the new
version, so the "Prediction score" column shows them), and opening a task the way the labeling UI does
(``GET /api/tasks/{id}?project=``, which calls /predict for a task without predictions) shows
them without a call to /predict.
"""

from __future__ import annotations

import re

import pytest
import requests

from harness.lsdriver import ProjectRun
from integration.support import check_regions, module_marks

pytestmark = module_marks()


def predicted_tasks(backend_url: str) -> float:
    """How many tasks the backend's /predict has answered for (all processes)."""
    text = requests.get(f"{backend_url}/metrics", timeout=10).text
    found = re.search(r"^segmenter_predicted_tasks_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def writeback_run(label_studio, backend) -> ProjectRun:
    return ProjectRun.create(label_studio.api, backend, label_studio.tmp / "csv-writeback", axis="numeric", count=5,
                             title="Write-back", seed=300)


def test_a_training_writes_scored_predictions_for_the_unlabelled_tasks(writeback_run: ProjectRun, label_studio):
    run, api = writeback_run, label_studio.api
    before = predicted_tasks(run.backend.url)
    run.annotate(range(2))
    status = run.wait_training()  # waits for the write-back too
    version = status["model_version"]
    wb = status["writeback"]
    print("write-back status:", wb)
    assert wb["state"] == "done", wb
    assert wb["version"] == version, wb
    assert (wb["seen"], wb["written"]) == (5, 3), wb

    listed = api.call("GET", f"/api/tasks/?project={run.project}&review=true&fields=all&page_size=100").json()
    tasks = {t["id"]: t for t in listed["tasks"]}
    for task_id in run.unannotated():
        ours = [p for p in tasks[task_id]["predictions"] if p["model_version"] == version]
        assert len(ours) == 1, tasks[task_id]["predictions"]
        assert isinstance(ours[0]["score"], float), ours[0]
        assert 0 <= ours[0]["score"] <= 1, ours[0]
        check_regions(ours[0], run, task_id)
    for task_id in run.annotations:
        assert not tasks[task_id]["predictions"], "annotated tasks are left to Retrieve Predictions"
    # The Data Manager's "Prediction score" column: the project now points at the new version.
    assert api.call("GET", f"/api/projects/{run.project}").json()["model_version"] == version
    shown = api.call("GET", f"/api/tasks/?project={run.project}&fields=all&page_size=100").json()["tasks"]
    scores = {t["id"]: t.get("predictions_score") for t in shown}
    print("Data Manager prediction scores:", scores)
    for task_id in run.unannotated():
        ours = [p for p in tasks[task_id]["predictions"] if p["model_version"] == version]
        assert scores[task_id] == pytest.approx(ours[0]["score"]), scores
    assert predicted_tasks(run.backend.url) == before, "the write-back made Label Studio call /predict"

    # The labeling UI opens a task with GET /api/tasks/{id}?project=: Label Studio calls /predict
    # only for a task without predictions, so ours are shown as they are.
    task_id = run.unannotated()[0]
    opened = api.call("GET", f"/api/tasks/{task_id}?project={run.project}").json()
    assert [p["model_version"] for p in opened["predictions"]] == [version], opened["predictions"]
    assert predicted_tasks(run.backend.url) == before, "opening the task called /predict"
