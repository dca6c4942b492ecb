"""Which stored project a request's project is: Label Studio's project id alone is no identity.

Two Label Studios can each have a project 1.  Every request Label Studio sends
says when its project was created: ``/setup`` and ``/predict`` name the project
``"<id>.<created_at epoch>"``, a webhook carries the project's ``created_at``.
So a project is (id, creation epoch).  ``model_project_{id}`` belongs to the
first such pair that claims it, recorded in its ``identity.json`` (a folder of
an older backend, without one, is adopted by the first request that claims
it, and that is logged); a project 1 created at another time is kept apart in
``model_project_{id}-{epoch}`` with its own models, status, connection and
write-back, and a warning is logged.  A request that gives no creation time
(not Label Studio's) gets ``model_project_{id}``.  Before training on or
writing to a Label Studio, ``mismatch`` compares the creation time it reports
with the one the folder belongs to.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from segmenter.store.files import create_json, read_json
from segmenter.store.layout import apart_key, label_studio_id, parse_project, project_dir

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
_warned: set[str] = set()  # keys kept apart that this process has already warned about
_warned_lock = threading.Lock()
_WARNED_KEPT = 1024


def created_epoch(created_at: object) -> int | None:
    """Epoch seconds of a Label Studio ``created_at`` (ISO 8601, naive means UTC), as Label Studio
    writes it into ``"<id>.<epoch>"``; None for anything else."""
    if not isinstance(created_at, str) or len(created_at) > 64:
        return None
    try:
        moment = datetime.fromisoformat(created_at.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    epoch = int(moment.timestamp())
    return epoch if epoch >= 0 else None


def _shown(epoch: int) -> str:
    """An epoch as UTC time; one beyond the calendar (any 20 digits are an epoch to Label Studio) as is."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):
        return str(epoch)


def owner(model_dir: Path, key: object) -> int | None:
    """The creation epoch of the Label Studio project a stored project belongs to (None: not known)."""
    project_id, created = parse_project(key)
    if created is not None and "-" in str(key):
        return created
    found = read_json(project_dir(model_dir, project_id) / IDENTITY_FILE, {})
    value = found.get("created") if isinstance(found, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def belongs_to(model_dir: Path, key: object) -> dict:
    """The Label Studio project a stored project belongs to, for ``/status``: id and creation time."""
    created = owner(model_dir, key)
    return {"id": label_studio_id(key), "created_at": _shown(created) if created is not None else None}


def resolve(model_dir: Path, project: object, created: int | None = None, claim: bool = False,
            create: bool = False) -> str:
    """The storage key of Label Studio's ``project`` (``"1.1795697041"``, ``1`` with ``created``, or
    a key), created at ``created`` when the value does not say.

    With ``claim``, an existing ``model_project_{id}`` that nobody owns yet becomes
    this project's; with ``create`` also one that does not exist yet.  Raises
    ``ValueError`` for a value that is not a project id.
    """
    project_id, said = parse_project(project)
    created = said if said is not None else created
    if created is None:
        return project_id
    folder = project_dir(model_dir, project_id)
    found = owner(model_dir, project_id)
    if found is None and (create or (claim and folder.is_dir())):
        adopted = folder.is_dir()
        if create_json(folder / IDENTITY_FILE, {"project": int(project_id), "created": created,
                                                "created_at": _shown(created)}):
            if adopted:
                log.info("project %s: its folder now belongs to the Label Studio project %s created at %s "
                         "(the first request that named it)", project_id, project_id, _shown(created))
            return project_id
        found = owner(model_dir, project_id)
    if found is None or found == created:
        return project_id
    key = apart_key(project_id, created)
    _warn_once(key, project_id, created, found)
    return key


def _warn_once(key: str, project_id: str, created: int, found: int) -> None:
    with _warned_lock:
        if key in _warned:
            return
        if len(_warned) >= _WARNED_KEPT:
            _warned.clear()
        _warned.add(key)
    log.warning(
        "project %s: a request for a Label Studio project %s created at %s, but project %s here belongs to the "
        "one created at %s: another Label Studio (or a project made again); kept apart as project %s",
        project_id, project_id, _shown(created), project_id, _shown(found), key,
    )


def mismatch(model_dir: Path, key: object, created_at: object) -> str | None:
    """Why the Label Studio project reported with ``created_at`` is not the one ``key`` belongs to;
    None when it is (or either time is unknown)."""
    reported, expected = created_epoch(created_at), owner(model_dir, key)
    if reported is None or expected is None or reported == expected:
        return None
    project_id = parse_project(key)[0]
    return (
        f"project {key} belongs to the Label Studio project {project_id} created at {_shown(expected)}, but this "
        f"Label Studio's project {project_id} was created at {_shown(reported)}: another Label Studio; refusing to "
        "train on its tasks or write predictions into it"
    )
