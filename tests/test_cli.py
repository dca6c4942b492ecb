"""The offline command line, run as a user runs it: python -m segmenter ..."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import synthetic

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TRAIN_EPOCHS": "40", "EARLY_STOPPING_PATIENCE": "5", "LOG_LEVEL": "WARNING"}
pytestmark = pytest.mark.slow  # each test runs CLI processes that train for 40 epochs


def run(*args, check=True):
    out = subprocess.run([sys.executable, "-m", "segmenter", *map(str, args)], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    (folder / "data").mkdir()
    (folder / "config.xml").write_text(synthetic.label_config())
    tasks = []
    for i in range(5):
        rec = synthetic.make_recording(1000, seed=30 + i, n_events=4)
        rec.frame.to_csv(folder / "data" / f"r{i}.csv", index=False)
        result = synthetic.annotation(rec)
        tasks.append({"id": i + 1, "data": {"csv_url": f"data/r{i}.csv"}, "annotations": [{"id": i, "result": result}]})
    (folder / "export.json").write_text(json.dumps(tasks))
    return folder


def test_train_then_predict_writes_importable_predictions(project, tmp_path):
    out = run("train", "--label-config", project / "config.xml", "--export", project / "export.json",
              "--model-dir", tmp_path / "models", "--project", 4)
    version = json.loads(out.stdout)["version"]
    assert "epoch" in out.stderr  # progress is visible
    tasks = [{"id": 10, "data": {"csv_url": "data/r0.csv"}}]
    (project / "tasks.json").write_text(json.dumps(tasks))
    run("predict", "--label-config", project / "config.xml", "--tasks", project / "tasks.json",
        "--model-dir", tmp_path / "models", "--project", 4, "--out", tmp_path / "pred.json")
    [task] = json.loads((tmp_path / "pred.json").read_text())
    [prediction] = task["predictions"]
    assert prediction["model_version"] == version
    assert prediction["result"]
    assert {r["value"]["timeserieslabels"][0] for r in prediction["result"]} <= {"Run", "Walk"}


def test_evaluate_prints_the_metrics(project):
    out = run("evaluate", "--label-config", project / "config.xml", "--export", project / "export.json",
              "--test-fraction", 0.4, "--seed", 0)
    report = json.loads(out.stdout)
    for key in ("timestep_macro_f1", "balanced_accuracy", "per_class_f1", "confusion", "event_f1_iou50",
                "n_true_segments", "n_pred_segments", "train_seconds", "predict_seconds"):
        assert key in report
    confusion = report["confusion"]
    assert confusion["classes"][0] == "__background__"
    assert len(confusion["rows"]) == len(confusion["classes"])
    assert sum(map(sum, confusion["rows"])) > 0
    assert report["n_test_tasks"] == 2
    assert report["n_true_segments"] == 8
    assert report["timestep_macro_f1"] > 0.8


def test_errors_are_one_clear_line(project, tmp_path):
    out = run("predict", "--label-config", project / "config.xml", "--tasks", project / "export.json",
              "--model-dir", tmp_path / "empty", "--out", tmp_path / "x.json", check=False)
    assert out.returncode == 2
    assert "no trained model" in out.stderr
    assert "Traceback" not in out.stderr
    (tmp_path / "bad.json").write_text("{not json")
    out = run("train", "--label-config", project / "config.xml", "--export", tmp_path / "bad.json",
              "--model-dir", tmp_path / "m", check=False)
    assert out.returncode == 2
    assert "bad.json" in out.stderr
    outside = [{"id": 1, "data": {"csv_url": "/etc/passwd"}, "annotations": [{"result": []}]}]
    (tmp_path / "outside.json").write_text(json.dumps(outside))
    out = run("train", "--label-config", project / "config.xml", "--export", tmp_path / "outside.json",
              "--model-dir", tmp_path / "m", check=False)
    assert out.returncode == 2
    assert "task 1" in out.stderr


def run_on_terminal(*args) -> tuple[int, str]:
    """Run the command line with stderr on a pseudo-terminal; its exit status and what the terminal got."""
    import fcntl
    import pty
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns, as a terminal
    proc = subprocess.Popen([sys.executable, "-m", "segmenter", *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=secondary, stdin=subprocess.DEVNULL)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    return proc.wait(300), b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_and_quiet_in_a_pipe(project, tmp_path):
    train = ("train", "--label-config", project / "config.xml", "--export", project / "export.json",
             "--model-dir", tmp_path / "models", "--project", 4)
    code, screen = run_on_terminal(*train)
    assert code == 0, screen
    assert "label epochs" in screen
    assert "bal_acc=" in screen
    assert "\r" in screen  # a bar, redrawn in place
    assert "best epoch" in screen
    piped = run(*train)
    assert "\r" not in piped.stderr  # no bar in a pipe
    assert "bal_acc=" not in piped.stderr
    assert len(piped.stderr.strip().splitlines()) <= 2  # one summary line
    assert "best epoch" in piped.stderr
    (project / "tasks2.json").write_text(json.dumps([{"id": i, "data": {"csv_url": f"data/r{i}.csv"}}
                                                     for i in range(3)]))
    predict = ("predict", "--label-config", project / "config.xml", "--tasks", project / "tasks2.json",
               "--model-dir", tmp_path / "models", "--project", 4, "--out", tmp_path / "p.json")
    code, screen = run_on_terminal(*predict)
    assert code == 0, screen
    assert "predict" in screen, screen
    assert "3/3" in screen, screen
    assert "rows=3,000" in screen, screen
    piped = run(*predict)
    assert "\r" not in piped.stderr
    assert len(piped.stderr.strip().splitlines()) == 1
    assert "wrote 3 tasks (3,000 rows)" in piped.stderr


def test_evaluate_shows_its_test_predictions_on_a_terminal_and_is_quiet_in_a_pipe(project):
    evaluate = ("evaluate", "--label-config", project / "config.xml", "--export", project / "export.json",
                "--test-fraction", 0.4, "--seed", 0)
    code, screen = run_on_terminal(*evaluate)
    assert code == 0, screen
    assert "evaluate: predict test tasks" in screen, screen
    assert "2/2" in screen, screen
    assert "rows=2,000" in screen, screen
    piped = run(*evaluate)
    assert "\r" not in piped.stderr
    assert "predict test tasks" not in piped.stderr
    assert json.loads(piped.stdout)["n_test_tasks"] == 2
