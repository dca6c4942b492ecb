"""Where a project lives under MODEL_DIR, and the one parser of project ids."""

from __future__ import annotations

import os
import re
from pathlib import Path

_PROJECT_PREFIX = "model_project_"
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
