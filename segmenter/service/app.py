"""The Flask app: ``create_app(runtime, backend)`` puts the runtime in ``app.extensions``, guards
every route with Basic auth (``service.auth``), counts every request (``/metrics``), adds the
defensive headers, answers bad bodies, a full ``MODEL_DIR`` and oversized bodies with JSON, and
registers the blueprints: the Label Studio API (``service.api``), the dashboard
(``service.dashboard.pages``) and the export (``service.export_routes``)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from flask import Flask, Response, g, jsonify, request

from segmenter import store
from segmenter.service import api, auth, export_routes, headers, metrics
from segmenter.service.bodies import BadRequest
from segmenter.service.buffering import too_large_message
from segmenter.service.dashboard import pages

if TYPE_CHECKING:
    from segmenter.service.mlbase import LabelStudioMLBase
    from segmenter.service.runtime import Runtime

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def create_app(runtime: Runtime, backend: type[LabelStudioMLBase]) -> Flask:
    """The WSGI app serving ``backend`` (made per request for one project) with ``runtime``'s services."""
    settings = runtime.settings
    log.info("settings: %s", settings.describe())
    app = Flask(__name__)
    # The same cap as gunicorn's (service.buffering), for the development server.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_mb * 2**20
    # The gunicorn worker takes its body limits and Basic auth from the runtime (service.gunicorn_worker).
    app.extensions["segmenter"] = runtime
    app.extensions["segmenter.backend"] = backend
    app.before_request(_start_clock)
    auth.install(app, auth.BasicAuth.of(settings))
    app.after_request(_count_request)
    app.after_request(headers.defend)
    app.register_error_handler(BadRequest, _bad_request)
    app.register_error_handler(store.StorageError, _storage_full)
    app.register_error_handler(413, _too_large)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(export_routes.blueprint)
    return app


def _start_clock() -> None:
    g.started = time.monotonic()


def _count_request(response: Response) -> Response:
    # The rule pattern (``/status/<project>``), never the raw path: bounded labels, no ids or secrets.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    started = g.get("started")
    seconds = time.monotonic() - started if started is not None else 0.0
    # Any string can arrive as a method: only the ones HTTP defines become labels.
    method = request.method if request.method in HTTP_METHODS else "OTHER"
    metrics.observe_request(route, method, response.status_code, seconds)
    return response


def _bad_request(exc: BadRequest) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), 400


def _storage_full(exc: store.StorageError) -> tuple[Response, int]:
    # A full MODEL_DIR: say so (Label Studio shows a 503's error on Start Training; a 500 looks like a crash).
    log.error("%s %s: %s", request.method, request.path, exc)
    model_dir = api.runtime().settings.model_dir
    return jsonify({"error": f"{exc} (MODEL_DIR {model_dir}); the request was not recorded"}), 503


def _too_large(exc: Exception) -> tuple[Response, int]:
    return jsonify({"error": too_large_message(api.runtime().settings.max_request_mb)}), 413
