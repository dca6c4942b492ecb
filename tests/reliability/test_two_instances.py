"""Two Label Studios, one project id: a model, a status and a write-back belong to one Label
Studio's project, never to another instance's project of the same id.

Two fake Label Studios each have a project 1 (same label config, different tasks, created at
different times, as Label Studio says in every request) and talk to one backend over HTTP.
"""

import logging
from datetime import datetime

import pytest
from support import CONFIG, add_recordings

from harness.fakels import FakeLabelStudio
from harness.waiting import wait_until_idle
from segmenter import store

AUTH = ("u", "p")
CREATED_A = "2026-11-26T12:44:01.272560Z"
CREATED_B = "2027-02-03T04:05:06.789000Z"


class Instance:
    """One Label Studio (a fake) with its project 1, speaking to a backend as Label Studio 1.23 does."""

    def __init__(self, ls: FakeLabelStudio, created_at: str, token: str, annotated: int, unlabelled: int,
                 seed: int) -> None:
        self.ls, self.created_at, self.token = ls, created_at, token
        self.project = ls.add_project(CONFIG, created_at=created_at)
        self.epoch = int(datetime.fromisoformat(created_at).timestamp())
        self.uid = f"{self.project}.{self.epoch}"  # what /setup and /predict name the project
        self.annotated = add_recordings(ls, self.project, annotated, seed=seed)
        self.unlabelled = add_recordings(ls, self.project, unlabelled, seed=seed + 50, annotate=False)

    def setup(self, b, auth=AUTH):
        body = {"project": self.uid, "schema": CONFIG, "hostname": self.ls.url, "access_token": self.token}
        return b.post("/setup", body, auth=auth)

    def predict(self, b, tasks):
        return b.post("/predict", {"tasks": tasks, "project": self.uid, "label_config": CONFIG}, auth=AUTH)

    def webhook(self, b, action, auth=None):
        """Event webhooks come without Basic auth; START_TRAINING comes with it."""
        project = {"id": self.project, "created_at": self.created_at, "label_config": CONFIG}
        return b.post("/webhook", {"action": action, "project": project}, auth=auth)

    def status(self, b, min_requests=0):
        return wait_until_idle(b.url, self.uid, 120, min_requests=min_requests, auth=AUTH)

    def exports(self):
        return len(self.ls.calls(path=f"/api/projects/{self.project}/export"))

    def imported(self):
        """Every prediction the backend wrote into this Label Studio."""
        return [p for batch in self.ls.imported for p in batch]


@pytest.fixture
def two():
    with FakeLabelStudio(legacy_token="token-a") as a, FakeLabelStudio(legacy_token="token-b") as b:
        yield (Instance(a, CREATED_A, "token-a", annotated=2, unlabelled=1, seed=0),
               Instance(b, CREATED_B, "token-b", annotated=3, unlabelled=2, seed=20))


def test_two_label_studios_without_a_url_never_share_a_model_a_status_or_a_write_back(backend, two, caplog):
    caplog.set_level(logging.WARNING)
    a, b = two
    assert a.project == b.project == 1
    backend_ = backend(basic_auth_user="u", basic_auth_pass="p")

    assert a.setup(backend_).json() == {"model_version": "untrained"}
    assert a.webhook(backend_, "START_TRAINING", auth=AUTH).json()["scheduled"] is True
    first = a.status(backend_)
    assert first["state"] == "idle"
    assert first["models"][0]["data"]["tasks"] == 2

    # The second Label Studio connects its own project 1: nothing of the first one's is served to it.
    assert b.setup(backend_).json() == {"model_version": "untrained"}
    results = b.predict(backend_, b.unlabelled).json()["results"]
    assert results == [{"result": [], "score": 0.0, "model_version": "untrained"}] * len(b.unlabelled)
    assert "kept apart" in caplog.text

    assert b.webhook(backend_, "START_TRAINING", auth=AUTH).json()["scheduled"] is True
    b_status = b.status(backend_)
    assert b_status["state"] == "idle"
    assert b_status["models"][0]["data"]["tasks"] == 3

    # The first Label Studio's next annotation trains on its own tasks, and writes into it only.
    assert a.webhook(backend_, "ANNOTATION_CREATED").json()["scheduled"] is True
    a_status = a.status(backend_, min_requests=2)
    assert a_status["state"] == "idle"
    assert a_status["models"][0]["data"]["tasks"] == 2
    assert a_status["model_version"] != first["model_version"]
    assert a.exports() == 2
    assert b.exports() == 1

    # Each write-back went to its own Label Studio: one per training there, for its own unlabelled tasks.
    a_versions = {h["version"] for h in a_status["history"]}
    b_versions = {h["version"] for h in b_status["history"]}
    assert sorted(p["model_version"] for p in a.imported()) == sorted(a_versions)
    assert [p["model_version"] for p in b.imported()] == [b_status["model_version"]] * len(b.unlabelled)
    assert a_status["writeback"]["state"] == b_status["writeback"]["state"] == "done"

    # Each is served its own model; /status tells the two projects 1 apart.
    assert a.setup(backend_).json() == {"model_version": a_status["model_version"]}
    assert b.setup(backend_).json() == {"model_version": b_status["model_version"]}
    assert {r["model_version"] for r in b.predict(backend_, b.unlabelled).json()["results"]} == b_versions
    listed = backend_.get("/status", auth=AUTH).json()["projects"]
    assert len(listed) == 2
    assert {p["label_studio_project"]["id"] for p in listed} == {1}
    assert {p["label_studio_project"]["created_at"] for p in listed} == {CREATED_A[:19] + "Z", CREATED_B[:19] + "Z"}


def test_with_label_studio_url_another_instance_is_kept_apart_and_never_trained_from_it(backend, two):
    a, b = two
    backend_ = backend(label_studio_url=a.ls.url, label_studio_api_key="token-a", basic_auth_user="u",
                       basic_auth_pass="p")
    a.setup(backend_)
    a.webhook(backend_, "START_TRAINING", auth=AUTH)
    a_status = a.status(backend_)
    assert a_status["state"] == "idle"

    assert b.setup(backend_).json() == {"model_version": "untrained"}
    results = b.predict(backend_, b.unlabelled).json()["results"]
    assert results == [{"result": [], "score": 0.0, "model_version": "untrained"}] * len(b.unlabelled)

    # Its training would read LABEL_STUDIO_URL's project 1, which is not its project: refused, said so.
    b.webhook(backend_, "START_TRAINING", auth=AUTH)
    b_status = b.status(backend_)
    assert b_status["state"] == "failed"
    assert "another Label Studio" in b_status["last_error"]
    assert b.ls.calls() == []
    assert a.exports() == 1
    assert len(a.imported()) == len(a.unlabelled)
    assert b.setup(backend_).json() == {"model_version": "untrained"}
    assert a.setup(backend_).json() == {"model_version": a_status["model_version"]}


def test_a_model_dir_of_an_older_backend_is_adopted_by_the_first_project_that_claims_it(backend, two, caplog):
    caplog.set_level(logging.INFO)
    a, b = two
    backend_ = backend()
    a.setup(backend_)
    a.webhook(backend_, "START_TRAINING")
    version = a.status(backend_)["model_version"]
    folder = store.project_dir(backend_.runtime.settings.model_dir, 1)
    (folder / "identity.json").unlink(missing_ok=True)  # as an older backend left it

    assert a.predict(backend_, a.unlabelled).json()["results"][0]["model_version"] == version
    assert "now belongs to the Label Studio project 1 created at 2026-11-26T12:44:01Z" in caplog.text
    assert b.setup(backend_).json() == {"model_version": "untrained"}
    assert a.setup(backend_).json() == {"model_version": version}
