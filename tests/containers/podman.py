"""Driving the real Dockerfile and docker-compose.yml with podman and podman-compose.

Test scaffolding only: the stand-in base images (``stand-in-images.sh``), podman's settings for
these machines (``containers.conf``) and the compose override (``compose.test.yml``) live here,
never in the Dockerfile or compose file a user runs.  Locally the suite is skipped with
``SKIP_CONTAINERS=1`` or when a tool is missing; in CI (``CI`` set) a missing tool is an error.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMPOSE_BIN = Path(sys.executable).with_name("podman-compose")
# podman reads these for every command, podman-compose's included.
PODMAN_ENV = {"CONTAINERS_CONF": str(HERE / "containers.conf"), "BUILDAH_FORMAT": "docker"}
PROJECT = "segmenter-ci"  # compose project: containers segmenter-ci_<service>_1, volume segmenter-ci_models
NETWORK = "segmenter-ci"  # made by the tests (compose.test.yml), so it outlives `down`
IMAGE = "ls-timeseries-segmenter:cpu"  # docker-compose.yml's image for backend and worker
TORCH_CPU_INDEX = "download.pytorch.org"  # the Dockerfile's default TORCH_CPU_INDEX host


def in_ci() -> bool:
    """True on a CI runner."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def missing_tools() -> list[str]:
    """What the suite needs and this machine lacks (.ci/run installs them)."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if not COMPOSE_BIN.exists():
        missing.append(f"{COMPOSE_BIN} (requirements-dev.txt)")
    return missing


def skip_reason() -> str:
    """Why the suite is skipped here ("" when it runs)."""
    if os.environ.get("SKIP_CONTAINERS") == "1":
        return "SKIP_CONTAINERS=1"
    missing = missing_tools()
    if missing and not in_ci():
        return "missing " + ", ".join(missing) + " (.ci/run installs them)"
    return ""


def module_marks() -> list[pytest.MarkDecorator]:
    """``pytestmark`` for the suite's modules."""
    reason = skip_reason()
    return [pytest.mark.containers, pytest.mark.skipif(bool(reason), reason=reason or "runs")]


def run(args: list[str], timeout: float, env: Mapping[str, str] | None = None, check: bool = True,
        log: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command with podman's settings; its output goes to ``log`` (appended) when given."""
    full_env = {**os.environ, **PODMAN_ENV, **(env or {})}
    proc = subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {shlex.join(args)}\n{proc.stdout}{proc.stderr}\n[exit {proc.returncode}]\n")
    if check and proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"{shlex.join(args[:6])} ... exited {proc.returncode}:\n{tail}")
    return proc


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return run(["podman", *args], timeout, check=check)


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pip_settings(name: str, *args: str) -> str:
    return run([sys.executable, "-m", "pip", "config", name, *args], 60).stdout


def pip_build_args() -> list[str]:
    """podman build options that give pip inside the build this machine's pip settings.

    The config files pip reads here, and every file or directory they name (CA bundle,
    constraints, wheel directories, ``file://`` indexes with the folder around them), are
    mounted read-only at the same paths; the build gets the host's network.  Where PyTorch's CPU wheel index cannot be
    reached, TORCH_CPU_INDEX points at a local index of the machine instead (the CPU torch
    wheel then comes from its wheel directory).
    """
    mounts: list[str] = []
    scope = ""
    for line in _pip_settings("debug").splitlines():
        if not line.startswith(" "):
            scope = line.rstrip(":")
        elif scope in ("global", "user") and line.strip().endswith(", exists: True"):
            mounts.append(line.strip().split(", exists:")[0])
    local_indexes: list[str] = []
    for line in _pip_settings("list").splitlines():
        key, _, raw = line.partition("=")
        for value in raw.strip().strip("'\"").split():
            path = urlparse(value).path if value.startswith("file://") else value
            if not path.startswith("/") or not os.path.exists(path):
                continue
            if value.startswith("file://") and key.endswith("index-url"):
                local_indexes.append(value)
                # A local index's pages link to files beside it (../files/...): mount its parent.
                path = os.path.dirname(path.rstrip("/"))
            mounts.append(path)
    args = ["--network", "host"]
    for path in dict.fromkeys(mounts):
        args += ["-v", f"{path}:{path}:ro"]
    if not _reachable(TORCH_CPU_INDEX) and local_indexes:
        args += ["--build-arg", f"TORCH_CPU_INDEX={local_indexes[0]}"]
    return args


def network_gateway(name: str) -> str:
    """The address of this machine on a podman network."""
    [info] = json.loads(podman("network", "inspect", name).stdout)
    return info["subnets"][0]["gateway"]


class Compose:
    """podman-compose on the project's docker-compose.yml plus the test override."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = dict(env)
        self.log = log
        self.base = [str(COMPOSE_BIN), "-p", PROJECT, "-f", "docker-compose.yml", "-f",
                     str(HERE / "compose.test.yml")]

    def __call__(self, *args: str, profiles: tuple[str, ...] = (), timeout: float = 300,
                 env: Mapping[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
        options = [a for p in profiles for a in ("--profile", p)]
        return run([*self.base, *options, *args], timeout, env={**self.env, **(env or {})}, check=check,
                   log=self.log)

    @staticmethod
    def container(service: str) -> str:
        return f"{PROJECT}_{service}_1"

    def logs(self, service: str, tail: int = 60) -> str:
        proc = podman("logs", "--tail", str(tail), self.container(service), check=False)
        return proc.stdout + proc.stderr
