"""No secret anywhere a user or another process can read.

The real deployment shape (gunicorn, two workers, DEBUG logs) with every kind of
secret in play: the operator's Personal Access Token and the access tokens it is
exchanged for, a ``/setup`` token, the Basic-auth password, and passwords written
into URLs (``/setup`` hostname, task data).  After a training, predictions, failed
downloads and a failed training, the logs, every route's answer and every file
under MODEL_DIR and CACHE_DIR are searched for each of them.
"""

import re

import pytest
import requests
from support import CONFIG, add_recordings

from harness.fakels import KEY
from harness.processes import start_backend
from harness.waiting import wait_until_idle

BASIC = ("ml", "basic-pass-9f3c2e")
URL_PASSWORD = "url-pass-5be6c0"
pytestmark = pytest.mark.slow  # gunicorn with two workers, a training and failed downloads


@pytest.fixture
def deployment(tmp_path, ls):
    """The fake Label Studio, whose legacy key ``KEY`` serves as the /setup token, and gunicorn with its PAT."""
    key = ls.make_pat()
    backend = start_backend(
        tmp_path / "models", tmp_path / "backend.log", label_studio_url=ls.url, api_key=key,
        extra_env={"BASIC_AUTH_USER": BASIC[0], "BASIC_AUTH_PASS": BASIC[1], "LOG_LEVEL": "DEBUG",
                   "WORKERS": "2", "THREADS": "4", "CACHE_DIR": str(tmp_path / "cache"),
                   "ALLOWED_HOSTS": "127.0.0.1"},
    )
    try:
        yield ls, key, backend, tmp_path
    finally:
        backend.stop()


def wait_settled(url, project, requests_at_least, timeout=120):
    return wait_until_idle(url, project, timeout, min_requests=requests_at_least, interval=0.2, auth=BASIC)


def test_no_secret_reaches_a_log_a_response_or_a_file(deployment):
    ls, key, backend, tmp = deployment
    url = backend.url
    project = ls.add_project(CONFIG)
    tasks = add_recordings(ls, project, 2)
    with_password = ls.url.replace("http://", f"http://admin:{URL_PASSWORD}@")
    # A foreign-looking file URL with a password, a refused API path and a missing file.
    ls.add_task(project, {"csv_url": f"{with_password}/elsewhere/missing.csv"}, annotations=[[]])
    ls.add_task(project, {"csv_url": "/data/upload/../../api/projects/1"}, annotations=[[]])
    ls.add_task(project, {"csv_url": "/data/upload/1/missing.csv"}, annotations=[[]])

    setup = {"project": f"{project}.1", "schema": CONFIG, "hostname": with_password, "access_token": KEY}
    assert requests.post(f"{url}/setup", json=setup, auth=BASIC, timeout=10).status_code == 200
    hook = {"action": "START_TRAINING", "project": {"id": project, "label_config": CONFIG}}
    assert requests.post(f"{url}/webhook", json=hook, auth=BASIC, timeout=10).status_code == 200
    assert wait_settled(url, project, 1)["state"] == "idle"

    body = {"project": f"{project}.1", "label_config": CONFIG,
            "tasks": tasks + [{"id": 99, "data": {"csv_url": f"{with_password}/x.csv"}, "project": project}]}
    results = requests.post(f"{url}/predict", json=body, auth=BASIC, timeout=60).json()["results"]
    assert results[0]["result"]
    assert results[-1]["result"] == []

    ls.revoke_access_tokens()  # an expired access token: refreshed with the key
    ls.legacy_enabled = False
    ls.projects.pop(project)  # the next export fails: a failed training with Label Studio's answer in it
    requests.post(f"{url}/webhook", json=hook, auth=BASIC, timeout=10)
    assert wait_settled(url, project, 2)["state"] == "failed"
    requests.get(f"{url}/health", auth=("ml", "wrong-" + BASIC[1]), timeout=5)

    access_tokens = {r.headers["Authorization"][7:] for r in ls.calls() if
                     r.headers.get("Authorization", "").startswith("Bearer ")}
    assert access_tokens, "the key was never exchanged: the test would prove nothing"
    secrets = {key, KEY, BASIC[1], URL_PASSWORD, *access_tokens}

    readable = {"log": backend.log_path.read_text()}
    for route in ("/status", f"/status/{project}", "/versions", f"/versions?project={project}", "/health",
                  "/metrics", "/dashboard", f"/dashboard/project/{project}"):
        readable[route] = requests.get(url + route, auth=BASIC, timeout=10).text
    for root in (tmp / "models", tmp / "cache"):
        for path in root.rglob("*"):
            if path.is_file():
                readable[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert len(readable) > 8
    assert "training failed" in readable["log"]
    for where, text in readable.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:4]}...) is in {where}"
    assert re.search(r"refusing to fetch", readable["log"])
