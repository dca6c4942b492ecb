"""Label Studio access and task file downloads, against the fake Label Studio over real HTTP."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.fakels import LEGACY_DISABLED, FakeLabelStudio
from segmenter.errors import DownloadError, TaskDataError
from segmenter.labelstudio import DataFetcher, LabelStudioClient, LabelStudioError, jwt_claims

KEY = "0123456789abcdef0123456789abcdef01234567"
CONFIG = (
    '<View><TimeSeries name="ts" value="$csv_url" valueType="url"><Channel column="x"/></TimeSeries></View>'
)
REGION = {
    "id": "r1",
    "from_name": "label",
    "to_name": "ts",
    "type": "timeserieslabels",
    "value": {"start": 1, "end": 3, "instant": False, "timeserieslabels": ["Run"]},
}
CSV = b"time,x\n0,1\n1,2\n2,3\n"


@pytest.fixture
def ls() -> Iterator[FakeLabelStudio]:
    with FakeLabelStudio(legacy_token=KEY) as server:
        yield server


@pytest.fixture
def foreign() -> Iterator[FakeLabelStudio]:
    with FakeLabelStudio(legacy_token="other-key") as server:
        yield server


def _host(server: FakeLabelStudio) -> str:
    return server.url.removeprefix("http://")


# --- keys and tokens ---------------------------------------------------------------------------


def test_legacy_key_is_sent_as_token_header(ls: FakeLabelStudio) -> None:
    project = ls.add_project(CONFIG)
    ls.add_task(project, {"csv_url": "/data/upload/1/a.csv"}, annotations=[[REGION]])
    client = LabelStudioClient(ls.url, KEY)
    assert not client.uses_personal_token
    client.export_tasks(project)
    (call,) = ls.calls("GET", prefix="/api/projects/")
    assert call.headers["Authorization"] == f"Token {KEY}"
    assert not ls.calls("POST", "/api/token/refresh/")


def test_key_kind_is_detected_from_its_shape(ls: FakeLabelStudio) -> None:
    assert jwt_claims(KEY) is None
    assert jwt_claims("a.b.c") is None
    assert jwt_claims(ls.make_pat())["token_type"] == "refresh"


def test_personal_token_is_exchanged_once_and_sent_as_bearer(ls: FakeLabelStudio) -> None:
    project = ls.add_project(CONFIG)
    pat = ls.make_pat()
    client = LabelStudioClient(ls.url, pat)
    assert client.uses_personal_token
    client.export_tasks(project)
    client.export_tasks(project)
    assert len(ls.calls("POST", "/api/token/refresh/")) == 1
    exports = ls.calls("GET", prefix="/api/projects/")
    assert len(exports) == 2
    for call in exports:
        assert call.headers["Authorization"].startswith("Bearer ")
        assert pat not in call.headers["Authorization"]


def test_access_token_is_refreshed_shortly_before_it_expires(ls: FakeLabelStudio) -> None:
    ls.access_lifetime = 2.0
    project = ls.add_project(CONFIG)
    client = LabelStudioClient(ls.url, ls.make_pat())
    now = [1000.0]
    client._clock = lambda: now[0]
    client.export_tasks(project)
    now[0] += 1.0
    client.export_tasks(project)
    assert len(ls.calls("POST", "/api/token/refresh/")) == 1
    now[0] += 0.6
    client.export_tasks(project)
    assert len(ls.calls("POST", "/api/token/refresh/")) == 2


def test_rejected_access_token_is_refreshed_once_and_retried(ls: FakeLabelStudio) -> None:
    project = ls.add_project(CONFIG)
    ls.add_task(project, {"csv_url": "x"}, annotations=[[REGION]])
    client = LabelStudioClient(ls.url, ls.make_pat())
    client.export_tasks(project)
    ls.revoke_access_tokens()
    assert len(client.export_tasks(project)) == 1
    assert len(ls.calls("POST", "/api/token/refresh/")) == 2
    sent = [c.headers["Authorization"] for c in ls.calls("GET", prefix="/api/projects/")]
    assert len(sent) == 3 and sent[0] == sent[1] != sent[2]


def test_threads_share_one_exchange(ls: FakeLabelStudio) -> None:
    project = ls.add_project(CONFIG)
    client = LabelStudioClient(ls.url, ls.make_pat())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            client.export_tasks(project)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ls.calls("POST", "/api/token/refresh/")) == 1


def test_refused_personal_token_says_so_without_showing_it(
    ls: FakeLabelStudio, foreign: FakeLabelStudio
) -> None:
    pat = foreign.make_pat()
    client = LabelStudioClient(ls.url, pat)
    with pytest.raises(LabelStudioError, match="Personal Access Token") as info:
        client.export_tasks(ls.add_project(CONFIG))
    assert "401" in str(info.value)
    assert pat not in str(info.value)


def test_disabled_legacy_tokens_give_a_clear_message() -> None:
    with FakeLabelStudio(legacy_token=KEY, legacy_enabled=False) as server:
        project = server.add_project(CONFIG)
        upload = server.add_file("a.csv", CSV, project)
        client = LabelStudioClient(server.url, KEY)
        with pytest.raises(LabelStudioError) as info:
            client.export_tasks(project)
        message = str(info.value)
        assert LEGACY_DISABLED in message and "Personal Access Token" in message and "401" in message
        assert KEY not in message
        with pytest.raises(DownloadError, match="Personal Access Token") as info:
            DataFetcher(client).fetch(upload, task_id=7)
        assert "task 7" in str(info.value) and KEY not in str(info.value)


def test_missing_key_or_bad_url_is_refused_at_once() -> None:
    with pytest.raises(LabelStudioError, match="LABEL_STUDIO_API_KEY"):
        LabelStudioClient("http://localhost:8080", " ")
    with pytest.raises(LabelStudioError, match="http"):
        LabelStudioClient("localhost:8080", KEY)


# --- export ------------------------------------------------------------------------------------


def test_export_returns_annotated_tasks_in_label_studio_shape(ls: FakeLabelStudio) -> None:
    project = ls.add_project(CONFIG)
    labeled = ls.add_task(project, {"csv_url": "/data/upload/1/a.csv"}, annotations=[[REGION]])
    ls.add_task(project, {"csv_url": "/data/upload/1/b.csv"})
    tasks = LabelStudioClient(ls.url, KEY).export_tasks(project)
    assert [t["id"] for t in tasks] == [labeled["id"]]
    (task,) = tasks
    assert {"id", "data", "annotations", "predictions", "project"} <= task.keys()
    assert task["annotations"][0]["result"] == [REGION]
    assert task["annotations"][0]["was_cancelled"] is False
    assert not ls.calls(prefix="/api/tasks")


def test_export_errors_name_the_status_and_body(ls: FakeLabelStudio) -> None:
    client = LabelStudioClient(ls.url, KEY)
    with pytest.raises(LabelStudioError, match="HTTP 404.*Not found"):
        client.export_tasks(999)
    ls.add_public_file("page", b"<html>login</html>")
    with pytest.raises(LabelStudioError, match="non-JSON.*<html>login"):
        client.get_json("/page")


def test_unreachable_label_studio_is_a_label_studio_error() -> None:
    with FakeLabelStudio() as gone:
        url = gone.url
    with pytest.raises(LabelStudioError, match="cannot reach") as info:
        LabelStudioClient(url, KEY, timeout=2).export_tasks(1)
    assert KEY not in str(info.value)


def test_client_get_never_sends_the_token_elsewhere(ls: FakeLabelStudio, foreign: FakeLabelStudio) -> None:
    with pytest.raises(LabelStudioError, match="refusing"):
        LabelStudioClient(ls.url, KEY).get(foreign.url + "/x")
    assert not foreign.requests


# --- downloads ---------------------------------------------------------------------------------


def test_relative_and_absolute_label_studio_urls_go_with_the_token(ls: FakeLabelStudio) -> None:
    upload = ls.add_file("d2e85b55-a.csv", CSV)
    local = ls.add_local_file("dir/b.csv", b"b")
    fetcher = DataFetcher(LabelStudioClient(ls.url, KEY))
    assert fetcher.fetch(upload) == CSV
    assert fetcher.fetch(ls.url + upload) == CSV
    assert fetcher.fetch(local) == b"b"
    assert fetcher.fetch(ls.url + local) == b"b"
    downloads = ls.calls("GET", prefix="/data/")
    assert len(downloads) == 4
    assert all(c.headers["Authorization"] == f"Token {KEY}" for c in downloads)


def test_downloads_work_with_a_personal_token(ls: FakeLabelStudio) -> None:
    upload = ls.add_file("a.csv", CSV)
    fetcher = DataFetcher(LabelStudioClient(ls.url, ls.make_pat()))
    assert fetcher.fetch(upload) == CSV
    ls.revoke_access_tokens()
    assert fetcher.fetch(ls.url + upload) == CSV
    assert len(ls.calls("POST", "/api/token/refresh/")) == 2


def test_relative_url_without_label_studio_names_the_variable() -> None:
    with pytest.raises(DownloadError, match="LABEL_STUDIO_URL is unset") as info:
        DataFetcher(None).fetch("/data/upload/1/a.csv", task_id=3)
    assert info.value.task_id == 3
    assert isinstance(info.value, TaskDataError)


def test_foreign_host_is_refused_unless_allowed(ls: FakeLabelStudio, foreign: FakeLabelStudio) -> None:
    url = foreign.add_public_file("s/sample2.csv", CSV)
    client = LabelStudioClient(ls.url, KEY)
    with pytest.raises(DownloadError, match="ALLOWED_HOSTS") as info:
        DataFetcher(client).fetch(url, task_id=12)
    assert "task 12" in str(info.value) and url in str(info.value)
    assert not foreign.requests
    for allowed in (_host(foreign), "127.0.0.1", "*", "other.example,*"):
        assert DataFetcher(client, allowed_hosts=tuple(allowed.split(","))).fetch(url) == CSV
    with pytest.raises(DownloadError, match="ALLOWED_HOSTS"):
        DataFetcher(client, allowed_hosts=("127.0.0.1:1", "example.com")).fetch(url)


def test_token_never_goes_to_a_foreign_host(ls: FakeLabelStudio, foreign: FakeLabelStudio) -> None:
    url = foreign.add_public_file("sample.csv", CSV)
    for key in (KEY, ls.make_pat()):
        DataFetcher(LabelStudioClient(ls.url, key), allowed_hosts=("*",)).fetch(url)
    assert len(foreign.requests) == 2
    for call in foreign.requests:
        assert "Authorization" not in call.headers and "X-Api-Key" not in call.headers


def test_foreign_host_works_without_label_studio(foreign: FakeLabelStudio) -> None:
    url = foreign.add_public_file("sample.csv", CSV)
    assert DataFetcher(None, allowed_hosts=(_host(foreign),)).fetch(url) == CSV
    by_name = url.replace("127.0.0.1", "localhost")
    assert DataFetcher(None, allowed_hosts=("LOCALHOST",)).fetch(by_name) == CSV
    with pytest.raises(DownloadError, match="ALLOWED_HOSTS"):
        DataFetcher(None, allowed_hosts=("127.0.0.1",)).fetch(by_name)


def test_redirects_obey_the_host_rules(ls: FakeLabelStudio, foreign: FakeLabelStudio) -> None:
    target = foreign.add_public_file("t.csv", CSV)
    client = LabelStudioClient(ls.url, KEY)
    from_label_studio = ls.add_redirect("/data/upload/1/presigned.csv", target, auth=True)
    assert DataFetcher(client).fetch(from_label_studio) == CSV
    assert "Authorization" not in foreign.calls(path="/t.csv")[0].headers
    with FakeLabelStudio() as third:
        hop = third.add_redirect("/hop", target)
        with pytest.raises(DownloadError, match="ALLOWED_HOSTS"):
            DataFetcher(client, allowed_hosts=(_host(third),)).fetch(hop)
        assert DataFetcher(client, allowed_hosts=(_host(third), _host(foreign))).fetch(hop) == CSV


def test_http_errors_name_status_and_url_but_not_the_token(ls: FakeLabelStudio) -> None:
    pat = ls.make_pat()
    for key in (KEY, pat):
        fetcher = DataFetcher(LabelStudioClient(ls.url, key))
        with pytest.raises(DownloadError, match="HTTP 404") as info:
            fetcher.fetch("/data/upload/1/missing.csv", task_id=5)
        message = str(info.value)
        assert ls.url + "/data/upload/1/missing.csv" in message and "task 5" in message
        assert key not in message and "Bearer" not in message


def test_other_schemes_are_refused() -> None:
    with pytest.raises(DownloadError, match="unsupported URL scheme 's3'"):
        DataFetcher(None).fetch("s3://bucket/a.csv")
    with pytest.raises(DownloadError, match="empty"):
        DataFetcher(None).fetch("  ")


# --- size cap ----------------------------------------------------------------------------------


def test_size_cap_from_content_length(ls: FakeLabelStudio) -> None:
    upload = ls.add_file("big.csv", b"x" * 5000)
    fetcher = DataFetcher(LabelStudioClient(ls.url, KEY), max_bytes=4096)
    with pytest.raises(DownloadError, match="MAX_DOWNLOAD_MB"):
        fetcher.fetch(upload)
    assert DataFetcher(LabelStudioClient(ls.url, KEY), max_bytes=5000).fetch(upload) == b"x" * 5000


def test_size_cap_while_streaming(ls: FakeLabelStudio, tmp_path: Path) -> None:
    upload = ls.add_file("big.csv", b"x" * 100_000, chunked=True)
    fetcher = DataFetcher(LabelStudioClient(ls.url, KEY), max_bytes=20_000, cache_dir=tmp_path)
    with pytest.raises(DownloadError, match="larger than"):
        fetcher.fetch(upload)
    assert not list(tmp_path.rglob("*.bin"))


# --- local paths -------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "a.csv").write_bytes(CSV)
    (tmp_path / "secret.csv").write_bytes(b"secret")
    return base


def test_local_paths_below_the_root_are_read(root: Path) -> None:
    fetcher = DataFetcher(None, local_root=root)
    assert fetcher.fetch("sub/a.csv") == CSV
    assert fetcher.fetch(str(root / "sub" / "a.csv")) == CSV
    assert fetcher.fetch((root / "sub" / "a.csv").as_uri()) == CSV
    assert fetcher.fetch("sub/../sub/a.csv") == CSV


@pytest.mark.parametrize(
    "ref", ["../secret.csv", "sub/../../secret.csv", "/etc/hostname", "file:///etc/passwd"]
)
def test_local_paths_outside_the_root_are_refused(root: Path, ref: str) -> None:
    with pytest.raises(DownloadError, match="outside LOCAL_FILES_ROOT"):
        DataFetcher(None, local_root=root).fetch(ref, task_id=1)


def test_symlink_out_of_the_root_is_refused(root: Path) -> None:
    os.symlink(root.parent / "secret.csv", root / "sub" / "link.csv")
    os.symlink(root.parent, root / "up")
    fetcher = DataFetcher(None, local_root=root)
    for ref in ("sub/link.csv", "up/secret.csv"):
        with pytest.raises(DownloadError, match="outside LOCAL_FILES_ROOT"):
            fetcher.fetch(ref)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(st.sampled_from(["..", ".", "sub", "a.csv", "secret.csv", "up", "link.csv"]), max_size=6)
)
def test_no_relative_path_reads_outside_the_root(root: Path, parts: list[str]) -> None:
    if not (root / "up").exists():
        os.symlink(root.parent, root / "up")
        os.symlink(root.parent / "secret.csv", root / "sub" / "link.csv")
    try:
        assert DataFetcher(None, local_root=root).fetch("/".join(parts) or ".") == CSV
    except DownloadError:
        pass


def test_missing_local_file_and_disabled_local_files(root: Path) -> None:
    with pytest.raises(DownloadError, match="not found"):
        DataFetcher(None, local_root=root).fetch("sub/nope.csv")
    with pytest.raises(DownloadError, match="LOCAL_FILES_ROOT"):
        DataFetcher(None).fetch(str(root / "sub" / "a.csv"))
    with pytest.raises(DownloadError, match="MAX_DOWNLOAD_MB"):
        DataFetcher(None, local_root=root, max_bytes=4).fetch("sub/a.csv")


# --- cache -------------------------------------------------------------------------------------


def test_uploads_are_served_from_cache_without_a_request(ls: FakeLabelStudio, tmp_path: Path) -> None:
    upload = ls.add_file("d2e85b55-a.csv", CSV, etag=False)
    client = LabelStudioClient(ls.url, KEY)
    assert DataFetcher(client, cache_dir=tmp_path).fetch(upload) == CSV
    assert DataFetcher(client, cache_dir=tmp_path).fetch(ls.url + upload) == CSV
    assert len(ls.calls(prefix="/data/upload/")) == 1
    assert not list(tmp_path.rglob(".tmp-*"))


def test_other_files_are_revalidated_with_their_etag(
    ls: FakeLabelStudio, foreign: FakeLabelStudio, tmp_path: Path
) -> None:
    local = ls.add_local_file("dir/a.csv", CSV)
    remote = foreign.add_public_file("a.csv", CSV)
    fetcher = DataFetcher(LabelStudioClient(ls.url, KEY), allowed_hosts=("*",), cache_dir=tmp_path)
    for server, ref in ((ls, local), (foreign, remote)):
        assert fetcher.fetch(ref) == CSV
        assert fetcher.fetch(ref) == CSV
        first, second = server.calls("GET")
        assert "If-None-Match" not in first.headers
        assert second.headers["If-None-Match"].startswith('"')
    foreign.add_public_file("a.csv", b"changed")
    assert fetcher.fetch(remote) == b"changed"
    assert fetcher.fetch(remote) == b"changed"


def test_files_without_validators_are_downloaded_again(foreign: FakeLabelStudio, tmp_path: Path) -> None:
    url = foreign.add_public_file("a.csv", CSV, etag=False)
    fetcher = DataFetcher(None, allowed_hosts=("*",), cache_dir=tmp_path)
    fetcher.fetch(url)
    fetcher.fetch(url)
    assert all("If-None-Match" not in c.headers for c in foreign.calls("GET"))
    assert len(foreign.calls("GET")) == 2


def test_a_damaged_cache_entry_is_ignored(ls: FakeLabelStudio, tmp_path: Path) -> None:
    upload = ls.add_file("a.csv", CSV)
    client = LabelStudioClient(ls.url, KEY)
    DataFetcher(client, cache_dir=tmp_path).fetch(upload)
    (body,) = tmp_path.rglob("*.bin")
    body.write_bytes(b"garbage")
    assert DataFetcher(client, cache_dir=tmp_path).fetch(upload) == CSV
    assert len(ls.calls(prefix="/data/upload/")) == 2
    assert "If-None-Match" not in ls.calls(prefix="/data/upload/")[1].headers
