"""Per-project settings with hostile values: every setting stays in a documented range, a value
outside keeps its default and is reported, and a repeated target is trained and predicted once."""

import numpy as np
import pytest
from support import CONFIG, add_recordings, trained_project

from harness import synthetic
from segmenter import store
from segmenter.config import TrainingSettings
from segmenter.learning.regions import RowCleanup
from segmenter.learning.training import choose_context, collect_examples
from segmenter.reading.labelconfig import parse_label_config
from segmenter.reading.project_settings import Duration, read_settings
from segmenter.reading.series import Series

CONTROL = '<TimeSeriesLabels name="label" toName="ts">'
HUGE = ("1e300", "1e400", "inf", "nan", "1e19 rows", "2e9 rows")
DURATIONS = ("model_min_duration", "model_merge_gap")
MAX_CONTEXT_ROWS, MAX_DURATION_ROWS = 4096, 1_000_000_000  # the README's ranges


def with_control(attributes: str, config: str = CONFIG) -> str:
    return config.replace(CONTROL, CONTROL[:-1] + f" {attributes}>")


def untimed(config: str = CONFIG) -> str:
    return config.replace(' timeColumn="time"', "")


@pytest.mark.parametrize("attribute", DURATIONS)
def test_a_huge_or_non_finite_duration_keeps_its_default_and_is_reported(attribute):
    for config in (CONFIG, untimed()):
        for value in HUGE:
            for on_label in (False, True):
                xml = (config.replace('<Label value="Run"/>', f'<Label value="Run" {attribute}="{value}"/>')
                       if on_label else with_control(f'{attribute}="{value}"', config))
                s = read_settings(xml, TrainingSettings())["label"]
                [problem] = s.problems
                assert f"{attribute}={value!r}" in problem, problem
                assert "using the default" in problem, problem
                assert ("<Label value='Run'>" in problem) == on_label, problem
                rules = dict(s.labels)["Run"] if on_label else s.control
                assert getattr(rules, attribute.removeprefix("model_")) is None, (value, rules)
    assert read_settings(with_control('model_min_duration="1e15"'), TrainingSettings())["label"].problems == ()
    assert read_settings(with_control('model_min_duration="1e9 rows"'), TrainingSettings())["label"].problems == ()


def test_converting_a_duration_to_rows_never_overflows():
    """Whatever the spacing, a duration becomes a count of rows an int64 array holds."""
    assert Duration(1e15, False).rows(1e-300) == MAX_DURATION_ROWS
    assert Duration(5e18, True).rows(1.0) == MAX_DURATION_ROWS
    assert Duration(30, False).rows(0.5) == 60
    assert Duration(7, True).rows(0.001) == 7
    s = read_settings(with_control('model_min_duration="1e14" model_merge_gap="1e15"'), TrainingSettings())["label"]
    series = Series(np.arange(100) * 1e-12, np.zeros((100, 1)), "numeric")
    cleanup = RowCleanup.of(s, ("Run", "Walk"), series, 3)
    assert cleanup.min_rows.max() == MAX_DURATION_ROWS
    assert cleanup.merge_gap_rows.max() == MAX_DURATION_ROWS


@pytest.mark.parametrize("huge", ["20000 rows", "1e8 rows", "4097rows", "1e300"])
def test_a_context_over_the_row_cap_keeps_the_automatic_one_and_is_reported(huge):
    for value in (huge, "inf", "nan", "1e400"):
        xml = untimed(with_control(f'model_context="{value}"'))
        s = read_settings(xml, TrainingSettings())["label"]
        [problem] = s.problems
        assert f"model_context={value!r}" in problem
        assert "using the default auto" in problem
        assert s.context is None
        assert s.describe()["model_context"] == "auto"
    assert read_settings(untimed(with_control(f'model_context="{MAX_CONTEXT_ROWS}"')),
                         TrainingSettings())["label"].problems == ()


def test_a_context_longer_than_the_series_in_rows_is_refused_at_training():
    """A context in time units is only rows once the series' spacing is known: one too long
    for the series is refused there, never allocated, and the window is chosen as by default."""
    tasks, files = synthetic.annotated_tasks(3, rows=300, seed=3)
    target = parse_label_config(synthetic.label_config())[0]
    examples, _ = collect_examples(tasks, target, files)
    auto, _ = choose_context(examples, TrainingSettings())
    for context in (Duration(1e14, False), Duration(301, True), Duration(5000, True)):
        size, info = choose_context(examples, TrainingSettings(), context)
        assert size == auto, info
        assert info["chosen_by"] == "annotations", info
        assert info["model_context"] == str(context)
        assert "using the default" in info["problem"]
    assert choose_context(examples, TrainingSettings(sequence_size=40), Duration(1e14, False))[0] == 40
    assert choose_context(examples, TrainingSettings(), Duration(300, True))[0] == 300


def test_repeated_targets_are_one_target():
    assert len(parse_label_config(CONFIG.replace('toName="ts"', 'toName="ts,ts, ts"'))) == 1
    twice = CONFIG.replace("</TimeSeriesLabels>", '</TimeSeriesLabels><TimeSeriesLabels name="label" toName="ts">'
                           '<Label value="Other"/></TimeSeriesLabels>')
    [target] = parse_label_config(twice)
    assert target.labels == ("Run", "Walk")
    s = read_settings(twice, TrainingSettings())["label"]
    assert any("second control" in p for p in s.problems)


def predict_and_status(b, project, tasks, config):
    results = b.predict(project, tasks, label_config=config).json()["results"]
    return results, b.get(f"/status/{project}").json()


def test_huge_durations_are_reported_and_predict_keeps_the_defaults(backend, ls):
    b = backend()
    project, tasks = trained_project(b, ls)
    plain = b.predict(project, tasks).json()["results"]
    assert any(r["result"] for r in plain)
    assert all(r["score"] > 0 for r in plain)
    task_id = tasks[0]["id"]
    for attribute in DURATIONS:
        for value in ("1e300", "1e19 rows", "nan"):
            config = with_control(f'{attribute}="{value}"').replace(
                '<Label value="Walk"/>', f'<Label value="Walk" {attribute}="{value}"/>')
            results, status = predict_and_status(b, project, tasks, config)
            assert results == plain, (attribute, value)
            problems = status["settings_problems"]
            assert len(problems) == 2, problems
            assert all(f"{attribute}={value!r}" in p for p in problems), problems
            assert len(str(status["settings"])) < 1000  # no 300-digit number
            chart = b.get(f"/dashboard/project/{project}/task/{task_id}/0.png")
            assert chart.status_code == 200, (attribute, value)


def model_bytes(b, project) -> int:
    root = b.runtime.settings.model_dir / f"model_project_{project}"
    [path] = sorted(root.glob("v*.pt"))[-1:]
    return path.stat().st_size


def train_with(b, ls, config: str) -> tuple[int, list[dict], dict]:
    """A project of three annotated 300-row recordings under ``config``, trained once."""
    project = ls.add_project(config)
    tasks = add_recordings(ls, project, 3)
    b.setup(project, ls, schema=config)
    b.webhook("START_TRAINING", project)
    status = b.wait_idle(project)
    assert status["state"] == "idle", status
    return project, tasks, status


def test_a_huge_context_trains_a_bounded_model_and_is_reported(backend, ls):
    b = backend()
    auto, _, _ = train_with(b, ls, CONFIG)
    auto_bytes = model_bytes(b, auto)
    # "20000 rows" is over the cap in rows; "5000" (time units, one row each here) only
    # becomes too many rows for these 300-row series at training
    for value, found_at in (("20000 rows", "setup"), ("5000", "training")):
        config = with_control(f'model_context="{value}"')
        project, tasks, status = train_with(b, ls, config)
        [model] = status["models"]
        assert model["context"]["sequence_size"] <= 300, model
        assert model["context"]["chosen_by"] == "annotations", model
        assert model["trained_with"]["context"] == ("auto" if found_at == "setup" else value)
        [problem] = status["settings_problems"]
        assert f"model_context={value!r}" in problem, problem
        assert "using the default" in problem, problem
        assert model_bytes(b, project) < 1.5 * auto_bytes, (value, model_bytes(b, project), auto_bytes)
        results = b.predict(project, tasks, label_config=config).json()["results"]
        assert all(r["model_version"] == status["model_version"] for r in results)
        assert b.get(f"/status/{project}").json()["requests"] == status["requests"]  # the model fits: no retraining


def test_a_repeated_to_name_trains_and_predicts_one_target(backend, ls):
    b = backend()
    config = CONFIG.replace('toName="ts"', 'toName="ts,ts,ts"')
    project, tasks, status = train_with(b, ls, config)
    assert len(status["models"]) == 1
    key = store.project_key(project)
    assert len(store.metadata(b.runtime.settings.model_dir, key, status["model_version"])["targets"]) == 1
    results = b.predict(project, tasks, label_config=config).json()["results"]
    assert any(r["result"] for r in results)
    for r in results:
        keys = [(x["value"]["start"], x["value"]["end"], tuple(x["value"]["timeserieslabels"])) for x in r["result"]]
        assert len(keys) == len(set(keys)), keys
