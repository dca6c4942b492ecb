"""The Flask app Label Studio talks to: ``/health``, ``/setup``, ``/predict``,
``/webhook``, ``/versions``, plus ``/status`` for people.

Routes only translate HTTP to calls on a model object (``LabelStudioMLBase``)
and back; they never train inline and never let one bad task or body turn
into a 500 for Label Studio.

Basic auth (``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``) guards every route but
``/webhook``: Label Studio sends no Basic auth on event webhooks, so guarding
it would silently stop auto-training.  Instead an unauthenticated webhook is
accepted only for a project that was connected through an authenticated
``/setup``, and its body is used only as a trigger: training data always comes
from Label Studio's export API with our own token.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, jsonify, request

from segmenter import store
from segmenter.reading.project_settings import settings_report
from segmenter.service import dashboard, export_routes, headers, metrics
from segmenter.service.auth import CHALLENGE, REFUSAL, BasicAuth
from segmenter.service.buffering import too_large_message
from segmenter.service.runtime import Runtime

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


class BadRequest(Exception):
    """The request body is not what the route expects."""


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object (Content-Type: application/json)")
    return data


def _text(data: dict, name: str) -> str | None:
    """An optional string field of a body; anything but a string or null is a 400."""
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string, not {type(value).__name__}")
    return value


def _object(data: dict, name: str) -> dict:
    """An optional object field of a body ({} when absent); anything else is a 400."""
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"'{name}' must be an object, not {type(value).__name__}")
    return value


def _project_of(data: dict) -> tuple[object, int | None]:
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


def create_app(runtime: Runtime) -> Flask:
    """The WSGI app serving ``runtime.model_class`` with the process's services."""
    settings, model_class = runtime.settings, runtime.model_class
    log.info("settings: %s", settings.describe())
    app = Flask(__name__)
    # The same cap as gunicorn's (segmenter.service.buffering), for the development server.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_mb * 2**20
    # The gunicorn worker takes its body limits and Basic auth from here (segmenter.service.gunicorn_worker).
    app.config["SEGMENTER_SETTINGS"] = settings
    app.extensions["segmenter"] = runtime

    basic_auth = BasicAuth.of(settings)

    def key(project: object, created: int | None = None, claim: bool = False, create: bool = False) -> str:
        """The stored project a request's project is (``store.resolve``); a 400 for anything that is not one."""
        try:
            return store.resolve(settings.model_dir, project, created, claim=claim, create=create)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    def authorised() -> bool:
        return basic_auth.accepts(request.headers.get("Authorization"))

    @app.before_request
    def start_clock() -> None:
        g.started = time.monotonic()

    @app.before_request
    def require_auth() -> Response | None:
        # The same rule the gunicorn worker applies before reading a body (segmenter.service.auth).
        if basic_auth.guards(request.path) and not authorised():
            return Response(REFUSAL, 401, {"WWW-Authenticate": CHALLENGE})
        return None

    @app.after_request
    def count_request(response: Response) -> Response:
        # The rule pattern (``/status/<project>``), never the raw path: bounded labels, no ids or secrets.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("started")
        seconds = time.monotonic() - started if started is not None else 0.0
        # Any string can arrive as a method: only the ones HTTP defines become labels.
        method = request.method if request.method in HTTP_METHODS else "OTHER"
        metrics.observe_request(route, method, response.status_code, seconds)
        return response

    app.after_request(headers.defend)

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> tuple[Response, int]:
        return jsonify({"error": str(exc)}), 400

    @app.errorhandler(store.StorageError)
    def storage_full(exc: store.StorageError) -> tuple[Response, int]:
        # A full MODEL_DIR: say so (Label Studio shows a 503's error on Start Training; a 500 looks like a crash).
        log.error("%s %s: %s", request.method, request.path, exc)
        error = f"{exc} (MODEL_DIR {settings.model_dir}); the request was not recorded"
        return jsonify({"error": error}), 503

    @app.errorhandler(413)
    def too_large(exc: Exception) -> tuple[Response, int]:
        return jsonify({"error": too_large_message(settings.max_request_mb)}), 413

    @app.get("/")
    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "UP", "model_class": model_class.__name__})

    @app.post("/setup")
    def setup() -> Response:
        data = _json_body()
        model = model_class(key(*_project_of(data), create=True), _text(data, "schema"), runtime)
        model.connect(_text(data, "hostname"), _text(data, "access_token"), data.get("extra_params"))
        return jsonify({"model_version": model.model_version})

    @app.post("/predict")
    def predict() -> Response:
        data = _json_body()
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a list of task objects")
        params = _object(data, "params")
        context = _object(params, "context") or None
        model = model_class(key(*_project_of(data), claim=True), _text(data, "label_config"), runtime)
        results = model.predict(tasks, context=context)
        return jsonify({"results": results})

    @app.post("/webhook")
    def webhook() -> Response:
        data = _json_body()
        action = data.get("action")
        if not isinstance(action, str):
            raise BadRequest("webhook body has no 'action'")
        # An unauthenticated webhook never claims a folder: only an authenticated request says whose it is.
        trusted = authorised()
        project = key(*_project_of(data), claim=trusted)
        if not trusted and not store.load_connection(settings.model_dir, project):
            return jsonify({"error": f"project {project} was never connected through an authenticated /setup"}), 403
        project_info = data.get("project")
        label_config = _text(project_info, "label_config") if isinstance(project_info, dict) else None
        model = model_class(project, label_config, runtime)
        return jsonify({"status": "ok", "action": action, **model.fit(action, data)})

    @app.get("/versions")
    def versions() -> Response:
        project = request.args.get("project")
        projects = [key(project)] if project else store.projects(settings.model_dir)
        return jsonify({"versions": [v for p in projects for v in store.served_versions(settings.model_dir, p)]})

    def report(project: str) -> dict:
        """A project's stored report plus the ``model_*`` settings of the config last seen, and their problems."""
        schema = store.load_connection(settings.model_dir, project).get("schema")
        stored = store.report(settings.model_dir, project)
        return {**stored, **settings_report(schema, settings.training, stored.get("models")),
                "dashboard": f"/dashboard/project/{project}"}

    @app.get("/status")
    def status_all() -> Response:
        projects = store.projects(settings.model_dir)
        return jsonify({
            "projects": [report(p) for p in projects],
            "queue": store.queue(settings.model_dir, projects),
            "dashboard": "/dashboard",
        })

    @app.get("/status/<project>")
    def status_one(project: str) -> Response:
        return jsonify(report(key(project)))

    app.register_blueprint(dashboard.blueprint(runtime, key))
    app.register_blueprint(export_routes.blueprint)

    @app.get("/metrics")
    def metrics_page() -> Response:
        body, content_type = metrics.exposition(settings.model_dir, settings.metrics_dir)
        return Response(body, 200, {"Content-Type": content_type})

    return app
