"""What outlives a request in a service process, built once by ``Runtime.start``.

The settings, the model class Label Studio talks to, the in-memory model
cache, the training scheduler and the Label Studio clients: ``create_app``
takes this one object, and every per-request model object reaches the rest
through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from segmenter import store
from segmenter.config import Settings, bootstrap
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.service.jobs import Scheduler

if TYPE_CHECKING:
    from segmenter.service.mlbase import LabelStudioMLBase


@dataclass
class Runtime:
    """Process-wide services shared by the model objects of all requests."""

    settings: Settings
    model_class: type[LabelStudioMLBase]
    cache: store.ModelCache
    access: LabelStudioAccess
    scheduler: Scheduler

    @classmethod
    def start(cls, settings: Settings, model_class: type[LabelStudioMLBase]) -> Runtime:
        """Bootstrap this process for ``settings`` and build its services."""
        bootstrap(settings)
        access = LabelStudioAccess(settings)
        cache = store.ModelCache(settings.model_dir, settings.model_cache_size)
        scheduler = Scheduler(access)
        scheduler.resume()  # write-backs of predictions a previous process left unfinished
        return cls(settings, model_class, cache, access, scheduler)
