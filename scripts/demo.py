"""The one-command demo behind ./demo.sh: Label Studio and the backend, a project that learns.

Starts Label Studio (data in .labelstudio/demo-data, port 8080 or the next free one) and
the backend (models in .labelstudio/demo-models, port 9090 or the next free one), creates a
project of synthetic multi-channel sensor recordings (CSV, one task each), connects the
backend, annotates three recordings through the REST API, waits for the training that the
annotations start, retrieves predictions for every task, prints where to look, and keeps
both running until Ctrl-C.

    ./demo.sh [--fresh] [--ls-port 8080] [--backend-port 9090] [--once]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import time

from harness import DriverError
from harness.lsdriver import LabelStudioAPI, ProjectRun, of_version, predicted_spans
from harness.ports import free_port
from harness.processes import (
    REPO,
    Service,
    label_studio_version,
    pristine_data_dir,
    start_backend,
    start_label_studio,
)

STATE = REPO / ".labelstudio"
DATA_DIR = STATE / "demo-data"
MODEL_DIR = STATE / "demo-models"
FILES_DIR = STATE / "demo-files"
LOG_DIR = STATE / "demo-logs"
CREDENTIALS = STATE / "demo-credentials.json"
USERNAME = "demo@example.com"
# A demo should learn in well under a minute on a laptop; the environment may override these.
TRAINING_DEFAULTS = {"TRAIN_EPOCHS": "60", "EARLY_STOPPING_PATIENCE": "8", "WORKERS": "2"}
RECORDINGS, ANNOTATED, CHANNELS, ROWS = 8, 3, 3, 900


def say(text: str) -> None:
    """A progress line."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def prepare_data_dir(fresh: bool) -> dict:
    """The demo's Label Studio data dir and admin credentials, made on first use (or with ``fresh``)."""
    if fresh:
        for path in (DATA_DIR, MODEL_DIR, FILES_DIR):
            shutil.rmtree(path, ignore_errors=True)
        CREDENTIALS.unlink(missing_ok=True)
    if DATA_DIR.exists():
        if not CREDENTIALS.exists():
            raise DriverError(f"{DATA_DIR} exists but {CREDENTIALS} does not: run ./demo.sh --fresh to start over")
        return json.loads(CREDENTIALS.read_text())
    pristine = STATE / f"pristine-{label_studio_version()}"
    if not pristine.exists():
        say("first run: preparing Label Studio's database (migrations, about a minute)")
    pristine = pristine_data_dir(log_path=LOG_DIR / "migrate.log")
    shutil.copytree(pristine, DATA_DIR)
    shutil.rmtree(MODEL_DIR, ignore_errors=True)  # models belong to the projects of one data dir
    credentials = {"username": USERNAME, "password": secrets.token_urlsafe(9), "token": secrets.token_hex(20)}
    CREDENTIALS.write_text(json.dumps(credentials))
    CREDENTIALS.chmod(0o600)
    return credentials


def run_demo(args: argparse.Namespace, services: list[Service]) -> tuple[str, dict]:
    """Start everything and walk through the project; the URL to open and the credentials."""
    credentials = prepare_data_dir(args.fresh)
    ls_port = free_port(args.ls_port)
    backend_port = free_port(args.backend_port, avoid={ls_port})
    say(f"starting Label Studio on port {ls_port} (log: {LOG_DIR / 'label-studio.log'})")
    ls = start_label_studio(DATA_DIR, FILES_DIR / "local", LOG_DIR / "label-studio.log", port=ls_port,
                            username=credentials["username"], password=credentials["password"],
                            token=credentials["token"])
    services.append(ls)
    say(f"starting the backend on port {backend_port} (log: {LOG_DIR / 'backend.log'})")
    env = {k: os.environ.get(k, v) for k, v in TRAINING_DEFAULTS.items()}
    backend = start_backend(MODEL_DIR, LOG_DIR / "backend.log", port=backend_port, label_studio_url=ls.url,
                            api_key=credentials["token"], extra_env=env)
    services.append(backend)

    api = LabelStudioAPI(ls.url, token=credentials["token"])
    title = f"Sensor segmentation demo {time.strftime('%Y-%m-%d %H:%M')}"
    say(f"creating project {title!r} with {RECORDINGS} recordings of {CHANNELS} sensors, backend connected")
    run = ProjectRun.create(api, backend, FILES_DIR / time.strftime("%Y%m%d-%H%M%S"), count=RECORDINGS,
                            title=title, channels=CHANNELS, n_rows=ROWS, seed=int(time.time()) % 10000,
                            prefix="sensors")
    seconds = run.annotate(range(ANNOTATED))
    say(f"annotated {ANNOTATED} recordings (each request took {max(seconds):.2f} s or less); training...")
    started = time.monotonic()
    status = run.wait_training(timeout=900)
    info = status["models"][0] if status.get("models") else {}
    say(f"model {status['model_version']} trained in {time.monotonic() - started:.0f} s "
        f"(validation: {info.get('validation', {}).get('balanced_accuracy', '?')} balanced accuracy)")
    latest = of_version(run.retrieve(), status["model_version"])
    for task in run.tasks:
        spans = predicted_spans(latest[task], run.recording(task)) if task in latest else []
        kind = "annotated" if task in run.annotations else "new"
        say(f"  task {task} ({kind}, {run.recording(task).path.name}): {len(spans)} predicted regions")
    missing = [t for t in run.tasks if t not in latest]
    if missing:
        raise DriverError(f"tasks {missing} got no prediction of {status['model_version']}")
    say(f"planted events found in the {len(run.unannotated())} unannotated recordings: "
        f"{run.recall(latest, run.unannotated()):.0%}")
    first_new = run.unannotated()[0]
    return f"{ls.url.replace('127.0.0.1', 'localhost')}/projects/{run.project}/data?task={first_new}", credentials


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 on Ctrl-C after a successful start."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="delete the demo's data, models and files first")
    parser.add_argument("--ls-port", type=int, default=8080, help="Label Studio port (next free if taken)")
    parser.add_argument("--backend-port", type=int, default=9090, help="backend port (next free if taken)")
    parser.add_argument("--once", action="store_true", help="stop after the walkthrough instead of waiting")
    args = parser.parse_args(argv)
    services: list[Service] = []
    # Ctrl-C and SIGTERM both end the demo cleanly (a shell may have left SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        url, credentials = run_demo(args, services)
        print(f"\n  Open  {url}\n  Login {credentials['username']} / {credentials['password']}\n"
              f"  Label Studio {services[0].url}   backend {services[1].url}/status\n", flush=True)
        if args.once:
            return 0
        say("running; press Ctrl-C to stop both")
        while True:
            for service in services:
                service.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except DriverError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        for service in services:
            print(f"---- {service.name} log tail ({service.log_path})\n{service.tail(40)}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(services):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
