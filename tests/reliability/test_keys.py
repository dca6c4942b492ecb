"""Keys go only where they belong: each key with the host it came with, task data never
reaches Label Studio's API, URL passwords are refused or dropped, redirected files are
revalidated.  Every test here stands for a finding of the security review."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import CONFIG, add_recordings

from harness.fakels import KEY, FakeLabelStudio
from segmenter import store
from segmenter.config import Settings
from segmenter.errors import ConfigError, DownloadError
from segmenter.labelstudio.client import LabelStudioClient
from segmenter.labelstudio.fetching import DataFetcher

ROOT = Path(__file__).resolve().parents[2]
CSV = b"time,x\n0,1\n1,2\n2,3\n"


@pytest.fixture
def attacker():
    with FakeLabelStudio(legacy_token="attacker-token") as server:
        yield server


def sent_keys(server: FakeLabelStudio) -> set[str]:
    return {r.headers.get("Authorization", "") for r in server.calls()} - {""}


@pytest.mark.slow
def test_a_key_without_its_url_stops_start_up(tmp_path):
    with pytest.raises(ConfigError, match="LABEL_STUDIO_API_KEY.*LABEL_STUDIO_URL"):
        Settings.from_env({"LABEL_STUDIO_API_KEY": "operator-key", "MODEL_DIR": str(tmp_path)})
    r = subprocess.run(
        [sys.executable, "-c", "import _wsgi"],
        env={"LABEL_STUDIO_API_KEY": "operator-key", "MODEL_DIR": str(tmp_path), "PATH": os.environ["PATH"]},
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert r.returncode != 0
    assert "LABEL_STUDIO_URL" in r.stderr
    assert "LABEL_STUDIO_API_KEY" in r.stderr
    assert "operator-key" not in r.stderr


def test_setup_from_another_host_cannot_repoint_a_project_or_lend_its_token(backend, ls, attacker):
    """LABEL_STUDIO_URL names Label Studio: a /setup from elsewhere changes nothing."""
    b = backend(label_studio_url=ls.url)
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 2)
    attacker.add_project(CONFIG)
    assert b.setup(project, attacker, token="attacker-token").status_code == 200
    b.webhook("START_TRAINING", project)
    status = b.wait_idle(project)
    assert attacker.calls() == []  # never re-pointed
    assert "Token attacker-token" not in sent_keys(ls)  # the /setup token never left for another host
    assert status["state"] == "failed"
    assert "no API key" in status["last_error"]
    connection = store.read_json(store.project_dir(b.runtime.settings.model_dir, project) / "connection.json")
    assert connection["access_token"] == ""


def test_setup_token_is_used_with_its_own_host(backend, ls):
    b = backend(label_studio_url=ls.url)
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 2)
    b.setup(project, ls, token=KEY)
    b.webhook("START_TRAINING", project)
    assert b.wait_idle(project)["state"] == "idle"
    assert sent_keys(ls) == {f"Token {KEY}"}


def test_operator_key_goes_only_to_the_operator_url(backend, ls, attacker):
    b = backend(label_studio_url=ls.url, label_studio_api_key=KEY)
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 2)
    b.setup(project, attacker, token="attacker-token")
    b.webhook("START_TRAINING", project)
    assert b.wait_idle(project)["state"] == "idle"
    assert attacker.calls() == []
    assert sent_keys(ls) == {f"Token {KEY}"}
    connection = store.read_json(store.project_dir(b.runtime.settings.model_dir, project) / "connection.json")
    assert connection["access_token"] == ""  # no second secret kept on disk


@pytest.mark.parametrize(
    "ref",
    [
        "/data/upload/../../api/projects/{p}/export?exportType=JSON",
        "/data/upload/%2e%2e/%2e%2e/api/projects/{p}/export?exportType=JSON",
        "/data/upload/..%2f..%2fapi/projects/{p}",
        "{url}/api/projects/{p}",
        "{url}/data/upload/../../api/projects/{p}/export?exportType=JSON",
        "{url}/api/projects/{p}/export?exportType=JSON",
        "/tasks/1/../../api/projects/{p}",
        "/projects/{p}/resolve/../../api/projects/{p}",
    ],
)
def test_task_data_cannot_reach_the_label_studio_api(ls, ref):
    other = ls.add_project(CONFIG)
    ls.add_task(other, {"csv_url": "secret"}, annotations=[[]])
    fetcher = DataFetcher(LabelStudioClient(ls.url, KEY))
    with pytest.raises(DownloadError, match="task 7: refusing to fetch .*may only name files"):
        fetcher.fetch(ref.format(url=ls.url, p=other), task_id=7)
    assert ls.calls(prefix="/api/") == []


def test_label_studio_file_routes_still_go_with_the_key(ls):
    upload = ls.add_file("a.csv", CSV, 1)
    ls.add_redirect("tasks/5/resolve/", ls.add_file("b.csv", CSV, 1), auth=True)
    fetcher = DataFetcher(LabelStudioClient(ls.url, KEY))
    assert fetcher.fetch(upload) == CSV
    assert fetcher.fetch("/data/upload/1/x/../a.csv") == CSV  # normalised, still an upload
    assert fetcher.fetch("/tasks/5/resolve/?fileuri=czM6Ly9iL2EuY3N2") == CSV
    assert sent_keys(ls) == {f"Token {KEY}"}


def test_refused_task_data_is_reported_in_the_training_without_the_other_export(backend, ls):
    b = backend(label_studio_url=ls.url, label_studio_api_key=KEY)
    project = ls.add_project(CONFIG)
    other = ls.add_project(CONFIG)
    ls.add_task(other, {"csv_url": "/data/upload/9/private.csv", "secret_field_xyz": 1}, annotations=[[]])
    add_recordings(ls, project, 2)
    ls.add_task(project, {"csv_url": f"/data/upload/../../api/projects/{other}/export?exportType=JSON"},
                annotations=[[]])
    b.setup(project, ls)
    b.webhook("START_TRAINING", project)
    status = b.wait_idle(project)
    assert status["state"] == "idle"
    assert not ls.calls(path=f"/api/projects/{other}/export")
    text = b.get(f"/status/{project}").text + str(store.metadata(b.runtime.settings.model_dir, project,
                                                                  status["model_version"]))
    assert "secret_field_xyz" not in text
    assert "may only name files" in text


@pytest.mark.slow
@pytest.mark.parametrize("var", ["LABEL_STUDIO_URL", "LABEL_STUDIO_HOST"])
def test_password_in_the_label_studio_url_is_refused_without_showing_it(var, tmp_path):
    env = {var: "http://admin:hunter2-pass@ls.example:8080", "MODEL_DIR": str(tmp_path)}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert var in str(info.value)
    assert "hunter2-pass" not in str(info.value)
    r = subprocess.run([sys.executable, "-c", "import _wsgi"], env={**env, "PATH": os.environ["PATH"]},
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode != 0
    assert var in r.stderr
    assert "hunter2-pass" not in r.stderr


def test_password_in_the_setup_hostname_is_dropped_and_the_token_still_works(backend, ls, caplog):
    b = backend()
    project = ls.add_project(CONFIG)
    add_recordings(ls, project, 2)
    host = ls.url.replace("http://", "http://admin:hunter2-pass@")
    body = {"project": f"{project}.1", "schema": CONFIG, "hostname": host, "access_token": KEY}
    assert b.post("/setup", body).status_code == 200
    b.webhook("START_TRAINING", project)
    assert b.wait_idle(project)["state"] == "idle"  # the Token header was not replaced by Basic credentials
    assert sent_keys(ls) == {f"Token {KEY}"}
    model_dir = b.runtime.settings.model_dir
    for path in model_dir.rglob("*"):
        if path.is_file():
            assert b"hunter2-pass" not in path.read_bytes(), path
    assert "hunter2-pass" not in b.get("/status").text + caplog.text


def test_client_refuses_a_url_with_credentials_without_showing_them():
    with pytest.raises(Exception) as info:
        LabelStudioClient("http://u:hunter2-pass@ls.example", KEY)
    assert "hunter2-pass" not in str(info.value)


def test_files_reached_through_a_label_studio_redirect_are_revalidated(ls, tmp_path):
    with FakeLabelStudio() as storage:
        public = storage.add_public_file("bucket/a.csv", CSV, etag=False)
        upload_like = "/data/upload/1/redirected.csv"
        ls.add_redirect(upload_like.lstrip("/"), public, auth=True)
        fetcher = DataFetcher(LabelStudioClient(ls.url, KEY), cache_dir=tmp_path)
        assert fetcher.fetch(upload_like) == CSV
        storage.add_public_file("bucket/a.csv", CSV + b"3,4\n", etag=False)
        assert fetcher.fetch(upload_like) == CSV + b"3,4\n"
        assert len(storage.calls(path="/bucket/a.csv")) == 2


def test_download_errors_never_show_url_passwords(ls):
    fetcher = DataFetcher(LabelStudioClient(ls.url, KEY), allowed_hosts=("*",))
    with pytest.raises(DownloadError) as info:
        fetcher.fetch("http://user:hunter2-pass@127.0.0.1:9/a.csv", task_id=3)
    assert "hunter2-pass" not in str(info.value)
    assert "task 3" in str(info.value)
