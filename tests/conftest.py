"""Shared fixtures: captured Label Studio payloads, the one fake Label Studio and the backend served over HTTP.

The fake Label Studio's legacy key is ``harness.fakels.KEY`` in every test that uses the ``ls`` fixture;
plain helpers (the label config, recordings, HTTP handles) are in ``support.py``.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Backend, make_settings

from harness.fakels import KEY, FakeLabelStudio
from harness.served import serve
from model import TimeSeriesSegmenter
from segmenter.service.app import create_app
from segmenter.service.runtime import Runtime

# Requests captured from a real Label Studio 1.23.2.
PAYLOADS = Path(__file__).resolve().parent / "payloads"


def load_payload(name: str) -> dict:
    """The JSON body of a request captured from Label Studio 1.23.2."""
    return json.loads((PAYLOADS / name).read_text())["json"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real Label Studio and container suites are slow as well: ``-m "not slow"`` leaves them out too."""
    for item in items:
        if item.get_closest_marker("labelstudio") or item.get_closest_marker("containers"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def payload():
    return load_payload


@pytest.fixture
def ls() -> Iterator[FakeLabelStudio]:
    """The fake Label Studio (``harness.fakels``) running on a free port, its legacy key ``KEY``."""
    with FakeLabelStudio(legacy_token=KEY) as server:
        yield server


@pytest.fixture
def foreign() -> Iterator[FakeLabelStudio]:
    """A second fake standing in for a host that is not Label Studio, with a key of its own."""
    with FakeLabelStudio(legacy_token="other-key") as server:
        yield server


@pytest.fixture
def backend(tmp_path, ls):
    """Start the app over HTTP: ``backend(**settings changes)`` gives a ``support.Backend``; all stop at the end.

    It asks for ``ls`` so that the fake Label Studio outlives the backends: a training or write-back still
    running at the end finishes against it instead of retrying a closed port (15 s of backoff)."""
    runtimes, contexts = [], []

    def start(**changes):
        runtime = Runtime.start(make_settings(tmp_path, **changes))
        runtimes.append(runtime)
        ctx = serve(create_app(runtime, TimeSeriesSegmenter))
        url = ctx.__enter__()
        contexts.append(ctx)
        return Backend(url, runtime)

    yield start
    for runtime in runtimes:
        runtime.scheduler.wait(60)
    for ctx in contexts:
        ctx.__exit__(None, None, None)
