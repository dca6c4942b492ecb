"""Many projects on one backend: a bounded number of trainings at once, served first come, first served."""

import threading
import time
from dataclasses import replace

import pytest

from harness import synthetic
from harness.fakels import KEY
from segmenter import store
from segmenter.config import Settings, TrainingSettings
from segmenter.errors import ConfigError
from segmenter.labelstudio.access import LabelStudioAccess
from segmenter.service import jobs
from segmenter.service.slots import Slots

CONFIG = synthetic.label_config()
FAST = TrainingSettings(epochs=3, patience=2, batch_size=32)


def settings_for(tmp_path, ls, **changes) -> Settings:
    base = Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache", training=FAST,
                    label_studio_url=ls.url, label_studio_api_key=KEY, predict_batch_size=50,
                    predict_batch_pause=0.0, predict_retry_wait=0.01)
    return replace(base, **changes)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_settings_bound_trainings_and_writebacks_and_refuse_zero():
    settings = Settings.from_env({"MAX_CONCURRENT_TRAININGS": "3", "MAX_CONCURRENT_WRITEBACKS": "4"})
    assert (settings.max_concurrent_trainings, settings.max_concurrent_writebacks) == (3, 4)
    assert Settings.from_env({}).max_concurrent_trainings == 1
    with pytest.raises(ConfigError, match="MAX_CONCURRENT_TRAININGS"):
        Settings.from_env({"MAX_CONCURRENT_TRAININGS": "0"})


def test_slots_never_exceed_the_limit_and_serve_waiters_in_arrival_order():
    slots = Slots(2)
    inside, peak, order = [0], [0], []
    lock = threading.Lock()
    release = threading.Event()

    def work(name: str) -> None:
        with slots.held(name):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
                order.append(name)
            release.wait(10)
            with lock:
                inside[0] -= 1

    threads = []
    for i in range(12):  # each queued before the next arrives: the arrival order is known
        threads.append(threading.Thread(target=work, args=(f"p{i}",)))
        threads[-1].start()
        wait_for(lambda i=i: slots.busy + slots.waiting == i + 1)
    assert slots.busy == 2
    assert slots.waiting == 10
    release.set()
    for t in threads:
        t.join(10)
    assert peak[0] == 2
    assert slots.peak == 2
    assert slots.busy == 0
    assert order == [f"p{i}" for i in range(12)], "nobody passes one that waits"


def test_a_waiter_that_gives_up_leaves_the_queue():
    slots = Slots(1)
    assert slots.acquire("a")
    stop = threading.Event()
    result = []
    waiter = threading.Thread(target=lambda: result.append(slots.acquire("b", stop.is_set, poll=0.01)))
    waiter.start()
    wait_for(lambda: slots.waiting == 1)
    stop.set()
    waiter.join(5)
    assert result == [False]
    assert slots.waiting == 0
    slots.release("a")
    assert slots.acquire("c")
    assert slots.busy == 1


def exports(ls, projects: list[int]) -> list[int]:
    """Of ``projects``, those whose trainings started, in order (each starts with Label Studio's export)."""
    found = [int(r.path.split("/")[3]) for r in ls.calls("GET", prefix="/api/projects/") if r.path.endswith("/export")]
    return [p for p in found if p in projects]


@pytest.mark.slow
def test_many_projects_requesting_at_once_train_within_the_bound_and_all_finish(tmp_path, ls):
    projects = []
    for i in range(8):
        project = ls.add_project(CONFIG)
        ls.add_recordings(project, 1, seed=i)
        ls.add_recordings(project, 2, seed=50 + i, annotate=False)
        projects.append(project)
    access = LabelStudioAccess(settings_for(tmp_path, ls, max_concurrent_trainings=2, max_concurrent_writebacks=1))
    scheduler = jobs.Scheduler(access)
    starters = [threading.Thread(target=scheduler.request, args=(p, "test")) for p in projects]
    for t in starters:
        t.start()
    for t in starters:
        t.join(10)
    wait_for(lambda: all(store.stored_status(access.settings.model_dir, p).version for p in projects), 240)
    scheduler.wait(60)
    assert scheduler.trainings.peak == 2, "two at once, never more"
    assert scheduler.writebacks.peak == 1, scheduler.writebacks.peak
    assert sorted(exports(ls, projects)) == sorted(projects), "every project trained once"
    for p in projects:
        status = store.stored_status(access.settings.model_dir, p)
        assert status.state.value == "idle", status
        assert status.writeback.state == "done", status


@pytest.mark.slow
def test_a_project_asking_again_queues_behind_the_projects_already_waiting(tmp_path, ls):
    hot, *others = [ls.add_project(CONFIG) for _ in range(3)]
    for i, project in enumerate([hot, *others]):
        ls.add_recordings(project, 1, seed=i)
    access = LabelStudioAccess(settings_for(tmp_path, ls, max_concurrent_trainings=1,
                                            predict_after_training="off"))
    scheduler = jobs.Scheduler(access)
    scheduler.request(hot, "test")
    wait_for(lambda: scheduler.trainings.busy == 1)
    for n, project in enumerate(others):
        scheduler.request(project, "test")
        wait_for(lambda n=n: scheduler.trainings.waiting == n + 1 or scheduler.trainings.granted() > n + 1)
    scheduler.request(hot, "again")  # coalesces into the hot project's next training, after the others
    wait_for(lambda: len(exports(ls, [hot, *others])) == 4, 240)
    scheduler.wait(60)
    assert exports(ls, [hot, *others]) == [hot, *others, hot]
