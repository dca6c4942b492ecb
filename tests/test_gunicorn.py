"""The real deployment shape: gunicorn with several worker processes."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from served import free_port

from segmenter import store, synthetic
from segmenter.config import TrainingSettings
from segmenter.training import train_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def gunicorn(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WORKERS": "2",
        "THREADS": "2",
        "MODEL_DIR": str(tmp_path / "models"),
        "LOG_LEVEL": "WARNING",
    }
    log = open(tmp_path / "gunicorn.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "_wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/health", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
        time.sleep(0.2)
    yield url, tmp_path / "models"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


class Files:
    def __init__(self, files):
        self.files = files

    def fetch(self, ref, task_id=None):
        return self.files[ref]


def test_every_worker_serves_the_newest_version(gunicorn, tmp_path):
    url, model_dir = gunicorn
    config = synthetic.label_config()
    rec = synthetic.make_recording(300, seed=1, n_events=2)
    csv = tmp_path / "rec.csv"
    csv.write_text(rec.frame.to_csv(index=False))
    tasks = [{"id": 1, "data": {"csv_url": "rec.csv"},
              "annotations": [{"result": synthetic.regions(rec.events, rec.frame["time"].to_numpy())}]}]
    fetcher = Files({"rec.csv": csv.read_bytes()})
    models = train_project(config, tasks, fetcher, TrainingSettings(epochs=2, patience=1))

    body = {"tasks": [{"id": 1, "data": {"csv_url": "inline"}}], "project": "5.1795697041", "label_config": config}
    seen = {requests.post(url + "/predict", json=body, timeout=10).json()["results"][0]["model_version"]
            for _ in range(8)}
    assert seen == {"untrained"}
    for _ in range(2):
        expected = store.save(model_dir, 5, models)
        for _ in range(8):  # requests land on both workers; each must notice the new file
            assert requests.post(url + "/setup", json={"project": "5.1", "schema": config}, timeout=10).json() == {
                "model_version": expected
            }
            result = requests.post(url + "/predict", json=body, timeout=10).json()["results"][0]
            assert result["model_version"] == expected
