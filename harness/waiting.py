"""Polling: wait for a condition, or until a project's training requests have all run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import requests

from harness import DriverError

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5,
             alive: Callable[[], None] | None = None, detail: Callable[[], str] | None = None) -> T:
    """Poll ``check`` until it returns something truthy; ``alive`` may raise to stop early.

    A ``requests`` error counts as not yet; after ``timeout`` seconds ``DriverError``, with
    ``detail()`` (e.g. log tails) appended.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        if alive:
            alive()
        try:
            value = check()
        except requests.RequestException as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            last_seen = f" (last: {last})" if last else ""
            raise DriverError(f"timed out after {timeout:.0f} s waiting for {what}{last_seen}"
                              + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)


def backend_status(backend_url: str, project: int, auth: tuple[str, str] | None = None) -> dict:
    """The backend's ``/status/<project>``; ``DriverError`` when it does not answer 200."""
    response = requests.get(f"{backend_url}/status/{project}", auth=auth, timeout=5)
    if response.status_code != 200:
        raise DriverError(f"GET {backend_url}/status/{project} answered {response.status_code}: {response.text[:1000]}")
    return response.json()


def training_settled(status: dict, min_requests: int = 0) -> bool:
    """Whether a ``/status/<project>`` answer shows at least ``min_requests`` training requests,
    every one of them started, no training running (the last one idle or failed) and no
    write-back of predictions waiting or running."""
    seen = status.get("requests", 0)
    return (
        seen >= min_requests
        and status.get("started_request", 0) >= seen
        and status.get("state") in ("idle", "failed")
        and (status.get("writeback") or {}).get("state") not in ("pending", "running")
    )


def wait_until_idle(backend_url: str, project: int, timeout: float = 60.0, *, min_requests: int = 0,
                    interval: float = 0.05, auth: tuple[str, str] | None = None,
                    alive: Callable[[], None] | None = None) -> dict:
    """The backend's status of ``project`` once its training has settled (``training_settled``).

    The state may be "idle" or "failed": the caller checks which it expected.
    """
    last: dict = {}

    def settled() -> dict | None:
        last.clear()
        last.update(backend_status(backend_url, project, auth))
        return dict(last) if training_settled(last, min_requests) else None

    try:
        return wait_for(settled, timeout, f"training of project {project} (request {min_requests or 'any'})",
                        interval=interval, alive=alive)
    except DriverError as exc:
        raise DriverError(f"{exc}; last status: {last}") from None
