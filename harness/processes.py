"""The backend and a real Label Studio as processes on loopback ports, and how they are stopped.

``start_backend`` runs the backend under gunicorn exactly as ./start.sh does (``gunicorn -c
gunicorn.conf.py _wsgi:app`` from the repository root) and returns once ``/health`` answers
UP (with Basic auth when ``BASIC_AUTH_USER`` is given).  ``start_label_studio`` runs Label
Studio from ``.labelstudio/venv`` (scripts/setup-labelstudio) from a copy of
``pristine_data_dir``.  Each process gets its own process group and log file; ``Service.stop``
ends the whole group.  Only Label Studio's documented start-up flags and variables are used.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from harness import DriverError
from harness.ports import free_port, port_is_free
from harness.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
LS_VENV = REPO / ".labelstudio" / "venv"
LS_BIN = LS_VENV / "bin" / "label-studio"
# Label Studio reads LABEL_STUDIO_X, then HEARTEX_X, then bare X: these bare names must not leak in.
LEAKY_NAMES = ("HOST", "PORT", "USERNAME", "PASSWORD", "DEBUG", "LOG_LEVEL", "DJANGO_DB", "DATABASE_NAME")
# Backend settings a started backend gets only when the caller gives them (README, Environment variables).
BACKEND_UNSET = ("WORKERS", "THREADS", "BASIC_AUTH_USER", "BASIC_AUTH_PASS")


@dataclass
class Service:
    """A process started here, in its own process group, logging to ``log_path``."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    info: dict = field(default_factory=dict)

    @property
    def port(self) -> int:
        """The loopback port it serves on."""
        return self.info["port"]

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

    def stop(self, timeout: float = 30.0) -> None:
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


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The current environment without Label Studio's leaky bare names, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in LEAKY_NAMES and not k.startswith(("LABEL_STUDIO_", "HEARTEX_"))
    }
    env.update(extra)
    return env


def _spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%H:%M:%S')} {name}: {' '.join(cmd)}\n".encode())
        log.flush()
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _started(service: Service, ready: Callable[[], bool], timeout: float) -> Service:
    """``service`` once ``ready()`` holds; stopped again if it never gets there."""
    try:
        wait_for(ready, timeout, f"{service.name} on {service.url}", interval=0.2, alive=service.check_alive)
    except BaseException:
        service.stop()
        raise
    return service


def health_is_up(url: str, auth: tuple[str, str] | None = None) -> bool:
    """Whether ``url``/health answers 200 with ``"status": "UP"``."""
    response = requests.get(f"{url}/health", auth=auth, timeout=2)
    return response.status_code == 200 and response.json().get("status") == "UP"


# --------------------------------------------------------------------------- the backend


def start_backend(model_dir: Path, log_path: Path, *, label_studio_url: str | None = None,
                  api_key: str | None = None, port: int | None = None, host: str | None = None,
                  extra_env: Mapping[str, str] | None = None, gunicorn_args: Sequence[str] = (),
                  timeout: float = 90.0) -> Service:
    """Start the backend under gunicorn from the repo root, as start.sh does, and wait for /health.

    ``host``: bind only that address (``--bind host:port``) instead of gunicorn.conf.py's
    0.0.0.0; ``extra_env``: backend variables (WORKERS, BASIC_AUTH_USER, ...);
    ``gunicorn_args``: more command-line options (e.g. ``--worker-class gthread``).
    """
    port = port or free_port()
    if not port_is_free(port):
        raise DriverError(f"port {port} is busy")
    url = f"http://127.0.0.1:{port}"
    env = clean_env({"MODEL_DIR": str(model_dir), "PORT": str(port), "PYTHONUNBUFFERED": "1"})
    for name in BACKEND_UNSET:
        env.pop(name, None)
    if label_studio_url is not None:
        env["LABEL_STUDIO_URL"] = label_studio_url
    if api_key is not None:
        env["LABEL_STUDIO_API_KEY"] = api_key
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    if host:
        cmd += ["--bind", f"{host}:{port}"]
    cmd += [*gunicorn_args, "_wsgi:app"]
    service = Service("backend", url, _spawn("backend", cmd, env, log_path, REPO), log_path, {"port": port})
    auth = (env["BASIC_AUTH_USER"], env.get("BASIC_AUTH_PASS", "")) if env.get("BASIC_AUTH_USER") else None
    return _started(service, lambda: health_is_up(url, auth), timeout)


# --------------------------------------------------------------------------- Label Studio


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
        return banner in log and health_is_up(url)

    return _started(service, ready, timeout)
