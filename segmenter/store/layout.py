"""Where a project lives under MODEL_DIR, and the one parser of project ids.

A project's storage key is Label Studio's project id (``"1"``), or, for a
project of another Label Studio that also has that id, the id and the
creation time (epoch seconds) of that other project (``"1-1795697041"``);
``segmenter.store.identity`` decides which.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_PROJECT_PREFIX = "model_project_"
# Label Studio sends a project as its id or as "<id>.<created_at epoch>"; a key kept apart is
# "<id>-<created_at epoch>".  ASCII digits only (str.isdigit also accepts "²" and "١"), and no
# more than fit a 64-bit id.
_PROJECT_ID = re.compile(r"^\s*0*([0-9]{1,18})(?:([.-])0*([0-9]{1,20}))?\s*$", re.ASCII)


def parse_project(project: object) -> tuple[str, int | None]:
    """Label Studio's project id and, where the value says it, the project's creation epoch.

    ``"1.1795697041"`` (Label Studio's form) and ``"1-1795697041"`` (a key kept
    apart) -> ``("1", 1795697041)``; ``1`` and ``"1"`` -> ``("1", None)``.  Anything
    else is a ``ValueError`` whose message names the value (shortened).
    """
    plain = isinstance(project, (str, int)) and not isinstance(project, bool)
    match = _PROJECT_ID.match(str(project)) if plain else None
    if match is None:
        shown = repr(project)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(f"project {shown} is not a Label Studio project id (ASCII digits, at most 18)")
    return match.group(1), int(match.group(3)) if match.group(3) else None


def project_key(project: object) -> str:
    """A project's directory-safe storage key: ``"1.1795697041"`` and ``1`` -> ``"1"``,
    ``"1-1795697041"`` stays itself.

    The one parser of project ids for every file name; which key a request's
    project gets is ``segmenter.store.identity.resolve``'s call.
    """
    project_id, created = parse_project(project)
    kept_apart = created is not None and "-" in str(project)
    return f"{project_id}-{created}" if kept_apart else project_id


def apart_key(project_id: str, created: int) -> str:
    """The key of Label Studio's project ``project_id`` created at ``created`` when kept apart."""
    return f"{project_id}-{created}"


def label_studio_id(project: object) -> int:
    """The id Label Studio knows a stored project by (``"1-1795697041"`` -> ``1``)."""
    return int(parse_project(project)[0])


def project_dir(model_dir: Path, project: object) -> Path:
    """Where one project's models and state live."""
    return Path(model_dir) / f"{_PROJECT_PREFIX}{project_key(project)}"


def projects(model_dir: Path) -> list[str]:
    """The projects that have a directory under ``model_dir``, by key (id, then creation)."""
    try:
        with os.scandir(model_dir) as entries:
            names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    keys = [n.removeprefix(_PROJECT_PREFIX) for n in names if n.startswith(_PROJECT_PREFIX)]
    # A directory this backend did not make (another name, another spelling) is not a project.
    found = [k for k in keys if _PROJECT_ID.match(k) and project_key(k) == k]
    return sorted(found, key=lambda k: (int(parse_project(k)[0]), parse_project(k)[1] or -1))
