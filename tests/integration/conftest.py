"""One Label Studio and one backend (gunicorn, legacy token) for the whole suite.

Label Studio starts from a copy of a cached, migrated, empty data dir
(``.labelstudio/pristine-<version>``, built on the first run: about a minute), on a
free loopback port, with the flags of ``harness.processes.start_label_studio``.  Logs go to
files under the session's tmp dir; a failing test shows their tails.

Tests marked ``incremental`` in one class are steps of one walkthrough: after a
failed step the later ones are skipped instead of failing for the same reason.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.lsdriver import LabelStudioAPI, ProjectRun
from harness.processes import LS_BIN, Service, pristine_data_dir, start_backend, start_label_studio
from integration.support import BACKEND_ENV, SERVICES

ADMIN = "admin@example.com"


@dataclass
class LabelStudio:
    """The running Label Studio, its admin and a REST client with the admin's legacy key."""

    service: Service
    api: LabelStudioAPI
    username: str
    password: str
    token: str
    tmp: Path

    @property
    def url(self) -> str:
        return self.service.url


def pytest_configure(config):
    config.addinivalue_line("markers", "incremental: later steps of the class are skipped after a failed step")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "integration" in item.nodeid:
        for service in SERVICES:
            report.sections.append((f"{service.name} log tail ({service.log_path})", service.tail(80)))
    if report.failed and call.when == "call" and item.get_closest_marker("incremental") and item.parent:
        item.parent._failed_step = item.name  # type: ignore[attr-defined]


def pytest_runtest_setup(item):
    if item.get_closest_marker("incremental"):
        failed = getattr(item.parent, "_failed_step", None)
        if failed:
            pytest.skip(f"an earlier step failed: {failed}")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Iterator[LabelStudio]:
    if not LS_BIN.exists():
        pytest.fail(f"{LS_BIN} missing: run scripts/setup-labelstudio (the suite must run in CI)")
    tmp = tmp_path_factory.mktemp("labelstudio")
    started = time.monotonic()
    pristine = pristine_data_dir(log_path=tmp / "migrate.log")
    data_dir = tmp / "data"
    shutil.copytree(pristine, data_dir)
    password, token = secrets.token_urlsafe(12), secrets.token_hex(20)
    service = start_label_studio(data_dir, tmp / "files", tmp / "label-studio.log",
                                 username=ADMIN, password=password, token=token)
    SERVICES.append(service)
    print(f"Label Studio up on {service.url} after {time.monotonic() - started:.1f} s")
    try:
        api = LabelStudioAPI(service.url, token=token)
        assert api.call("GET", "/api/current-user/whoami").json()["email"] == ADMIN
        yield LabelStudio(service, api, ADMIN, password, token, tmp)
    finally:
        for started_here in reversed(SERVICES):  # a backend left running by a failed teardown too
            started_here.stop()


@pytest.fixture(scope="session")
def backend(label_studio: LabelStudio) -> Iterator[Service]:
    """The backend under gunicorn with the admin's legacy key."""
    service = start_backend(label_studio.tmp / "models", label_studio.tmp / "backend.log",
                            label_studio_url=label_studio.url, api_key=label_studio.token, extra_env=BACKEND_ENV)
    SERVICES.append(service)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def numeric_run(label_studio: LabelStudio, backend: Service) -> ProjectRun:
    """A project with a numeric time column: six recordings as six tasks, the backend connected."""
    return ProjectRun.create(label_studio.api, backend, label_studio.tmp / "csv-numeric", axis="numeric", count=6,
                             title="Walkthrough (numeric time)", seed=100)

