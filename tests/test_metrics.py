"""/metrics across two gunicorn workers, read with the Prometheus client's own parser."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support import CONFIG, TINY_ENV

from harness.fakels import KEY
from harness.processes import start_backend
from harness.waiting import wait_until_idle

AUTH = ("metrics-user", "metrics-pass-123")


COUNT = """
import os, sys, time
from prometheus_client import Counter
Counter(sys.argv[1], "a count left by another process").inc(int(sys.argv[2]))
print("counted", flush=True)
time.sleep(float(sys.argv[3]))
"""


def counting_process(folder: Path, name: str, amount: int, lives: float) -> subprocess.Popen:
    """A process that counts ``amount`` into ``folder`` (multiprocess mode), then lives ``lives`` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    proc = subprocess.Popen([sys.executable, "-c", COUNT, name, str(amount), str(lives)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "counted"
    return proc


@pytest.fixture
def deployment(tmp_path, ls):
    from segmenter.service import metrics

    metrics_dir = tmp_path / "metrics"
    own = metrics_dir / metrics.host_folder()
    # An ended process of another host (its pid means nothing here), an ended one of this host,
    # and a live one of this host (an RQ worker beside the backend), all left from before the start.
    counting_process(metrics_dir / "otherhost~1", "segmenter_test_other_host", 5, 0).wait(30)
    counting_process(own, "segmenter_test_ended", 7, 0).wait(30)
    live = counting_process(own, "segmenter_test_live", 11, 600)
    env = {**TINY_ENV, "WORKERS": "2", "THREADS": "2", "CACHE_DIR": str(tmp_path / "cache"),
           "METRICS_DIR": str(metrics_dir), "BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1]}
    try:
        backend = start_backend(tmp_path / "models", tmp_path / "gunicorn.log", label_studio_url=ls.url,
                                api_key=KEY, host="127.0.0.1", timeout=60, extra_env=env)
        try:
            yield backend.url, ls, metrics_dir
        finally:
            backend.stop()
    finally:
        live.kill()
        live.wait(30)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics by (name, sorted labels), parsed by prometheus_client's parser."""
    response = requests.get(url + "/metrics", auth=AUTH, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.slow
def test_metrics_count_requests_trainings_and_predictions_of_both_workers(deployment):
    url, ls, metrics_dir = deployment
    assert requests.get(url + "/metrics", timeout=10).status_code == 401  # behind Basic auth
    before = scrape(url)
    # At start only the files of this host's ended processes went; the rest is still counted.
    assert value(before, "segmenter_test_other_host_total") == 5
    assert value(before, "segmenter_test_live_total") == 11
    assert ("segmenter_test_ended_total", ()) not in before

    health = 30
    for _ in range(health):  # a new connection each: both workers answer some
        assert requests.get(url + "/health", auth=AUTH, timeout=10).status_code == 200
    assert requests.get(url + "/status/abc", auth=AUTH, timeout=10).status_code == 400

    good = ls.add_project(CONFIG)
    tasks = ls.add_recordings(good, 2, rows=200)
    bad = ls.add_project(CONFIG)  # no annotated task: its training fails
    for project in (good, bad):
        body = {"action": "START_TRAINING", "project": {"id": project, "label_config": CONFIG}}
        assert requests.post(url + "/webhook", json=body, auth=AUTH, timeout=10).json()["scheduled"]
    assert wait_until_idle(url, good, 120, auth=AUTH)["state"] == "idle"
    assert wait_until_idle(url, bad, 120, auth=AUTH)["state"] == "failed"
    body = {"tasks": tasks, "project": f"{good}.1795697041", "label_config": CONFIG}
    served = requests.post(url + "/predict", json=body, auth=AUTH, timeout=60).json()["results"][0]["model_version"]

    after = scrape(url)
    count = "segmenter_http_requests_total"
    assert value(after, count, route="/health", method="GET", status="200") - value(
        before, count, route="/health", method="GET", status="200") == health
    assert value(after, count, route="/status/<project>", method="GET", status="400") == 1
    assert value(after, "segmenter_http_request_duration_seconds_count", route="/health", method="GET",
                 status="200") == value(after, count, route="/health", method="GET", status="200")
    assert value(after, count, route="/webhook", method="POST", status="200") == 2
    assert value(after, "segmenter_trainings_started_total") == 2
    assert value(after, "segmenter_trainings_total", outcome="succeeded") == 1
    assert value(after, "segmenter_trainings_total", outcome="failed") == 1
    assert value(after, "segmenter_training_duration_seconds_count", outcome="succeeded") == 1
    assert value(after, "segmenter_predicted_tasks_total") == 2
    assert value(after, "segmenter_predicted_rows_total") == 400
    assert value(after, "segmenter_prediction_duration_seconds_count") == 1
    assert value(after, "segmenter_models_in_memory") == 1  # one worker holds the project's model
    number = int(served.split("-")[0][1:])
    assert value(after, "segmenter_served_version", project=str(good), version=served) == number
    assert value(after, "segmenter_projects", state="failed") == 1
    # Both workers counted into the shared directory (besides the two processes counting from before).
    pids = {p.stem.rsplit("_", 1)[1] for p in Path(metrics_dir).glob("*/counter_*.db")}
    assert len(pids) >= 4, pids
    text = requests.get(url + "/metrics", auth=AUTH, timeout=10).text
    assert AUTH[1] not in text
    assert KEY not in text


FIRST_USE_RACE = """
import threading
from segmenter.service import metrics

start, errors = threading.Barrier(24), []

def count():
    start.wait()
    try:
        metrics.observe_request("/health", "GET", 200, 0.001)
        metrics.training_started()
    except Exception as exc:  # a second registration of the same metric names
        errors.append(repr(exc))

threads = [threading.Thread(target=count) for _ in range(24)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(errors), errors[:1])
"""


@pytest.mark.slow
def test_metrics_made_on_first_use_by_many_threads_at_once_register_once():
    """Request threads and a training thread may count their first event together."""
    import subprocess
    import sys

    for _ in range(3):  # a fresh process each time: the metrics are made once per process
        out = subprocess.run([sys.executable, "-c", FIRST_USE_RACE], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("0 "), out.stdout


def test_methods_a_client_makes_up_do_not_become_metric_labels(tmp_path):
    """Every distinct label value is a new time series: only the methods HTTP defines count as themselves."""
    from model import TimeSeriesSegmenter
    from segmenter.config import Settings
    from segmenter.service.app import create_app
    from segmenter.service.runtime import Runtime

    settings = Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache")
    client = create_app(Runtime.start(settings), TimeSeriesSegmenter).test_client()
    for made_up in ("FOO1", "FOO2", "BREW"):
        client.open("/health", method=made_up)
    client.get("/health")
    text = client.get("/metrics").get_data(as_text=True)
    assert "FOO1" not in text
    assert "BREW" not in text
    assert 'method="OTHER"' in text
    assert 'method="GET"' in text
