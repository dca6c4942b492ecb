"""Prometheus metrics of the service and its training jobs, served at ``/metrics``.

Counted here: HTTP requests and their latency per route, method and status;
trainings started, succeeded and failed and how long they took; tasks and rows
predicted and the seconds it took; models held in memory.  Computed at each
scrape from ``MODEL_DIR``: the version each project serves (the one Label
Studio shows) and how many projects are in each training state.

Several processes count: gunicorn workers and RQ jobs.  They share one
directory (``METRICS_DIR``) through the client library's multiprocess mode,
which must be chosen before ``prometheus_client`` is first imported in a
process: gunicorn's master sets it up at start (``gunicorn.conf.py``), an RQ
job joins it (``segmenter.service.jobs``).  That is why ``prometheus_client`` is only
imported inside functions here.  Each host (or container) counts in its own
subfolder, named by its host name and PID namespace, since the library names
files by process id and containers number processes alike; a scrape adds up
every subfolder.  At start the master removes only the files of this host's
processes that ended: a live RQ worker's counts stay, and other hosts' files
are never judged by a pid that means nothing here.  The files are written
through ``segmenter.service.metric_files``: on a full disk the counts wait in memory
instead of the library's SIGBUS.  A process that never joined one (``python
_wsgi.py``, the tests) counts in its own memory.
No label ever holds a secret: routes are Flask's rule patterns, projects are ids.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

from segmenter import store
from segmenter.store import files

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 100.0)
TRAINING_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)
_VERSION_NUMBER = re.compile(r"^v(\d+)-")
_PID_FILE = re.compile(r"_(\d+)\.db$")


def host_folder() -> str:
    """This host's subfolder name: its host name and PID namespace, the scope in which a pid names one process."""
    return files.pid_scope()


def remove_dead(folder: Path) -> list[str]:
    """Remove the files of processes of this host that ended (the names the library gives end in
    ``_<pid>.db``); returns the names removed.  A live process's files (an RQ worker beside the
    backend) stay, and so does every other host's folder: their pids mean nothing here."""
    removed = []
    for path in sorted(folder.glob("*.db")):
        pid = _PID_FILE.search(path.name)
        if pid is not None and not files.alive(int(pid.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def use_directory(directory: Path, clean: bool) -> bool:
    """Count into this host's folder of ``directory``, shared with the other processes; ``clean``
    (at the service's start) first removes the files of this host's processes that ended.

    Returns whether this process now counts there: not when ``prometheus_client``
    was already imported in memory mode.
    """
    own = directory / host_folder()
    if "prometheus_client" in sys.modules and os.environ.get(ENV) != str(own):
        log.warning("metrics: prometheus_client already in use in this process; not counting into %s", directory)
        return False
    if clean:
        remove_dead(own)
    own.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(own)
    return True


def shared() -> bool:
    """Whether this process counts into a shared directory."""
    return bool(os.environ.get(ENV))


def process_ended(pid: int) -> None:
    """Forget the live gauges of a process that ended (gunicorn's ``child_exit``)."""
    if shared():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


_made: SimpleNamespace | None = None
_making = threading.Lock()


def _m() -> SimpleNamespace:
    """The metric objects, made once on first use (after the process chose its mode).

    Under a lock: request threads and a training thread may all count their first
    event at once, and a second registration of the same names is an error.
    """
    global _made
    if _made is None:
        with _making:
            if _made is None:
                _made = _make()
    return _made


def _make() -> SimpleNamespace:
    from prometheus_client import Counter, Gauge, Histogram, values

    if shared():  # files backed before they are mapped: a full disk delays counts, never kills (metric_files)
        from segmenter.service.metric_files import FileValue

        values.ValueClass = FileValue

    return SimpleNamespace(
        requests=Counter(
            "segmenter_http_requests", "HTTP requests answered", ["route", "method", "status"]
        ),
        latency=Histogram(
            "segmenter_http_request_duration_seconds", "Time to answer an HTTP request",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS,
        ),
        trainings_started=Counter("segmenter_trainings_started", "Trainings started"),
        trainings=Counter("segmenter_trainings", "Trainings ended, by outcome", ["outcome"]),
        training_seconds=Histogram(
            "segmenter_training_duration_seconds", "Duration of a training, by outcome", ["outcome"],
            buckets=TRAINING_BUCKETS,
        ),
        predicted_tasks=Counter("segmenter_predicted_tasks", "Tasks predicted"),
        predicted_rows=Counter("segmenter_predicted_rows", "Series rows predicted (per target)"),
        prediction_seconds=Histogram(
            "segmenter_prediction_duration_seconds", "Time to predict one /predict batch", buckets=LATENCY_BUCKETS
        ),
        models_in_memory=Gauge(
            "segmenter_models_in_memory", "Projects whose models are held in memory", multiprocess_mode="livesum"
        ),
    )


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request."""
    m = _m()
    m.requests.labels(route, method, str(status)).inc()
    m.latency.labels(route, method, str(status)).observe(seconds)


def training_started() -> None:
    """Count a training that starts."""
    _m().trainings_started.inc()


def training_ended(succeeded: bool, seconds: float) -> None:
    """Count a training that ended, and its duration."""
    outcome = "succeeded" if succeeded else "failed"
    m = _m()
    m.trainings.labels(outcome).inc()
    m.training_seconds.labels(outcome).observe(seconds)


def predicted(tasks: int, rows: int, seconds: float) -> None:
    """Count one /predict batch: its tasks, the rows predicted and the time taken."""
    m = _m()
    m.predicted_tasks.inc(tasks)
    m.predicted_rows.inc(rows)
    m.prediction_seconds.observe(seconds)


def models_in_memory(count: int) -> None:
    """How many projects' models this process holds now."""
    _m().models_in_memory.set(count)


class _ProjectsCollector:
    """Read from ``MODEL_DIR`` at each scrape: the version each project serves, projects per state."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir

    def collect(self) -> list:
        from prometheus_client.core import GaugeMetricFamily

        served = GaugeMetricFamily(
            "segmenter_served_version",
            "Number N of the model version vN-... each project serves (0: untrained)",
            labels=["project", "version"],
        )
        states = GaugeMetricFamily("segmenter_projects", "Projects by training state", labels=["state"])
        counts = {state.value: 0 for state in store.TrainingState}
        for project in store.projects(self.model_dir):
            version = store.latest_version(self.model_dir, project)
            number = _VERSION_NUMBER.match(version)
            served.add_metric([project, version], float(number.group(1)) if number else 0.0)
            counts[store.read_status(self.model_dir, project).state.value] += 1
        for state, count in counts.items():
            states.add_metric([state], count)
        return [served, states]


class _HostsCollector:
    """The counts of every process of every host that counts into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> list:
        from prometheus_client.multiprocess import MultiProcessCollector

        return list(MultiProcessCollector.merge([str(f) for f in sorted(self.directory.glob("*/*.db"))]))


def exposition(model_dir: Path, metrics_dir: Path) -> tuple[bytes, str]:
    """The text a scrape gets, and its content type: every process's counts plus the projects."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    _m()  # every metric is listed from the first scrape on, at zero
    if shared():
        registry = CollectorRegistry()
        registry.register(_HostsCollector(metrics_dir))
        registry.register(_ProjectsCollector(model_dir))
        return generate_latest(registry), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    registry.register(_ProjectsCollector(model_dir))
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST
