"""The dashboard at ``/dashboard``: HTML pages for people, over what ``/status`` and the models record.

``/dashboard`` lists every project (state, progress, failure, version served,
data, headline scores); ``/dashboard/project/<id>`` shows one project: its
learning curve over trainings, per-label F1, the validation confusion matrix, class balance, the latest
training's per-epoch curve, why it stopped and the settings used;
``/dashboard/project/<id>/task/<task>`` one task: its series with annotated and
predicted classes one above the other and each label's probability
(``segmenter.taskview``), the task read from Label Studio's export.  Charts are
PNGs drawn by ``segmenter.charts``; nothing is loaded from another site.  The
pages never run on the ``/predict`` or ``/webhook`` path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request

from segmenter import charts, store, taskview
from segmenter.errors import SegmenterError

if TYPE_CHECKING:
    from segmenter.runtime import Runtime

CHARTS = ("learning", "f1", "balance", "epochs", "confusion")


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
        return None

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
        return render_template("dashboard/project.html", key=k, **project_view(model_dir, k))

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

    @bp.get("/dashboard/project/<project>/task/<int:task_id>")
    def task(project: str, task_id: int) -> str:
        k = known(project)
        report = store.report(model_dir, k)
        targets = [m["from_name"] for m in report.get("models", [])]
        return render_template("dashboard/task.html", key=k, task_id=task_id, report=report, targets=targets)

    @bp.get("/dashboard/project/<project>/task/<int:task_id>/<int:index>.png")
    def task_chart(project: str, task_id: int, index: int) -> Response | tuple[Response, int]:
        k = known(project)
        version, models = runtime.cache.get(k)
        if not models:
            return jsonify({"error": f"project {k} has no trained model yet"}), 404
        client = runtime.access.client_for(k)
        if client is None:
            return jsonify({"error": "no Label Studio URL: set LABEL_STUDIO_URL or connect the project"}), 503
        try:
            # The export, never /api/tasks/{id}: that one can make Label Studio call /predict on us.
            found = [t for t in client.export_tasks(int(k)) if t.get("id") == task_id]
            if not found:
                return jsonify({"error": f"project {k} has no task {task_id} in its export"}), 404
            views = taskview.view(k, version, found[0], models, runtime.access.fetcher_for(k), model_dir=model_dir)
        except SegmenterError as exc:  # Label Studio unreachable, unreadable task data: said, not a 500
            return jsonify({"error": str(exc)}), 502
        if not 0 <= index < len(views):
            return jsonify({"error": f"target {index} out of range: the model has {len(views)}"}), 404
        png = charts.task_chart(views[index])
        return Response(png, 200, {"Content-Type": "image/png", "Cache-Control": "no-store"})

    return bp
