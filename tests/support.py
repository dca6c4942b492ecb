"""Helpers several test modules share: the label config, recordings in the fake Label Studio, HTTP handles on a
backend (the app served in-process, or a running backend process) and a disk filler.

Fixtures live in ``conftest.py``; this module holds plain functions and classes so that no test module imports
another one (which would load it twice, under two names).
"""

import os
from dataclasses import replace
from pathlib import Path

import requests

from harness import synthetic
from harness.fakels import KEY
from harness.waiting import wait_until_idle
from segmenter.config import Settings, TrainingSettings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = synthetic.label_config()
FAST = TrainingSettings(epochs=4, patience=2, batch_size=32)
TINY_ENV = {"TRAIN_EPOCHS": "3", "EARLY_STOPPING_PATIENCE": "1", "HIDDEN_SIZE": "8", "LOG_LEVEL": "WARNING"}


def make_settings(tmp_path: Path, **changes) -> Settings:
    base = Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache", training=FAST)
    return replace(base, **changes)


def add_recordings(ls, project, n, seed=0, rows=300, annotate=True):
    return ls.add_recordings(project, n, seed=seed, rows=rows, annotate=annotate)


class Backend:
    """The app served over HTTP with a handle on its runtime (the ``backend`` fixture makes them)."""

    def __init__(self, url, runtime):
        self.url, self.runtime = url, runtime

    def post(self, path, json=None, **kw):
        return requests.post(self.url + path, json=json, timeout=30, **kw)

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=30, **kw)

    def setup(self, project, ls, schema=CONFIG, token=KEY):
        body = {"project": f"{project}.1795697041", "schema": schema, "hostname": ls.url, "access_token": token}
        return self.post("/setup", body)

    def webhook(self, action, project, **extra):
        return self.post("/webhook", {"action": action, "project": {"id": project, "label_config": CONFIG}, **extra})

    def predict(self, project, tasks, label_config=CONFIG):
        body = {"tasks": tasks, "project": f"{project}.1795697041", "label_config": label_config}
        return self.post("/predict", body)

    def wait_idle(self, project, timeout=60):
        return wait_until_idle(self.url, project, timeout)


def trained_project(b, ls):
    """A project of two annotated recordings, connected and trained once."""
    project = ls.add_project(CONFIG)
    tasks = add_recordings(ls, project, 2)
    b.setup(project, ls)
    b.webhook("START_TRAINING", project)
    assert b.wait_idle(project)["state"] == "idle"
    return project, tasks


class Client:
    """HTTP access to one running backend, in-process or a gunicorn process (the fault tests use it)."""

    def __init__(self, url, model_dir):
        self.url, self.model_dir = url, Path(model_dir)
        self.hostnames = {}

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path, body):
        return requests.post(self.url + path, json=body, timeout=10)

    def setup(self, project, hostname):
        self.hostnames[project] = hostname
        body = {"project": f"{project}.1795697041", "schema": CONFIG, "hostname": hostname, "access_token": KEY}
        return self.post("/setup", body)

    def webhook(self, action, project):
        return self.post("/webhook", {"action": action, "project": {"id": project, "label_config": CONFIG}})

    def predict(self, project, tasks):
        body = {"tasks": tasks, "project": f"{project}.1795697041", "label_config": CONFIG}
        return self.post("/predict", body)

    def status(self, project):
        return self.get(f"/status/{project}").json()

    def versions(self, project):
        return self.get("/versions", params={"project": project}).json()["versions"]

    def wait_idle(self, project, timeout=60):
        return wait_until_idle(self.url, project, timeout)

    def serves(self, project, tasks):
        """The one version all of /setup, /predict, /versions and /status report, checked to be applied."""
        response = self.predict(project, tasks)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        [version] = {r["model_version"] for r in results}
        assert all(r["score"] > 0 for r in results), results  # the model really ran
        assert self.setup(project, self.hostnames[project]).json()["model_version"] == version
        assert self.versions(project)[-1] == version
        assert self.status(project)["model_version"] == version
        return version


def fill(mount, leave_pages):
    """Fill the file system but ``leave_pages`` 4 KiB pages."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(4096):  # at most 16 MiB, well past the 2 MiB disk
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size // 4096 - leave_pages) * 4096)
    return filler
