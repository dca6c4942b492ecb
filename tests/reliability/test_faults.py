"""Faults the service must survive: broken model files, a full disk, kill -9,
a Label Studio that is down, slow or failing, and two worker processes sharing
MODEL_DIR.  Real components throughout: the Flask app over HTTP (or gunicorn),
the fake Label Studio over HTTP, real files, real processes, a real tmpfs."""

import io
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from flask import Response, request
from support import CONFIG, ROOT, TINY_ENV, Client, fill

from harness.disks import small_tmpfs
from harness.fakels import KEY, FakeLabelStudio
from harness.processes import start_backend
from harness.served import serve
from model import TimeSeriesSegmenter
from segmenter import store
from segmenter.config import Settings, TrainingSettings
from segmenter.service.app import create_app
from segmenter.service.runtime import Runtime

TINY = TrainingSettings(epochs=3, patience=1, batch_size=32, hidden_size=8)


class FaultyLabelStudio(FakeLabelStudio):
    """The fake Label Studio that can fail its exports and counts exports in flight per project."""

    export_status = None  # an HTTP status to answer exports with instead of the tasks

    def _app(self):
        app = super()._app()
        self.in_flight, self.most_in_flight = {}, {}

        @app.before_request
        def enter():
            if request.path.endswith("/export"):
                with self._lock:
                    n = self.in_flight[request.path] = self.in_flight.get(request.path, 0) + 1
                    self.most_in_flight[request.path] = max(n, self.most_in_flight.get(request.path, 0))
                if self.export_status:
                    return Response("internal error", self.export_status)

        @app.teardown_request
        def leave(exc):
            if request.path.endswith("/export"):
                with self._lock:
                    self.in_flight[request.path] -= 1

        return app

    def exports(self, project):
        return len(self.calls(path=f"/api/projects/{project}/export"))


@pytest.fixture
def ls():
    """Here the shared ``ls`` fixture is the faulty fake, with the same key."""
    with FaultyLabelStudio(legacy_token=KEY) as server:
        yield server


def add_recordings(ls, project, n=2, seed=0, rows=200):
    return ls.add_recordings(project, n, seed=seed, rows=rows)


@pytest.fixture
def service(tmp_path):
    """Start the app over HTTP on 127.0.0.1: ``service(model_dir=..., **settings)``."""
    running = []

    def start(model_dir=None, **changes):
        base = Settings(model_dir=Path(model_dir or tmp_path / "models"), cache_dir=tmp_path / "cache", training=TINY)
        runtime = Runtime.start(replace(base, **changes))
        ctx = serve(create_app(runtime, TimeSeriesSegmenter))
        running.append((runtime, ctx))
        return Client(ctx.__enter__(), runtime.settings.model_dir)

    yield start
    for runtime, ctx in running:
        runtime.scheduler.wait(30)
        ctx.__exit__(None, None, None)


def train(c, ls, project):
    c.webhook("START_TRAINING", project)
    status = c.wait_idle(project)
    assert status["state"] == "idle", status
    return status["model_version"]


def trained(c, ls):
    project = ls.add_project(CONFIG)
    tasks = add_recordings(ls, project)
    c.setup(project, ls.url)
    return project, tasks, train(c, ls, project)


def leftovers(model_dir, project):
    """Half-written files in the project's folder: temp files, and metadata twins without their model."""
    folder = store.project_dir(model_dir, project)
    names = os.listdir(folder)
    tmp = [n for n in names if n.endswith(".tmp")]
    orphans = [n for n in names if n.startswith("v") and n.endswith(".json") and n[:-5] + ".pt" not in names]
    return tmp + orphans


# --- corrupt artifacts (issue 7, finding 8) -----------------------------------------------------------


class RunsCode:
    """Unpickling this runs a shell command: what weights_only loading must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def corrupt(path, how, tmp_path):
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "random":
        path.write_bytes(os.urandom(len(good)))
    else:
        buffer = io.BytesIO()
        torch.save({"version": path.stem, "models": [RunsCode(tmp_path / "code-ran")]}, buffer)
        path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("how", ["truncated", "random", "pickle_with_code"])
def test_a_corrupt_newest_model_is_set_aside_and_the_previous_one_serves(service, ls, tmp_path, how, caplog):
    c = service()
    project, tasks, v1 = trained(c, ls)
    v2 = store.save(c.model_dir, project, store.load(c.model_dir, project, v1))
    broken = store.project_dir(c.model_dir, project) / f"{v2}.pt"
    corrupt(broken, how, tmp_path)

    for _ in range(3):  # every route agrees on the version that really serves, on every request
        assert c.serves(project, tasks) == v1
    assert not (tmp_path / "code-ran").exists()
    assert not broken.exists(), "the broken file must be set aside, not retried on every request"
    assert c.versions(project) == [v1]
    status = c.status(project)
    assert [b["version"] for b in status["broken"]] == [v2], status
    assert status["broken"][0]["error"], status
    logged = [r for r in caplog.records if v2 in r.getMessage() and r.levelname == "ERROR"]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    # the next training is numbered past the broken one and serves
    v3 = train(c, ls, project)
    assert v3.startswith("v3-")
    assert c.serves(project, tasks) == v3


# --- full disk (issue 7, finding 9) ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs; skipped where mounting is not permitted."""
    with small_tmpfs(tmp_path, "2m") as mount:
        yield mount


def test_a_full_disk_fails_the_training_clearly_and_leaves_nothing_half_written(service, ls, small_disk):
    c = service(model_dir=small_disk)
    project, tasks, v1 = trained(c, ls)
    fill(small_disk, leave_pages=2)  # room for status.json, not for a model
    c.webhook("START_TRAINING", project)
    status = c.wait_idle(project)
    assert status["state"] == "failed", status
    assert "no space left on device" in status["last_error"], status
    assert str(small_disk) in status["last_error"], status
    assert leftovers(c.model_dir, project) == []
    assert c.versions(project) == [v1]
    assert c.serves(project, tasks) == v1


def test_the_webhook_answers_when_a_full_disk_cannot_record_it(service, ls, small_disk):
    c = service(model_dir=small_disk)
    project, tasks, v1 = trained(c, ls)
    filler = fill(small_disk, leave_pages=0)  # not even the status can be written now
    for action in ("START_TRAINING", "ANNOTATION_CREATED"):
        response = c.webhook(action, project)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert "no space left on device" in error, error
        assert str(small_disk) in error, error
    assert c.get("/health").status_code == 200
    assert c.status(project)["model_version"] == v1
    assert leftovers(c.model_dir, project) == []
    filler.unlink()  # space again: the next webhook trains
    assert c.webhook("START_TRAINING", project).json()["scheduled"] is True
    v2 = c.wait_idle(project)["model_version"]
    assert v2.startswith("v2-")
    assert c.serves(project, tasks) == v2


# --- kill -9 during a training and during its save -----------------------------------------------------

TRAINER = """
import os, sys, time
from pathlib import Path
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.config import Settings, bootstrap
from segmenter.service.jobs import Scheduler

marker, stage, project = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if stage == "save":  # stop for good just before the model file is published
    publish = os.replace
    def stuck(src, dst, *args, **kwargs):
        if str(dst).endswith(".pt"):
            marker.touch()
            time.sleep(60)
        return publish(src, dst, *args, **kwargs)
    os.replace = stuck
scheduler = Scheduler(LabelStudioAccess(bootstrap(Settings.from_env())))
scheduler.request(project, "START_TRAINING")
scheduler.wait(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["training", "save"])
def test_kill_9_during_a_training_or_its_save(service, ls, tmp_path, stage):
    c = service()
    project, tasks, v1 = trained(c, ls)
    marker = tmp_path / "saving"
    exports = ls.exports(project)
    if stage == "training":
        ls.export_delay = 15  # the killed training sits in the export
    env = {**os.environ, **TINY_ENV, "PYTHONPATH": str(ROOT), "MODEL_DIR": str(c.model_dir),
           "CACHE_DIR": str(tmp_path / "cache"), "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(marker), stage, str(project)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() if stage == "save" else ls.exports(project) > exports):
            assert proc.poll() is None, "the training never got there"
            assert time.monotonic() < deadline, "the training never got there"
            time.sleep(0.02)
        assert c.status(project)["state"] == "training"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    ls.export_delay = 0

    status = c.status(project)
    assert status["state"] == "interrupted", status
    assert "process running it ended" in status["last_error"], status
    assert c.versions(project) == [v1]
    assert c.serves(project, tasks) == v1
    # the next training takes the killed one over, succeeds and cleans what it left behind
    v2 = train(c, ls, project)
    assert v2.startswith("v2-")
    assert c.serves(project, tasks) == v2
    assert leftovers(c.model_dir, project) == []


# --- Label Studio down, slow, failing --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["down", "slow", "http_500"])
def test_label_studio_faults_fail_the_training_clearly(service, ls, fault):
    c = service(label_studio_timeout=1.0)  # a small client timeout instead of the 30 s default
    project, tasks, v1 = trained(c, ls)
    expected = {"down": "cannot reach Label Studio", "slow": "timed out", "http_500": "HTTP 500"}[fault]
    if fault == "down":  # predictions still read the task files from the download cache
        ls.__exit__(None, None, None)
    elif fault == "slow":
        ls.export_delay = 5
    else:
        ls.export_status = 500

    c.webhook("START_TRAINING", project)
    slowest = 0.0
    for _ in range(10):  # /health while the training waits on Label Studio
        began = time.monotonic()
        assert c.get("/health").status_code == 200
        slowest = max(slowest, time.monotonic() - began)
        time.sleep(0.05)
    assert slowest < 0.5
    status = c.wait_idle(project, timeout=30)
    assert status["state"] == "failed", status
    assert expected in status["last_error"], status
    assert KEY not in status["last_error"]
    assert c.serves(project, tasks) == v1


# --- two workers sharing MODEL_DIR ------------------------------------------------------------------------


@pytest.fixture
def gunicorn(tmp_path, ls):
    env = {**TINY_ENV, "WORKERS": "2", "THREADS": "4", "CACHE_DIR": str(tmp_path / "cache")}
    backend = start_backend(tmp_path / "models", tmp_path / "gunicorn.log", label_studio_url=ls.url, api_key=KEY,
                            host="127.0.0.1", timeout=60, extra_env=env)
    yield Client(backend.url, tmp_path / "models")
    backend.stop()


@pytest.mark.slow
def test_two_workers_never_train_one_project_twice_at_once(gunicorn, ls):
    c = gunicorn
    projects = [ls.add_project(CONFIG), ls.add_project(CONFIG)]
    for seed, project in enumerate(projects):
        add_recordings(ls, project, seed=10 * seed)
    ls.export_delay = 0.3  # every training spends a while in the export: overlaps would show
    events = [(action, p) for _ in range(6) for p in projects for action in ("ANNOTATION_CREATED", "START_TRAINING")]
    with ThreadPoolExecutor(8) as pool:  # concurrent requests land on both workers
        answers = list(pool.map(lambda e: c.webhook(*e), events))
    unscheduled = [(a.status_code, a.text[:200]) for a in answers if a.status_code != 200 or not a.json()["scheduled"]]
    assert unscheduled == []
    for project in projects:
        status = c.wait_idle(project, timeout=60)
        assert status["state"] == "idle", status
        assert not status.get("last_error"), status
        assert status["requests"] == status["started_request"] == 12
        assert status["model_version"].startswith("v")
        assert c.versions(project)[-1] == status["model_version"]
        assert ls.most_in_flight[f"/api/projects/{project}/export"] == 1
        assert 1 <= ls.exports(project) <= 12
        assert leftovers(c.model_dir, project) == []


# --- secrets ----------------------------------------------------------------------------------------------


def test_files_holding_the_token_are_owner_only(service, ls):
    c = service()
    project, _, _ = trained(c, ls)
    holding = [p for p in c.model_dir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert [p.name for p in holding] == ["connection.json"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in holding)
