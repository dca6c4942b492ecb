"""Reading task files: Label Studio URLs, foreign hosts, redirects, size caps, local paths and the
download cache, against the fake Label Studio over real HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.fakels import KEY, FakeLabelStudio
from segmenter.errors import DownloadError, TaskDataError
from segmenter.labelstudio.client import LabelStudioClient
from segmenter.labelstudio.fetching import DataFetcher

CSV = b"time,x\n0,1\n1,2\n2,3\n"


def _host(server: FakeLabelStudio) -> str:
    return server.url.removeprefix("http://")


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
    assert "task 12" in str(info.value)
    assert url in str(info.value)
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
        assert "Authorization" not in call.headers
        assert "X-Api-Key" not in call.headers


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
        assert ls.url + "/data/upload/1/missing.csv" in message
        assert "task 5" in message
        assert key not in message
        assert "Bearer" not in message


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


def test_a_cached_upload_is_not_served_to_another_key(ls: FakeLabelStudio, tmp_path: Path) -> None:
    upload = ls.add_file("d2e85b55-a.csv", CSV, etag=False)
    assert DataFetcher(LabelStudioClient(ls.url, KEY), cache_dir=tmp_path).fetch(upload) == CSV
    with pytest.raises(DownloadError, match="HTTP 401"):  # a key Label Studio refuses gets no cached copy
        DataFetcher(LabelStudioClient(ls.url, "not-the-key-0123"), cache_dir=tmp_path).fetch(upload)
    other_key = DataFetcher(LabelStudioClient(ls.url, ls.make_pat()), cache_dir=tmp_path)
    assert other_key.fetch(upload) == CSV
    assert other_key.fetch(upload) == CSV
    assert len(ls.calls("GET", prefix="/data/upload/")) == 3  # once per key that may read it
    for meta in tmp_path.rglob("*.json"):
        assert KEY not in meta.read_text()
