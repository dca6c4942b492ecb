"""The dashboard's reduced task views, kept on disk per (project, model version, task).

``/predict`` leaves, for each task it predicts, the arrays the task chart needs
(``segmenter.service.dashboard.task_view`` decides what they are) so that any process sharing
MODEL_DIR serves a long task's view without parsing and predicting it again.
Each view is one uncompressed ``.npz`` (no pickles: ``allow_pickle=False``),
written atomically; a reader sees a whole view or none.  Disk use is bounded:
views of versions no longer stored are removed, and only the newest ``KEEP``
views of a project stay.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from segmenter.store.files import abandoned, atomic_write
from segmenter.store.layout import project_dir, project_key
from segmenter.store.versions import versions

log = logging.getLogger(__name__)

VIEWS_DIR = "task_views"
KEEP = 64  # views per project, newest first; a 1M-row task's view is about 8 MB
_META = "meta"


def _folder(model_dir: Path, project: object) -> Path:
    return project_dir(model_dir, project) / VIEWS_DIR


def _path(model_dir: Path, project: object, version: str, task_id: int) -> Path:
    if not version.replace("-", "").isalnum():
        raise ValueError(f"{version!r} is not a model version")
    return _folder(model_dir, project) / version / f"task_{int(task_id)}.npz"


def save_view(model_dir: Path, project: object, version: str, task_id: int, arrays: dict[str, np.ndarray],
              meta: dict) -> None:
    """Store one task's view (named arrays plus JSON-able ``meta``), then prune the project's views."""
    path = _path(model_dir, project, version, task_id)

    def write(temp: Path) -> None:
        with open(temp, "wb") as fh:
            np.savez(fh, **arrays, **{_META: np.array(json.dumps(meta))})

    atomic_write(path, write, durable=False)  # a lost view is computed again: no fsync on the way
    prune(model_dir, project)


def load_view(model_dir: Path, project: object, version: str, task_id: int) -> tuple[dict[str, np.ndarray],
                                                                                     dict] | None:
    """The stored view of a task under ``version`` as (arrays, meta), or None when there is none usable."""
    path = _path(model_dir, project, version, task_id)
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(str(arrays.pop(_META)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # damaged: computed again and replaced
        log.warning("project %s: task view %s unreadable (%s); computing it", project_key(project), path.name, exc)
        return None
    return arrays, meta


def prune(model_dir: Path, project: object, keep: int = KEEP) -> None:
    """Remove views of versions no longer stored, then all but the newest ``keep`` views
    (and what writers that died left)."""
    folder = _folder(model_dir, project)
    stored = set(versions(model_dir, project))
    try:
        kept_dirs = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name not in stored:
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    kept_dirs.append(Path(entry.path))
    except FileNotFoundError:
        return
    files, now = [], time.time()
    for directory in kept_dirs:
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.endswith(".npz"):
                        files.append((entry.stat().st_mtime, entry.path))
                    elif entry.name.endswith(".tmp") and abandoned(Path(entry.path), now):  # a writer that died
                        Path(entry.path).unlink(missing_ok=True)
        except FileNotFoundError:  # removed by another process meanwhile
            continue
    for _, path in sorted(files, reverse=True)[keep:]:
        Path(path).unlink(missing_ok=True)
