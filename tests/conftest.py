"""Shared fixtures: captured Label Studio payloads and the fake Label Studio."""

import json
from pathlib import Path

import pytest

pytest_plugins = ["harness.fakels"]

# Requests captured from a real Label Studio 1.23.2.
PAYLOADS = Path(__file__).resolve().parent / "payloads"


def load_payload(name: str) -> dict:
    """The JSON body of a request captured from Label Studio 1.23.2."""
    return json.loads((PAYLOADS / name).read_text())["json"]


@pytest.fixture
def payload():
    return load_payload
