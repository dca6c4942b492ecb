"""A trained model: the network of one target plus everything needed to apply it.

Below both training (which makes one) and inference and storage (which use
one): ``TrainedModel`` with its plain-value state for ``torch.load(weights_only=True)``,
and ``window_probabilities``, how per-row class probabilities come out of the
network (sliding windows with 50% overlap, averaged over the windows covering
each row, computed in chunks of about ``ROWS_PER_BATCH`` rows).  A model cuts a
series into windows of ``prediction_window`` rows: twice its training window
where the series holds two.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from segmenter import device
from segmenter.learning.network import CONV_KERNEL, Ensemble, SegmenterNet, probabilities
from segmenter.learning.novelty import Reference
from segmenter.learning.regions import RowCleanup, layered_results, task_score, to_results
from segmenter.learning.windows import WindowSource
from segmenter.reading.labelconfig import Target
from segmenter.reading.project_settings import AUTO, ProjectSettings
from segmenter.reading.series import Series

# Rows of windows put through the network at once.  Memory stays bounded on million-row series, and
# every chunk's tensors stay small enough for the allocator to reuse: 2048 windows of 85 rows made it
# map fresh pages for every chunk (300,000-600,000 page faults, up to a third of the network's time
# on a 1M-row series).
ROWS_PER_BATCH = 32_768
MIN_STD = 1e-6  # a channel's standard deviation below this counts as flat: scaled by 1
# Prediction windows hold this many training windows where the series has room for them.  Cut at the
# training length, a row's class hangs on where the grid of windows falls against the events: on the
# suite's test series, begun part-way into a recording, the same networks cut twice as long (each row
# still in two windows, so at the same cost) raised ArrowHead's mean event F1 0.751 -> 0.797 and its
# worst 0.578 -> 0.708; the other sets moved by 0.011 or less (docs/benchmarks.md, "Prediction
# windows of two training windows").  Validation in training keeps training-length windows.
PREDICTION_SPAN = 2


@dataclass
class TrainedModel:
    """A network for one target plus the data handling it was trained with."""

    target: Target
    net: SegmenterNet | Ensemble
    mean: np.ndarray  # float32 (channels,)
    std: np.ndarray  # float32 (channels,)
    sequence_size: int
    hidden_size: int
    instant_classes: frozenset[int] = frozenset()
    min_segment_rows: int = 1
    info: dict = field(default_factory=dict)
    # True: one sigmoid per label (no background), labels may overlap; False: one softmax class per row
    multi_label: bool = False
    # What the annotated rows looked like, for the task score's novelty part; None: models saved before it
    reference: Reference | None = None
    # True: each series is first standardised by its own per-channel statistics (``standardised``),
    # then scaled with ``mean``/``std``; False (models saved before it too): ``mean``/``std`` only
    series_norm: bool = False

    def to_state(self) -> dict:
        """Plain tensors and values only, loadable with ``torch.load(weights_only=True)``."""
        return {
            "target": asdict(self.target),
            "signature": self.target.signature(),
            "weights": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "mean": torch.from_numpy(self.mean.astype(np.float32)),
            "std": torch.from_numpy(self.std.astype(np.float32)),
            "sequence_size": self.sequence_size,
            "hidden_size": self.hidden_size,
            "down": self.net.factor,
            "dilations": list(self.net.dilations),
            "merge": self.net.merge,
            "kernel": self.net.kernel,
            "members": len(self.net.members) if isinstance(self.net, Ensemble) else 1,
            "instant_classes": sorted(self.instant_classes),
            "min_segment_rows": self.min_segment_rows,
            "info": self.info,
            "multi_label": self.multi_label,
            "reference": None if self.reference is None else self.reference.to_state(),
            "series_norm": self.series_norm,
        }

    @classmethod
    def from_state(cls, state: dict) -> TrainedModel:
        """Rebuild a model saved by ``to_state``."""
        t = state["target"]
        target = Target(**{**t, "labels": tuple(t["labels"]), "channels": tuple(t["channels"])})
        down = int(state.get("down", 2))  # models saved before the factor followed the window used 2
        multi_label = bool(state.get("multi_label", False))  # older models: single-label
        outputs = len(target.labels) if multi_label else len(target.classes)
        dilations = tuple(int(d) for d in state.get("dilations", ()))  # older models: none
        merge = int(state.get("merge", 1))  # older models (TRAIN_DILATED's included): the rows themselves
        kernel = int(state.get("kernel", CONV_KERNEL))  # older models: 5 rows, with or without reach layers
        shape = (len(target.channels), outputs, int(state["hidden_size"]), down, dilations, merge, kernel)
        members = int(state.get("members", 1))  # older models: one network
        net = SegmenterNet(*shape) if members == 1 else Ensemble(
            [SegmenterNet(*shape) for _ in range(members)], multi_label
        )
        net.load_state_dict(state["weights"])
        net.to(device.current())
        net.eval()
        return cls(
            target=target,
            net=net,
            mean=state["mean"].numpy(),
            std=state["std"].numpy(),
            sequence_size=int(state["sequence_size"]),
            hidden_size=int(state["hidden_size"]),
            instant_classes=frozenset(int(c) for c in state["instant_classes"]),
            min_segment_rows=int(state["min_segment_rows"]),
            info=dict(state["info"]),
            multi_label=multi_label,
            reference=Reference.from_state(state["reference"]) if state.get("reference") else None,
            series_norm=bool(state.get("series_norm", False)),  # older models: the training data's statistics
        )

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Channels of one whole series scaled as in training: with the training data's per-channel
        statistics, after the series' own (``series_norm``)."""
        if self.series_norm:
            values = standardised(values)
        return ((values - self.mean) / self.std).astype(np.float32, copy=False)

    def probabilities(self, series: Series) -> np.ndarray:
        """Per-row class probabilities (rows, classes) for one series."""
        return self.window_probabilities(self.normalise(series.values))

    def window_probabilities(self, values: np.ndarray) -> np.ndarray:
        """Per-row probabilities of normalised ``values``, in windows of ``prediction_window`` rows."""
        size = prediction_window(self.sequence_size, len(values))
        return window_probabilities(self.net, values, size, sigmoid=self.multi_label)

    def trained_with(self) -> dict:
        """The config's training-time settings this model was trained under (``ProjectSettings.training_key``).

        Models saved before per-project settings count as trained with the defaults.
        """
        return self.info.get("trained_with") or {"context": AUTO, "max_epochs": None}

    def cleanup(self, series: Series, settings: ProjectSettings | None = None) -> RowCleanup:
        """The clean-up of ``series``: the project's settings, else the automatic one."""
        if settings is None:
            return RowCleanup.uniform(self.min_segment_rows, len(self.target.classes))
        return RowCleanup.of(settings, self.target.labels, series, self.min_segment_rows)

    def results(
        self, series: Series, settings: ProjectSettings | None = None, probs: np.ndarray | None = None
    ) -> tuple[list[dict], float]:
        """Label Studio regions for ``series``, cleaned up as ``settings`` say, and its task score
        (from ``probs`` when already computed).

        The task score is the lower of the class-probability score (``regions.task_score``)
        and the same mean over the least familiar rows (``novelty``): a stretch unlike
        anything annotated needs a human even where the network is sure of its guess.
        """
        values = self.normalise(series.values)
        if probs is None:
            probs = self.window_probabilities(values)
        make = layered_results if self.multi_label else to_results
        regions, score = make(series, probs, self.target, self.instant_classes, self.cleanup(series, settings))
        if self.reference is not None and len(values):
            score = min(score, task_score(self.reference.familiarity(values, self.sequence_size)))
        return regions, score


def standardised(values: np.ndarray) -> np.ndarray:
    """One series' channels ``(rows, channels)`` minus their own mean, over their own standard deviation
    (1 for a flat channel): an offset or a gain of the whole recording no longer shows."""
    if len(values) == 0:
        return values.astype(np.float32, copy=False)
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    std[std < MIN_STD] = 1.0
    return ((values - mean) / std).astype(np.float32)


def long_window(size: int) -> int:
    """The prediction window of a model trained on windows of ``size`` rows, for a series that holds it."""
    return PREDICTION_SPAN * size


def prediction_window(size: int, rows: int) -> int:
    """The window a series of ``rows`` rows is cut into for a model trained on windows of ``size`` rows:
    ``long_window`` where the series holds that many rows, else ``size``.

    A shorter series is not padded to the long window: the network never saw long padding in
    training, and ItalyPowerDemand's models scored 0.69 rather than 0.89 macro-F1 on series of 1.4
    windows padded to two.
    """
    long = long_window(size)
    return long if rows >= long else size


def window_probabilities(
    net: torch.nn.Module, values: np.ndarray, size: int, sigmoid: bool = False, rows_per_batch: int = ROWS_PER_BATCH
) -> np.ndarray:
    """Average the softmax (``sigmoid``: per-label sigmoid) of every window of ``size`` rows covering a row;
    windows overlap by half.

    Only the windows of about ``rows_per_batch`` rows (at least one window) exist at a time, so memory
    stays bounded for million-row series; the sums are accumulated with one ``index_add_`` per batch.
    The network runs on whatever device its weights are on; sums stay on the CPU.
    """
    n = len(values)
    source = WindowSource.build([values], None, size)
    starts = source.starts(stride=max(1, math.ceil(size / 2)))
    batch = max(1, rows_per_batch // size)
    n_classes = net.head.out_features
    total = torch.zeros(source.values.shape[0], n_classes)
    count = torch.zeros(source.values.shape[0], 1)
    offsets = torch.arange(size)
    on = next(net.parameters()).device
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(starts), batch):
            chunk = starts[i : i + batch]
            windows, _ = source.gather(chunk)
            logits = net(torch.from_numpy(windows).to(on))
            probs = probabilities(logits, sigmoid).cpu()
            rows = (torch.from_numpy(chunk)[:, None] + offsets[None, :]).reshape(-1)
            total.index_add_(0, rows, probs.reshape(-1, n_classes))
            count.index_add_(0, rows, torch.ones(len(rows), 1))
    net.train(was_training)
    return (total[:n] / count[:n]).numpy()
