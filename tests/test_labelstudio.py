"""The Label Studio REST client (keys, tokens, the export), against the fake Label Studio over real HTTP."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from harness.fakels import KEY, LEGACY_DISABLED, FakeLabelStudio
from segmenter.errors import DownloadError
from segmenter.labelstudio.client import LabelStudioClient, LabelStudioClients
from segmenter.labelstudio.errors import LabelStudioError
from segmenter.labelstudio.fetching import DataFetcher

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
    assert not LabelStudioClient(ls.url, KEY).uses_personal_token
    assert not LabelStudioClient(ls.url, "a.b.c").uses_personal_token
    assert LabelStudioClient(ls.url, ls.make_pat()).uses_personal_token


def test_an_expired_personal_token_is_refused_without_showing_it(ls: FakeLabelStudio) -> None:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    expired = ".".join([part({"alg": "HS256", "typ": "JWT"}), part({"token_type": "refresh", "exp": 1}), "sig"])
    with pytest.raises(LabelStudioError, match="LABEL_STUDIO_API_KEY.*expired") as info:
        LabelStudioClient(ls.url, expired)
    assert expired not in str(info.value)
    assert not ls.requests


def test_auth_header_is_the_current_one_and_renewed_when_refused(ls: FakeLabelStudio) -> None:
    assert LabelStudioClient(ls.url, KEY).auth_header() == f"Token {KEY}"
    assert LabelStudioClient(ls.url, KEY).auth_header(rejected=f"Token {KEY}") == f"Token {KEY}"
    client = LabelStudioClient(ls.url, ls.make_pat())
    first = client.auth_header()
    assert first.startswith("Bearer ")
    assert client.auth_header() == first
    assert len(ls.calls("POST", "/api/token/refresh/")) == 1
    renewed = client.auth_header(rejected=first)
    assert renewed.startswith("Bearer ")
    assert renewed != first
    assert client.auth_header(rejected=first) == renewed  # an older refusal does not renew again
    assert len(ls.calls("POST", "/api/token/refresh/")) == 2


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
    assert len(sent) == 3
    assert sent[0] == sent[1] != sent[2]


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
        assert LEGACY_DISABLED in message
        assert "Personal Access Token" in message
        assert "401" in message
        assert KEY not in message
        with pytest.raises(DownloadError, match="Personal Access Token") as info:
            DataFetcher(client).fetch(upload, task_id=7)
        assert "task 7" in str(info.value)
        assert KEY not in str(info.value)


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


def test_export_is_the_plain_json_export(ls: FakeLabelStudio) -> None:
    project = ls.add_project(CONFIG)
    LabelStudioClient(ls.url, KEY).export_tasks(project)
    (call,) = ls.calls("GET")
    assert call.path == f"/api/projects/{project}/export"
    assert call.query == "exportType=JSON"


def test_client_never_sends_the_token_elsewhere(ls: FakeLabelStudio, foreign: FakeLabelStudio) -> None:
    with pytest.raises(LabelStudioError, match="refusing"):
        LabelStudioClient(ls.url, KEY).get_json(foreign.url + "/x")
    assert not foreign.requests


# --- the client cache --------------------------------------------------------------------------


def test_clients_are_shared_per_url_and_key(ls: FakeLabelStudio, foreign: FakeLabelStudio) -> None:
    clients = LabelStudioClients()
    pat = ls.make_pat()
    assert clients.get(ls.url, pat) is clients.get(ls.url, pat)
    assert clients.get(ls.url, KEY) is not clients.get(ls.url, pat)
    assert clients.get(foreign.url, KEY) is not clients.get(ls.url, KEY)
    project = ls.add_project(CONFIG)
    for _ in range(3):
        clients.get(ls.url, pat).export_tasks(project)
    assert len(ls.calls("POST", "/api/token/refresh/")) == 1  # the access token is reused
    clients.clear()
    assert clients.get(ls.url, pat).uses_personal_token


def test_clients_are_made_once_under_concurrency(ls: FakeLabelStudio) -> None:
    made: list[LabelStudioClient] = []

    def slow_factory(url: str, key: str) -> LabelStudioClient:
        time.sleep(0.05)
        made.append(LabelStudioClient(url, key))
        return made[-1]

    clients = LabelStudioClients(slow_factory)
    got: list[LabelStudioClient] = []
    threads = [threading.Thread(target=lambda: got.append(clients.get(ls.url, KEY))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert all(client is made[0] for client in got)


def test_tasks_are_read_from_the_task_list_without_making_label_studio_predict(ls: FakeLabelStudio) -> None:
    """``tasks_page`` and ``task`` read the Data Manager's list with review=true (no /predict calls),
    annotated or not; a task of another project is not found."""
    project, other = ls.add_project(), ls.add_project()
    annotated = ls.add_task(project, {"csv_url": "a.csv"}, annotations=[[]])
    plain = [ls.add_task(project, {"csv_url": f"{i}.csv"}) for i in range(3)]
    elsewhere = ls.add_task(other, {"csv_url": "x.csv"})
    client = LabelStudioClient(ls.url, KEY)

    tasks, total = client.tasks_page(project, page=2, page_size=3)
    assert total == 4
    assert [t["id"] for t in tasks] == [plain[2]["id"]]
    found = client.task(project, annotated["id"])
    assert found["id"] == annotated["id"]
    assert len(found["annotations"]) == 1
    assert found["predictions"] == []
    assert client.task(project, plain[0]["id"])["annotations"] == []
    assert client.task(project, elsewhere["id"]) is None
    assert ls.evaluations == []
    assert all(r.path == "/api/tasks/" and "review=true" in r.query and "fields=all" in r.query
               for r in ls.requests if r.path.startswith("/api/tasks"))
