"""One project as a request or a job sees it, worked out once: the ``Project`` handle.

``/predict``, a webhook, the dashboard, a training and its write-back each
build one ``Project`` (``Runtime.project`` in the service, ``Project(...)`` in
an RQ worker) and ask it what they need: the parsed label config with its
``model_*`` settings (parsed once per process, ``ProjectConfig.read``), the
served version and its trained models that fit the config, the Label Studio
client and task-data fetcher, what Label Studio says of the project, the
training status.  Each is computed on first use and kept for the life of the
handle, so no request parses its config or scans its model folder twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

from segmenter import store
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.labelstudio.client import LabelStudioClient
from segmenter.labelstudio.errors import Backoff, LabelStudioError
from segmenter.labelstudio.fetching import DataFetcher
from segmenter.learning.inference import fitting_models
from segmenter.learning.trained_model import TrainedModel
from segmenter.reading.project_config import ProjectConfig
from segmenter.reading.project_settings import ProjectSettings
from segmenter.store import TrainingStatus

log = logging.getLogger(__name__)

NO_URL = "no Label Studio URL: set LABEL_STUDIO_URL or connect the backend in Label Studio (/setup)"


@dataclass(frozen=True)
class Served:
    """The version a project serves and its trained models that fit the config (``unfit``: left out)."""

    version: str
    models: list[TrainedModel]
    unfit: int = 0


class Project:
    """A project's config, settings, served models, Label Studio access and status, each read once."""

    def __init__(self, key: str, label_config: str | None, access: LabelStudioAccess,
                 versions: store.VersionCache | None = None) -> None:
        self.key = key
        self.label_config = label_config or ""
        self.access = access
        self.settings = access.settings
        self._versions = versions
        self._info: dict | None = None

    @cached_property
    def config(self) -> ProjectConfig | None:
        """The parsed label config (None when none is known); raises ``LabelConfigError`` when unusable."""
        return ProjectConfig.read(self.label_config, self.settings.training) if self.label_config else None

    @property
    def project_settings(self) -> dict[str, ProjectSettings]:
        """The ``model_*`` settings by control name ({} without a config: automatic clean-up)."""
        return self.config.settings if self.config is not None else {}

    def fitting(self, models: list[TrainedModel]) -> list[TrainedModel]:
        """Those of ``models`` trained for the config as it is (all of them when no config is known)."""
        return fitting_models(models, self.config) if self.config is not None and models else models

    @cached_property
    def served(self) -> Served:
        """The newest version that loads and its models that fit the config (the process's model cache)."""
        versions = self._versions or store.VersionCache(self.settings.model_dir, 1)
        version, models = versions.get(self.key)
        fitting = self.fitting(models)
        return Served(version, fitting, len(models) - len(fitting))

    def models_of(self, version: str) -> list[TrainedModel]:
        """The models of a stored ``version`` that fit the config (the write-back's, whatever is served)."""
        return self.fitting(store.load(self.settings.model_dir, self.key, version))

    @cached_property
    def client(self) -> LabelStudioClient | None:
        """The client of the project's Label Studio (``connection_target``); None without a URL."""
        return self.access.client_for(self.key)

    def require_client(self) -> LabelStudioClient:
        """The client, or a ``LabelStudioError`` saying how to give the backend a Label Studio."""
        if self.client is None:
            raise LabelStudioError(NO_URL)
        return self.client

    @cached_property
    def fetcher(self) -> DataFetcher:
        """The task-data downloader of the project, with the configured limits."""
        return self.access.fetcher_for(self.key, self.client)

    def label_studio_project(self, backoff: Backoff | None = None) -> dict:
        """What Label Studio says of the project (``/api/projects/<id>``), read once per handle; raises
        ``LabelStudioError`` when it cannot be read or was created at another time than the stored one
        (another Label Studio's project of the same id).  Its label config, when it has one, becomes
        the handle's: Label Studio's is the config as it is now."""
        if self._info is None:
            client, label_studio_id = self.require_client(), store.label_studio_id(self.key)

            def read() -> object:
                return client.get_json(f"/api/projects/{label_studio_id}")

            info = backoff.call(f"reading project {self.key}", read) if backoff else read()
            info = info if isinstance(info, dict) else {}
            wrong = store.mismatch(self.settings.model_dir, self.key, info.get("created_at"))
            if wrong:
                raise LabelStudioError(wrong)
            self._info = info
            if info.get("label_config"):
                self.label_config = info["label_config"]
                self.__dict__.pop("config", None)  # parsed again, from Label Studio's text
                self.__dict__.pop("served", None)
        return self._info

    def status(self) -> TrainingStatus:
        """The training status as ``/status`` shows it (read now: it changes while the handle lives)."""
        return store.read_status(self.settings.model_dir, self.key)

    def connected(self) -> dict:
        """What an authenticated ``/setup`` kept for the project ({} if none came)."""
        return store.load_connection(self.settings.model_dir, self.key)
