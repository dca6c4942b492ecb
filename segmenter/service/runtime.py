"""What outlives a request in a service process, built once by ``Runtime.start``.

The settings, the in-memory model cache, the training scheduler, the Label
Studio clients and the dashboard's task views and task reads with their
background threads: ``create_app`` keeps this one object in
``app.extensions["segmenter"]``, and every request reaches the rest through
it, so two runtimes in one process (tests, an embedding app) share nothing.
What stays process-wide is what the process itself is: its Prometheus
registry (``service.metrics``), its stop request (``segmenter.shutdown``),
its torch device and its log filter of secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segmenter import store
from segmenter.config import Settings, bootstrap
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.service.dashboard.chart_worker import ChartWorker
from segmenter.service.dashboard.task_reads import TaskReads
from segmenter.service.dashboard.task_view import TaskViews
from segmenter.service.jobs import Scheduler
from segmenter.service.project import Project


@dataclass
class Runtime:
    """Process-wide services shared by the requests of one app."""

    settings: Settings
    versions: store.VersionCache  # the newest version of recently used projects, loaded
    access: LabelStudioAccess
    scheduler: Scheduler
    chart_worker: ChartWorker
    task_views: TaskViews = field(default_factory=TaskViews)
    task_reads: TaskReads = field(default_factory=TaskReads)

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        """Bootstrap this process for ``settings`` and build its services."""
        bootstrap(settings)
        access = LabelStudioAccess(settings)
        versions = store.VersionCache(settings.model_dir, settings.model_cache_size)
        scheduler = Scheduler(access)
        scheduler.resume()  # write-backs of predictions a previous process left unfinished
        # Half the request threads at most wait for charts: the others stay free for Label Studio.
        return cls(settings, versions, access, scheduler, ChartWorker(waiting=settings.threads // 2))

    def project(self, key: str, label_config: str | None = None) -> Project:
        """The handle of one stored project for one request, with the label config it came with."""
        return Project(key, label_config, self.access, self.versions)
