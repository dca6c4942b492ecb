"""Per-project ``model_*`` settings: parsing, validation, the clean-up they drive, model applicability."""

import numpy as np
import pytest

from segmenter.config import TrainingSettings
from segmenter.learning.network import SegmenterNet
from segmenter.learning.regions import RowCleanup, drop_short_runs, layered_results, merge_gaps, run_lengths, to_results
from segmenter.learning.trained_model import TrainedModel
from segmenter.learning.training import choose_context
from segmenter.reading.labelconfig import parse_label_config
from segmenter.reading.project_settings import Duration, read_settings, row_spacing, settings_report
from segmenter.reading.series import Series

DEFAULTS = TrainingSettings(epochs=321)


def config(control: str = "", run: str = "", walk: str = "", time_column: str = 'timeColumn="time"') -> str:
    return (
        f'<View><TimeSeriesLabels name="label" toName="ts" {control}>'
        f'<Label value="Run" {run}/><Label value="Walk" {walk}/></TimeSeriesLabels>'
        f'<TimeSeries name="ts" valueType="url" value="$csv_url" {time_column}>'
        '<Channel column="sensor1"/></TimeSeries></View>'
    )


def settings_of(xml: str):
    return read_settings(xml, DEFAULTS)["label"]


def test_defaults_come_from_the_environment_and_mean_todays_behaviour():
    s = settings_of(config())
    assert s.problems == ()
    assert s.describe() == {
        "model_context": "auto", "model_max_epochs": 321, "model_min_duration": "auto", "model_merge_gap": "0",
        "model_score_threshold": 0.0,
        "labels": {"Run": {"model_min_duration": "auto", "model_merge_gap": "0"},
                   "Walk": {"model_min_duration": "auto", "model_merge_gap": "0"}},
    }
    assert s.training_key() == {"context": "auto", "max_epochs": None}


def test_good_values_with_per_label_overrides():
    s = settings_of(config(
        'model_context="2.5" model_max_epochs="40" model_min_duration="25rows" model_merge_gap="0.2" '
        'model_score_threshold="0.6"',
        run='model_min_duration="1.5" model_merge_gap="10 rows"',
    ))
    assert s.problems == ()
    assert s.context == Duration(2.5, False)
    assert s.max_epochs == 40
    assert s.score_threshold == 0.6
    labels = dict(s.labels)
    assert labels["Run"].min_duration == Duration(1.5, False)
    assert labels["Run"].merge_gap == Duration(10, True)
    assert labels["Walk"].min_duration == Duration(25, True)
    assert labels["Walk"].merge_gap == Duration(0.2, False)
    assert s.training_key() == {"context": "2.5", "max_epochs": 40}
    assert settings_of(config('model_context="AUTO" model_min_duration="auto"')).problems == ()


@pytest.mark.parametrize(
    ("where", "attribute", "value"),
    [
        ("control", "model_context", "long"),
        ("control", "model_context", "0"),
        ("control", "model_max_epochs", "ten"),
        ("control", "model_max_epochs", "0"),
        ("control", "model_max_epochs", "1000000"),
        ("control", "model_min_duration", "-3"),
        ("control", "model_min_duration", "3 seconds"),
        ("control", "model_merge_gap", "auto"),
        ("control", "model_score_threshold", "1.5"),
        ("control", "model_score_threshold", "nan"),
        ("control", "model_score_threshold", "high"),
        ("control", "model_contxt", "5"),
        ("label", "model_min_duration", "x"),
        ("label", "model_merge_gap", "-1"),
        ("label", "model_context", "5"),  # training-time: the control's only
    ],
)
def test_every_bad_value_is_a_problem_naming_the_attribute_and_keeps_the_default(where, attribute, value):
    attribute_text = f'{attribute}="{value}"'
    xml = config(attribute_text) if where == "control" else config(run=attribute_text)
    s = settings_of(xml)
    [problem] = s.problems
    assert attribute in problem
    assert "TimeSeriesLabels name='label'" in problem
    if where == "label":
        assert "Label value='Run'" in problem
    if "unknown attribute" not in problem:
        assert repr(value) in problem
    assert s.describe() == settings_of(config()).describe()  # every value kept its default
    report = settings_report(xml, DEFAULTS)
    assert report["settings_problems"] == [problem]


def test_a_report_without_or_with_a_broken_config():
    assert settings_report(None, DEFAULTS) == {"settings": {}, "settings_problems": []}
    assert "not valid XML" in settings_report("<View", DEFAULTS)["settings_problems"][0]


def test_durations_convert_with_the_median_row_spacing():
    n = 500
    at_50hz = Series(np.arange(n) * 0.02, np.zeros((n, 1), np.float32), "numeric")
    at_5khz_ms = Series(1.7e12 + np.arange(n) * 0.2, np.zeros((n, 1), np.float32), "datetime")  # epoch ms
    rows = Series(np.arange(n, dtype=float), np.zeros((n, 1), np.float32), "index")
    assert row_spacing(at_50hz) == pytest.approx(0.02)
    assert row_spacing(at_5khz_ms) == pytest.approx(0.0002, rel=1e-3)  # epoch ms near 1.7e12: float steps
    half_second = Duration(0.5, False)
    assert half_second.rows(row_spacing(at_50hz)) == 25
    assert half_second.rows(row_spacing(at_5khz_ms)) == 2500
    assert Duration(7, False).rows(row_spacing(rows)) == 7
    assert Duration(25, True).rows(row_spacing(at_5khz_ms)) == 25


def _probs(classes, n_classes=3, p=0.9):
    probs = np.full((len(classes), n_classes), (1 - p) / (n_classes - 1))
    probs[np.arange(len(classes)), classes] = p
    return probs


def _spans(results):
    return [(r["value"]["start"], r["value"]["end"], r["value"]["timeserieslabels"][0]) for r in results]


TARGET = parse_label_config(config(time_column=""))[0]


def _index_series(n):
    return Series(np.arange(n, dtype=float), np.zeros((n, 1), np.float32), "index")


def test_merge_gaps_fills_short_background_between_runs_of_one_label_only():
    classes = np.array([1] * 10 + [0] * 3 + [1] * 10 + [0] * 3 + [2] * 10 + [0] * 8 + [2] * 5)
    merged = merge_gaps(classes, np.array([0, 4, 4]))
    assert run_lengths(merged).classes.tolist() == [1, 0, 2, 0, 2]  # Run's gap filled, Run|Walk gap kept
    assert (merged[10:13] == 1).all()
    assert (merge_gaps(classes, np.array([0, 0, 9]))[36:44] == 2).all()


def test_per_label_minimum_duration_in_rows_and_in_time_units():
    classes = np.array([0] * 20 + [1] * 6 + [0] * 20 + [2] * 6 + [0] * 20)
    cleaned = drop_short_runs(classes, np.array([1, 8, 1]), frozenset())
    assert run_lengths(cleaned).classes.tolist() == [0, 2, 0]  # short Run dropped, short Walk kept
    s = settings_of(config(run='model_min_duration="0.2"'))
    series = Series(np.arange(len(classes)) * 0.02, np.zeros((len(classes), 1), np.float32), "numeric")
    cleanup = RowCleanup.of(s, TARGET.labels, series, auto_rows=1)
    assert cleanup.min_rows.tolist() == [1, 10, 1]  # 0.2 s at 50 Hz is 10 rows; the others automatic
    results, _ = to_results(series, _probs(classes), TARGET, frozenset(), cleanup)
    assert [r["value"]["timeserieslabels"] for r in results] == [["Walk"]]


def test_the_control_value_applies_to_labels_without_their_own_and_background():
    s = settings_of(config('model_min_duration="5 rows" model_merge_gap="3 rows"', walk='model_min_duration="0"'))
    cleanup = RowCleanup.of(s, TARGET.labels, _index_series(10), auto_rows=7)
    assert cleanup.min_rows.tolist() == [5, 5, 0]
    assert cleanup.merge_gap_rows.tolist() == [0, 3, 3]
    auto = RowCleanup.of(settings_of(config()), TARGET.labels, _index_series(10), auto_rows=7)
    assert auto.min_rows.tolist() == [7, 7, 7]
    assert auto.merge_gap_rows.tolist() == [0, 0, 0]


def test_gap_merging_and_threshold_in_the_results():
    classes = np.array([0] * 10 + [1] * 10 + [0] * 2 + [1] * 10 + [0] * 10 + [2] * 10 + [0] * 5)
    probs = _probs(classes)
    probs[42:52] = [0.3, 0.3, 0.4]  # the Walk region is unsure
    series = _index_series(len(classes))
    plain, _ = to_results(series, probs, TARGET, frozenset(), 1)
    assert _spans(plain) == [(10, 19, "Run"), (22, 31, "Run"), (42, 51, "Walk")]
    s = settings_of(config('model_merge_gap="3rows" model_score_threshold="0.5"', walk='model_merge_gap="0"'))
    cleaned, score = to_results(series, probs, TARGET, frozenset(), RowCleanup.of(s, TARGET.labels, series, 1))
    assert _spans(cleaned) == [(10, 31, "Run")]  # gap filled, the unsure Walk not proposed
    assert cleaned[0]["score"] < 0.9  # the filled rows count in the region's score
    everything, _ = to_results(series, probs, TARGET, frozenset(), RowCleanup.uniform(1, 3))
    assert everything == plain
    assert 0 <= score <= 1


def test_instants_are_not_removed_by_a_minimum_duration():
    classes = np.array([0] * 20 + [2] * 1 + [0] * 20 + [1] * 30)
    series = _index_series(len(classes))
    cleanup = RowCleanup.of(settings_of(config('model_min_duration="10rows"')), TARGET.labels, series, 1)
    results, _ = to_results(series, _probs(classes), TARGET, frozenset({2}), cleanup)
    assert _spans(results) == [(20, 20, "Walk"), (41, 70, "Run")]
    assert results[0]["value"]["instant"]


def test_multi_label_clean_up_is_per_label():
    n = 100
    run = np.zeros(n)
    run[10:30] = run[33:60] = 0.9  # one Run with a 3-row gap
    walk = np.zeros(n)
    walk[40:44] = 0.9  # a 4-row Walk, overlapping the Run
    walk[70:90] = 0.55  # an unsure Walk
    probs = np.stack([run, walk], axis=1)
    series = _index_series(n)
    s = settings_of(config('model_score_threshold="0.6"', run='model_merge_gap="5rows"',
                           walk='model_min_duration="5rows"'))
    results, _ = layered_results(series, probs, TARGET, frozenset(), RowCleanup.of(s, TARGET.labels, series, 1))
    assert _spans(results) == [(10, 59, "Run")]
    plain, _ = layered_results(series, probs, TARGET, frozenset(), 1)
    assert _spans(plain) == [(10, 29, "Run"), (33, 59, "Run"), (40, 43, "Walk"), (70, 89, "Walk")]


def _model(trained_with=None):
    net = SegmenterNet(1, 3, 8, 2)
    model = TrainedModel(TARGET, net, np.zeros(1, np.float32), np.ones(1, np.float32), 16, 8)
    if trained_with is not None:
        model.info["trained_with"] = trained_with
    return model


def test_a_model_trained_with_other_training_time_settings_is_not_applied():
    from segmenter.learning.inference import fitting_models as fitting
    from segmenter.reading.project_config import ProjectConfig

    def fitting_models(models, text):
        return fitting(models, ProjectConfig.read(text, TrainingSettings()))

    old = _model()  # saved before per-project settings: counts as trained with the defaults
    plain = config(time_column="")
    assert fitting_models([old], plain) == [old]
    assert fitting_models([old], config('model_max_epochs="50"', time_column="")) == []
    assert fitting_models([old], config('model_context="3"', time_column="")) == []
    trained = _model({"context": "3", "max_epochs": 50})
    assert fitting_models([trained], config('model_context="3" model_max_epochs="50"', time_column="")) == [trained]
    assert fitting_models([trained], config('model_context="3 rows" model_max_epochs="50"', time_column="")) == []
    # predict-time settings need no new model
    changed = config('model_min_duration="4" model_merge_gap="2" model_score_threshold="0.3"', time_column="")
    assert fitting_models([old], changed) == [old]
    # a bad value counts as its default
    assert fitting_models([old], config('model_max_epochs="many"', time_column="")) == [old]


def test_context_in_time_units_becomes_rows_with_the_median_spacing():
    from harness import synthetic
    from segmenter.learning.training import collect_examples

    tasks, files = synthetic.annotated_tasks(2, rows=400, seed=3)
    target = parse_label_config(synthetic.label_config())[0]
    examples, _ = collect_examples(tasks, target, files)
    size, info = choose_context(examples, TrainingSettings(sequence_size=64), Duration(30, False))
    spacing = row_spacing(examples[0].series)
    assert size == round(30 / spacing)
    assert info["chosen_by"] == "model_context"
    assert info["model_context"] == "30"
    assert choose_context(examples, TrainingSettings(), Duration(1, True))[0] == 2  # never below 2 rows
    assert choose_context(examples, TrainingSettings(sequence_size=64))[0] == 64


def test_the_window_from_the_annotations_holds_at_least_24_rows():
    from segmenter.learning.training import Example
    from segmenter.reading.annotations import RowLabels

    def example(run: int, rows: int = 600) -> Example:
        ids = (np.arange(rows) // run) % 2  # alternating runs of ``run`` rows
        series = Series(np.arange(rows, dtype=np.float64), np.zeros((rows, 1), np.float32), "index")
        return Example(1, series, RowLabels(ids.astype(np.int64), frozenset(), [run] * (rows // run // 2)))

    size, info = choose_context([example(10)], TrainingSettings())
    assert (size, info["run_rows_lower_quartile"]) == (24, 10.0)  # JapaneseVowels-like runs get the floor
    assert choose_context([example(40)], TrainingSettings())[0] == 40  # above it the quartile decides
    assert choose_context([example(10, rows=12)], TrainingSettings())[0] == 24  # a shorter series is padded
