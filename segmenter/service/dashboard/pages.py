"""The dashboard at ``/dashboard``: HTML pages for people, over what ``/status`` and the models record.

``/dashboard`` lists every project (state, progress, failure, version served,
data, headline scores); ``/dashboard/project/<id>`` shows one project: its
learning curve over trainings, per-label F1, the validation confusion matrix, class balance, the latest
training's per-epoch curve, why it stopped, the settings used and its tasks;
``/dashboard/project/<id>/task/<task>`` one task: its series with annotated and
predicted classes one above the other and each label's probability
(``segmenter.service.dashboard.task_view``).  Tasks are read through Label Studio's task list
with ``review=true`` (``LabelStudioClient.tasks_page``), which never makes it
call ``/predict``; a task read for a page is remembered a few seconds
(``task_reads``) so that its charts do not read it again (one read however
many ask at once).  Charts are PNGs drawn by ``segmenter.service.dashboard.charts`` on the app's chart
thread (``segmenter.service.dashboard.chart_worker``), never on a request thread, so ``/health``,
``/predict`` and ``/webhook`` never wait for one.  A chart is known by a key
of what it shows (``ETag``: a browser asking again gets a 304); a version's
charts are drawn once and kept beside it (``store.save_chart``), and a busy
chart thread answers 503 with Retry-After, which the page's script honours.
Nothing is loaded from another site, and no page has inline script or style
(``segmenter.service.headers`` sets a Content-Security-Policy that forbids them).
The pages never run on the ``/predict`` or ``/webhook`` path.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request

from segmenter import store
from segmenter.errors import SegmenterError
from segmenter.service.bodies import runtime, stored_project
from segmenter.service.dashboard import charts, task_view
from segmenter.service.dashboard.chart_worker import Busy

if TYPE_CHECKING:
    from segmenter.service.project import Project

log = logging.getLogger(__name__)

CHARTS = ("learning", "f1", "balance", "epochs", "confusion")
VERSION_CHARTS = frozenset(CHARTS) - {"learning"}  # drawn from the version's own records only
IMMUTABLE = "private, max-age=31536000, immutable"  # a version's chart under a URL naming the version
REVALIDATE = "private, no-cache"  # kept by the browser, asked again with If-None-Match
TASKS_PER_PAGE = 50
NO_URL = "no Label Studio URL: set LABEL_STUDIO_URL or connect the project"

# Basic auth is the app's one guard (``segmenter.service.auth``), applied before any blueprint runs.
blueprint = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/dashboard/static")


def task_row(task: dict, version: str) -> dict:
    """What the project page lists of a task: id, annotations counted, the served version's score."""
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    ours = [p.get("score") for p in task.get("predictions") or [] if p.get("model_version") == version]
    return {"id": task.get("id"), "annotations": len(annotations), "score": ours[-1] if ours else None}


def project_view(model_dir: Path, key: str) -> dict:
    """Everything the project page shows: ``/status``'s report, the history and the served version's targets."""
    report = store.report(model_dir, key)
    version = report["model_version"]
    targets = [] if version == store.INITIAL_VERSION else store.metadata(model_dir, key, version).get("targets", [])
    return {"report": report, "history": report["history"], "targets": targets}


def _chart(view: dict, kind: str, index: int) -> tuple[Callable[..., bytes], tuple] | None:
    """How to draw one chart of a project (function and arguments), or None when there is nothing to draw."""
    if kind == "learning":
        points = [
            t for entry in view["history"] for t in entry.get("targets", [])[index : index + 1]
            if t.get("tasks") is not None and t.get("balanced_accuracy") is not None
        ]
        return (charts.learning_curve, (points,)) if points else None
    if index >= len(view["targets"]):
        return None
    info = view["targets"][index].get("info", {})
    if kind == "f1":
        f1 = info.get("validation", {}).get("per_class_f1") or {}
        return (charts.bars, (f1, "Per-label validation F1 (served version)", "F1", 1.0)) if f1 else None
    if kind == "balance":
        rows = info.get("data", {}).get("class_rows") or {}
        return (charts.bars, (rows, "Class balance: annotated rows per label", "rows")) if rows else None
    if kind == "confusion":
        matrix = info.get("validation", {}).get("confusion") or {}
        return (charts.confusion, (matrix["classes"], matrix["rows"])) if matrix.get("rows") else None
    if kind == "epochs":
        curve = info.get("curve") or []
        return (charts.training_curve, (curve, info.get("best_epoch"))) if curve else None
    return None


def chart_key(*shown: object) -> str:
    """A chart's name by what it shows and how it is drawn: its ETag, its file name, its job's key."""
    text = json.dumps([charts.STYLE, *shown], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def png_response(key: str, job: Callable[[], bytes], cache_control: str) -> Response | tuple[Response, int]:
    """The chart ``key`` as a PNG drawn by ``job`` on the runtime's chart thread; a 304 when the browser
    has it, a 503 with Retry-After when the chart thread is busy."""
    headers = {"ETag": f'"{key}"', "Cache-Control": cache_control}
    if request.if_none_match.contains(key):
        return Response(status=304, headers=headers)
    try:
        png = runtime().chart_worker.draw(key, job)
    except Busy as exc:
        return jsonify({"error": str(exc)}), 503, {"Retry-After": str(exc.retry_after)}
    return Response(png, 200, {"Content-Type": "image/png", **headers})


@blueprint.before_request
def warm_up() -> None:
    charts.warm_up()  # once per process: the first chart a visitor opens then skips matplotlib's import


def known(project: str) -> Project:
    """The stored project a URL names, with the label config last seen (a 404 when there is none)."""
    k = stored_project(project)
    model_dir = runtime().settings.model_dir
    if k not in store.projects(model_dir):
        abort(404, f"no project {k}")
    return runtime().project(k, store.load_connection(model_dir, k).get("label_config"))


@blueprint.get("/dashboard")
def projects() -> str:
    model_dir = runtime().settings.model_dir
    reports = [store.report(model_dir, p) for p in store.projects(model_dir)]
    return render_template("dashboard/projects.html", projects=reports, queue=store.queue(model_dir, [
        r["project"] for r in reports]))


@blueprint.get("/dashboard/project/<project>")
def project(project: str) -> str:
    handle = known(project)
    view = project_view(handle.settings.model_dir, handle.key)
    page = max(1, min(request.args.get("page", 1, type=int) or 1, 10**6))
    listing: dict = {"page": page, "per_page": TASKS_PER_PAGE, "rows": [], "total": 0, "error": None}
    try:
        if handle.client is None:
            listing["error"] = NO_URL
        else:
            tasks, listing["total"] = handle.client.tasks_page(store.label_studio_id(handle.key), page,
                                                               TASKS_PER_PAGE, resolve_uri=False)
            listing["rows"] = [task_row(t, view["report"]["model_version"]) for t in tasks]
    except SegmenterError as exc:  # Label Studio unreachable: the rest of the page still shows
        listing["error"] = str(exc)
    return render_template("dashboard/project.html", key=handle.key, tasks=listing, **view)


@blueprint.get("/dashboard/project/<project>/chart/<kind>/<int:index>.png")
def chart(project: str, kind: str, index: int) -> Response | tuple[Response, int]:
    if kind not in CHARTS:
        abort(404, f"no chart {kind!r}; charts: {', '.join(CHARTS)}")
    handle = known(project)
    model_dir, k = handle.settings.model_dir, handle.key
    view = project_view(model_dir, k)
    found = _chart(view, kind, index)
    if found is None:
        abort(404, "nothing to draw yet")
    draw, shown = found
    key = chart_key(kind, shown)
    version = view["report"]["model_version"]
    kept = version != store.INITIAL_VERSION

    def job() -> bytes:
        png = store.load_chart(model_dir, k, version, key) if kept else None
        if png is None:
            png = draw(*shown)
            if kept:
                try:
                    store.save_chart(model_dir, k, version, key, png)
                except OSError as exc:  # a full disk: served, only drawn again next time
                    log.warning("project %s: %s chart of %s not kept: %s", k, kind, version, exc)
        return png

    versioned = kind in VERSION_CHARTS and request.args.get("v") == version
    return png_response(key, job, IMMUTABLE if versioned else REVALIDATE)


@blueprint.get("/dashboard/project/<project>/task")
def task_form(project: str) -> Response:
    k = known(project).key
    task_id = request.args.get("id", "").strip()
    if not task_id.isascii() or not task_id.isdigit() or len(task_id) > 18:
        return jsonify({"error": f"'id' must be a task id (digits), not {task_id[:40]!r}"}), 400
    return redirect(f"/dashboard/project/{k}/task/{int(task_id)}")


def read_task(handle: Project, task_id: int) -> tuple[dict | None, tuple[Response, int] | None]:
    """The task, or the error answer: no Label Studio URL (503), unreachable (502), no such task (404)."""
    if handle.client is None:
        return None, (jsonify({"error": NO_URL}), 503)
    try:
        task = runtime().task_reads.get(handle.client, handle.key, task_id)
    except SegmenterError as exc:
        return None, (jsonify({"error": str(exc)}), 502)
    if task is None:
        return None, (jsonify({"error": f"project {handle.key} has no task {task_id} in Label Studio"}), 404)
    return task, None


@blueprint.get("/dashboard/project/<project>/task/<int:task_id>")
def task(project: str, task_id: int) -> str | tuple[Response, int]:
    handle = known(project)
    found, error = read_task(handle, task_id)
    if error is not None:
        return error
    report = store.report(handle.settings.model_dir, handle.key)
    targets = [m["from_name"] for m in report.get("models", [])]
    return render_template("dashboard/task.html", key=handle.key, task_id=task_id, report=report, targets=targets,
                           row=task_row(found, report["model_version"]))


@blueprint.get("/dashboard/project/<project>/task/<int:task_id>/<int:index>.png")
def task_chart(project: str, task_id: int, index: int) -> Response | tuple[Response, int]:
    handle = known(project)
    k = handle.key
    version, models = runtime().versions.get(k)
    if not models:
        return jsonify({"error": f"project {k} has no trained model yet"}), 404
    found, error = read_task(handle, task_id)
    if error is not None:
        return error
    if not 0 <= index < len(models):
        return jsonify({"error": f"target {index} out of range: the model has {len(models)}"}), 404
    try:  # the chart cleans up as /predict does; a config that no longer parses: the automatic clean-up
        settings = handle.project_settings
    except SegmenterError:
        settings = {}
    views = runtime().task_views
    key = chart_key("task", index, handle.client.url, task_view.fingerprint(k, version, found, models,
                                                                               settings=settings))

    def job() -> bytes:
        shown = views.view(k, version, found, models, handle.fetcher, model_dir=handle.settings.model_dir,
                           settings=settings)
        return charts.task_chart(shown[index])

    try:
        return png_response(key, job, REVALIDATE)
    except SegmenterError as exc:  # unreadable task data: said, not a 500
        return jsonify({"error": str(exc)}), 502
