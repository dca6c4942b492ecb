import numpy as np

from segmenter.learning.novelty import Reference, descriptors
from segmenter.learning.regions import task_score


def _annotated(rng):
    """Background noise with a stretch of fast oscillation (class 1)."""
    values = rng.normal(0, 0.2, (600, 2))
    values[200:300] += 1.5 * np.sin(np.arange(100) * 2 * np.pi / 6)[:, None]
    classes = np.zeros(600, dtype=np.int64)
    classes[200:300] = 1
    return values, classes


def test_descriptors_are_the_running_mean_and_spread():
    values = np.arange(20, dtype=np.float64).reshape(10, 2)
    d = descriptors(values, 4)
    assert d.shape == (10, 4)
    assert np.allclose(d[5, :2], values[3:8].mean(axis=0))
    assert np.allclose(d[5, 2:], values[3:8].std(axis=0))
    assert np.allclose(d[0, :2], values[:3].mean(axis=0))  # cut short at the start


def test_rows_like_the_annotated_ones_are_familiar_and_a_new_shape_is_not():
    rng = np.random.default_rng(0)
    values, classes = _annotated(rng)
    reference = Reference.build([values], [classes], 20)
    same, _ = _annotated(rng)
    assert task_score(reference.familiarity(same, 20)) > 0.95
    new = same.copy()
    new[400:480] += -1.2 + 0.9 * np.sign(np.sin((np.arange(80) + 0.5) * 2 * np.pi / 10))[:, None]
    familiar = reference.familiarity(new, 20)
    assert familiar[420:460].max() < 0.3
    assert np.median(familiar[:150]) == 1.0
    assert task_score(familiar) < 0.3


def test_reference_state_round_trips():
    rng = np.random.default_rng(1)
    values, classes = _annotated(rng)
    reference = Reference.build([values], [classes], 20)
    back = Reference.from_state(reference.to_state())
    assert np.array_equal(back.mean, reference.mean)
    assert np.array_equal(back.spread, reference.spread)
