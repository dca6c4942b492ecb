"""Versioned model artifacts on disk, one directory per project.

Layout under ``MODEL_DIR``::

    model_project_{id}/v{N}-{UTC time}.pt     weights + metadata of every target
    model_project_{id}/v{N}-{UTC time}.json   the same metadata, readable
    model_project_{id}/status.json            training state (see ``jobs``)

A version is complete once its ``.pt`` file exists: it is written to a temp
file in the same directory and renamed into place, so a crash never leaves a
half-written model, and readers never see one.  The newest ``keep`` versions
stay.  Files are loaded with ``torch.load(weights_only=True)``: plain tensors
and values only, never arbitrary pickles.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch

from segmenter.inference import TrainedModel

INITIAL_VERSION = "untrained"
_PROJECT_PREFIX = "model_project_"
_VERSION_FILE = re.compile(r"^v(\d+)-[0-9TZ]+\.pt$")


# Label Studio sends a project as its id or as "<id>.<created_at epoch>"; ASCII digits
# only (str.isdigit also accepts "²" and "١"), and no more than fit a 64-bit id.
_PROJECT_ID = re.compile(r"^\s*0*([0-9]{1,18})(?:\.[0-9]{1,20})?\s*$", re.ASCII)


def project_key(project: object) -> str:
    """Label Studio's project as a directory-safe id: ``"1.1795697041"`` and ``1`` -> ``"1"``.

    The one parser of project ids for every route and file name; anything else
    is a ``ValueError`` whose message names the value (shortened).
    """
    plain = isinstance(project, (str, int)) and not isinstance(project, bool)
    match = _PROJECT_ID.match(str(project)) if plain else None
    if match is None:
        shown = repr(project)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(f"project {shown} is not a Label Studio project id (ASCII digits, at most 18)")
    return match.group(1)


def project_dir(model_dir: Path, project: object) -> Path:
    """Where one project's models and state live."""
    return Path(model_dir) / f"{_PROJECT_PREFIX}{project_key(project)}"


def projects(model_dir: Path) -> list[str]:
    """The projects that have a directory under ``model_dir``, by id."""
    try:
        with os.scandir(model_dir) as entries:
            names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    keys = [n.removeprefix(_PROJECT_PREFIX) for n in names if n.startswith(_PROJECT_PREFIX)]
    # A directory this backend did not make (another name, another spelling) is not a project.
    return sorted((k for k in keys if _PROJECT_ID.match(k) and project_key(k) == k), key=int)


def atomic_write(path: Path, write: Callable[[Path], None], mode: int = 0o644, durable: bool = True) -> None:
    """Write ``path`` through ``write(temp_path)`` and rename it into place.

    ``durable`` also flushes the file to disk before the rename (models); state
    files that are rewritten on every webhook skip that to stay fast.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(temp))
        if durable:
            with open(temp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: object, mode: int = 0o644, durable: bool = True) -> None:
    """Atomically write ``data`` as JSON."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, default=str)), mode, durable)


def read_json(path: Path, default: object = None) -> object:
    """JSON from ``path``, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def versions(model_dir: Path, project: object) -> list[str]:
    """Complete versions of a project, oldest first."""
    folder = project_dir(model_dir, project)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), name[:-3]) for name in names if (m := _VERSION_FILE.match(name))]
    return [name for _, name in sorted(found)]


def latest_version(model_dir: Path, project: object) -> str:
    """The newest complete version, or ``INITIAL_VERSION`` before the first training."""
    found = versions(model_dir, project)
    return found[-1] if found else INITIAL_VERSION


def save(model_dir: Path, project: object, models: list[TrainedModel], keep: int = 3) -> str:
    """Store ``models`` as the project's next version and prune old ones; returns the version."""
    folder = project_dir(model_dir, project)
    folder.mkdir(parents=True, exist_ok=True)
    existing = versions(model_dir, project)
    number = int(existing[-1].split("-", 1)[0][1:]) + 1 if existing else 1
    version = f"v{number}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    states = [m.to_state() for m in models]
    meta = {
        "version": version,
        "project": project_key(project),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": [{k: v for k, v in s.items() if k not in ("weights", "mean", "std")} for s in states],
    }
    payload = {"version": version, "models": states}
    write_json(folder / f"{version}.json", meta)
    atomic_write(folder / f"{version}.pt", lambda p: torch.save(payload, p))
    for old in versions(model_dir, project)[:-keep]:
        (folder / f"{old}.pt").unlink(missing_ok=True)
        (folder / f"{old}.json").unlink(missing_ok=True)
    return version


def load(model_dir: Path, project: object, version: str) -> list[TrainedModel]:
    """The models of one stored version."""
    path = project_dir(model_dir, project) / f"{version}.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return [TrainedModel.from_state(state) for state in payload["models"]]


def metadata(model_dir: Path, project: object, version: str) -> dict:
    """The readable metadata of one stored version ({} when missing)."""
    return read_json(project_dir(model_dir, project) / f"{version}.json", {}) or {}


class ModelCache:
    """The newest models of recently used projects, in memory, least recently used dropped.

    Every lookup lists the project's directory, so a version saved by another
    process (a training worker, another gunicorn worker) is picked up at once.
    """

    def __init__(self, model_dir: Path, capacity: int = 8) -> None:
        self.model_dir = Path(model_dir)
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[str, list[TrainedModel]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, project: object) -> tuple[str, list[TrainedModel]]:
        """(version, models) of the project's newest version; (INITIAL_VERSION, []) before training."""
        key = project_key(project)
        version = latest_version(self.model_dir, key)
        if version == INITIAL_VERSION:
            return version, []
        with self._lock:
            cached = self._items.get(key)
            if cached is not None and cached[0] == version:
                self._items.move_to_end(key)
                return cached
        try:
            models = load(self.model_dir, key, version)
        except FileNotFoundError:  # pruned by a newer training since the listing: take that one
            version = latest_version(self.model_dir, key)
            models = load(self.model_dir, key, version)
        with self._lock:
            self._items[key] = (version, models)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return version, models

    def cached_projects(self) -> list[str]:
        """Projects currently held in memory, least recently used first."""
        with self._lock:
            return list(self._items)
