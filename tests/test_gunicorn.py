"""The real deployment shape: gunicorn with several worker processes."""

import pytest
import requests

from harness import synthetic
from harness.processes import start_backend
from segmenter import store
from segmenter.config import TrainingSettings
from segmenter.learning.training import train_project

pytestmark = pytest.mark.slow  # gunicorn processes


@pytest.fixture
def gunicorn(tmp_path):
    backend = start_backend(tmp_path / "models", tmp_path / "gunicorn.log", timeout=60,
                            extra_env={"WORKERS": "2", "THREADS": "2", "LOG_LEVEL": "WARNING"})
    yield backend.url, tmp_path / "models"
    backend.stop()


def test_every_worker_serves_the_newest_version(gunicorn):
    url, model_dir = gunicorn
    config = synthetic.label_config()
    tasks, fetcher = synthetic.annotated_tasks(1, 300, seed=1, n_events=2)
    models = train_project(config, tasks, fetcher, TrainingSettings(epochs=2, patience=1))

    body = {"tasks": [{"id": 1, "data": {"csv_url": "inline"}}], "project": "5.1795697041", "label_config": config}
    seen = {requests.post(url + "/predict", json=body, timeout=10).json()["results"][0]["model_version"]
            for _ in range(8)}
    assert seen == {"untrained"}
    for _ in range(2):
        expected = store.save(model_dir, 5, models)
        for _ in range(8):  # requests land on both workers; each must notice the new file
            setup = {"project": "5.1795697041", "schema": config}  # the project /predict names
            assert requests.post(url + "/setup", json=setup, timeout=10).json() == {"model_version": expected}
            result = requests.post(url + "/predict", json=body, timeout=10).json()["results"][0]
            assert result["model_version"] == expected
