"""Export of a trained version and its torch-free runner: parity with the backend's /predict path.

Small synthetic sets keep it fast; ``python -m bench.export`` compares on the benchmark sets.
"""

import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests

from harness import synthetic
from harness.served import serve
from segmenter import store
from segmenter.config import Settings, TrainingSettings
from segmenter.learning.training import train_project
from segmenter.reading.project_settings import read_settings
from segmenter.reading.series import Series
from segmenter.reading.task_series import read_task_series

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from segmenter.export.bundle import ExportError, export  # noqa: E402  (after the skips: needs onnx at export time)
from segmenter.export.runner import Runner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = TrainingSettings(epochs=4, patience=2, batch_size=32)
# Predict-time settings in force, so the clean-up the manifest carries is not just the automatic one.
SINGLE = synthetic.label_config(with_spikes=True).replace(
    'name="label"', 'name="label" model_min_duration="3" model_merge_gap="4rows"'
)
LAYERED = synthetic.layered_config().replace('<Label value="Alarm"/>', '<Label value="Alarm" model_merge_gap="6"/>')
# The runner as a user runs it: in the export folder, with torch, pandas and this package unimportable.
NO_TORCH = ("import sys; sys.modules.update(torch=None, pandas=None, segmenter=None); sys.path.insert(0, '.'); "
            "import runner; sys.exit(runner.main(sys.argv[1:]))")


def _trained(tmp: Path, config: str, tasks: list[dict], files: dict, project: str) -> tuple[Settings, list]:
    settings = Settings(model_dir=tmp / "models", cache_dir=tmp / "cache", training=FAST)
    models = train_project(config, tasks, files, FAST)
    store.save(settings.model_dir, project, models)
    return settings, models


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    tasks, files = synthetic.annotated_tasks(4, 600, spikes=3)
    settings, models = _trained(tmp, SINGLE, tasks, files, "1")
    return settings, models, tasks, files, tmp


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("layered")
    tasks, files = synthetic.layered_tasks(3, 600)
    settings, models = _trained(tmp, LAYERED, tasks, files, "2")
    return settings, models, tasks, files, tmp


def _compare(models, config, settings, out, tasks, files) -> int:
    """Per task: the runner's probabilities within 1e-5 of torch's, regions identical; returns regions seen."""
    [model] = models
    own = read_settings(config, settings.training)[model.target.from_name]
    runner = Runner(out)
    seen = 0
    for task in tasks:
        series = read_task_series(task, model.target, files)
        probs = model.probabilities(series)
        expected, expected_score = model.results(series, own, probs)
        got_probs = runner.probabilities(series.values)
        assert got_probs.shape == probs.shape
        np.testing.assert_allclose(got_probs, probs, atol=1e-5, rtol=0)
        csv = out.parent / "task.csv"
        csv.write_bytes(files[task["data"]["csv_url"]])
        got, score = runner.predict_csv(csv)
        assert got == expected
        assert score == pytest.approx(expected_score, abs=1e-5)
        seen += len(expected)
    return seen


def test_single_label_runner_gives_the_regions_and_instants_of_predict(single):
    settings, models, tasks, files, tmp = single
    manifest = export(settings, "1", tmp / "export", label_config=SINGLE)
    [spec] = manifest["targets"]
    assert spec["instant_labels"] == ["Spike"]
    assert not spec["layered"]
    assert spec["cleanup"]["rules"][1]["merge_gap"] == {"amount": 4.0, "in_rows": True}
    assert spec["channels"] == ["sensor1", "sensor2"]
    assert spec["time"]["kind"] == "numeric"
    assert _compare(models, SINGLE, settings, tmp / "export", tasks, files) > 0


def test_layered_runner_gives_the_overlapping_regions_of_predict(layered):
    settings, models, tasks, files, tmp = layered
    manifest = export(settings, "2", tmp / "export", label_config=LAYERED)
    assert manifest["targets"][0]["layered"]
    assert manifest["targets"][0]["outputs"] == ["Run", "Walk", "Alarm"]
    assert _compare(models, LAYERED, settings, tmp / "export", tasks, files) > 0


def test_a_long_window_network_with_its_merged_positions_exports_and_runs_as_in_torch(tmp_path):
    tasks, files = synthetic.annotated_tasks(3, 700, spikes=2)
    wide = replace(FAST, sequence_size=230)  # 12 rows an LSTM step: merged positions and reach layers come in
    settings = Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache", training=wide)
    models = train_project(SINGLE, tasks, files, wide)
    assert (models[0].net.merge, models[0].net.dilations) == (4, (1, 2))
    store.save(settings.model_dir, "4", models)
    export(settings, "4", tmp_path / "export", label_config=SINGLE)
    assert _compare(models, SINGLE, settings, tmp_path / "export", tasks, files) > 0


def _benchmark_set(name: str, tmp: Path) -> tuple[str, list[dict], synthetic.MemoryFiles]:
    """The label config, tasks and files of one of ``bench.export``'s other benchmark sets."""
    files = synthetic.MemoryFiles()
    if name == "basicmotions":
        pytest.importorskip("aeon")
        from bench.basicmotions import write_project

        config, train, test = write_project(tmp, seed=0)
        tasks = json.loads(train.read_text()) + [{**t, "id": t["id"] + 100} for t in json.loads(test.read_text())]
        label_config = config.read_text()
    else:  # a datetime or a row-index time axis
        written = synthetic.write_recordings(tmp, 4, axis=name, n_rows=800)
        tasks = [{"id": k + 1, "data": {"csv_url": r.path.name}, "annotations": [{"id": k, "result": r.annotation()}]}
                 for k, r in enumerate(written)]
        label_config = synthetic.project_config(name)
    for task in tasks:
        files[task["data"]["csv_url"]] = (tmp / task["data"]["csv_url"]).read_bytes()
    return label_config, tasks, files


@pytest.mark.slow
@pytest.mark.parametrize("name", ["basicmotions", "datetime", "index"])
def test_the_runner_gives_the_regions_of_predict_on_the_other_benchmark_sets(name, tmp_path):
    config, tasks, files = _benchmark_set(name, tmp_path / "data")
    settings, models = _trained(tmp_path, config, tasks, files, "3")
    export(settings, "3", tmp_path / "export", label_config=config)
    assert _compare(models, config, settings, tmp_path / "export", tasks, files) > 0


def test_stream_in_chunks_equals_the_whole_series_and_short_series_match_torch(single):
    settings, models, tasks, files, tmp = single
    out = tmp / "stream"
    export(settings, "1", out, label_config=SINGLE)
    runner, [model] = Runner(out), models
    values = read_task_series(tasks[0], model.target, files).values
    whole = runner.probabilities(values)
    assert runner.long.window == 2 * runner.window == 2 * model.sequence_size
    for size in (1, 37, runner.window, 599):
        parts = list(runner.probabilities_stream(values[i : i + size] for i in range(0, len(values), size)))
        assert max(len(p) for p in parts) <= size + runner.long.window  # yielded as soon as final
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    long = runner.long.window  # from two training windows on, the backend cuts windows twice as long
    for rows in (1, runner.window - 1, runner.window, runner.window + 1, long - 1, long, long + 1):
        short = Series(np.arange(rows, dtype=np.float64), values[:rows], "numeric")
        np.testing.assert_allclose(runner.probabilities(short.values), model.probabilities(short), atol=1e-5)


def test_cli_export_then_runner_without_torch_reproduces_predict(single, tmp_path):
    settings, models, tasks, files, _ = single
    config = tmp_path / "config.xml"
    config.write_text(SINGLE)
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    out = tmp_path / "exported"
    done = subprocess.run([sys.executable, "-m", "segmenter", "export", "--project", "1", "--out", str(out),
                           "--model-dir", str(settings.model_dir), "--label-config", str(config)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == store.latest_version(settings.model_dir, "1")
    assert {"manifest.json", "target0.onnx", "target0-long.onnx", "runner.py", "postprocess.py", "novelty.py"} <= set(
        os.listdir(out)
    )
    csv = tmp_path / "recording.csv"
    csv.write_bytes(files[tasks[1]["data"]["csv_url"]])
    ran = subprocess.run([sys.executable, "-c", NO_TORCH, str(out), str(csv)], cwd=out, env=env,
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    [model] = models
    series = read_task_series(tasks[1], model.target, files)
    expected, score = model.results(series, read_settings(SINGLE, settings.training)["label"])
    answer = json.loads(ran.stdout)
    assert answer["result"] == expected
    assert answer["score"] == round(score, 4)


def test_cli_refuses_a_version_that_does_not_exist_naming_project_and_version(single, tmp_path):
    settings = single[0]
    done = subprocess.run([sys.executable, "-m", "segmenter", "export", "--project", "1", "--version", "v99-x",
                           "--out", str(tmp_path / "x"), "--model-dir", str(settings.model_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "project 1" in done.stderr
    assert "v99-x" in done.stderr
    assert not (tmp_path / "x").exists()


def test_a_version_trained_for_another_config_is_refused_as_predict_would_not_serve_it(single, tmp_path):
    with pytest.raises(ExportError, match="version v1-.* of project 1 was trained for another label config") as err:
        export(single[0], "1", tmp_path / "x", label_config=synthetic.layered_config())
    assert err.value.status == 409
    assert not (tmp_path / "x").exists()


def test_export_route_is_guarded_and_downloads_the_archive_or_refuses(single, tmp_path):
    from model import TimeSeriesSegmenter
    from segmenter.service.app import create_app
    from segmenter.service.runtime import Runtime

    settings = replace(single[0], basic_auth_user="u", basic_auth_pass="p")
    version = store.latest_version(settings.model_dir, "1")
    folder = store.project_dir(settings.model_dir, "3")
    folder.mkdir(parents=True)
    (folder / "v1-20260101T000000Z.pt").write_bytes(b"not a model")
    runtime = Runtime.start(settings)
    with serve(create_app(runtime, TimeSeriesSegmenter)) as url:
        assert requests.get(f"{url}/export/1", timeout=60).status_code == 401
        ok = requests.get(f"{url}/export/1", auth=("u", "p"), timeout=120)
        assert ok.status_code == 200, ok.text
        assert f"project1-{version}.tar.gz" in ok.headers["Content-Disposition"]
        with tarfile.open(fileobj=io.BytesIO(ok.content)) as tar:
            names = {Path(n).name for n in tar.getnames()}
            manifest = json.load(tar.extractfile(next(n for n in tar.getnames() if n.endswith("manifest.json"))))
        assert {"manifest.json", "target0.onnx", "runner.py"} <= names
        assert manifest["version"] == version
        missing = requests.get(f"{url}/export/1", params={"version": "v7-nope"}, auth=("u", "p"), timeout=60)
        assert missing.status_code == 404
        assert "v7-nope" in missing.json()["error"]
        untrained = requests.get(f"{url}/export/9", auth=("u", "p"), timeout=60)
        assert untrained.status_code == 409
        assert "project 9" in untrained.json()["error"]
        broken = requests.get(f"{url}/export/3", params={"version": "v1-20260101T000000Z"}, auth=("u", "p"),
                              timeout=60)
        assert broken.status_code == 422
        assert "v1-20260101T000000Z" in broken.json()["error"]
        assert requests.get(f"{url}/export/x y", auth=("u", "p"), timeout=60).status_code == 400
    runtime.scheduler.wait(10)
