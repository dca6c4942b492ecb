"""A small fake Label Studio, served over real HTTP on 127.0.0.1, for tests.

It speaks the parts of Label Studio 1.23 the backend uses: the JSON export, the
Data Manager's task list (``review``, ``fields``, ``query`` with selected ids or an id filter
and ordering, pages), the bulk import of predictions (every batch kept in ``imported``;
``fail_imports_after`` makes the next ones fail, as a Label Studio that goes away mid-way;
a batch naming a task that is gone is refused whole with Label Studio's 400; ``before_import``
sees each batch first, e.g. to delete tasks at that moment with ``delete_task``),
``fail`` answers chosen requests with an error status (once, a few times or always),
the project's model version (PATCH) and its ML backends (``ml``),
``/data/upload/`` and ``/data/local-files/`` downloads with ETags, the
Personal Access Token exchange, legacy tokens (which can be switched off as a
real organization does) and ``/health``.  Every request is recorded so tests
can count them.  Files added with ``add_public_file`` stand in for a foreign
host: served without auth.

    with FakeLabelStudio(legacy_token="secret") as ls:
        project = ls.add_project(CONFIG)
        csv = ls.add_file("a.csv", b"time,x\\n0,1\\n", project)
        ls.add_task(project, {"csv_url": csv}, annotations=[[region]])
        client = LabelStudioClient(ls.url, "secret")

``add_recordings`` adds synthetic recordings (``harness.synthetic``) as tasks in one call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from flask import Flask, Response, jsonify, request

from harness import synthetic
from harness.served import Served

LEGACY_DISABLED = "legacy token authentication has been disabled for this organization"
VERSION = "1.23.2"
_NOW = "2026-01-01T00:00:00.000000Z"


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class _Fault:
    """Requests to answer with ``status``, ``times`` more (None: always): instead of serving them, or
    after serving them when ``served`` (the answer lost on the way, the work done)."""

    method: str
    prefix: str
    status: int
    times: int | None
    served: bool


@dataclass
class _File:
    content: bytes
    auth: bool
    etag: bool = True
    chunked: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeLabelStudio:
    """A fake Label Studio on a free port; use as a context manager or via the ``ls`` fixture of tests/conftest.py."""

    def __init__(
        self,
        legacy_token: str = "legacy-token",
        legacy_enabled: bool = True,
        access_lifetime: float = 300.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.legacy_token = legacy_token
        self.legacy_enabled = legacy_enabled
        self.access_lifetime = access_lifetime
        self.export_delay = 0.0  # seconds the export answer is held back (a slow Label Studio)
        self.ml: list[dict] = []  # connected ML backends ({"id", "project", "title", "url"})
        self.imported: list[list[dict]] = []  # every accepted POST .../import/predictions body
        self.fail_imports_after: int | None = None  # accept this many prediction imports, then answer 500
        self.before_import: Callable[[list], None] | None = None  # called with each import body, before checks
        self._faults: list[_Fault] = []
        self.requests: list[Recorded] = []
        self.evaluations: list[int] = []  # tasks Label Studio would have sent to /predict on a task list
        self.projects: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}
        self._files: dict[str, _File] = {}
        self._secret = os.urandom(16)
        self._live_access: set[int] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._served = Served(self._app(), host)
        self.url = self._served.url

    def __enter__(self) -> Self:
        self._served.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._served.stop()

    def add_project(self, label_config: str = "<View></View>", title: str = "Project",
                    created_at: str | None = None) -> int:
        """Create a project and return its id; ``created_at`` (ISO 8601) is reported when given, as
        Label Studio reports when it created a project."""
        project_id = next(self._ids)
        self.projects[project_id] = {"id": project_id, "title": title, "label_config": label_config,
                                     "model_version": "", **({"created_at": created_at} if created_at else {})}
        return project_id

    def add_task(
        self,
        project_id: int,
        data: dict,
        annotations: list | None = None,
        predictions: list | None = None,
    ) -> dict:
        """Create a task; each annotation is a result list or a dict with at least ``result``."""
        task_id = next(self._ids)
        task = {
            "id": task_id,
            "annotations": [],
            "file_upload": None,
            "drafts": [],
            "predictions": list(predictions or []),
            "data": data,
            "meta": {},
            "created_at": _NOW,
            "updated_at": _NOW,
            "inner_id": task_id,
            "total_annotations": 0,
            "cancelled_annotations": 0,
            "total_predictions": len(predictions or []),
            "comment_count": 0,
            "unresolved_comment_count": 0,
            "last_comment_updated_at": None,
            "project": project_id,
            "updated_by": None,
            "comment_authors": [],
        }
        self.tasks[task_id] = task
        for annotation in annotations or []:
            self.add_annotation(task_id, annotation)
        return task

    def add_annotation(self, task_id: int, annotation: list | dict) -> dict:
        """Add an annotation (a result list, or a dict with ``result``) to a task."""
        task = self.tasks[task_id]
        given = {"result": annotation} if isinstance(annotation, list) else dict(annotation)
        record = {
            "id": next(self._ids),
            "completed_by": 1,
            "result": [],
            "was_cancelled": False,
            "ground_truth": False,
            "created_at": _NOW,
            "updated_at": _NOW,
            "draft_created_at": None,
            "lead_time": 1.0,
            "prediction": {},
            "result_count": 0,
            "unique_id": f"fake-{task_id}-{len(task['annotations'])}",
            "import_id": None,
            "last_action": None,
            "bulk_created": False,
            "task": task_id,
            "project": task["project"],
            "updated_by": 1,
            "parent_prediction": None,
            "parent_annotation": None,
            "last_created_by": None,
            **given,
        }
        record["result_count"] = len(record["result"])
        task["annotations"].append(record)
        task["total_annotations"] = sum(not a["was_cancelled"] for a in task["annotations"])
        task["cancelled_annotations"] = sum(a["was_cancelled"] for a in task["annotations"])
        return record

    def add_recordings(
        self, project_id: int, count: int, seed: int = 0, rows: int = 300, n_events: int = 2, annotate: bool = True
    ) -> list[dict]:
        """``count`` synthetic recordings (seeds ``seed``, ``seed + 1``, ...) uploaded to the project, one
        task each, annotated with their planted events when ``annotate``; the tasks."""
        tasks = []
        for i in range(count):
            rec = synthetic.make_recording(rows, seed=seed + i, n_events=n_events)
            path = self.add_file(f"rec{project_id}_{seed + i}.csv", synthetic.csv_bytes(rec), project_id)
            annotations = [synthetic.annotation(rec)] if annotate else []
            tasks.append(self.add_task(project_id, {"csv_url": path}, annotations=annotations))
        return tasks

    def delete_task(self, task_id: int) -> None:
        """Delete a task, with its annotations and predictions, as the Data Manager does."""
        with self._lock:
            self.tasks.pop(task_id, None)

    def fail(self, method: str, prefix: str, status: int = 500, times: int | None = 1, served: bool = False) -> None:
        """Answer the next ``times`` requests (None: every one) of ``method`` to a path starting with
        ``prefix`` with ``status`` and a plain error page, as a failing Label Studio or proxy; with
        ``served`` the request is carried out first and only its answer replaced (a lost answer)."""
        with self._lock:
            self._faults.append(_Fault(method, prefix, status, times, served))

    def _fault(self, served: bool) -> Response | None:
        """The error answer of the first armed fault matching this request, if any (uses it up)."""
        with self._lock:
            fault = next((f for f in self._faults if f.served == served and f.method == request.method
                          and request.path.startswith(f.prefix) and f.times != 0), None)
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
        return Response(f"Server Error ({fault.status})", fault.status, mimetype="text/html")

    def add_file(self, name: str, content: bytes, project_id: int = 1, **options: object) -> str:
        """Serve ``content`` as an upload (auth required); returns the relative URL tasks hold.

        Options: ``etag`` (default True), ``chunked`` (no Content-Length), ``headers``.
        """
        path = f"/data/upload/{project_id}/{name}"
        self._files[path] = _File(content, auth=True, **options)
        return path

    def add_local_file(self, rel_path: str, content: bytes, **options: object) -> str:
        """Serve ``content`` from Label Studio's local files storage; returns ``/data/local-files/?d=...``."""
        self._files[f"/data/local-files/{rel_path}"] = _File(content, auth=True, **options)
        return f"/data/local-files/?d={rel_path}"

    def add_public_file(self, path: str, content: bytes, **options: object) -> str:
        """Serve ``content`` without auth at ``path``, as a foreign host would; returns the full URL."""
        self._files["/" + path.lstrip("/")] = _File(content, auth=False, **options)
        return self.url + "/" + path.lstrip("/")

    def add_redirect(self, path: str, location: str, auth: bool = False) -> str:
        """Answer ``path`` with a 302 to ``location``; returns the full URL."""
        self._files["/" + path.lstrip("/")] = _File(b"", auth=auth, headers={"Location": location})
        return self.url + "/" + path.lstrip("/")

    def make_pat(self, lifetime: float = 3600.0) -> str:
        """A Personal Access Token: a signed JWT refresh token."""
        return self._jwt({"token_type": "refresh", "user_id": 1}, lifetime)

    def revoke_access_tokens(self) -> None:
        """Make every access token issued so far answer 401, as after expiry."""
        with self._lock:
            self._live_access.clear()

    def calls(
        self, method: str | None = None, path: str | None = None, prefix: str | None = None
    ) -> list[Recorded]:
        """The recorded requests matching method, exact path and path prefix."""
        with self._lock:
            found = list(self.requests)
        return [
            r
            for r in found
            if (method is None or r.method == method)
            and (path is None or r.path == path)
            and (prefix is None or r.path.startswith(prefix))
        ]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def _jwt(self, claims: dict, lifetime: float) -> str:
        now = time.time()
        body = {**claims, "iat": now, "exp": now + lifetime, "jti": next(self._ids)}
        head = (
            _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64(json.dumps(body).encode())
        )
        signature = hmac.new(self._secret, head.encode(), hashlib.sha256).digest()
        return head + "." + _b64(signature)

    def _verify(self, token: str, token_type: str) -> dict | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(expected), parts[2]):
            return None
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        if claims.get("token_type") != token_type or claims["exp"] < time.time():
            return None
        return claims

    def _auth_error(self) -> Response | None:
        header = request.headers.get("Authorization", "")
        legacy = request.headers.get("X-Api-Key") or (header[6:] if header.startswith("Token ") else None)
        if legacy is not None:
            if not self.legacy_enabled:
                return Response(json.dumps({"detail": LEGACY_DISABLED}), 401, mimetype="application/json")
            if legacy == self.legacy_token:
                return None
        elif header.startswith("Bearer "):
            claims = self._verify(header[7:], "access")
            if claims is not None and claims["jti"] in self._live_access:
                return None
        return Response(json.dumps({"detail": "Invalid token."}), 401, mimetype="application/json")

    def _project_error(self, project_id: int) -> Response | None:
        """The answer to a project API request without a valid key, or for a project that does not exist."""
        denied = self._auth_error()
        if denied is not None:
            return denied
        if project_id not in self.projects:
            return Response(json.dumps({"detail": "Not found."}), 404, mimetype="application/json")
        return None

    def _app(self) -> Flask:
        app = Flask("fakels")

        @app.before_request
        def record() -> Response | None:
            entry = Recorded(
                request.method, request.path, request.query_string.decode(), dict(request.headers)
            )
            with self._lock:
                self.requests.append(entry)
            return self._fault(served=False)

        @app.after_request
        def lose_answer(response: Response) -> Response:
            return self._fault(served=True) or response

        @app.get("/health")
        def health() -> Response:
            return jsonify({"status": "UP"})

        @app.post("/api/token/refresh/")
        def refresh() -> Response:
            given = (request.get_json(silent=True) or {}).get("refresh", "")
            if not isinstance(given, str) or self._verify(given, "refresh") is None:
                return Response(
                    json.dumps({"detail": "Token is invalid or expired", "code": "token_not_valid"}),
                    401,
                    mimetype="application/json",
                )
            access = self._jwt({"token_type": "access", "user_id": 1}, self.access_lifetime)
            with self._lock:
                self._live_access.add(self._verify(access, "access")["jti"])
            return jsonify({"access": access})

        @app.get("/api/projects/<int:project_id>/export")
        def export(project_id: int) -> Response:
            refused = self._project_error(project_id)
            if refused is not None:
                return refused
            time.sleep(self.export_delay)
            every = request.args.get("download_all_tasks", "false").lower() == "true"
            tasks = [
                t for t in self.tasks.values() if t["project"] == project_id and (every or t["annotations"])
            ]
            return jsonify(tasks)

        @app.get("/api/projects/<int:project_id>")
        def project(project_id: int) -> Response:
            refused = self._project_error(project_id)
            if refused is not None:
                return refused
            return jsonify(self.projects[project_id])

        @app.patch("/api/projects/<int:project_id>")
        @app.patch("/api/projects/<int:project_id>/")
        def update_project(project_id: int) -> Response:
            refused = self._project_error(project_id)
            if refused is not None:
                return refused
            body = request.get_json(silent=True) or {}
            self.projects[project_id].update({k: v for k, v in body.items() if k in ("model_version", "title")})
            return jsonify(self.projects[project_id])

        @app.get("/api/ml")
        def ml_backends() -> Response:
            denied = self._auth_error()
            if denied is not None:
                return denied
            project_id = request.args.get("project", type=int)
            return jsonify([b for b in self.ml if project_id is None or b["project"] == project_id])

        @app.get("/api/tasks/")
        def task_list() -> Response:
            """The Data Manager's task list as Label Studio 1.23 answers it (data_manager/api.py TaskListAPI):
            without ``review=true`` it would call /predict for the page's tasks that lack a prediction
            (counted in ``evaluations``); ``fields=all`` adds annotations and predictions."""
            project_id = request.args.get("project", type=int) or 0
            refused = self._project_error(project_id)
            if refused is not None:
                return refused
            query = json.loads(request.args.get("query") or "{}")
            selected = query.get("selectedItems", {"all": True, "excluded": []})
            above = 0
            for item in query.get("filters", {}).get("items", []):
                if item.get("filter") == "filter:tasks:id" and item.get("operator") == "greater":
                    above = int(item["value"])
            tasks = sorted(
                (t for t in self.tasks.values() if t["project"] == project_id and t["id"] > above),
                key=lambda t: t["id"],
            )
            if selected.get("all") is False:
                tasks = [t for t in tasks if t["id"] in selected.get("included", [])]
            else:
                tasks = [t for t in tasks if t["id"] not in selected.get("excluded", [])]
            page, size = request.args.get("page", 1, type=int), request.args.get("page_size", 100, type=int)
            shown = tasks[(page - 1) * size : page * size]
            if page > 1 and not shown:
                return Response(json.dumps({"detail": "Invalid page."}), 404, mimetype="application/json")
            if request.args.get("review", "").lower() not in ("true", "1", "yes"):
                with self._lock:
                    self.evaluations.extend(t["id"] for t in shown if not t["predictions"])
            full = request.args.get("fields") == "all"
            answer = [t if full else {k: v for k, v in t.items() if k not in ("annotations", "predictions")}
                      for t in shown]
            return jsonify({"total": len(tasks), "total_annotations": 0, "total_predictions": 0, "tasks": answer})

        @app.post("/api/projects/<int:project_id>/import/predictions")
        def import_predictions(project_id: int) -> Response:
            refused = self._project_error(project_id)
            if refused is not None:
                return refused
            if self.fail_imports_after is not None and len(self.imported) >= self.fail_imports_after:
                return Response("Server Error (500)", 500, mimetype="text/html")
            body = request.get_json(silent=True)
            if self.before_import is not None and isinstance(body, list):
                self.before_import(body)
            if not isinstance(body, list) or not all(isinstance(p, dict) for p in body):
                return self._invalid(["the fake takes a list of predictions"])
            gone = next((p for p in body if self.tasks.get(p.get("task"), {}).get("project") != project_id), None)
            if gone is not None:
                # Label Studio 1.23.2 (data_import/api.py, ImportPredictionsAPI._create_legacy) refuses
                # the whole batch, naming only the first task it cannot find, as a Python repr.
                title = self.projects[project_id]["title"]
                return self._invalid([f"{gone} contains invalid \"task\" field: corresponding task ID couldn't "
                                      f"be retrieved from project {title} (id={project_id}) tasks"])
            with self._lock:
                self.imported.append(body)
                for prediction in body:
                    task = self.tasks[prediction["task"]]
                    task["predictions"].append({"id": next(self._ids), **prediction})
                    task["total_predictions"] = len(task["predictions"])
            return Response(json.dumps({"created": len(body)}), 201, mimetype="application/json")

        @app.get("/api/tasks/<int:task_id>")
        def task(task_id: int) -> Response:
            denied = self._auth_error()
            if denied is not None:
                return denied
            return jsonify(self.tasks.get(task_id, {}))

        @app.get("/data/local-files/")
        def local_files() -> Response:
            return self._serve(f"/data/local-files/{request.args.get('d', '')}")

        @app.get("/<path:path>")
        def files(path: str) -> Response:
            return self._serve("/" + path)

        return app

    @staticmethod
    def _invalid(errors: list[str]) -> Response:
        """Label Studio's 400 for a request that fails validation (core/utils/common.py's handler)."""
        body = {"id": "00000000-0000-4000-8000-000000000000", "status_code": 400, "version": VERSION,
                "detail": "Validation error", "exc_info": None, "validation_errors": {"non_field_errors": errors}}
        return Response(json.dumps(body), 400, mimetype="application/json")

    def _serve(self, key: str) -> Response:
        served = self._files.get(key)
        if served is None:
            return Response("not found", 404)
        if served.auth:
            denied = self._auth_error()
            if denied is not None:
                return denied
        if "Location" in served.headers:
            return Response("", 302, headers=served.headers)
        headers = dict(served.headers)
        if served.etag:
            etag = '"' + hashlib.sha256(served.content).hexdigest()[:16] + '"'
            headers["ETag"] = etag
            if request.headers.get("If-None-Match") == etag:
                return Response(status=304, headers=headers)
        if served.chunked:
            body = served.content
            chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))
            return Response(chunks, 200, headers=headers, mimetype="application/octet-stream")
        return Response(served.content, 200, headers=headers, mimetype="application/octet-stream")


# The legacy key the tests give the fake (the ``ls`` fixture in tests/conftest.py).
KEY = "0123456789abcdef0123456789abcdef01234567"
