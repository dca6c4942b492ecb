"""The dashboard's drawn charts of a model version, kept on disk per (project, version).

A version's charts do not change once it is trained, so each is drawn once
and its PNG kept here, under a name that says what it shows (the caller's key
covers the drawing code and the numbers drawn); every process sharing
MODEL_DIR then serves it without drawing.  Written atomically; charts of
versions no longer stored are removed, and at most ``KEEP`` per version stay.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from segmenter.store.files import abandoned, atomic_write
from segmenter.store.layout import project_dir
from segmenter.store.versions import versions

CHARTS_DIR = "charts"
KEEP = 32  # charts per version, newest first (a version has 4 per target, plus the learning curve)


def _path(model_dir: Path, project: object, version: str, name: str) -> Path:
    if not version.replace("-", "").isalnum() or not name.replace("-", "").isalnum():
        raise ValueError(f"{version!r}/{name!r} is not a chart of a model version")
    return project_dir(model_dir, project) / CHARTS_DIR / version / f"{name}.png"


def load_chart(model_dir: Path, project: object, version: str, name: str) -> bytes | None:
    """The PNG kept for chart ``name`` of ``version``, or None."""
    try:
        return _path(model_dir, project, version, name).read_bytes()
    except FileNotFoundError:
        return None


def save_chart(model_dir: Path, project: object, version: str, name: str, png: bytes) -> None:
    """Keep chart ``name`` of ``version`` (a full disk raises ``StorageError``), then prune."""
    path = _path(model_dir, project, version, name)
    atomic_write(path, lambda temp: temp.write_bytes(png), durable=False)  # a lost chart is drawn again
    prune(model_dir, project, path.parent)


def prune(model_dir: Path, project: object, folder: Path) -> None:
    """Remove the charts of versions no longer stored, all but the newest ``KEEP`` in ``folder``
    and what writers that died left there."""
    stored, now = set(versions(model_dir, project)), time.time()
    try:
        with os.scandir(folder.parent) as entries:
            for entry in entries:
                if entry.name not in stored:
                    shutil.rmtree(entry.path, ignore_errors=True)
        kept = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".png"):
                    kept.append((entry.stat().st_mtime, entry.path))
                elif entry.name.endswith(".tmp") and abandoned(Path(entry.path), now):
                    Path(entry.path).unlink(missing_ok=True)
    except FileNotFoundError:  # removed by another process meanwhile
        return
    for _, path in sorted(kept, reverse=True)[KEEP:]:
        Path(path).unlink(missing_ok=True)
