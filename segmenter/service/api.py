"""The routes Label Studio calls (``/health``, ``/setup``, ``/predict``, ``/webhook``, ``/versions``)
plus ``/status`` and ``/metrics`` for people and monitors: a blueprint.

Routes only translate HTTP to calls on a backend object (the app's
``LabelStudioMLBase`` subclass, made per request for one project) and back;
they never train inline and never let one bad task or body turn into a 500
for Label Studio.

``/webhook`` is the one route Basic auth leaves open (Label Studio sends no
Basic auth on event webhooks, so guarding it would silently stop
auto-training): an unauthenticated webhook is accepted only for a project
that was connected through an authenticated ``/setup``, and its body is used
only as a trigger: training data always comes from Label Studio's export API
with our own token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, jsonify, request

from segmenter import store
from segmenter.reading.project_settings import settings_report
from segmenter.service import metrics
from segmenter.service.auth import authenticated
from segmenter.service.bodies import BadRequest, json_body, member, named_project, runtime, stored_project, text

if TYPE_CHECKING:
    from segmenter.service.mlbase import LabelStudioMLBase

blueprint = Blueprint("labelstudio_api", __name__)


def backend_class() -> type[LabelStudioMLBase]:
    """The backend class this app serves (``create_app``'s argument)."""
    return current_app.extensions["segmenter.backend"]


@blueprint.get("/")
@blueprint.get("/health")
def health() -> Response:
    return jsonify({"status": "UP", "model_class": backend_class().__name__})


@blueprint.post("/setup")
def setup() -> Response:
    data = json_body()
    backend = backend_class()(stored_project(*named_project(data), create=True), text(data, "schema"), runtime())
    backend.connect(text(data, "hostname"), text(data, "access_token"), data.get("extra_params"))
    return jsonify({"model_version": backend.model_version})


@blueprint.post("/predict")
def predict() -> Response:
    data = json_body()
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise BadRequest("'tasks' must be a list of task objects")
    context = member(member(data, "params"), "context") or None
    backend = backend_class()(stored_project(*named_project(data), claim=True), text(data, "label_config"), runtime())
    return jsonify({"results": backend.predict(tasks, context=context)})


@blueprint.post("/webhook")
def webhook() -> Response:
    data = json_body()
    action = data.get("action")
    if not isinstance(action, str):
        raise BadRequest("webhook body has no 'action'")
    # An unauthenticated webhook never claims a folder: only an authenticated request says whose it is.
    trusted = authenticated(current_app)
    project = stored_project(*named_project(data), claim=trusted)
    if not trusted and not store.load_connection(runtime().settings.model_dir, project):
        return jsonify({"error": f"project {project} was never connected through an authenticated /setup"}), 403
    described = data.get("project")
    label_config = text(described, "label_config") if isinstance(described, dict) else None
    backend = backend_class()(project, label_config, runtime())
    return jsonify({"status": "ok", "action": action, **backend.fit(action, data)})


@blueprint.get("/versions")
def versions() -> Response:
    model_dir = runtime().settings.model_dir
    project = request.args.get("project")
    projects = [stored_project(project)] if project else store.projects(model_dir)
    return jsonify({"versions": [v for p in projects for v in store.served_versions(model_dir, p)]})


def report(project: str) -> dict:
    """A project's stored report plus the ``model_*`` settings of the config last seen, and their problems."""
    settings = runtime().settings
    label_config = store.load_connection(settings.model_dir, project).get("label_config")
    stored = store.report(settings.model_dir, project)
    return {**stored, **settings_report(label_config, settings.training, stored.get("models")),
            "dashboard": f"/dashboard/project/{project}"}


@blueprint.get("/status")
def status_all() -> Response:
    projects = store.projects(runtime().settings.model_dir)
    return jsonify({
        "projects": [report(p) for p in projects],
        "queue": store.queue(runtime().settings.model_dir, projects),
        "dashboard": "/dashboard",
    })


@blueprint.get("/status/<project>")
def status_one(project: str) -> Response:
    return jsonify(report(stored_project(project)))


@blueprint.get("/metrics")
def metrics_page() -> Response:
    settings = runtime().settings
    body, content_type = metrics.exposition(settings.model_dir, settings.metrics_dir)
    return Response(body, 200, {"Content-Type": content_type})
