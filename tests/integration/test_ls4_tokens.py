"""An organisation with legacy tokens disabled, and a backend given a Personal Access Token.

Runs last: it switches the organisation's legacy tokens off (and back on when done).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import DriverError
from harness.lsdriver import LabelStudioAPI, ProjectRun
from harness.processes import Service, start_backend
from integration.support import BACKEND_ENV, SERVICES, check_predictions, module_marks

pytestmark = module_marks()


@pytest.fixture
def personal_api(label_studio) -> Iterator[LabelStudioAPI]:
    """A Bearer client from the admin's Personal Access Token, legacy tokens off while it lives."""
    token = label_studio.api.personal_access_token()
    api = label_studio.api.with_personal_token(token)
    api.jwt_settings({"api_tokens_enabled": True, "legacy_api_tokens_enabled": False})
    try:
        yield api
    finally:
        api.jwt_settings({"api_tokens_enabled": True, "legacy_api_tokens_enabled": True})


@pytest.fixture
def pat_backend(label_studio, personal_api: LabelStudioAPI) -> Iterator[Service]:
    service = start_backend(label_studio.tmp / "models-pat", label_studio.tmp / "backend-pat.log",
                            label_studio_url=label_studio.url, api_key=personal_api.personal_token,
                            extra_env=BACKEND_ENV)
    service.name = "backend (PAT)"
    SERVICES.append(service)
    try:
        yield service
    finally:
        service.stop()
        SERVICES.remove(service)


def test_personal_access_token_backend(label_studio, personal_api: LabelStudioAPI, pat_backend: Service):
    with pytest.raises(DriverError, match="401.*legacy token"):
        label_studio.api.call("GET", "/api/projects")
    with pytest.raises(DriverError, match="401"):
        LabelStudioAPI(label_studio.url, token=personal_api.personal_token).call("GET", "/api/projects")

    run = ProjectRun.create(personal_api, pat_backend, label_studio.tmp / "csv-pat", count=3, seed=300,
                            title="Personal Access Token")
    run.annotate(range(2))
    status = run.wait_training()  # the training downloads every annotated CSV with the PAT
    assert status["model_version"] != "untrained", status
    assert status["models"][0]["data"]["tasks"] == 2, status
    latest = check_predictions(run, run.retrieve(), status["model_version"])
    assert any(p["result"] for p in latest.values()), latest
