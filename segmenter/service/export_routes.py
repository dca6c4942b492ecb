"""``GET /export/<project>[?version=V]``: a trained version as one ``.tar.gz`` to run anywhere.

The archive holds what ``python -m segmenter export`` writes (``segmenter.export.bundle``):
ONNX networks, ``manifest.json`` and the torch-free runner.  Basic auth guards it
like every route (the app's ``before_request``); a version that cannot be exported
is answered with the 4xx ``ExportError`` carries, naming the project and version.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from segmenter.export.bundle import ExportError, archive
from segmenter.service.bodies import runtime, stored_project

blueprint = Blueprint("export", __name__)


@blueprint.get("/export/<project>")
def download(project: str) -> Response | tuple[Response, int]:
    """The archive of the served version, or of ``?version=``."""
    key = stored_project(project)
    try:
        name, data = archive(runtime().settings, key, request.args.get("version") or None)
    except ExportError as exc:
        return jsonify({"error": str(exc)}), exc.status
    return Response(data, 200, {"Content-Type": "application/gzip",
                                "Content-Disposition": f'attachment; filename="{name}"'})
