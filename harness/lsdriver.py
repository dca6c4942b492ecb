"""Label Studio's REST API used the way a user does, and one project walked through it.

Shared by the integration tests (``tests/integration``) and the demo (``scripts/demo.py``):

* ``LabelStudioAPI``: the REST calls the UI makes (projects, CSV-per-task import, the Model page,
  annotations, Data Manager actions, Start Training, tokens), with a legacy key or a Personal
  Access Token (exchanged and refreshed by the backend's own ``LabelStudioClient``);
* ``ProjectRun``: synthetic recordings (``harness.synthetic.write_recordings``) uploaded as a
  project, the backend connected, annotated, trained, predicted, and the predictions scored
  against the planted events with the matcher of ``segmenter.learning.evaluation``.

The processes themselves are started by ``harness.processes``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from harness import DriverError
from harness.processes import Service
from harness.synthetic import INSTANT_LABEL, LABELS, RecordingFile, project_config, write_recordings
from harness.waiting import backend_status, wait_for, wait_until_idle
from segmenter.labelstudio.client import LabelStudioClient
from segmenter.labelstudio.errors import LabelStudioError
from segmenter.learning.evaluation import match_events

# --------------------------------------------------------------------------- REST


class LabelStudioAPI:
    """Label Studio's REST API as the UI uses it, with a legacy key or a Personal Access Token."""

    def __init__(self, url: str, token: str = "", personal_token: str = "", timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.personal_token = personal_token
        self.timeout = timeout
        self.session = requests.Session()
        # The backend's client exchanges the Personal Access Token and refreshes the access token
        # before it expires (read from the token itself); a legacy key goes out as it is.
        self._client = LabelStudioClient(self.url, personal_token, timeout=timeout) if personal_token else None

    def with_personal_token(self, personal_token: str) -> LabelStudioAPI:
        """A client for the same Label Studio that authenticates with a Personal Access Token."""
        return LabelStudioAPI(self.url, personal_token=personal_token, timeout=self.timeout)

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200, 201), **kwargs: object) -> requests.Response:
        """One authenticated request; ``DriverError`` with the body when the status is unexpected."""
        url = f"{self.url}{path}"
        headers = kwargs.pop("headers", None) or {}
        try:
            auth = f"Token {self.token}" if self._client is None else self._client.auth_header()
        except LabelStudioError as exc:
            raise DriverError(f"{method} {path}: {exc}") from None
        response = self.session.request(method, url, headers={**headers, "Authorization": auth},
                                        timeout=self.timeout, **kwargs)  # type: ignore[arg-type]
        if response.status_code == 401 and self._client is not None:  # a refused access token: exchange again, once
            try:
                auth = self._client.auth_header(rejected=auth)
            except LabelStudioError as exc:
                raise DriverError(f"{method} {path}: {exc}") from None
            response = self.session.request(method, url, headers={**headers, "Authorization": auth},
                                            timeout=self.timeout, **kwargs)  # type: ignore[arg-type]
        _check(response, f"{method} {path}", expect)
        return response

    def timed(self, method: str, path: str, **kwargs: object) -> tuple[requests.Response, float]:
        """``call`` and its duration in seconds."""
        started = time.monotonic()
        response = self.call(method, path, **kwargs)
        return response, time.monotonic() - started

    # projects and tasks
    def create_project(self, title: str, label_config: str) -> dict:
        """``POST /api/projects``."""
        return self.call("POST", "/api/projects", json={"title": title, "label_config": label_config}).json()

    def import_csv_tasks(self, project: int, paths: list[Path]) -> list[int]:
        """Upload CSVs as one task each ("Treat CSV as a list of tasks" off); task ids in ``paths`` order.

        Multipart with one field name per file (parts sharing a name collapse into one), imported
        with ``commit_to_project=false``, then committed by ``reimport`` with ``files_as_tasks_list``
        false, as the import dialog does.
        """
        handles = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed below
        try:
            files = {f"file{k}": (p.name, h, "text/csv") for k, (p, h) in enumerate(zip(paths, handles))}
            upload = self.call("POST", f"/api/projects/{project}/import?commit_to_project=false", files=files).json()
        finally:
            for handle in handles:
                handle.close()
        ids = upload.get("file_upload_ids") or []
        if len(ids) != len(paths):
            raise DriverError(f"import returned {len(ids)} file upload ids for {len(paths)} files: {upload}")
        self.call("POST", f"/api/projects/{project}/reimport",
                  json={"file_upload_ids": ids, "files_as_tasks_list": False})
        tasks = wait_for(lambda: (t := self.tasks(project)) and len(t) >= len(paths) and t, 60,
                         f"{len(paths)} tasks in project {project}")
        by_name: dict[str, int] = {}
        for task in tasks:
            ref = str(next(iter(task["data"].values()), ""))
            by_name[ref.rsplit("/", 1)[-1].split("-", 1)[-1]] = task["id"]
        missing = [p.name for p in paths if p.name not in by_name]
        if missing:
            raise DriverError(f"no task for {missing}; task data: {[t['data'] for t in tasks]}")
        return [by_name[p.name] for p in paths]

    def tasks(self, project: int) -> list[dict]:
        """All tasks of a project (``GET /api/tasks/``: never triggers /predict)."""
        body = self.call("GET", f"/api/tasks/?project={project}&page_size=1000").json()
        return body["tasks"] if isinstance(body, dict) else body

    # the Model page
    def connect_backend(self, project: int, url: str, title: str = "segmenter", interactive: bool = False) -> dict:
        """``POST /api/ml``: what "Connect Model" does."""
        return self.call("POST", "/api/ml", json={"url": url, "project": project, "title": title,
                                                  "is_interactive": interactive}).json()

    def ml_backends(self, project: int) -> list[dict]:
        """``GET /api/ml?project=``."""
        return self.call("GET", f"/api/ml?project={project}").json()

    def start_training(self, ml_backend: int) -> requests.Response:
        """``POST /api/ml/{id}/train``: the "Start Training" button."""
        return self.call("POST", f"/api/ml/{ml_backend}/train", json={})

    def webhooks(self, project: int) -> list[dict]:
        """``GET /api/webhooks/?project=``."""
        return self.call("GET", f"/api/webhooks/?project={project}").json()

    # annotations
    def annotate(self, task: int, result: list[dict]) -> tuple[dict, float]:
        """Submit an annotation; the body and how long the request took."""
        response, seconds = self.timed("POST", f"/api/tasks/{task}/annotations/",
                                       json={"result": result, "lead_time": 5.0})
        return response.json(), seconds

    def update_annotation(self, annotation: int, result: list[dict]) -> float:
        """``PATCH /api/annotations/{id}/``; seconds taken."""
        return self.timed("PATCH", f"/api/annotations/{annotation}/", json={"result": result})[1]

    def delete_annotation(self, annotation: int) -> float:
        """``DELETE /api/annotations/{id}/``; seconds taken."""
        return self.timed("DELETE", f"/api/annotations/{annotation}/", expect=(200, 204))[1]

    # predictions
    def retrieve_predictions(self, project: int, task_ids: list[int] | None = None) -> dict:
        """The Data Manager action "Retrieve Predictions" on all tasks (or ``task_ids``)."""
        selected = {"all": True, "excluded": []} if task_ids is None else {"all": False, "included": task_ids}
        return self.call("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
                         json={"selectedItems": selected}).json()

    def predictions(self, task: int) -> list[dict]:
        """Stored predictions of a task, oldest first."""
        found = self.call("GET", f"/api/predictions/?task={task}").json()
        return sorted(found, key=lambda p: p["id"])

    # tokens and organisation settings
    def personal_access_token(self) -> str:
        """Create the user's Personal Access Token (``POST /api/token/``, the Account page button)."""
        return self.call("POST", "/api/token/", json={}).json()["token"]

    def jwt_settings(self, settings: dict | None = None) -> dict:
        """Read or change the organisation's token settings (``/api/jwt/settings``)."""
        if settings is None:
            return self.call("GET", "/api/jwt/settings").json()
        return self.call("POST", "/api/jwt/settings", json=settings).json()


def _check(response: requests.Response, what: str, expect: tuple[int, ...]) -> None:
    if response.status_code not in expect:
        raise DriverError(f"{what} answered {response.status_code}: {response.text[:1000]}")


# --------------------------------------------------------------------------- the backend


def wait_for_training(backend: Service, project: int, min_requests: int, timeout: float = 240.0) -> dict:
    """Wait until the backend has seen ``min_requests`` training requests and trained after the last.

    Returns the status; raises with the backend's log tail when the training failed or never settled.
    """
    try:
        status = wait_until_idle(backend.url, project, timeout, min_requests=min_requests, interval=0.5,
                                 alive=backend.check_alive)
    except DriverError as exc:
        raise DriverError(f"{exc}\nbackend log:\n{backend.tail()}") from None
    if status.get("state") == "failed":
        raise DriverError(f"training of project {project} failed: {status.get('last_error')}\n"
                          f"status: {status}\nbackend log:\n{backend.tail()}")
    return status


# --------------------------------------------------------------------------- predictions


def predicted_spans(prediction: dict, rec: RecordingFile) -> list[tuple[int, int, str]]:
    """The (first row, last row, label) of each region of a stored prediction."""
    spans = []
    for region in prediction.get("result") or []:
        value = region["value"]
        spans.append((rec.row_of(value["start"]), rec.row_of(value["end"]), value["timeserieslabels"][0]))
    return spans


def of_version(predictions: dict[int, list[dict]], version: str) -> dict[int, dict]:
    """Each task's newest stored prediction of ``version``; tasks without one are left out."""
    out = {}
    for task, stored in predictions.items():
        found = [p for p in stored if p.get("model_version") == version]
        if found:
            out[task] = found[-1]
    return out


def row_classes(spans: Iterable[tuple[int, int, str]], rows: int) -> np.ndarray:
    """Per-row class ids (0: background, then the synthetic labels in order) of (first row, last row, label)."""
    names = (*LABELS, INSTANT_LABEL)
    classes = np.zeros(rows, dtype=np.int64)
    for start, end, label in spans:
        classes[start : end + 1] = names.index(label) + 1
    return classes


# --------------------------------------------------------------------------- a user's walkthrough


@dataclass
class ProjectRun:
    """One project driven through Label Studio as a user would: upload, connect, annotate, predict."""

    api: LabelStudioAPI
    backend: Service
    axis: str
    recordings: list[RecordingFile]
    project: int
    tasks: list[int]
    ml_backend: int
    annotations: dict[int, int] = field(default_factory=dict)  # task id -> annotation id

    @classmethod
    def create(cls, api: LabelStudioAPI, backend: Service, folder: Path, *, axis: str = "numeric", count: int = 4,
               title: str = "", channels: int = 2, n_rows: int = 600, seed: int = 0,
               prefix: str = "rec") -> ProjectRun:
        """Write ``count`` CSVs, create the project, import them one task each and connect the backend."""
        recordings = write_recordings(folder, count, axis, n_rows=n_rows, channels=channels, seed=seed,
                                      prefix=prefix)
        project = api.create_project(title or f"Sensors ({axis} time)", project_config(axis, channels))["id"]
        tasks = api.import_csv_tasks(project, [r.path for r in recordings])
        ml = api.connect_backend(project, backend.url, title="Time-series segmenter")
        return cls(api, backend, axis, recordings, project, tasks, ml["id"])

    def recording(self, task: int) -> RecordingFile:
        """The recording behind a task."""
        return self.recordings[self.tasks.index(task)]

    def annotate(self, indices: Iterable[int]) -> list[float]:
        """Annotate the tasks at ``indices`` with their planted events; seconds each request took."""
        seconds = []
        for k in indices:
            task = self.tasks[k]
            body, took = self.api.annotate(task, self.recordings[k].annotation())
            self.annotations[task] = body["id"]
            seconds.append(took)
        return seconds

    def status(self) -> dict:
        """The backend's status of this project."""
        return backend_status(self.backend.url, self.project)

    def wait_training(self, timeout: float = 300.0) -> dict:
        """Wait for the trainings requested so far to finish; the settled status."""
        return wait_for_training(self.backend, self.project, self.status().get("requests", 0), timeout)

    def retrieve(self) -> dict[int, list[dict]]:
        """Run "Retrieve Predictions" on all tasks; every task's stored predictions, oldest first."""
        self.api.retrieve_predictions(self.project)
        return {task: self.api.predictions(task) for task in self.tasks}

    def unannotated(self) -> list[int]:
        """Tasks without an annotation (held out from training)."""
        return [t for t in self.tasks if t not in self.annotations]

    def recall(self, predictions: dict[int, dict], tasks: Iterable[int], min_iou: float = 0.3) -> float:
        """Event-level recall of ``predictions`` (task -> prediction) over ``tasks``, events pooled.

        The planted range events are matched one to one with the predicted regions of the same
        label by ``segmenter.learning.evaluation.match_events`` at IoU >= ``min_iou``.
        """
        hits = total = 0
        for task in tasks:
            rec = self.recording(task)
            rows = len(rec.axis)
            events = [e for e in rec.recording.events if e[0] != e[1]]
            truth = row_classes(events, rows)
            predicted = row_classes(predicted_spans(predictions[task], rec), rows)
            matched, n_true, _ = match_events(truth, predicted, frozenset(), 0, iou_threshold=min_iou)
            hits, total = hits + matched, total + n_true
        return hits / total if total else 1.0
