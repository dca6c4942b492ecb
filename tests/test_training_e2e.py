"""Offline end to end: planted events -> train -> predict -> the events are found."""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from harness import synthetic
from segmenter import store
from segmenter.config import TrainingSettings
from segmenter.learning.evaluation import score
from segmenter.learning.inference import predict_tasks
from segmenter.learning.network import Ensemble, SegmenterNet
from segmenter.learning.trained_model import TrainedModel
from segmenter.learning.training import Example, TrainingError, train_project
from segmenter.reading.labelconfig import parse_label_config
from segmenter.reading.series import Series
from segmenter.reading.task_series import read_task_series

SETTINGS = TrainingSettings(epochs=80, patience=6, batch_size=32)


def make_tasks(n_tasks, seed, spikes=0, rows=1200):
    return synthetic.annotated_tasks(n_tasks, rows, seed=seed, n_events=4, spikes=spikes)


@pytest.fixture(scope="module")
def trained():
    config = synthetic.label_config(with_spikes=True)
    tasks, fetcher = make_tasks(4, seed=10, spikes=3)
    return config, train_project(config, tasks, fetcher, SETTINGS)


def test_planted_ranges_and_instants_are_found(trained):
    config, models = trained
    tests, fetcher = make_tasks(2, seed=100, spikes=3)
    predictions = predict_tasks(models, tests, fetcher)
    [target] = parse_label_config(config)
    for prediction in predictions:
        assert 0 <= prediction["score"] <= 1
        assert all(0 <= r["score"] <= 1 for r in prediction["result"])
    report = score(models, tests, fetcher)
    assert report["n_true_segments"] == 2 * 4 + 2 * 3
    assert report["event_f1_iou50"] >= 0.8
    spike = target.labels.index("Spike") + 1
    assert models[0].instant_classes == frozenset({spike})
    instants = [r for p in predictions for r in p["result"] if r["value"]["instant"]]
    assert instants
    assert all(r["value"]["timeserieslabels"] == ["Spike"] for r in instants)


def test_metadata_records_validation_and_data(trained):
    _, [model] = trained
    info = model.info
    assert info["validation"]["held_out"].startswith("held-out tasks")
    assert set(info["validation"]["per_class_f1"]) >= {"__background__", "Run", "Walk"}
    assert info["data"]["tasks"] == 4
    assert info["data"]["rows"] == 4 * 1200
    assert 1 <= info["best_epoch"] <= info["epochs"] <= SETTINGS.epochs


def test_store_round_trip_predicts_identically(trained, tmp_path):
    _, models = trained
    version = store.save(tmp_path, "7.1795697041", models)
    assert version.startswith("v1-")
    assert store.latest_version(tmp_path, 7) == version
    [loaded] = store.load(tmp_path, 7, version)
    tests, fetcher = make_tasks(1, seed=200)
    assert predict_tasks(models, tests, fetcher) == predict_tasks([loaded], tests, fetcher)
    assert isinstance(loaded, TrainedModel)
    assert loaded.target == models[0].target


def test_training_is_reproducible():
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(2, seed=1, rows=400)
    settings = TrainingSettings(epochs=3, patience=2)
    a = train_project(config, tasks, fetcher, settings)[0]
    b = train_project(config, tasks, fetcher, settings)[0]
    for (name, wa), wb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(wa, wb), name


def test_single_task_validates_on_its_tail_and_tiny_series_train():
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(1, seed=3, rows=600)
    [model] = train_project(config, tasks, fetcher, TrainingSettings(epochs=2, patience=1))
    assert model.info["validation"]["held_out"].startswith("last 120 rows")
    held_out = [m["held_out"] for m in model.info["ensemble"]]
    assert held_out == ["last 120 rows of task 1", "rows 0-119 of task 1", "rows 240-359 of task 1"]
    loaded = TrainedModel.from_state(model.to_state())
    assert isinstance(loaded.net, Ensemble)
    assert len(loaded.net.members) == 3
    assert predict_tasks([loaded], tasks, fetcher) == predict_tasks([model], tasks, fetcher)
    fetcher["one.csv"] = b"time,sensor1,sensor2\n0,1.0,2.0\n"
    tiny = [{"id": 9, "data": {"csv_url": "one.csv"}, "annotations": [{"result": []}]}]
    [small] = train_project(config, tiny, fetcher, TrainingSettings(epochs=2, patience=1))
    [prediction] = predict_tasks([small], tiny, fetcher)
    assert prediction["result"] == [] or len(prediction["result"]) == 1


def test_no_annotated_task_is_a_clear_error():
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(1, seed=3, rows=100)
    tasks[0]["annotations"] = [{"result": [], "was_cancelled": True}]
    with pytest.raises(TrainingError, match="no task with a submitted annotation"):
        train_project(config, tasks, fetcher, SETTINGS)


def test_unreadable_task_is_skipped_and_reported():
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(2, seed=5, rows=300)
    fetcher[tasks[1]["data"]["csv_url"]] = b"time,sensor1,sensor2\n0,abc,1\n1,2,3\n"
    [model] = train_project(config, tasks, fetcher, TrainingSettings(epochs=2, patience=1))
    [skipped] = model.info["data"]["skipped_tasks"]
    assert "task 2" in skipped
    assert "sensor1" in skipped
    assert np.isfinite(model.mean).all()


def test_a_config_with_two_pairs_trains_and_predicts_both():
    config = (
        '<View><TimeSeriesLabels name="motion" toName="a"><Label value="Run"/><Label value="Walk"/></TimeSeriesLabels>'
        '<TimeSeries name="a" value="$left" timeColumn="time"><Channel column="sensor1"/></TimeSeries>'
        '<TimeSeriesLabels name="other" toName="b"><Label value="Walk"/></TimeSeriesLabels>'
        '<TimeSeries name="b" value="$right"><Channel column="sensor2"/></TimeSeries></View>'
    )
    files, tasks = synthetic.MemoryFiles(), []
    for i in range(2):
        rec = synthetic.make_recording(400, seed=i, n_events=2)
        files[f"r{i}"] = synthetic.csv_bytes(rec)
        left = synthetic.annotation(rec)
        for r in left:
            r["from_name"], r["to_name"] = "motion", "a"
        right = [dict(r, from_name="other", to_name="b") for r in synthetic.annotation_results(rec.events)
                 if r["value"]["timeserieslabels"] == ["Walk"]]
        tasks.append({"id": i, "data": {"left": f"r{i}", "right": f"r{i}"}, "annotations": [{"result": left + right}]})
    models = train_project(config, tasks, files, TrainingSettings(epochs=3, patience=1))
    expected = [("motion", ("Run", "Walk")), ("other", ("Walk",))]
    assert [(m.target.from_name, m.target.labels) for m in models] == expected
    assert models[1].info["data"]["class_rows"]["Walk"] > 0
    [prediction] = predict_tasks(models, tasks[:1], files)
    assert {r["from_name"] for r in prediction["result"]} <= {"motion", "other"}
    assert all((r["from_name"], r["to_name"]) in (("motion", "a"), ("other", "b")) for r in prediction["result"])


def test_context_follows_the_annotations_unless_the_operator_sets_it(trained):
    _, [model] = trained
    context = model.info["context"]
    assert context["chosen_by"] == "annotations"
    assert context["sequence_size"] == model.sequence_size
    assert 16 <= model.sequence_size <= 1200
    assert model.net.factor == context["lstm_rows_per_step"]
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(1, seed=3, rows=300)
    [fixed] = train_project(config, tasks, fetcher, TrainingSettings(sequence_size=40, epochs=1, patience=1))
    assert fixed.sequence_size == 40
    assert fixed.info["context"]["chosen_by"] == "SEQUENCE_SIZE"


def test_a_long_window_gets_merged_positions_and_reach_layers_saved_with_the_model(trained, tmp_path):
    _, [short] = trained
    assert short.info["context"]["reach_dilations"] == [] and short.info["context"]["reach_rows_merged"] == 1
    assert short.net.dilations == () and short.net.merge == 1
    assert short.info["context"]["row_kernel"] == 9 and short.net.kernel == 9  # no reach: the wide convolution
    assert TrainedModel.from_state(short.to_state()).net.kernel == 9
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(2, seed=3, rows=900)
    [wide] = train_project(config, tasks, fetcher, TrainingSettings(sequence_size=210, epochs=2, patience=1))
    context = wide.info["context"]
    assert (context["lstm_rows_per_step"], context["reach_rows_merged"], context["reach_dilations"]) == (12, 4, [1, 2])
    assert all(m.merge == 4 and m.dilations == (1, 2) and m.factor == 12 and m.kernel == 5 for m in wide.net.members)
    assert context["row_kernel"] == 5
    assert wide.info["batch_size"] == 16 and wide.info["settings"]["batch_size"] is None  # chosen, not set
    [loaded] = store.load(tmp_path, 7, store.save(tmp_path, "7.1795697041", [wide]))
    assert loaded.net.merge == 4 and loaded.net.dilations == (1, 2)
    tests, test_fetcher = make_tasks(1, seed=200, rows=500)
    assert predict_tasks([wide], tests, test_fetcher) == predict_tasks([loaded], tests, test_fetcher)


def test_a_model_trained_with_train_dilated_loads_with_its_layers_on_the_rows(trained):
    _, [model] = trained
    state = model.to_state()
    rows_reach = SegmenterNet(len(model.target.channels), len(model.target.classes), model.hidden_size, 9, (4, 8))
    for key in ("merge", "kernel"):  # TRAIN_DILATED (2026-12-07) saved the dilations, in rows, and no merge
        state.pop(key)
    state.update(weights=rows_reach.state_dict(), down=9, dilations=[4, 8], members=1, sequence_size=210)
    loaded = TrainedModel.from_state(state)
    assert (loaded.net.merge, loaded.net.dilations, loaded.net.factor, loaded.net.kernel) == (1, (4, 8), 9, 5)
    x = torch.randn(2, 210, len(model.target.channels))
    with torch.inference_mode():
        assert torch.equal(loaded.net(x), rows_reach.eval()(x))


def test_a_model_saved_before_the_context_followed_the_data_still_loads(trained):
    _, [model] = trained
    state = model.to_state()
    old = SegmenterNet(len(model.target.channels), len(model.target.classes), model.hidden_size)
    for key in ("down", "members", "dilations", "merge", "kernel"):  # saved before these: one network, 2 rows a step
        state.pop(key)
    state.update(weights=old.state_dict(), sequence_size=50)
    loaded = TrainedModel.from_state(state)
    assert (loaded.net.factor, loaded.net.kernel) == (2, 5)
    assert loaded.sequence_size == 50
    tests, fetcher = make_tasks(1, seed=200, rows=333)
    assert predict_tasks([loaded], tests, fetcher)[0]["score"] >= 0


def test_overlapping_labels_are_learnt_per_label_and_predicted_overlapping():
    config = synthetic.layered_config()
    tasks, fetcher = synthetic.layered_tasks(2, 600, seed=10)
    [model] = train_project(config, tasks, fetcher, TrainingSettings(epochs=30, patience=4))
    assert model.multi_label
    assert model.info["multi_label"]
    assert model.net.head.out_features == 3
    loaded = TrainedModel.from_state(model.to_state())
    assert loaded.multi_label
    tests, test_files = synthetic.layered_tasks(1, 600, seed=100)
    [prediction] = predict_tasks([loaded], tests, test_files)
    assert prediction == predict_tasks([model], tests, test_files)[0]
    spans = [(r["value"]["start"], r["value"]["end"], r["value"]["timeserieslabels"][0]) for r in prediction["result"]]
    assert any(a[2] != b[2] and a[0] <= b[1] and b[0] <= a[1] for a in spans for b in spans)
    report = score([model], tests, test_files)
    assert set(report["per_label_event_f1_iou50"]) == {"label:Run", "label:Walk", "label:Alarm"}


def test_single_label_projects_stay_single_label(trained):
    _, [model] = trained
    assert not model.multi_label
    assert model.info["multi_label"] is False
    assert not TrainedModel.from_state(model.to_state()).multi_label


def test_one_task_with_overlapping_labels_averages_each_labels_presence():
    """One annotated task trains an ensemble; for a multi-label model its members' per-label
    presence is what is averaged (a softmax across labels would make them compete)."""
    config = synthetic.layered_config()
    tasks, fetcher = synthetic.layered_tasks(1, 600, seed=10)
    [model] = train_project(config, tasks, fetcher, TrainingSettings(epochs=6, patience=2))
    assert model.multi_label
    assert isinstance(model.net, Ensemble)
    assert len(model.net.members) == 3
    [target] = parse_label_config(config)
    values = model.normalise(read_task_series(tasks[0], target, fetcher).values)[:200]
    x = torch.from_numpy(values)[None]
    with torch.inference_mode():
        mean = torch.stack([torch.sigmoid(m(x)) for m in model.net.members]).mean(dim=0)
        combined = torch.sigmoid(model.net(x))
    assert torch.allclose(combined, mean.clamp(1e-7, 1 - 1e-7), atol=1e-5)
    loaded = TrainedModel.from_state(model.to_state())
    with torch.inference_mode():
        assert torch.allclose(torch.sigmoid(loaded.net(x)), combined, atol=1e-5)


def test_the_time_budget_ends_training_with_the_best_checkpoint():
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(3, seed=1, rows=600)
    [model] = train_project(config, tasks, fetcher, TrainingSettings(epochs=1000, patience=1000, time_budget=1.0,
                                                                     members=1))
    spent = re.match(r"time budget of ([\d.]+) s spent", model.info["stopped_because"])
    assert spent and 0 < float(spent.group(1)) <= 1.0  # what was left of it after the preparation
    assert model.info["epochs"] < 1000


def test_the_networks_of_an_ensemble_share_the_time_budget():
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(3, seed=1, rows=600)
    [model] = train_project(config, tasks, fetcher, TrainingSettings(epochs=1000, patience=1000, time_budget=3.0))
    assert len(model.net.members) == 3
    share = float(re.match(r"time budget of ([\d.]+) s spent", model.info["stopped_because"]).group(1))
    assert 0 < share <= 1.0  # the first network: a third of the budget, less the preparation


def test_members_average_networks_each_holding_out_its_own_tasks():
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(5, seed=2, rows=600)
    fast = TrainingSettings(epochs=3, patience=2, members=3)
    [model] = train_project(config, tasks, fetcher, fast)
    assert isinstance(model.net, Ensemble)
    assert len(model.net.members) == 3
    held_out = [m["held_out"] for m in model.info["ensemble"]]
    assert len(set(held_out)) > 1, held_out
    assert model.info["settings"]["members"] == 3
    loaded = TrainedModel.from_state(model.to_state())
    [task] = tasks[:1]
    series = read_task_series(task, model.target, fetcher)
    np.testing.assert_allclose(loaded.probabilities(series), model.probabilities(series), atol=1e-6)
    assert train_project(config, tasks, fetcher, replace(fast, members=1))[0].net.__class__ is SegmenterNet


def test_without_batch_size_long_windows_train_in_steps_of_16_and_the_others_of_32():
    from segmenter.learning.training import batch_size_for

    auto = TrainingSettings()
    assert [batch_size_for(rows, auto) for rows in (24, 150, 200, 201, 251, 4096)] == [32, 32, 32, 16, 16, 16]
    assert batch_size_for(251, replace(auto, batch_size=64)) == 64  # the operator's word
    assert batch_size_for(24, replace(auto, batch_size=8)) == 8


def test_batch_size_is_read_and_bounded():
    from segmenter.config import Settings
    from segmenter.errors import ConfigError

    assert Settings.from_env({}).training.batch_size is None  # chosen by the window
    assert Settings.from_env({"BATCH_SIZE": ""}).training.batch_size is None
    assert Settings.from_env({"BATCH_SIZE": "48"}).training.batch_size == 48
    for bad in ("0", "sixteen"):
        with pytest.raises(ConfigError, match="BATCH_SIZE"):
            Settings.from_env({"BATCH_SIZE": bad})


def test_train_members_is_read_and_bounded():
    from segmenter.config import Settings
    from segmenter.errors import ConfigError

    assert Settings.from_env({}).training.members is None  # chosen by the project's size
    assert Settings.from_env({"TRAIN_MEMBERS": "1"}).training.members == 1
    for bad in ("0", "10", "three"):
        with pytest.raises(ConfigError, match="TRAIN_MEMBERS"):
            Settings.from_env({"TRAIN_MEMBERS": bad})


def test_without_train_members_small_projects_average_three_networks_and_large_ones_train_one():
    from segmenter.learning.training import ENSEMBLE_MAX_ROWS, members_for

    def examples(*rows: int) -> list:
        return [Example(i, Series(np.arange(n, dtype=float), np.zeros((n, 1)), "index"), None)
                for i, n in enumerate(rows)]

    auto = TrainingSettings()
    assert members_for(examples(ENSEMBLE_MAX_ROWS // 2, ENSEMBLE_MAX_ROWS // 2), auto) == 3
    assert members_for(examples(ENSEMBLE_MAX_ROWS // 2, ENSEMBLE_MAX_ROWS // 2 + 1), auto) == 1
    assert members_for(examples(10 * ENSEMBLE_MAX_ROWS, 1), replace(auto, members=3)) == 3  # the operator's word
    assert members_for(examples(10, 10), replace(auto, members=1)) == 1
    config = synthetic.label_config()
    tasks, fetcher = make_tasks(3, seed=1, rows=600)
    [model] = train_project(config, tasks, fetcher, TrainingSettings(epochs=2, patience=1))
    assert model.info["members"] == 3 and len(model.net.members) == 3
