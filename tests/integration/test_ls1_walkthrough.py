"""What a user does with a numeric-time project, only through Label Studio's REST API.

Create the project, upload CSVs as one task each, connect the backend (Model page);
annotate (training starts from the webhook, the annotation request is not slowed);
Retrieve Predictions; Start Training; update and delete an annotation.
"""

from __future__ import annotations

import pytest

from harness.lsdriver import ProjectRun
from harness.waiting import wait_for
from integration.support import ANNOTATED, MAX_REQUEST_S, MIN_RECALL, check_predictions, module_marks, report_recall

pytestmark = module_marks()


@pytest.mark.incremental
class TestWalkthrough:
    state: dict = {}

    def test_1_project_created_and_connected(self, numeric_run: ProjectRun, label_studio):
        run, api = numeric_run, label_studio.api
        tasks = api.tasks(run.project)
        assert len(tasks) == len(run.recordings) == 6
        for task in tasks:
            assert list(task["data"]) == ["csv_url"], task
            assert task["data"]["csv_url"].startswith("/data/upload/"), task
        backends = api.ml_backends(run.project)
        assert [b["url"] for b in backends] == [run.backend.url]
        webhooks = [h["url"] for h in api.webhooks(run.project)]
        assert f"{run.backend.url}/webhook" in webhooks, f"connecting made no webhook: {webhooks}"
        status = run.status()
        assert status["state"] == "idle", status
        assert status.get("requests", 0) == 0, status

    def test_2_annotations_train_in_background(self, numeric_run: ProjectRun):
        run = numeric_run
        seconds = run.annotate(range(ANNOTATED))
        print("annotation request seconds:", [round(s, 3) for s in seconds])
        assert max(seconds) < MAX_REQUEST_S, f"annotation requests took {seconds} s"
        assert run.status().get("requests", 0) >= 1, "no training was requested by the annotation webhooks"
        status = run.wait_training()
        assert status["model_version"] != "untrained", status
        assert status["models"], status
        assert status["models"][0]["data"]["tasks"] == ANNOTATED, status
        self.state["v1"] = status["model_version"]
        self.state["requests"] = status["requests"]

    def test_3_retrieve_predictions(self, numeric_run: ProjectRun):
        run = numeric_run
        predictions = run.retrieve()
        latest = check_predictions(run, predictions, self.state["v1"])
        assert any(p["result"] for p in latest.values()), "the trained model predicted no region at all"
        assert report_recall(run, latest) >= MIN_RECALL
        self.state["counts"] = {t: len(p) for t, p in predictions.items()}

    def test_4_start_training_makes_a_new_version(self, numeric_run: ProjectRun, label_studio):
        run = numeric_run
        response, seconds = label_studio.api.timed("POST", f"/api/ml/{run.ml_backend}/train", json={})
        print(f"Start Training answered {response.status_code} in {seconds:.2f} s")
        status = run.wait_training()
        assert status["requests"] > self.state["requests"], status
        assert status["model_version"] != self.state["v1"], status
        predictions = run.retrieve()
        check_predictions(run, predictions, status["model_version"])
        for task, count in self.state["counts"].items():
            assert len(predictions[task]) == count + 1, f"task {task}: {predictions[task]}"
        self.state.update(v2=status["model_version"], requests=status["requests"])

    def test_5_update_and_delete_retrain(self, numeric_run: ProjectRun, label_studio):
        run, api = numeric_run, label_studio.api
        first, second = run.tasks[0], run.tasks[1]
        result = api.call("GET", f"/api/annotations/{run.annotations[first]}/").json()["result"]
        seconds = api.update_annotation(run.annotations[first], result[:-1])
        assert seconds < MAX_REQUEST_S, f"PATCH took {seconds:.2f} s"
        status = run.wait_training()
        assert status["requests"] > self.state["requests"], status
        assert status["model_version"] != self.state["v2"], status
        updated = status

        seconds = api.delete_annotation(run.annotations.pop(second))
        assert seconds < MAX_REQUEST_S, f"DELETE took {seconds:.2f} s"
        wait_for(lambda: run.status()["requests"] > updated["requests"], 10, "a training request after DELETE")
        status = run.wait_training()
        assert status["model_version"] != updated["model_version"], status
        assert status["models"][0]["data"]["tasks"] == ANNOTATED - 1, status
