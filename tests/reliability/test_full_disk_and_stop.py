"""A full disk and a stop never kill a process (issue 16, item 1).

A full file system under MODEL_DIR (and so under the Prometheus files in
``$MODEL_DIR/.metrics``, which each process maps into memory) leaves every
worker alive: requests get their JSON 503, metrics catch up once there is space.
A SIGTERM during a training ends it cleanly, records it as interrupted and the
next start runs it again.  Real gunicorn backends, a real tmpfs, real signals.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from support import CONFIG, ROOT, TINY_ENV, Client, fill

from harness.disks import small_tmpfs
from harness.fakels import KEY
from harness.processes import start_backend
from harness.waiting import wait_for
from segmenter import store

ABORTS = ("terminate called", "SIGABRT", "SIGBUS", "SIGSEGV", "was sent SIGKILL")
pytestmark = pytest.mark.slow  # gunicorn processes, a tmpfs, signals during trainings


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs; skipped where mounting is not permitted."""
    with small_tmpfs(tmp_path, "4m") as mount:
        yield mount


def children(pid):
    """The pids of the processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def backend(model_dir, log, ls, **env):
    started = start_backend(model_dir, log, label_studio_url=ls.url, api_key=KEY, host="127.0.0.1", timeout=60,
                            extra_env={**TINY_ENV, "LOG_LEVEL": "INFO", "WORKERS": "1", "THREADS": "4",
                                       "CACHE_DIR": str(Path(log).parent / "cache"), **env})
    return started, Client(started.url, model_dir)


def test_a_full_disk_answers_503_keeps_the_worker_and_recovers(small_disk, tmp_path, ls):
    service, c = backend(small_disk, tmp_path / "gunicorn.log", ls)
    try:
        project = ls.add_project(CONFIG)
        ls.add_recordings(project, 2, seed=0, rows=200)
        assert c.setup(project, ls.url).status_code == 200
        [worker] = children(service.process.pid)

        filler = fill(small_disk, leave_pages=0)
        for action in ("START_TRAINING", "ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            response = c.webhook(action, project)  # a dropped connection raises here
            assert response.status_code == 503, response.text
            assert "no space left on device" in response.json()["error"]
        # every route once more while full: each answer is a new series in the metric files
        for path in ("/health", "/metrics", f"/status/{project}", "/versions", "/nothing-here", "/dashboard"):
            c.get(path)
        assert c.get("/health").status_code == 200
        assert c.get("/metrics").status_code == 200
        service.check_alive()
        assert children(service.process.pid) == {worker}, service.tail()

        filler.unlink()  # space again: the next webhook trains, and the skipped counts show up
        assert c.webhook("START_TRAINING", project).json()["scheduled"] is True
        status = c.wait_idle(project)
        assert status["state"] == "idle", status
        assert status["model_version"].startswith("v1-"), status
        scraped = c.get("/metrics").text
        assert 'segmenter_http_requests_total{method="POST",route="/webhook",status="503"} 3.0' in scraped, scraped
        assert children(service.process.pid) == {worker}
    finally:
        service.stop()
    log = service.log_path.read_text(errors="replace")
    assert not [word for word in ABORTS if word in log], log[-4000:]


METRIC_WRITER = """
import sys
from pathlib import Path
from segmenter.service import metrics

metrics.use_directory(Path(sys.argv[1]), clean=False)
for i in range(int(sys.argv[2])):  # a new series each time: the files must grow
    metrics.observe_request(f"/route-{i}", "GET", 200, 0.01)
print("done", flush=True)
input()  # space is freed meanwhile
metrics.observe_request("/after", "GET", 200, 0.01)
text = metrics.exposition(Path(sys.argv[1]), Path(sys.argv[1]))[0].decode()
print(sum(1 for line in text.splitlines() if line.startswith("segmenter_http_requests_total{")), flush=True)
"""


def test_metric_files_that_cannot_grow_skip_updates_and_catch_up(small_disk):
    """The files grow far past their first size while the disk is full: no SIGBUS, nothing lost after."""
    directory = small_disk / "metrics"
    directory.mkdir()
    filler = fill(small_disk, leave_pages=0)
    proc = subprocess.Popen([sys.executable, "-c", METRIC_WRITER, str(directory), "600"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line == "done\n", (proc.wait(10), proc.stderr.read()[-3000:])
        filler.unlink()
        out, err = proc.communicate("\n", timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert out.split() == ["601"], (out, err[-3000:])
    assert "no space left on device" in err.lower()


# --- SIGTERM during a training -----------------------------------------------------------------------------

LONG = {"TRAIN_EPOCHS": "400", "EARLY_STOPPING_PATIENCE": "400"}


def test_a_stop_during_a_training_interrupts_it_cleanly_and_the_restart_trains_again(tmp_path, ls):
    model_dir = tmp_path / "models"
    log = tmp_path / "gunicorn.log"
    service, c = backend(model_dir, log, ls, **LONG)
    try:
        project = ls.add_project(CONFIG)
        ls.add_recordings(project, 3, seed=0, rows=600)
        assert c.setup(project, ls.url).status_code == 200
        assert c.webhook("START_TRAINING", project).json()["scheduled"] is True
        wait_for(lambda: (c.status(project).get("progress") or {}).get("epoch", 0) >= 2, 60, "epochs in progress")
    finally:
        began = time.monotonic()
        service.stop()
    stopped_in = time.monotonic() - began
    text = log.read_text(errors="replace")
    assert not [word for word in ABORTS if word in text], text[-4000:]
    assert service.process.returncode == 0, text[-4000:]
    assert stopped_in < 25, stopped_in
    status = store.stored_status(model_dir, project)
    assert status.state.value == "interrupted", status
    assert status.pending, status
    assert store.latest_version(model_dir, project) == store.INITIAL_VERSION
    exports = len(ls.calls(path=f"/api/projects/{project}/export"))

    service, c = backend(model_dir, log, ls)  # short trainings now: the interrupted one runs again by itself
    try:
        status = c.wait_idle(project, timeout=60)
        assert status["state"] == "idle", status
        assert status["model_version"].startswith("v1-"), status
        assert len(ls.calls(path=f"/api/projects/{project}/export")) == exports + 1
        assert requests.get(c.url + "/health", timeout=5).status_code == 200
    finally:
        service.stop()
