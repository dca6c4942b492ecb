"""The per-project directory under MODEL_DIR, owned here and only here.

Layout::

    model_project_{id}/v{N}-{UTC time}.pt     weights + metadata of every target   (versions)
    model_project_{id}/v{N}-{UTC time}.json   the same metadata, readable twin     (versions)
    model_project_{id}/broken/                model files that did not load         (versions)
    model_project_{id}/status.json            the TrainingStatus                    (records, status)
    model_project_{id}/history.jsonl          one line per successful training, appended (records)
    model_project_{id}/connection.json        what /setup said, owner-only          (records)
    model_project_{id}/status.lock, train.lock, writeback.lock  locks shared by all processes (records)
    model_project_{id}/task_views/{version}/task_{id}.npz  a predicted task, reduced for the dashboard  (task_views)
    model_project_{id}/charts/{version}/{chart}.png  a version's dashboard chart, drawn once   (chart_images)
    model_project_{id}/identity.json          the creation time of the Label Studio project it belongs to (identity)
    model_project_{id}-{epoch}/               the same, for another Label Studio's project {id}, kept apart  (identity)

``layout`` parses project ids and names the folders, ``identity`` tells which
folder a request's project is (two Label Studios' project 1 never share one),
``files`` writes without ever exposing half a file, ``versions`` keeps the stored versions,
``records`` the status (its types and transitions: ``status``), the history and the
connection, ``task_views`` the dashboard's reduced view of each predicted task,
``chart_images`` the charts drawn of each version.  Callers import from ``segmenter.store`` only.
"""

from segmenter.store.chart_images import load_chart, save_chart
from segmenter.store.files import StorageError, atomic_write, read_json, write_json
from segmenter.store.identity import created_epoch, mismatch, resolve
from segmenter.store.layout import label_studio_id, project_dir, project_key, projects
from segmenter.store.records import (
    history,
    load_connection,
    orphaned_training,
    queue,
    read_status,
    remember_training,
    report,
    save_connection,
    stored_status,
    training_lock,
    training_running,
    update_status,
    writeback_lock,
)
from segmenter.store.status import TrainingState, TrainingStatus, WritebackState, WritebackStatus, now
from segmenter.store.task_views import load_view, save_view
from segmenter.store.versions import (
    BROKEN_DIR,
    INITIAL_VERSION,
    VersionCache,
    broken,
    latest_version,
    load,
    metadata,
    save,
    served_versions,
    tidy,
    versions,
)

__all__ = [
    "BROKEN_DIR", "INITIAL_VERSION", "VersionCache", "StorageError", "TrainingState", "TrainingStatus",
    "WritebackState", "WritebackStatus", "atomic_write", "broken", "created_epoch", "history", "label_studio_id",
    "latest_version", "load", "load_chart", "load_connection", "load_view", "metadata", "mismatch", "now",
    "orphaned_training", "project_dir", "project_key", "projects", "queue", "read_json", "read_status",
    "remember_training", "report",
    "resolve", "save", "save_chart", "save_connection", "save_view", "served_versions", "stored_status", "tidy",
    "training_lock", "training_running", "update_status", "versions", "write_json", "writeback_lock",
]
