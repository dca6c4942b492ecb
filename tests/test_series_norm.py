"""Per-series normalisation (``TrainingSettings.series_norm``): each task's series scaled by its own statistics."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.suite import setting
from harness import synthetic
from segmenter import store
from segmenter.config import Settings, TrainingSettings
from segmenter.errors import ConfigError
from segmenter.learning.trained_model import TrainedModel, standardised
from segmenter.learning.training import train_project
from segmenter.reading.series import Series
from segmenter.reading.task_series import read_task_series

TINY = TrainingSettings(epochs=2, patience=1)


def test_standardised_takes_each_channels_own_mean_and_std_and_leaves_flat_channels_unscaled():
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.normal(3, 2, 500), np.full(500, 7.0), rng.normal(-1, 0.1, 500)]).astype(np.float32)
    out = standardised(values)
    assert out.dtype == np.float32 and out.shape == values.shape
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), [1, 0, 1], atol=1e-5)
    gain, offset = np.array([2.0, 1.0, 0.5]), np.array([-4.0, 0.0, 10.0])
    np.testing.assert_allclose(standardised((values * gain + offset).astype(np.float32)), out, atol=1e-4)
    assert standardised(np.zeros((0, 3), np.float32)).shape == (0, 3)


@pytest.fixture(scope="module")
def models():
    config = synthetic.label_config()
    tasks, files = synthetic.annotated_tasks(3, 400, seed=3, n_events=2)
    by_mode = {mode: train_project(config, tasks, files, replace(TINY, series_norm=mode))[0] for mode in (False, True)}
    return by_mode, read_task_series(tasks[0], by_mode[False].target, files)


def test_a_per_series_model_sees_a_shifted_or_rescaled_recording_as_the_original(models):
    by_mode, series = models
    moved = Series(series.time, (series.values * 2.5 - 40.0).astype(np.float32), series.time_kind)
    per_series = by_mode[True]
    assert per_series.series_norm and per_series.info["settings"]["series_norm"] is True
    np.testing.assert_allclose(per_series.probabilities(moved), per_series.probabilities(series), atol=1e-4)
    # the global normalisation keeps the training data's statistics: an offset changes what it sees
    assert not by_mode[False].series_norm
    np.testing.assert_allclose(by_mode[False].normalise(series.values),
                               (series.values - by_mode[False].mean) / by_mode[False].std, rtol=1e-6)


def test_the_flag_is_saved_with_the_model_and_older_models_keep_the_global_normalisation(models):
    by_mode, series = models
    state = by_mode[True].to_state()
    loaded = TrainedModel.from_state(state)
    assert loaded.series_norm
    np.testing.assert_allclose(loaded.probabilities(series), by_mode[True].probabilities(series), atol=1e-6)
    old = {k: v for k, v in by_mode[False].to_state().items() if k != "series_norm"}
    assert not TrainedModel.from_state(old).series_norm
    assert isinstance(state["series_norm"], bool) and state["mean"].dtype == torch.float32


def test_train_series_norm_switches_it_on_and_a_bad_value_stops_start_up():
    assert Settings.from_env({}).training.series_norm is False
    assert Settings.from_env({"TRAIN_SERIES_NORM": "true"}).training.series_norm is True
    with pytest.raises(ConfigError, match="TRAIN_SERIES_NORM"):
        Settings.from_env({"TRAIN_SERIES_NORM": "sometimes"})


def test_export_refuses_a_per_series_model_the_runner_would_scale_otherwise(models, tmp_path):
    pytest.importorskip("onnx")
    from segmenter.export.bundle import ExportError, export

    settings = Settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache")
    store.save(settings.model_dir, "4", [models[0][True]])
    with pytest.raises(ExportError, match="TRAIN_SERIES_NORM") as err:
        export(settings, "4", tmp_path / "x")
    assert err.value.status == 422
    assert not (tmp_path / "x").exists()


def test_the_suite_reads_flags_as_words():
    defaults = TrainingSettings()
    assert setting(defaults, "series_norm", "True") is True
    assert setting(defaults, "series_norm", "false") is False
    assert setting(defaults, "patience", "30") == 30
    assert setting(defaults, "sequence_size", "24") == 24  # unset by default, still a number
    with pytest.raises(SystemExit):
        setting(defaults, "series_norm", "maybe")
