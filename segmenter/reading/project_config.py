"""A project's label config read once: its targets and their ``model_*`` settings.

Parsing a config means label-studio-sdk's validation plus two walks of the
XML, and every ``/predict``, write-back batch and dashboard chart needs the
result; ``ProjectConfig.read`` keeps the newest few parses by the config's
hash and the training defaults, so a project's config is parsed once per
process however many requests bring it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from segmenter.config import TrainingSettings
from segmenter.reading.labelconfig import Target, parse_label_config
from segmenter.reading.project_settings import ProjectSettings, read_settings

PARSES_KEPT = 64  # distinct configs (with their defaults) a process keeps parsed


@dataclass(frozen=True)
class ProjectConfig:
    """The label config as segmentation uses it (immutable, shared between threads)."""

    text: str
    digest: str  # sha256 of the text, shortened: names the config in logs and training reasons
    targets: tuple[Target, ...]
    settings: dict[str, ProjectSettings]  # by control name (``from_name``)

    @classmethod
    def read(cls, text: str, defaults: TrainingSettings, validate: bool = True) -> ProjectConfig:
        """The parsed config; raises ``LabelConfigError`` for a config segmentation cannot use
        (``validate``: or that label-studio-sdk rejects, as Label Studio would)."""
        return _read(hashlib.sha256(text.encode()).hexdigest(), text, defaults, validate)

    @property
    def problems(self) -> list[str]:
        """Every problem of the ``model_*`` attributes (each such value keeps its default)."""
        return [p for s in self.settings.values() for p in s.problems]

    def wants(self, target: Target, trained_with: dict) -> bool:
        """Whether a model trained for ``target`` under ``trained_with`` (``ProjectSettings.training_key``)
        applies to this config exactly as it is: same target, same training-time settings."""
        own = self.settings.get(target.from_name)
        same = any(t.signature() == target.signature() for t in self.targets)
        return same and own is not None and own.training_key() == trained_with


@functools.lru_cache(maxsize=PARSES_KEPT)
def _read(digest: str, text: str, defaults: TrainingSettings, validate: bool) -> ProjectConfig:
    # The text is part of the key (not only its hash) so that a hash collision can never mix two configs.
    targets = tuple(parse_label_config(text, validate=validate))
    return ProjectConfig(text, digest[:12], targets, read_settings(text, defaults))
