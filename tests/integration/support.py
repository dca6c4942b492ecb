"""Shared by the Label Studio suite: whether it runs here, its settings, and the checks of predictions.

Locally the suite is skipped with ``SKIP_LABEL_STUDIO=1`` or when ``.labelstudio/venv`` does
not exist (run ``scripts/setup-labelstudio``).  In CI (``CI`` set) nothing is skipped
silently: a missing Label Studio, selenium or Chromium is an error.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from harness import synthetic
from harness.lsdriver import ProjectRun
from harness.processes import LS_BIN, Service

# Small trainings: the suite trains about ten times.
BACKEND_ENV = {"WORKERS": "2", "THREADS": "8", "TRAIN_EPOCHS": "30", "EARLY_STOPPING_PATIENCE": "5",
               "LOG_LEVEL": "INFO"}
# Every process the suite started; a failing test shows their log tails.
SERVICES: list[Service] = []
ANNOTATED = 3  # tasks annotated in the walkthrough project
MAX_REQUEST_S = 1.0  # Label Studio gives event webhooks 1 s; the annotator must never wait for training
MIN_RECALL = 0.6  # planted events found (IoU >= 0.3) in tasks held out from a brief training
CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver") or "/usr/bin/chromedriver"


def in_ci() -> bool:
    """True on a CI runner."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def skip_reason() -> str:
    """Why the suite is skipped here ("" when it runs)."""
    if os.environ.get("SKIP_LABEL_STUDIO") == "1":
        return "SKIP_LABEL_STUDIO=1"
    if not LS_BIN.exists() and not in_ci():
        return f"{LS_BIN} missing: run scripts/setup-labelstudio"
    return ""


def module_marks() -> list[pytest.MarkDecorator]:
    """``pytestmark`` for every module of the suite."""
    reason = skip_reason()
    return [pytest.mark.labelstudio, pytest.mark.skipif(bool(reason), reason=reason or "runs")]


def require_browser() -> None:
    """Skip (locally) or fail (in CI) when selenium, Chromium or chromedriver is missing."""
    missing = []
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package (requirements-dev.txt)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            missing.append(path)
    if missing:
        message = "browser check needs " + ", ".join(missing)
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def check_regions(prediction: dict, run: ProjectRun, task: int) -> None:
    """Regions are well-formed, in the form the UI writes, and lie on the task's time axis."""
    rec = run.recording(task)
    for region in prediction["result"]:
        assert region["from_name"] == "label", region
        assert region["to_name"] == "ts", region
        assert region["type"] == "timeserieslabels", region
        value = region["value"]
        assert set(value) >= {"start", "end", "instant", "timeserieslabels"}, region
        assert value["timeserieslabels"][0] in synthetic.LABELS + (synthetic.INSTANT_LABEL,), region
        if run.axis == "index":
            assert isinstance(value["start"], int), region
            assert isinstance(value["end"], int), region
        elif run.axis == "datetime":
            assert isinstance(value["start"], str), region
            assert isinstance(value["end"], str), region
        else:
            assert not isinstance(value["start"], (str, bool)), region
        assert rec.row_of(value["start"]) <= rec.row_of(value["end"]), region


def check_predictions(run: ProjectRun, predictions: dict[int, list[dict]], version: str) -> dict[int, dict]:
    """Every task holds a prediction of ``version``; those predictions, checked for form."""
    latest = {}
    for task in run.tasks:
        versions = [p["model_version"] for p in predictions[task]]
        assert version in versions, f"task {task}: no prediction of {version}; stored versions {versions}"
        latest[task] = [p for p in predictions[task] if p["model_version"] == version][-1]
        check_regions(latest[task], run, task)
    return latest


def report_recall(run: ProjectRun, latest: dict[int, dict]) -> float:
    """Recall on the tasks held out from training (printed with the annotated ones')."""
    held_out = run.recall(latest, run.unannotated())
    seen = run.recall(latest, list(run.annotations))
    print(f"project {run.project} ({run.axis}): event recall held-out {held_out:.2f}, annotated {seen:.2f}")
    return held_out


def ensure_predicted(run: ProjectRun) -> str:
    """Annotate, train and retrieve if that has not happened yet; the model version predicted."""
    if not run.annotations:
        run.annotate(range(ANNOTATED))
    status = run.wait_training()
    run.retrieve()
    return status["model_version"]
