"""The exported model's runner against the backend's torch path: parity on the benchmark sets, then speed.

    .venv/bin/python -m bench.export [--parity] [--speed] [--rows 1000000]

Parity: on each set (UEA BasicMotions, synthetic with instants, layered
overlapping labels, datetime and row-index time axes) a briefly trained model
is exported and every test task predicted both ways, from the same CSV file;
prints the largest per-row probability difference and how many tasks got
identical regions (ids, rows, labels, scores) and task scores.

Speed: one ``--rows`` x 2-channel CSV predicted as a whole process each way,
as a user runs it: ``python -m segmenter predict`` (torch, pandas) and
``python runner.py EXPORT FILE.csv`` (numpy, onnxruntime, torch unimportable);
prints wall time and peak RSS of each process, and the network stage alone
(torch ``window_probabilities`` vs ``Runner.probabilities``) in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Each measured process says its own peak RSS (VmHWM: reset by exec, unlike getrusage's maxrss of a child).
PEAK = ("import atexit, sys; atexit.register(lambda: sys.stderr.write(next(line for line in open('/proc/self/status') "
        "if line.startswith('VmHWM')))); ")
CLI = PEAK + "import runpy; sys.argv[0] = 'segmenter'; runpy.run_module('segmenter', run_name='__main__')"
NO_TORCH = PEAK + ("import sys; sys.modules.update(torch=None, pandas=None, segmenter=None); sys.path.insert(0, '.'); "
            "import runner; sys.exit(runner.main(sys.argv[1:]))")


class FolderFiles(dict):
    """Task files read from a folder: the fetcher training and prediction use."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def fetch(self, ref: str, task_id: object = None) -> bytes:
        return (self.folder / ref).read_bytes()


def _sets(tmp: Path) -> list[tuple[str, str, list[dict], list[dict], object]]:
    """(name, label config, training tasks, test tasks, fetcher) of each benchmark set."""
    from bench.basicmotions import write_project
    from harness import synthetic

    config, train, test = write_project(tmp / "basicmotions", seed=0)
    out = [("basicmotions", config.read_text(), json.loads(train.read_text()), json.loads(test.read_text()),
            FolderFiles(config.parent))]
    tasks, files = synthetic.annotated_tasks(6, 1200, spikes=4, seed=3)
    out.append(("instants", synthetic.label_config(with_spikes=True), tasks[:4], tasks[4:], files))
    tasks, files = synthetic.layered_tasks(6, 1200, seed=10)
    out.append(("layered", synthetic.layered_config(), tasks[:4], tasks[4:], files))
    for axis in ("datetime", "index"):
        written = synthetic.write_recordings(tmp / axis, 6, axis=axis, n_rows=800)
        tasks = [{"id": k + 1, "data": {"csv_url": r.path.name}, "annotations": [{"id": k, "result": r.annotation()}]}
                 for k, r in enumerate(written)]
        out.append((f"{axis} axis", synthetic.project_config(axis), tasks[:4], tasks[4:], FolderFiles(tmp / axis)))
    return out


def parity() -> None:
    from segmenter import store
    from segmenter.config import Settings, TrainingSettings
    from segmenter.export.bundle import export
    from segmenter.export.runner import Runner
    from segmenter.learning.training import train_project
    from segmenter.reading.project_settings import read_settings
    from segmenter.reading.task_series import read_task_series

    with tempfile.TemporaryDirectory() as tmp:
        for name, config, train, test, files in _sets(Path(tmp)):
            training = TrainingSettings(epochs=15, patience=4)
            settings = Settings(model_dir=Path(tmp) / "models" / name.replace(" ", "_"), training=training)
            [model] = train_project(config, train, files, training)
            store.save(settings.model_dir, "1", [model])
            out = Path(tmp) / "export" / name.replace(" ", "_")
            export(settings, "1", out, label_config=config)
            runner, own = Runner(out), read_settings(config, training)[model.target.from_name]
            worst, same, regions = 0.0, 0, 0
            for task in test:
                series = read_task_series(task, model.target, files)
                probs = model.probabilities(series)
                expected, score = model.results(series, own, probs)
                worst = max(worst, float(np.abs(runner.probabilities(series.values) - probs).max()))
                csv = Path(tmp) / "task.csv"
                csv.write_bytes(files.fetch(task["data"]["csv_url"]))
                got, got_score = runner.predict_csv(csv)
                same += got == expected and round(got_score, 4) == round(score, 4)
                regions += len(expected)
            print(f"{name:>14}: {len(test)} test tasks, {regions} regions, max |dp| {worst:.1e}, "
                  f"identical regions and score in {same}/{len(test)} tasks", flush=True)


def _measure(command: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process run to its end."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed: {done.stderr[-2000:]}")
    return seconds, int(done.stderr.rsplit("VmHWM:", 1)[1].split()[0]) / 1024


def network_stage(folder: str, which: str) -> None:
    """(run in a child of its own) The network stage alone: ``torch`` or ``onnxruntime-N`` (N threads)."""
    from segmenter import store
    from segmenter.config import Settings, bootstrap
    from segmenter.export.runner import Runner
    from segmenter.reading.series import load_series

    bootstrap(Settings.from_env())  # torch's threads as the backend sets them (TORCH_THREADS)
    base = Path(folder)
    [model] = store.load(base / "models", "1", store.latest_version(base / "models", "1"))
    series = load_series((base / "series.csv").read_bytes(), model.target)
    if which == "torch":
        values = model.normalise(series.values)
        started = time.perf_counter()
        model.window_probabilities(values)
    else:
        runner = Runner(base / "export", threads=int(which.rsplit("-", 1)[1]))
        started = time.perf_counter()
        runner.probabilities(series.values)
    print(f"{time.perf_counter() - started:.2f}")


def speed(rows: int) -> None:
    from harness import synthetic
    from segmenter import store
    from segmenter.config import Settings, TrainingSettings
    from segmenter.export.bundle import export
    from segmenter.learning.training import train_project

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tasks, files = synthetic.annotated_tasks(2, 2000, n_events=6)
        config = synthetic.label_config()
        training = TrainingSettings(epochs=15, patience=5)
        store.save(base / "models", "1", train_project(config, tasks, files, training))
        export(Settings(model_dir=base / "models", training=training), "1", base / "export", label_config=config)
        frame = synthetic.make_recording(rows, seed=7, n_events=max(1, rows // 2000)).frame
        frame.to_csv(base / "series.csv", index=False)
        (base / "config.xml").write_text(config)
        (base / "tasks.json").write_text(json.dumps([{"id": 1, "data": {"csv_url": "series.csv"}}]))
        env = {**os.environ, "LOG_LEVEL": "WARNING"}
        torch_s, torch_mb = _measure(
            [sys.executable, "-c", CLI, "predict", "--label-config", str(base / "config.xml"), "--tasks",
             str(base / "tasks.json"), "--model-dir", str(base / "models"), "--project", "1",
             "--out", str(base / "out.json")], ROOT, env)
        csv_mb = (base / "series.csv").stat().st_size / 1e6
        print(f"{rows:,} rows x 2 channels ({csv_mb:.0f} MB CSV), whole process, CSV to regions:")
        print(f"  torch path  (python -m segmenter predict, TORCH_THREADS=1): {torch_s:6.2f} s, "
              f"peak RSS {torch_mb:5.0f} MB", flush=True)
        for threads in (1, 0):
            runner_s, runner_mb = _measure([sys.executable, "-c", NO_TORCH, str(base / "export"),
                                            str(base / "series.csv"), "--threads", str(threads)], base / "export", env)
            print(f"  ONNX runner (python runner.py --threads {threads}, no torch): {runner_s:6.2f} s, "
                  f"peak RSS {runner_mb:5.0f} MB", flush=True)
        stages = []
        for which in ("torch", "onnxruntime-1", "onnxruntime-2"):
            stage = subprocess.run([sys.executable, "-m", "bench.export", "--network-stage", str(base), which],
                                   cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            stages.append(f"{which} {stage.stdout.strip().splitlines()[-1]} s")
        print(f"  network stage alone, each in its own process: {', '.join(stages)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parity", action="store_true", help="only the parity on the benchmark sets")
    parser.add_argument("--speed", action="store_true", help="only the speed comparison")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--network-stage", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.network_stage:
        network_stage(*args.network_stage)
        return
    if args.parity or not args.speed:
        parity()
    if args.speed or not args.parity:
        speed(args.rows)


if __name__ == "__main__":
    main()
