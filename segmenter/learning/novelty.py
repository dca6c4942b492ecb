"""How unlike the annotated data each row of a series is: what the softmax cannot say.

A network never shown a kind of event still puts its rows into one of the
classes it knows, often confidently, so a task score made of class
probabilities alone ranks a recording full of something new as certain (in
``bench/active_learning.py`` the recordings holding an unseen event ranked
among the most certain).  So each row is also described by the level and the
spread of every normalised channel over the model's window centred on it.
Training keeps, per annotated class, the mean and standard deviation of those
descriptors (``Reference``); a row's distance to a class is the root mean
square of its z-scores over the descriptor's dimensions.  Each class also
keeps its reach: the farthest of its own annotated rows (windows that straddle
a boundary lie far from both classes), at least ``FAMILIAR_Z``.  A row's
familiarity is 1 within the reach of some class and falls off exponentially
with the distance beyond it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIAR_Z = 2.5
MIN_SPREAD = 0.05  # in normalised units: a flat annotated class does not make every wiggle novel


def descriptors(values: np.ndarray, size: int, step: int = 1) -> np.ndarray:
    """(rows, 2 x channels): each channel's mean and standard deviation over ``size`` rows centred on a row.

    Every ``step``-th row from the first.  Running sums, so the cost is linear in
    the rows; windows are cut short at the ends.
    """
    n, channels = values.shape
    rows = np.arange(0, n, step)
    lo = np.clip(rows - size // 2, 0, n)
    hi = np.clip(rows + size // 2 + 1, 0, n)
    zero = np.zeros((1, channels))
    sums = np.concatenate([zero, np.cumsum(values, axis=0, dtype=np.float64)])
    squares = np.concatenate([zero, np.cumsum(np.square(values, dtype=np.float64), axis=0)])
    count = (hi - lo)[:, None]
    mean = (sums[hi] - sums[lo]) / count
    spread = np.sqrt(np.clip((squares[hi] - squares[lo]) / count - mean**2, 0.0, None))
    return np.concatenate([mean, spread], axis=1).astype(np.float32)


@dataclass
class Reference:
    """Per annotated class (or combination of labels): the mean and spread of the descriptors of its rows."""

    mean: np.ndarray  # float32 (classes seen, 2 x channels)
    spread: np.ndarray  # float32 (classes seen, 2 x channels), at least MIN_SPREAD
    reach: np.ndarray  # float32 (classes seen,): distance of the class's farthest annotated row, >= FAMILIAR_Z

    @classmethod
    def build(cls, values: list[np.ndarray], classes: list[np.ndarray], size: int) -> Reference:
        """From the normalised training series and their per-row classes (or label bits)."""
        d = np.concatenate([descriptors(v, size) for v in values])
        y = np.concatenate(classes)
        seen = np.unique(y[y >= 0])
        mean = np.stack([d[y == c].mean(axis=0) for c in seen])
        spread = np.stack([np.maximum(d[y == c].std(axis=0), MIN_SPREAD) for c in seen])
        reach = [_distance(d[y == c], m, s).max() for c, m, s in zip(seen, mean, spread)]
        return cls(mean.astype(np.float32), spread.astype(np.float32),
                   np.maximum(np.asarray(reach), FAMILIAR_Z).astype(np.float32))

    def to_state(self) -> dict:
        """Plain lists, loadable with ``torch.load(weights_only=True)``."""
        return {"mean": self.mean.tolist(), "spread": self.spread.tolist(), "reach": self.reach.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> Reference:
        """Rebuild what ``to_state`` wrote."""
        return cls(*(np.asarray(state[k], dtype=np.float32) for k in ("mean", "spread", "reach")))

    def familiarity(self, values: np.ndarray, size: int) -> np.ndarray:
        """Per row in [0, 1]: 1 within the reach of an annotated class, exp(-distance beyond it) farther out.

        Computed every ``size // 8`` rows and repeated: a window's mean and spread barely move
        within an eighth of it; a million-row, 2-channel series then costs 0.14-0.2 s.
        """
        step = max(1, size // 8)
        d = descriptors(values, size, step)
        beyond = np.full(len(d), np.inf, dtype=np.float32)
        for mean, spread, reach in zip(self.mean, self.spread, self.reach):  # a few classes; rows vectorised
            np.minimum(beyond, _distance(d, mean, spread) - reach, out=beyond)
        return np.repeat(np.exp(-np.clip(beyond, 0.0, None)), step)[: len(values)]


def _distance(d: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Root mean square z-score of each descriptor row against one class."""
    return np.sqrt(np.mean(np.square((d - mean) / spread), axis=1))
