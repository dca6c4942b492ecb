"""The same walkthrough for a datetime time column and for no time column (row indices).

Annotations are written as the UI writes them (UTC strings in ``timeFormat``, row
indices); predictions must come back in that same form.
"""

from __future__ import annotations

import pytest

from harness.lsdriver import ProjectRun
from integration.support import MAX_REQUEST_S, MIN_RECALL, check_predictions, module_marks, report_recall

pytestmark = module_marks()


@pytest.mark.parametrize("axis", ["datetime", "index"])
def test_time_axis_project(axis: str, label_studio, backend):
    run = ProjectRun.create(label_studio.api, backend, label_studio.tmp / f"csv-{axis}", axis=axis, count=4,
                            title=f"Sensors ({axis})", seed=200)
    seconds = run.annotate(range(2))
    assert max(seconds) < MAX_REQUEST_S, f"annotation requests took {seconds} s"
    stored = label_studio.api.call("GET", f"/api/annotations/{run.annotations[run.tasks[0]]}/").json()
    start = stored["result"][0]["value"]["start"]
    assert isinstance(start, str if axis == "datetime" else int), stored["result"][0]

    status = run.wait_training()
    assert status["model_version"] != "untrained", status
    latest = check_predictions(run, run.retrieve(), status["model_version"])
    assert report_recall(run, latest) >= MIN_RECALL
