"""Fixed-length windows over one or more series, built by index arithmetic.

Training and inference both cut series into windows of ``size`` rows.  A
window never straddles two series: series are laid end to end in one array,
each padded (mask 0) to at least ``size`` rows, and window starts are only
taken inside one series.  Gathering a batch is one fancy-indexing operation,
so memory is bounded by the batch, never by the number of windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def window_starts(n: int, size: int, stride: int) -> np.ndarray:
    """Starts of windows of ``size`` rows every ``stride`` rows covering ``n`` rows.

    The last window is aligned to the end so every row is covered; a series
    shorter than a window gets one window at 0 (the caller pads it).
    """
    if n <= size:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n - size + 1, stride, dtype=np.int64)
    if starts[-1] != n - size:
        starts = np.append(starts, n - size)
    return starts


@dataclass
class WindowSource:
    """Several series laid end to end, padded so each holds at least one window."""

    values: np.ndarray  # float32 (total, channels)
    labels: np.ndarray  # int64 (total,), -1 where there is no label (padding)
    offsets: np.ndarray  # int64 (n_series,), where each series starts in ``values``
    lengths: np.ndarray  # int64 (n_series,), real rows of each series
    size: int

    @classmethod
    def build(
        cls, values: Sequence[np.ndarray], labels: Sequence[np.ndarray] | None, size: int
    ) -> WindowSource:
        """Concatenate ``values`` (and their row ``labels``), padding each to ``size`` rows."""
        lengths = np.array([len(v) for v in values], dtype=np.int64)
        padded = np.maximum(lengths, size)
        offsets = np.concatenate([[0], np.cumsum(padded)[:-1]]).astype(np.int64)
        channels = values[0].shape[1]
        all_values = np.zeros((int(padded.sum()), channels), dtype=np.float32)
        all_labels = np.full(int(padded.sum()), -1, dtype=np.int64)
        for i, v in enumerate(values):
            all_values[offsets[i] : offsets[i] + len(v)] = v
            if labels is not None:
                all_labels[offsets[i] : offsets[i] + len(v)] = labels[i]
        return cls(all_values, all_labels, offsets, lengths, size)

    def starts(self, stride: int, jitter: np.random.Generator | None = None) -> np.ndarray:
        """Window starts in every series, ``stride`` apart, optionally shifted at random.

        ``jitter`` shifts each series' grid by a random offset below ``stride``,
        so successive training epochs see differently cut windows.
        """
        out = []
        for offset, length in zip(self.offsets, self.lengths):
            room = max(int(length), self.size) - self.size
            shift = int(jitter.integers(0, min(stride, room + 1))) if jitter is not None and room else 0
            local = window_starts(room + self.size - shift, self.size, stride) + shift
            out.append(local + offset)
        return np.concatenate(out)

    def gather(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows at ``starts``: values (B, size, C) and labels (B, size)."""
        index = starts[:, None] + np.arange(self.size)[None, :]
        return self.values[index], self.labels[index]
