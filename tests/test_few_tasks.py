"""Two or three annotated tasks where a class occurs in one task only.

Holding that task out for validation judged the network on a class it never saw:
the validation loss was lowest after the first epoch and that near-uniform
network was kept.  Validation is now chosen so that the training rows hold
every validation class.
"""

import numpy as np
import pytest

from harness import synthetic
from segmenter.config import TrainingSettings
from segmenter.learning.evaluation import score
from segmenter.learning.training import Example, class_mask, split, train_project
from segmenter.reading.annotations import RowLabels
from segmenter.reading.series import Series


def example(task_id: int, classes: list[int], rows: int = 100) -> Example:
    """A series whose rows cycle through ``classes`` in equal runs."""
    ids = np.repeat(np.array(classes, dtype=np.int64), rows // len(classes))
    series = Series(np.arange(len(ids), dtype=np.float64), np.zeros((len(ids), 2), np.float32), "numeric")
    return Example(task_id, series, RowLabels(ids, frozenset(), [], frozenset(classes) - {0}))


def classes(examples: list[Example]) -> set[int]:
    return {int(c) for e in examples for c in np.unique(e.rows.class_ids)}


@pytest.mark.parametrize("seed", range(6))
def test_held_out_task_holds_only_classes_the_training_tasks_hold(seed):
    examples = [example(1, [0, 1]), example(2, [0, 1]), example(3, [0, 1, 2])]
    train, val, held_out = split(examples, np.random.default_rng(seed))
    assert classes(val) <= classes(train)
    assert [e.task_id for e in val] != [3]
    assert held_out.startswith("held-out tasks")
    assert sorted(e.task_id for e in train + val) == [1, 2, 3]


def test_many_tasks_keep_the_seeded_whole_task_split():
    examples = [example(i, [0, 1, 2]) for i in range(1, 11)]
    order = np.random.default_rng(4).permutation(10)
    train, val, _ = split(examples, np.random.default_rng(4))
    assert [e.task_id for e in val] == sorted(examples[i].task_id for i in order[:2])
    assert len(train) == 8


@pytest.mark.parametrize("seed", range(4))
def test_when_no_whole_task_can_validate_every_task_holds_out_rows(seed):
    examples = [example(1, [0, 1]), example(2, [0, 2])]  # each task has a class the other lacks
    train, val, held_out = split(examples, np.random.default_rng(seed))
    assert classes(val) <= classes(train) == {0, 1, 2}
    assert held_out.startswith("the last 20% of the rows of each task")
    assert [len(e.series) for e in val] == [20, 20]
    assert sum(len(e.series) for e in train) == 160


def test_layered_labels_count_in_the_class_mask():
    e = example(1, [0, 1])
    e.rows.presence = np.where(e.rows.class_ids > 0, 0b101, 0)
    assert class_mask(e) == 0b1 | 0b10 | 0b1000


def test_a_class_in_one_of_three_tasks_is_learnt_not_the_first_epoch_kept():
    config = synthetic.label_config()
    files, tasks = synthetic.MemoryFiles(), []
    for i, n_events in enumerate((1, 1, 2)):  # Run in every task, Walk only in the third
        rec = synthetic.make_recording(400, seed=40 + i, n_events=n_events)
        files[f"r{i}.csv"] = synthetic.csv_bytes(rec)
        result = synthetic.annotation(rec)
        tasks.append({"id": i + 1, "data": {"csv_url": f"r{i}.csv"}, "annotations": [{"result": result}]})
    assert np.random.default_rng(0).permutation(3)[0] == 2  # the seeded order alone would validate on Walk's task
    [model] = train_project(config, tasks, files, TrainingSettings(epochs=40, patience=4, seed=0))
    info = model.info
    assert "3" not in info["validation"]["held_out"]
    assert info["best_epoch"] > 1
    assert info["validation"]["thresholds_met"]
    tests, test_files = synthetic.annotated_tasks(2, 400, seed=300, n_events=2)
    assert score([model], tests, test_files)["timestep_macro_f1"] >= 0.8
