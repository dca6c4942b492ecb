"""Run a real Label Studio and this backend as processes, and use Label Studio the way a user does.

Shared by the integration tests (``tests/integration``) and the demo (``scripts/demo.py``):

* ``pristine_data_dir`` / ``start_label_studio`` / ``start_backend``: processes on free loopback
  ports, logs to files, ``Service.stop`` ends the whole process group;
* ``LabelStudioAPI``: the REST calls the UI makes (projects, CSV-per-task import, the Model page,
  annotations, Data Manager actions, Start Training, tokens), with legacy or Personal Access Tokens;
* ``write_recordings`` / ``annotation_result`` / ``event_recall``: synthetic sensor CSVs in the
  three time-axis forms Label Studio knows (numeric time column, datetime strings, row indices),
  their planted events as annotations, and a score for predicted regions.

Nothing here changes Label Studio: only its documented start-up flags and its REST API are used.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import requests

from segmenter import synthetic

REPO = Path(__file__).resolve().parent.parent

LS_VENV = REPO / ".labelstudio" / "venv"
LS_BIN = LS_VENV / "bin" / "label-studio"
GUNICORN = REPO / ".venv" / "bin" / "gunicorn"
# Label Studio reads LABEL_STUDIO_X, then HEARTEX_X, then bare X: these bare names must not leak in.
LEAKY_NAMES = ("HOST", "PORT", "USERNAME", "PASSWORD", "DEBUG", "LOG_LEVEL", "DJANGO_DB", "DATABASE_NAME")
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATETIME_ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
NUMERIC_STEP = 0.5  # seconds between samples in the numeric-time CSVs: float axis values

T = TypeVar("T")


class DriverError(RuntimeError):
    """A process or a REST call did not do what the walkthrough needs."""


# --------------------------------------------------------------------------- processes


def port_is_free(port: int) -> bool:
    """Nothing answers on 127.0.0.1:``port`` and it can be bound on all interfaces."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to servers
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(preferred: int | None = None, tries: int = 50, avoid: Iterable[int] = ()) -> int:
    """``preferred`` or the next free port after it; any free port when ``preferred`` is None."""
    avoid = set(avoid)
    if preferred is not None:
        for port in range(preferred, preferred + tries):
            if port not in avoid and port_is_free(port):
                return port
        raise DriverError(f"no free port in {preferred}..{preferred + tries - 1}")
    for _ in range(tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid and port_is_free(port):
            return port
    raise DriverError("no free port")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The current environment without Label Studio's leaky bare names, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in LEAKY_NAMES and not k.startswith(("LABEL_STUDIO_", "HEARTEX_"))
    }
    env.update(extra)
    return env


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5,
             alive: Callable[[], None] | None = None) -> T:
    """Poll ``check`` until it returns something truthy; ``alive`` may raise to stop early."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        if alive:
            alive()
        try:
            value = check()
        except requests.RequestException as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f" (last: {last})" if last else ""
            raise DriverError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass
class Service:
    """A process started here, in its own process group, logging to ``log_path``."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    info: dict = field(default_factory=dict)

    def tail(self, lines: int = 80) -> str:
        """The last ``lines`` lines of the log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise with the log tail if the process has ended."""
        code = self.process.poll()
        if code is not None:
            raise DriverError(f"{self.name} exited with code {code}; log {self.log_path}:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout``."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%H:%M:%S')} {name}: {' '.join(cmd)}\n".encode())
        log.flush()
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def label_studio_version(venv: Path = LS_VENV) -> str:
    """The installed Label Studio version, read from its dist-info (no import, no start)."""
    found = sorted(venv.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    if not found:
        raise DriverError(f"Label Studio is not installed in {venv}: run scripts/setup-labelstudio")
    return found[-1].name.removeprefix("label_studio-").removesuffix(".dist-info")


def _base_ls_env() -> dict[str, str]:
    return clean_env({"SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false",
                      "LATEST_VERSION_CHECK": "false", "PYTHONUNBUFFERED": "1"})


def pristine_data_dir(cache_root: Path = REPO / ".labelstudio", log_path: Path | None = None,
                      ls_bin: Path = LS_BIN) -> Path:
    """A migrated, empty Label Studio data dir (no user, no organisation, no secret key), cached.

    Migrations take about a minute; ``label-studio version`` runs them and exits without creating
    anyone.  The copy is keyed by the installed version, built beside its final place and renamed
    in atomically; the generated ``.env`` (SECRET_KEY) is removed so every copy makes its own.
    Copy the result, never start Label Studio on it.
    """
    version = label_studio_version(ls_bin.parent.parent)
    final = cache_root / f"pristine-{version}"
    if (final / "label_studio.sqlite3").is_file():
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    work = cache_root / f".pristine-{version}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    log_path = log_path or cache_root / f"pristine-{version}.log"
    proc = _spawn("label-studio migrate", [str(ls_bin), "version", "--data-dir", str(work)],
                  _base_ls_env(), log_path, cache_root)
    try:
        code = proc.wait(600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise DriverError(f"Label Studio migrations took over 10 minutes; see {log_path}") from None
    if code != 0 or not (work / "label_studio.sqlite3").is_file():
        raise DriverError(f"Label Studio migrations failed (exit {code}); see {log_path}")
    (work / ".env").unlink(missing_ok=True)
    try:
        work.rename(final)
    except OSError:  # another run made it first
        shutil.rmtree(work, ignore_errors=True)
    return final


def start_label_studio(data_dir: Path, files_root: Path, log_path: Path, *, port: int | None = None,
                       username: str, password: str, token: str, timeout: float = 240.0,
                       ls_bin: Path = LS_BIN) -> Service:
    """Start Label Studio headless on 127.0.0.1:``port`` (free port when None) and wait for /health.

    ``token`` (the admin's legacy key) and ``password`` apply only when the admin is first created.
    """
    port = port or free_port()
    if not port_is_free(port):
        raise DriverError(f"port {port} is busy (Label Studio would silently move to another)")
    url = f"http://127.0.0.1:{port}"
    files_root.mkdir(parents=True, exist_ok=True)
    env = _base_ls_env()
    env.update({
        "LABEL_STUDIO_USERNAME": username, "LABEL_STUDIO_PASSWORD": password, "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_HOST": url, "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",
        "LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(files_root),
    })
    cmd = [str(ls_bin), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir)]
    service = Service("Label Studio", url, _spawn("Label Studio", cmd, env, log_path, data_dir.parent), log_path,
                      {"port": port, "username": username, "password": password, "token": token})
    banner = f"Starting development server at {url}/"

    def ready() -> bool:
        log = service.tail(400)
        moved = re.findall(r"Trying to start at (\d+)", log)
        if moved:
            raise DriverError(f"Label Studio moved from port {port} to {moved[-1]}: the port was taken")
        return banner in log and _health(url)

    return _started(service, ready, timeout)


def start_backend(model_dir: Path, log_path: Path, *, label_studio_url: str, api_key: str,
                  port: int | None = None, extra_env: Mapping[str, str] | None = None,
                  timeout: float = 90.0) -> Service:
    """Start the backend under gunicorn from the repo root, as start.sh does, and wait for /health."""
    port = port or free_port()
    if not port_is_free(port):
        raise DriverError(f"port {port} is busy")
    url = f"http://127.0.0.1:{port}"
    env = clean_env({"MODEL_DIR": str(model_dir), "PORT": str(port), "LABEL_STUDIO_URL": label_studio_url,
                     "LABEL_STUDIO_API_KEY": api_key, "PYTHONUNBUFFERED": "1"})
    env.pop("LABEL_STUDIO_HOST", None)
    env.update(extra_env or {})
    cmd = [str(GUNICORN), "-c", "gunicorn.conf.py", "_wsgi:app"]
    service = Service("backend", url, _spawn("backend", cmd, env, log_path, REPO), log_path, {"port": port})
    listening = re.compile(rf"Listening at: http://\S+:{port} ")
    auth = (env["BASIC_AUTH_USER"], env.get("BASIC_AUTH_PASS", "")) if env.get("BASIC_AUTH_USER") else None

    def ready() -> bool:
        return bool(listening.search(service.tail(200))) and _health(url, auth)

    return _started(service, ready, timeout)


def _started(service: Service, ready: Callable[[], bool], timeout: float) -> Service:
    """``service`` once ``ready()`` holds; stopped again if it never gets there."""
    try:
        wait_for(ready, timeout, f"{service.name} on {service.url}", alive=service.check_alive)
    except BaseException:
        service.stop()
        raise
    return service


def _health(url: str, auth: tuple[str, str] | None = None) -> bool:
    response = requests.get(f"{url}/health", auth=auth, timeout=2)
    return response.status_code == 200 and response.json().get("status") == "UP"


# --------------------------------------------------------------------------- REST


class LabelStudioAPI:
    """Label Studio's REST API as the UI uses it, with a legacy key or a Personal Access Token."""

    ACCESS_LIFETIME_S = 240.0  # access tokens live 300 s

    def __init__(self, url: str, token: str = "", personal_token: str = "", timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.personal_token = personal_token
        self.timeout = timeout
        self.session = requests.Session()
        self._access = ""
        self._access_at = 0.0

    def with_personal_token(self, personal_token: str) -> LabelStudioAPI:
        """A client for the same Label Studio that authenticates with a Personal Access Token."""
        return LabelStudioAPI(self.url, personal_token=personal_token, timeout=self.timeout)

    def _auth(self) -> dict[str, str]:
        if not self.personal_token:
            return {"Authorization": f"Token {self.token}"}
        if not self._access or time.monotonic() - self._access_at > self.ACCESS_LIFETIME_S:
            answer = self.session.post(f"{self.url}/api/token/refresh/", json={"refresh": self.personal_token},
                                       timeout=30)
            _check(answer, "POST /api/token/refresh/", (200,))
            self._access, self._access_at = answer.json()["access"], time.monotonic()
        return {"Authorization": f"Bearer {self._access}"}

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200, 201), **kwargs: object) -> requests.Response:
        """One authenticated request; ``DriverError`` with the body when the status is unexpected."""
        headers = {**self._auth(), **(kwargs.pop("headers", None) or {})}  # type: ignore[arg-type]
        response = self.session.request(method, f"{self.url}{path}", headers=headers,
                                        timeout=kwargs.pop("timeout", self.timeout), **kwargs)  # type: ignore[arg-type]
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


def backend_status(backend_url: str, project: int) -> dict:
    """The backend's ``/status/<project>``."""
    response = requests.get(f"{backend_url}/status/{project}", timeout=5)
    _check(response, f"GET {backend_url}/status/{project}", (200,))
    return response.json()


def wait_for_training(backend: Service, project: int, min_requests: int, timeout: float = 240.0) -> dict:
    """Wait until the backend has seen ``min_requests`` training requests and trained after the last.

    Returns the status; raises with the backend's log tail when the training failed.
    """
    def settled() -> dict | None:
        status = backend_status(backend.url, project)
        requests_seen = status.get("requests", 0)
        if requests_seen < min_requests or status.get("started_request", 0) < requests_seen:
            return None
        if status.get("state") == "failed":
            raise DriverError(f"training of project {project} failed: {status.get('last_error')}\n"
                              f"status: {status}\nbackend log:\n{backend.tail()}")
        return status if status.get("state") == "idle" else None

    try:
        return wait_for(settled, timeout, f"training of project {project} (request {min_requests})",
                        alive=backend.check_alive)
    except DriverError as exc:
        if "timed out" in str(exc):
            raise DriverError(f"{exc}\nstatus: {backend_status(backend.url, project)}\nbackend log:\n"
                              f"{backend.tail()}") from None
        raise


# --------------------------------------------------------------------------- data


@dataclass
class RecordingFile:
    """A synthetic recording written as CSV, and how its rows appear on the time axis."""

    path: Path
    recording: synthetic.Recording
    axis: list  # row -> the value Label Studio writes for that row (number, string or row index)
    kind: str = "numeric"  # one of AXES

    def row_of(self, value: object) -> int:
        """The row of an axis value as found in a region; ValueError when it is not one."""
        if self.kind == "index":
            if not isinstance(value, int) or not 0 <= value < len(self.axis):
                raise ValueError(f"{value!r} is not a row index of {self.path.name}")
            return value
        if self.kind == "datetime":
            return self.axis.index(value)
        if isinstance(value, (str, bool)):
            raise ValueError(f"{value!r} is not a numeric time of {self.path.name}")
        row = round(float(value) / NUMERIC_STEP)  # type: ignore[arg-type]
        if not 0 <= row < len(self.axis) or abs(self.axis[row] - float(value)) > 1e-6:  # type: ignore[arg-type]
            raise ValueError(f"{value!r} is not a time value of {self.path.name}")
        return row


AXES = ("numeric", "datetime", "index")


def time_format(axis: str) -> str | None:
    """The label config's ``timeFormat`` for an axis kind."""
    return DATETIME_FORMAT if axis == "datetime" else None


def project_config(axis: str, channels: int = 2) -> str:
    """The label config for recordings written by ``write_recordings`` with ``axis``."""
    return synthetic.label_config(channels=channels, time_column=None if axis == "index" else "time",
                                  time_format=time_format(axis))


def write_recordings(folder: Path, count: int, axis: str = "numeric", n_rows: int = 600, channels: int = 2,
                     n_events: int = 4, seed: int = 0, prefix: str = "rec") -> list[RecordingFile]:
    """``count`` CSVs with planted events; ``axis``: numeric time, datetime strings or no time column."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(count):
        recording = synthetic.make_recording(n_rows, seed=seed + k, channels=channels, n_events=n_events)
        frame = recording.frame.copy()
        rows = range(len(frame))
        if axis == "numeric":
            values: list = [int(t) if float(t).is_integer() else t for t in (r * NUMERIC_STEP for r in rows)]
            frame["time"] = [str(v) for v in values]
        elif axis == "datetime":
            values = [(DATETIME_ORIGIN + timedelta(seconds=r)).strftime(DATETIME_FORMAT) for r in rows]
            frame["time"] = values
        else:
            frame = frame.drop(columns=["time"])
            values = list(rows)
        path = folder / f"{prefix}-{axis}-{k + 1:02d}.csv"
        frame.to_csv(path, index=False, float_format="%.5g")
        out.append(RecordingFile(path, recording, values, axis))
    return out


def annotation_result(rec: RecordingFile) -> list[dict]:
    """The planted events as the UI would save them (axis values in the project's form)."""
    result = synthetic.regions(rec.recording.events, rec.axis)
    for region in result:
        for key in ("start", "end"):
            value = region["value"][key]
            region["value"][key] = value.item() if hasattr(value, "item") else value
    return result


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


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two inclusive row ranges."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    return inter / (max(a[1], b[1]) - min(a[0], b[0]) + 1)


def event_recall(predicted: list[tuple[int, int, str]], events: list[tuple[int, int, str]],
                 min_iou: float = 0.3) -> float:
    """Share of planted events matched by a predicted region of the same label with IoU >= ``min_iou``."""
    if not events:
        return 1.0
    hits = sum(
        any(lab == p_lab and iou((s, e), (ps, pe)) >= min_iou for ps, pe, p_lab in predicted)
        for s, e, lab in events
    )
    return hits / len(events)


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
            body, took = self.api.annotate(task, annotation_result(self.recordings[k]))
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
        """Event-level recall of ``predictions`` (task -> prediction) over ``tasks``, events pooled."""
        hits = total = 0
        for task in tasks:
            rec = self.recording(task)
            events = [e for e in rec.recording.events if e[0] != e[1]]
            hits += round(event_recall(predicted_spans(predictions[task], rec), events, min_iou) * len(events))
            total += len(events)
        return hits / total if total else 1.0
