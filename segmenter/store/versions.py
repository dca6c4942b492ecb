"""Versioned model files of a project: save, list, load, set aside what does not load.

A version exists once its ``.pt`` file exists.  A save writes the ``.pt`` and
its ``.json`` twin completely to temp files beside them, then renames the
``.pt`` and then the ``.json`` into place: readers never see a half-written
model, and a ``.json`` alone is never a version (its metadata is derived from
the ``.pt`` when the twin is missing).  Each save first removes what an
interrupted one left (``tidy``).  The newest ``keep`` versions stay.

Files are loaded with ``torch.load(weights_only=True)``: plain tensors and
values only, never arbitrary pickles.  A model file that does not load
(truncated, garbage, a pickle with code) is moved to ``broken/`` with the
reason, logged once, and the newest version that loads serves instead:
``latest_version``, which every route reports, only names versions that load.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import time
from pathlib import Path

import torch
from cachetools import LRUCache

from segmenter.learning.trained_model import TrainedModel
from segmenter.store.files import StorageError, abandoned, json_text, read_json, stage, write_json
from segmenter.store.layout import project_dir, project_key

log = logging.getLogger(__name__)

INITIAL_VERSION = "untrained"
BROKEN_DIR = "broken"
KEEP_BROKEN = 5  # set-aside model files kept per project, newest first
_VERSION_FILE = re.compile(r"^v(\d+)-[0-9TZ]+\.pt$")
_VERSION_TWIN = re.compile(r"^v(\d+)-[0-9TZ]+\.json$")


def tidy(model_dir: Path, project: object) -> list[str]:
    """Remove what interrupted writes left in the project's folder; returns the names removed.

    That is temp files whose writer is gone, and ``.json`` twins whose ``.pt``
    is not there (a save renames the ``.pt`` first, so a twin alone is debris).
    """
    folder = project_dir(model_dir, project)
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        return []
    now, removed = time.time(), []
    for name in sorted(names):
        path = folder / name
        if name.endswith(".tmp"):
            debris = abandoned(path, now)
        else:
            debris = bool(_VERSION_TWIN.match(name)) and not path.with_suffix(".pt").exists()
        if debris:
            path.unlink(missing_ok=True)
            removed.append(name)
    if removed:
        log.warning("project %s: removed what an interrupted save left: %s", project_key(project), ", ".join(removed))
    return removed


def _numbered(names: list[str]) -> list[tuple[int, str]]:
    return sorted((int(m.group(1)), name[:-3]) for name in names if (m := _VERSION_FILE.match(name)))


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def versions(model_dir: Path, project: object) -> list[str]:
    """Complete versions of a project, oldest first (whether they load or not)."""
    return [name for _, name in _numbered(_listdir(project_dir(model_dir, project)))]


def _describe(version: str, key: str, states: list[dict], created_at: str) -> dict:
    """The readable twin of a model file."""
    return {
        "version": version,
        "project": key,
        "created_at": created_at,
        "targets": [{k: v for k, v in s.items() if k not in ("weights", "mean", "std")} for s in states],
    }


def save(model_dir: Path, project: object, models: list[TrainedModel], keep: int = 3) -> str:
    """Store ``models`` as the project's next version and prune old ones; returns the version.

    A full disk raises ``StorageError`` ("no space left on device ... MODEL_DIR ...")
    and leaves nothing of the version behind.
    """
    key = project_key(project)
    folder = project_dir(model_dir, key)
    tidy(model_dir, key)
    taken = _numbered(_listdir(folder)) + _numbered(_listdir(folder / BROKEN_DIR))
    version = f"v{max((n for n, _ in taken), default=0) + 1}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    states = [m.to_state() for m in models]
    buffer = io.BytesIO()
    torch.save({"version": version, "models": states}, buffer)
    payload = buffer.getvalue()
    meta = _describe(version, key, states, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    model_file, twin = folder / f"{version}.pt", folder / f"{version}.json"
    staged: list[Path] = []
    try:
        staged.append(stage(model_file, lambda p: p.write_bytes(payload), 0o644, True))
        staged.append(stage(twin, lambda p: p.write_text(json_text(meta)), 0o644, True))
        os.replace(staged[0], model_file)
        os.replace(staged[1], twin)
    except StorageError as exc:
        for temp in staged:
            temp.unlink(missing_ok=True)
        raise StorageError(
            f"no space left on device: cannot save version {version} of project {key} "
            f"({len(payload)} bytes) in MODEL_DIR {Path(model_dir)}"
        ) from exc
    except BaseException:
        for temp in staged:
            temp.unlink(missing_ok=True)
        raise
    for old in versions(model_dir, key)[:-keep]:
        (folder / f"{old}.pt").unlink(missing_ok=True)
        (folder / f"{old}.json").unlink(missing_ok=True)
    return version


def load(model_dir: Path, project: object, version: str) -> list[TrainedModel]:
    """The models of one stored version (raises whatever a broken file raises)."""
    path = project_dir(model_dir, project) / f"{version}.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return [TrainedModel.from_state(state) for state in payload["models"]]


def metadata(model_dir: Path, project: object, version: str) -> dict:
    """The readable metadata of one stored version: its ``.json`` twin, else read from the ``.pt`` ({} if neither)."""
    folder = project_dir(model_dir, project)
    meta = read_json(folder / f"{version}.json")
    if isinstance(meta, dict) and meta:
        return meta
    try:
        path = folder / f"{version}.pt"
        payload = torch.load(path, map_location="cpu", weights_only=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
        return _describe(version, project_key(project), payload["models"], stamp)
    except Exception:  # a broken file is reported by the loading path, not here
        return {}


# What this process learnt about model files, by (path, inode, size, ctime): None when the
# file loads, else why not.  A file is only loaded again when it changed.  Process-wide on
# purpose: these are facts about files, true for every runtime of the process.
_verdicts: LRUCache[tuple, str | None] = LRUCache(maxsize=4096)
_verdicts_lock = threading.Lock()
_UNKNOWN, _GONE = object(), object()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _remember(identity: tuple, verdict: str | None) -> None:
    with _verdicts_lock:
        _verdicts[identity] = verdict


def _set_aside(model_dir: Path, key: str, version: str, reason: str) -> None:
    """Move a model file that does not load (and its twin) to ``broken/`` with the reason; log it once."""
    folder = project_dir(model_dir, key)
    aside = folder / BROKEN_DIR
    try:
        aside.mkdir(exist_ok=True)
        os.replace(folder / f"{version}.pt", aside / f"{version}.pt")
    except FileNotFoundError:
        return  # another process set it aside (and said so) first
    except OSError as exc:
        log.error(
            "project %s: model file %s.pt does not load (%s) and cannot be moved to %s (%s); "
            "serving the newest version that loads",
            key, version, reason, aside, exc,
        )
        return
    log.error(
        "project %s: model file %s.pt does not load (%s); moved to %s, serving the newest version that loads",
        key, version, reason, aside,
    )
    try:
        os.replace(folder / f"{version}.json", aside / f"{version}.json")
    except OSError:
        pass
    try:
        write_json(aside / f"{version}.why.json", {"version": version, "error": reason, "set_aside_at": _now()})
    except OSError:
        pass
    for _, old in _numbered(_listdir(aside))[:-KEEP_BROKEN]:
        for suffix in (".pt", ".json", ".why.json"):
            (aside / f"{old}{suffix}").unlink(missing_ok=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _check(model_dir: Path, key: str, version: str, keep_models: bool) -> object:
    """The models of ``version`` (``[]`` when only checked and known to load), None when it
    does not load, ``_GONE`` when the file vanished since it was listed."""
    path = project_dir(model_dir, key) / f"{version}.pt"
    try:
        stat = path.stat()
    except FileNotFoundError:
        return _GONE
    identity = (str(path), stat.st_ino, stat.st_size, stat.st_ctime_ns)
    with _verdicts_lock:
        known = _verdicts.get(identity, _UNKNOWN)
    if isinstance(known, str):
        return None
    if known is None and not keep_models:
        return []
    try:
        models = load(model_dir, key, version)
    except FileNotFoundError:
        return _GONE
    except MemoryError:
        raise
    except PermissionError as exc:  # not the file's fault: skipped until its permissions change
        _remember(identity, _reason(exc))
        log.error("project %s: cannot read model file %s.pt (%s); skipping it", key, version, exc)
        return None
    except Exception as exc:  # truncated, garbage, refused by weights_only, not our format
        _remember(identity, _reason(exc))
        _set_aside(model_dir, key, version, _reason(exc))
        return None
    _remember(identity, None)
    return models if keep_models else []


def _newest(model_dir: Path, key: str, keep_models: bool) -> tuple[str, list[TrainedModel]]:
    for _ in range(5):  # a listed file may be pruned or set aside before it is read: list again
        for version in reversed(versions(model_dir, key)):
            found = _check(model_dir, key, version, keep_models)
            if found is _GONE:
                break
            if found is not None:
                return version, found
        else:
            return INITIAL_VERSION, []
    return INITIAL_VERSION, []


def latest_version(model_dir: Path, project: object) -> str:
    """The newest version that loads, or ``INITIAL_VERSION`` before the first training.

    Newer files that do not load are set aside on the way (once: a file's
    verdict is remembered until it changes).
    """
    return _newest(model_dir, project_key(project), keep_models=False)[0]


def served_versions(model_dir: Path, project: object) -> list[str]:
    """The stored versions up to the one served, oldest first (``/versions``)."""
    newest = latest_version(model_dir, project)
    found = versions(model_dir, project)
    return found[: found.index(newest) + 1] if newest in found else []


def broken(model_dir: Path, project: object) -> list[dict]:
    """The model files set aside because they did not load, oldest first: version, error, when, file."""
    aside = project_dir(model_dir, project) / BROKEN_DIR
    out = []
    for _, version in _numbered(_listdir(aside)):
        why = read_json(aside / f"{version}.why.json", {}) or {}
        out.append({
            "version": version,
            "error": why.get("error") or "did not load",
            "set_aside_at": why.get("set_aside_at"),
            "file": f"{BROKEN_DIR}/{version}.pt",
        })
    return out


class VersionCache:
    """The newest loadable models of recently used projects, in memory, least recently used dropped.

    Every lookup lists the project's directory, so a version saved by another
    process (a training worker, another gunicorn worker) is picked up at once.
    """

    def __init__(self, model_dir: Path, capacity: int = 8) -> None:
        self.model_dir = Path(model_dir)
        self.capacity = capacity
        self._items: LRUCache[str, tuple[str, list[TrainedModel]]] = LRUCache(maxsize=capacity)
        self._lock = threading.Lock()

    def get(self, project: object) -> tuple[str, list[TrainedModel]]:
        """(version, models) of the newest version that loads; (INITIAL_VERSION, []) before training."""
        key = project_key(project)
        version = latest_version(self.model_dir, key)
        if version == INITIAL_VERSION:
            return version, []
        with self._lock:
            cached = self._items.get(key)  # a hit makes it the most recently used
            if cached is not None and cached[0] == version:
                return cached
        version, models = _newest(self.model_dir, key, keep_models=True)
        if version == INITIAL_VERSION:
            return version, []
        with self._lock:
            self._items[key] = (version, models)
        return version, models

    def cached_projects(self) -> list[str]:
        """Projects currently held in memory."""
        with self._lock:
            return list(self._items)
