"""The dashboard at ``/dashboard``: HTML pages for people, over what ``/status`` and the models record.

``/dashboard`` lists every project (state, progress, failure, version served,
data, headline scores); ``/dashboard/project/<id>`` shows one project: its
learning curve over trainings, per-label F1, the validation confusion matrix, class balance, the latest
training's per-epoch curve, why it stopped, the settings used and its tasks;
``/dashboard/project/<id>/task/<task>`` one task: its series with annotated and
predicted classes one above the other and each label's probability
(``segmenter.taskview``).  Tasks are read through Label Studio's task list
with ``review=true`` (``LabelStudioClient.tasks_page``), which never makes it
call ``/predict``; a task read for a page is remembered for ``FETCHED_FOR``
seconds so that its charts do not read it again.  Charts are PNGs drawn by
``segmenter.charts``; nothing is loaded from another site.  The pages never
run on the ``/predict`` or ``/webhook`` path.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request

from segmenter import charts, store, taskview
from segmenter.errors import SegmenterError
from segmenter.projectsettings import ProjectSettings, read_settings

if TYPE_CHECKING:
    from segmenter.labelstudio import LabelStudioClient
    from segmenter.runtime import Runtime

CHARTS = ("learning", "f1", "balance", "epochs", "confusion")
TASKS_PER_PAGE = 50
FETCHED_FOR = 30.0  # seconds a task read for a page serves that page's charts
_FETCHED_KEPT = 16
_fetched: OrderedDict[tuple[str, int], tuple[float, dict | None]] = OrderedDict()
_fetched_lock = threading.Lock()


def fetch_task(client: LabelStudioClient, project: str, task_id: int) -> dict | None:
    """One task from Label Studio (None when the project has none), read once per page view."""
    now = time.monotonic()
    with _fetched_lock:
        found = _fetched.get((project, task_id))
        if found is not None and now - found[0] < FETCHED_FOR:
            return found[1]
    task = client.task(store.label_studio_id(project), task_id)
    with _fetched_lock:
        _fetched[(project, task_id)] = (now, task)
        _fetched.move_to_end((project, task_id))
        while len(_fetched) > _FETCHED_KEPT:
            _fetched.popitem(last=False)
    return task


def task_row(task: dict, version: str) -> dict:
    """What the project page lists of a task: id, annotations counted, the served version's score."""
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    ours = [p.get("score") for p in task.get("predictions") or [] if p.get("model_version") == version]
    return {"id": task.get("id"), "annotations": len(annotations), "score": ours[-1] if ours else None}


def project_view(model_dir: Path, key: str) -> dict:
    """Everything the project page shows: ``/status``'s report, the history and the served version's targets."""
    report = store.report(model_dir, key)
    status = store.stored_status(model_dir, key)
    version = report["model_version"]
    targets = [] if version == store.INITIAL_VERSION else store.metadata(model_dir, key, version).get("targets", [])
    return {"report": report, "history": status.history, "targets": targets}


def _chart(view: dict, kind: str, index: int) -> bytes | None:
    """The PNG of one chart of a project, or None when there is nothing to draw."""
    if kind == "learning":
        points = [
            t for entry in view["history"] for t in entry.get("targets", [])[index : index + 1]
            if t.get("tasks") is not None and t.get("balanced_accuracy") is not None
        ]
        return charts.learning_curve(points) if points else None
    if index >= len(view["targets"]):
        return None
    info = view["targets"][index].get("info", {})
    if kind == "f1":
        f1 = info.get("validation", {}).get("per_class_f1") or {}
        return charts.bars(f1, "Per-label validation F1 (served version)", "F1", 1.0) if f1 else None
    if kind == "balance":
        rows = info.get("data", {}).get("class_rows") or {}
        return charts.bars(rows, "Class balance: annotated rows per label", "rows") if rows else None
    if kind == "confusion":
        matrix = info.get("validation", {}).get("confusion") or {}
        return charts.confusion(matrix["classes"], matrix["rows"]) if matrix.get("rows") else None
    if kind == "epochs":
        curve = info.get("curve") or []
        return charts.training_curve(curve, info.get("best_epoch")) if curve else None
    return None


def blueprint(runtime: Runtime, key: Callable[[str], str], authorised: Callable[[], bool]) -> Blueprint:
    """The dashboard's routes; ``key`` parses a project id (a 400 when bad), ``authorised`` checks Basic auth."""
    bp = Blueprint("dashboard", __name__, template_folder="templates")
    model_dir = runtime.settings.model_dir

    @bp.before_request
    def guard() -> Response | None:
        if not authorised():
            return Response("authentication required", 401, {"WWW-Authenticate": 'Basic realm="ml-backend"'})
        charts.warm_up()  # once per process: the first chart a visitor opens then skips matplotlib's import
        return None

    def project_settings(k: str) -> dict[str, ProjectSettings]:
        """The project's settings from the label config last seen, so the chart cleans up as ``/predict`` does."""
        schema = store.load_connection(model_dir, k).get("schema")
        try:
            return read_settings(schema, runtime.settings.training) if schema else {}
        except SegmenterError:  # a config that no longer parses: the automatic clean-up
            return {}

    def known(project: str) -> str:
        k = key(project)
        if k not in store.projects(model_dir):
            abort(404, f"no project {k}")
        return k

    @bp.get("/dashboard")
    def projects() -> str:
        reports = [store.report(model_dir, p) for p in store.projects(model_dir)]
        return render_template("dashboard/projects.html", projects=reports, queue=store.queue(model_dir, [
            r["project"] for r in reports]))

    @bp.get("/dashboard/project/<project>")
    def project(project: str) -> str:
        k = known(project)
        view = project_view(model_dir, k)
        page = max(1, min(request.args.get("page", 1, type=int) or 1, 10**6))
        listing: dict = {"page": page, "per_page": TASKS_PER_PAGE, "rows": [], "total": 0, "error": None}
        try:
            client = runtime.access.client_for(k)
            if client is None:
                listing["error"] = "no Label Studio URL: set LABEL_STUDIO_URL or connect the project"
            else:
                tasks, listing["total"] = client.tasks_page(store.label_studio_id(k), page, TASKS_PER_PAGE,
                                                            resolve_uri=False)
                listing["rows"] = [task_row(t, view["report"]["model_version"]) for t in tasks]
        except SegmenterError as exc:  # Label Studio unreachable: the rest of the page still shows
            listing["error"] = str(exc)
        return render_template("dashboard/project.html", key=k, tasks=listing, **view)

    @bp.get("/dashboard/project/<project>/chart/<kind>/<int:index>.png")
    def chart(project: str, kind: str, index: int) -> Response:
        if kind not in CHARTS:
            abort(404, f"no chart {kind!r}; charts: {', '.join(CHARTS)}")
        png = _chart(project_view(model_dir, known(project)), kind, index)
        if png is None:
            abort(404, "nothing to draw yet")
        return Response(png, 200, {"Content-Type": "image/png", "Cache-Control": "no-store"})

    @bp.get("/dashboard/project/<project>/task")
    def task_form(project: str) -> Response:
        k = known(project)
        task_id = request.args.get("id", "").strip()
        if not task_id.isascii() or not task_id.isdigit() or len(task_id) > 18:
            return jsonify({"error": f"'id' must be a task id (digits), not {task_id[:40]!r}"}), 400
        return redirect(f"/dashboard/project/{k}/task/{int(task_id)}")

    def read_task(k: str, task_id: int) -> tuple[dict | None, tuple[Response, int] | None]:
        """The task, or the error answer: no Label Studio URL (503), unreachable (502), no such task (404)."""
        client = runtime.access.client_for(k)
        if client is None:
            return None, (jsonify({"error": "no Label Studio URL: set LABEL_STUDIO_URL or connect the project"}), 503)
        try:
            task = fetch_task(client, k, task_id)
        except SegmenterError as exc:
            return None, (jsonify({"error": str(exc)}), 502)
        if task is None:
            return None, (jsonify({"error": f"project {k} has no task {task_id} in Label Studio"}), 404)
        return task, None

    @bp.get("/dashboard/project/<project>/task/<int:task_id>")
    def task(project: str, task_id: int) -> str | tuple[Response, int]:
        k = known(project)
        found, error = read_task(k, task_id)
        if error is not None:
            return error
        report = store.report(model_dir, k)
        targets = [m["from_name"] for m in report.get("models", [])]
        return render_template("dashboard/task.html", key=k, task_id=task_id, report=report, targets=targets,
                               row=task_row(found, report["model_version"]))

    @bp.get("/dashboard/project/<project>/task/<int:task_id>/<int:index>.png")
    def task_chart(project: str, task_id: int, index: int) -> Response | tuple[Response, int]:
        k = known(project)
        version, models = runtime.cache.get(k)
        if not models:
            return jsonify({"error": f"project {k} has no trained model yet"}), 404
        found, error = read_task(k, task_id)
        if error is not None:
            return error
        try:
            views = taskview.view(k, version, found, models, runtime.access.fetcher_for(k), model_dir=model_dir,
                                  settings=project_settings(k))
        except SegmenterError as exc:  # unreadable task data: said, not a 500
            return jsonify({"error": str(exc)}), 502
        if not 0 <= index < len(views):
            return jsonify({"error": f"target {index} out of range: the model has {len(views)}"}), 404
        png = charts.task_chart(views[index])
        return Response(png, 200, {"Content-Type": "image/png", "Cache-Control": "no-store"})

    return bp
