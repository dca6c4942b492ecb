"""What a request names: the fields of its JSON body and the stored project it means.

Shared by the blueprints; a body that is not what a route expects raises
``BadRequest``, which the app answers with a JSON 400 naming the problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app, request

from segmenter import store

if TYPE_CHECKING:
    from segmenter.service.runtime import Runtime


class BadRequest(Exception):
    """The request body is not what the route expects."""


def runtime() -> Runtime:
    """The runtime of the app serving this request (``create_app`` keeps it in ``app.extensions``)."""
    return current_app.extensions["segmenter"]


def json_body() -> dict:
    """The body as a JSON object."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object (Content-Type: application/json)")
    return data


def text(data: dict, name: str) -> str | None:
    """An optional string field of a body; anything but a string or null is a 400."""
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string, not {type(value).__name__}")
    return value


def member(data: dict, name: str) -> dict:
    """An optional object field of a body ({} when absent); anything else is a 400."""
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"'{name}' must be an object, not {type(value).__name__}")
    return value


def named_project(data: dict) -> tuple[object, int | None]:
    """The project a body names and, where it says so, when Label Studio created it (a webhook's
    ``project.created_at``; ``/setup`` and ``/predict`` say it in ``"<id>.<epoch>"``)."""
    project, created = data.get("project"), None
    if isinstance(project, dict):
        project, created = project.get("id"), store.created_epoch(project.get("created_at"))
    if project in (None, ""):
        tasks = data.get("tasks")
        if isinstance(tasks, list) and tasks and isinstance(tasks[0], dict):
            project = tasks[0].get("project")
    if project in (None, ""):
        raise BadRequest("request names no project")
    return project, created


def stored_project(project: object, created: int | None = None, claim: bool = False, create: bool = False) -> str:
    """The stored project a request's project is (``store.resolve``); a 400 for anything that is not one."""
    try:
        return store.resolve(runtime().settings.model_dir, project, created, claim=claim, create=create)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
