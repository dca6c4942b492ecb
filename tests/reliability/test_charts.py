"""Dashboard charts against hostile names, many labels, many viewers; the pages' defensive headers.

- Label, channel and control names are drawn as written (no mathtext): every chart answers 200.
- A version's chart is drawn once: asked again, from the same or another process, it is served
  from what was kept (ETag 304, memory, the file beside the version).
- ``/health`` and ``/predict`` never queue behind chart drawings (gunicorn, few threads).
- Concurrent first looks at one task read and predict it once.
- HTML pages carry CSP without inline script or style, frame and referrer policies; every answer nosniff.
"""

import re
import threading
import time

import numpy as np
import pytest
import requests
from matplotlib.backends.backend_agg import RendererAgg
from support import add_recordings, trained_project

from harness import synthetic
from harness.many_labels import model_dir_with_labels
from harness.processes import start_backend
from segmenter.service.dashboard.task_view import TaskViews  # noqa: E402

VIEWS = TaskViews()  # a runtime's task views, shared by this module's calls as one process's are

PNG = b"\x89PNG\r\n\x1a\n"
THREADS = 2  # gunicorn's request threads in the load test
LABELS = 200  # a confusion chart of 1.3 s CPU (45 s before: one text per cell)
CONTROL, CHANNEL = "lab$_$", "$a_1$"
RENAMED = {"Run": "Spike ($_$)", "Walk": "$x^2$"}
DOLLAR_CONFIG = (
    f'<View><TimeSeriesLabels name="{CONTROL}" toName="ts">'
    + "".join(f'<Label value="{name}"/>' for name in RENAMED.values())
    + '</TimeSeriesLabels><TimeSeries name="ts" valueType="url" value="$csv_url" timeColumn="time">'
    f'<Channel column="{CHANNEL}"/><Channel column="sensor2"/></TimeSeries></View>'
)


def add_dollar_recordings(ls, project: int, count: int) -> list[dict]:
    """Recordings whose labels, first channel and control are named with ``$``, annotated."""
    tasks = []
    for i in range(count):
        rec = synthetic.make_recording(300, seed=i, n_events=2)
        rec = synthetic.Recording(rec.frame.rename(columns={"sensor1": CHANNEL}),
                                  [(s, e, RENAMED[label]) for s, e, label in rec.events])
        result = synthetic.annotation(rec)
        for region in result:
            region["from_name"] = CONTROL
        path = ls.add_file(f"dollar{project}_{i}.csv", synthetic.csv_bytes(rec), project)
        tasks.append(ls.add_task(project, {"csv_url": path}, annotations=[result]))
    return tasks


@pytest.fixture
def drawn_text(monkeypatch):
    """Every text the Agg renderer draws, as (text, ismath)."""
    seen = []
    draw_text = RendererAgg.draw_text

    def capture(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        seen.append((s, ismath))
        return draw_text(self, gc, x, y, s, prop, angle, ismath, mtext)

    monkeypatch.setattr(RendererAgg, "draw_text", capture)
    return seen


def test_names_with_dollars_are_drawn_as_written_on_every_chart(backend, ls, drawn_text):
    b = backend()
    project = ls.add_project(DOLLAR_CONFIG)
    tasks = add_dollar_recordings(ls, project, 2)
    b.setup(project, ls, schema=DOLLAR_CONFIG)
    b.post("/webhook", {"action": "START_TRAINING", "project": {"id": project, "label_config": DOLLAR_CONFIG}})
    status = b.wait_idle(project, 120)
    assert status["state"] == "idle", status
    assert status["models"][0]["data"]["labelled_classes"] == sorted(RENAMED.values())

    paths = [f"/dashboard/project/{project}/chart/{kind}/0.png"
             for kind in ("learning", "f1", "balance", "confusion", "epochs")]
    paths.append(f"/dashboard/project/{project}/task/{tasks[0]['id']}/0.png")
    for path in paths:
        answer = b.get(path)
        assert answer.status_code == 200, (path, answer.text[:200])
        assert answer.content.startswith(PNG), (path, answer.text[:200])

    texts = [s for s, _ in drawn_text]
    for name in (*RENAMED.values(), CHANNEL):
        assert name in texts, name  # the literal name, as a text of its own (tick, legend entry)
    assert any(s.startswith(f"{CONTROL}: ") for s in texts)  # the task chart's title
    assert [s for s, ismath in drawn_text if ismath] == []  # nothing went through mathtext or TeX


def test_a_versions_chart_is_drawn_once(backend, ls, monkeypatch):
    from matplotlib.figure import Figure

    b = backend()
    project, _ = trained_project(b, ls)
    version = b.get(f"/status/{project}").json()["model_version"]
    drawn = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **kw: (drawn.append(1), savefig(self, *a, **kw))[1])
    path = f"/dashboard/project/{project}/chart/confusion/0.png"

    first = b.get(path)
    assert first.status_code == 200
    assert first.content.startswith(PNG)
    assert len(drawn) == 1
    etag = first.headers["ETag"]
    assert "no-store" not in first.headers["Cache-Control"]
    again = b.get(path)  # a browser without the chart: served, not drawn
    assert again.status_code == 200
    assert again.content == first.content
    assert len(drawn) == 1
    kept = b.get(path, headers={"If-None-Match": etag})
    assert kept.status_code == 304
    assert kept.content == b""
    assert kept.headers["ETag"] == etag
    versioned = b.get(f"{path}?v={version}")
    assert "immutable" in versioned.headers["Cache-Control"]
    assert len(drawn) == 1

    other = backend()  # another process sharing MODEL_DIR: the chart kept beside the version
    elsewhere = other.get(path)
    assert elsewhere.status_code == 200
    assert elsewhere.content == first.content
    assert len(drawn) == 1


@pytest.fixture(scope="module")
def many_labels(tmp_path_factory):
    """gunicorn (``THREADS`` threads) over projects whose versions have ``LABELS`` labels, no chart drawn yet."""
    tmp = tmp_path_factory.mktemp("labels")
    projects = model_dir_with_labels(tmp / "models", THREADS, LABELS)
    service = start_backend(tmp / "models", tmp / "gunicorn.log", timeout=60,
                            extra_env={"LOG_LEVEL": "WARNING", "THREADS": str(THREADS)})
    try:
        yield service.url, projects
    finally:
        service.stop()


@pytest.mark.slow
def test_health_and_predict_do_not_wait_for_charts(many_labels):
    """As many chart requests as threads, each needing a fresh 200-label drawing, then /health and
    /predict: both answered before any of those charts (before: the charts held every thread, and
    /health waited for a drawing); the charts deferred (503) meanwhile are drawn when asked again."""
    url, projects = many_labels
    done: dict[str, tuple[float, int]] = {}
    predict = {"project": "9.1", "label_config": synthetic.label_config(),
               "tasks": [{"id": 1, "data": {"csv_url": "/data/upload/9/never-read.csv"}}]}
    assert requests.post(url + "/predict", json=predict, timeout=60).status_code == 200  # its imports done

    def ask(name: str, method: str, path: str, **kw) -> None:
        answer = requests.request(method, url + path, timeout=300, **kw)
        done[name] = (time.monotonic(), answer.status_code)

    paths = [f"/dashboard/project/{p}/chart/confusion/0.png" for p in projects[:THREADS]]
    charts = [threading.Thread(target=ask, args=(path, "GET", path)) for path in paths]
    for thread in charts:
        thread.start()
    time.sleep(0.2)  # the chart requests are in
    ask("health", "GET", "/health")
    ask("predict", "POST", "/predict", json=predict)
    for thread in charts:
        thread.join(300)
    assert done["health"][1] == 200
    assert done["predict"][1] == 200
    drawn = [done[p][0] for p in paths if done[p][1] == 200]
    assert drawn, done  # a chart was drawn meanwhile, and waited for
    assert done["predict"][0] < min(drawn), done
    for path in paths:
        for _ in range(60):
            answer = requests.get(url + path, timeout=60)
            if answer.status_code != 503:
                break
            time.sleep(float(answer.headers["Retry-After"]))
        assert answer.status_code == 200
        assert answer.content.startswith(PNG)


class CountingFetcher:
    """Task files by reference, counting reads; each read takes a while (a long task's download)."""

    def __init__(self, files) -> None:
        self.files, self.reads = files, 0

    def fetch(self, ref: str, task_id: object = None) -> bytes:
        self.reads += 1
        time.sleep(0.3)
        return self.files.fetch(ref, task_id)


def test_concurrent_first_looks_at_one_task_compute_it_once(tmp_path):
    from segmenter.config import TrainingSettings
    from segmenter.learning.training import train_project

    tasks, files = synthetic.annotated_tasks(2, 600, seed=4)
    [model] = train_project(synthetic.label_config(), tasks, files, TrainingSettings(epochs=1, patience=1))
    fetcher, start = CountingFetcher(files), threading.Barrier(4)
    views = []

    def look() -> None:
        start.wait()
        views.append(VIEWS.view("1", "v1-20260101T000000Z", {**tasks[0], "id": 71}, [model], fetcher))

    lookers = [threading.Thread(target=look) for _ in range(4)]
    for thread in lookers:
        thread.start()
    for thread in lookers:
        thread.join(60)
    assert len(views) == 4
    assert fetcher.reads == 1
    assert all(np.array_equal(v[0].predicted, views[0][0].predicted) for v in views)


def test_concurrent_first_looks_over_http_read_the_task_once(backend, ls):
    b = backend()
    project, _ = trained_project(b, ls)
    [fresh] = add_recordings(ls, project, 1, seed=9, rows=20_000)
    ls.clear_requests()
    answers = []
    path = f"/dashboard/project/{project}/task/{fresh['id']}/0.png"
    lookers = [threading.Thread(target=lambda: answers.append(b.get(path))) for _ in range(4)]
    for thread in lookers:
        thread.start()
    for thread in lookers:
        thread.join(120)
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1
    reads = [r.path for r in ls.requests]
    assert reads.count("/api/tasks/") == 1, reads
    assert reads.count(fresh["data"]["csv_url"]) == 1, reads


def test_html_pages_forbid_inline_script_framing_and_referrers(backend, ls):
    b = backend()
    project, tasks = trained_project(b, ls)
    pages = ["/dashboard", f"/dashboard/project/{project}", f"/dashboard/project/{project}/task/{tasks[0]['id']}",
             "/dashboard/project/77"]  # an error page too
    for path in pages:
        answer = b.get(path)
        assert "text/html" in answer.headers["Content-Type"], path
        csp = {d.split()[0]: d.split()[1:] for d in answer.headers["Content-Security-Policy"].split("; ")}
        assert csp["default-src"] == ["'none'"], csp
        assert csp["script-src"] == ["'self'"], csp
        assert csp["style-src"] == ["'self'"], csp
        assert csp["frame-ancestors"] == ["'none'"], csp
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        html = answer.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path  # no inline script
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.I), path  # no inline style or handler
        for asset in re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', html):
            served = b.get(asset)
            assert served.status_code == 200, asset
            assert served.headers["X-Content-Type-Options"] == "nosniff", asset
    for path in ("/health", "/status", "/metrics", f"/dashboard/project/{project}/chart/f1/0.png",
                 "/dashboard/project/abc"):
        assert b.get(path).headers["X-Content-Type-Options"] == "nosniff", path
