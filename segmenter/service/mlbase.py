"""``LabelStudioMLBase``: the familiar label-studio-ml 2.x model surface.

label-studio-ml 2.x is not on the package index, so this project keeps its
shape itself: a model object is made per request for one project and label
config, ``setup()`` runs when Label Studio connects, ``predict(tasks,
context)`` returns one prediction per task and ``fit(event, data)`` reacts to
webhook events.  What outlives a request (settings, the model cache, the
training scheduler) is the ``Runtime`` (``segmenter.service.runtime``) the app hands to
every model object; the object's ``project`` is the request's ``Project`` handle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from segmenter import store
from segmenter.config import Settings

if TYPE_CHECKING:
    from segmenter.service.runtime import Runtime


class LabelStudioMLBase(ABC):
    """Base class of a Label Studio ML backend model bound to one project."""

    def __init__(self, project_id: str, label_config: str | None, runtime: Runtime) -> None:
        self.project_id = store.project_key(project_id)
        self.label_config = label_config or ""
        self.runtime = runtime
        self.project = runtime.project(self.project_id, self.label_config)
        self.setup()

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def model_version(self) -> str:
        """The version ``/setup``, ``/predict`` and ``/versions`` all report."""
        return store.latest_version(self.settings.model_dir, self.project_id)

    def setup(self) -> None:
        """Called for every model object; override to prepare per-project state."""

    def connect(self, hostname: str | None, access_token: str | None, extra_params: object) -> None:
        """Called by ``/setup`` with what Label Studio sends about itself; override to keep it."""

    @abstractmethod
    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: object) -> list[dict]:
        """One ``{"result": [...], "score": s}`` per task, in order."""

    @abstractmethod
    def fit(self, event: str, data: dict, **kwargs: object) -> dict:
        """React to a webhook event (train, or not); must return quickly."""
