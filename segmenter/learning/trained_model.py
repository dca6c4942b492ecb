"""A trained model: the network of one target plus everything needed to apply it.

Below both training (which makes one) and inference and storage (which use
one): ``TrainedModel`` with its plain-value state for ``torch.load(weights_only=True)``,
and ``window_probabilities``, how per-row class probabilities come out of the
network (sliding windows with 50% overlap, averaged over the windows covering
each row, computed in bounded chunks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from segmenter import device
from segmenter.learning.network import Ensemble, SegmenterNet
from segmenter.learning.novelty import Reference
from segmenter.learning.regions import RowCleanup, layered_results, task_score, to_results
from segmenter.learning.windows import WindowSource
from segmenter.reading.labelconfig import Target
from segmenter.reading.project_settings import AUTO, ProjectSettings
from segmenter.reading.series import Series

WINDOWS_PER_BATCH = 2048


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
    # The network's logits are divided by this before the softmax / sigmoid (fit on held-out rows, so a
    # probability of 0.8 is right about 80% of the time); 1.0: models saved before calibration
    temperature: float = 1.0

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
            "members": len(self.net.members) if isinstance(self.net, Ensemble) else 1,
            "instant_classes": sorted(self.instant_classes),
            "min_segment_rows": self.min_segment_rows,
            "info": self.info,
            "multi_label": self.multi_label,
            "reference": None if self.reference is None else self.reference.to_state(),
            "temperature": float(self.temperature),
        }

    @classmethod
    def from_state(cls, state: dict) -> TrainedModel:
        """Rebuild a model saved by ``to_state``."""
        t = state["target"]
        target = Target(**{**t, "labels": tuple(t["labels"]), "channels": tuple(t["channels"])})
        down = int(state.get("down", 2))  # models saved before the factor followed the window used 2
        multi_label = bool(state.get("multi_label", False))  # older models: single-label
        outputs = len(target.labels) if multi_label else len(target.classes)
        shape = (len(target.channels), outputs, int(state["hidden_size"]), down)
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
            temperature=float(state.get("temperature", 1.0)),
        )

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Channels scaled with the training data's per-channel statistics."""
        return ((values - self.mean) / self.std).astype(np.float32, copy=False)

    def probabilities(self, series: Series) -> np.ndarray:
        """Per-row class probabilities (rows, classes) for one series."""
        return window_probabilities(
            self.net, self.normalise(series.values), self.sequence_size, sigmoid=self.multi_label,
            temperature=self.temperature,
        )

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
            probs = window_probabilities(self.net, values, self.sequence_size, sigmoid=self.multi_label,
                                         temperature=self.temperature)
        make = layered_results if self.multi_label else to_results
        regions, score = make(series, probs, self.target, self.instant_classes, self.cleanup(series, settings))
        if self.reference is not None and len(values):
            score = min(score, task_score(self.reference.familiarity(values, self.sequence_size)))
        return regions, score


def window_logits(
    net: torch.nn.Module, values: np.ndarray, size: int, batch: int = WINDOWS_PER_BATCH
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(rows, logits) of every batch of windows over ``values``, windows overlapping by half.

    ``rows`` is each window row's index into ``values`` padded to one window (flat), ``logits``
    the network's output for those rows (flat, classes), on the CPU.  Only ``batch`` windows
    exist at a time, so memory stays bounded for million-row series.
    """
    source = WindowSource.build([values], None, size)
    starts = source.starts(stride=max(1, math.ceil(size / 2)))
    offsets = torch.arange(size)
    on = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(starts), batch):
                chunk = starts[i : i + batch]
                windows, _ = source.gather(chunk)
                logits = net(torch.from_numpy(windows).to(on)).cpu()
                rows = (torch.from_numpy(chunk)[:, None] + offsets[None, :]).reshape(-1)
                yield rows, logits.reshape(len(rows), -1)
    finally:
        net.train(was_training)


def averaged_probabilities(
    parts: Iterable[tuple[torch.Tensor, torch.Tensor]], n: int, sigmoid: bool, temperature: float = 1.0
) -> np.ndarray:
    """Per-row mean over the windows of the softmax (``sigmoid``: per-label sigmoid) of logits / ``temperature``."""
    total = count = None
    for rows, logits in parts:
        scaled = logits / temperature
        probs = torch.sigmoid(scaled) if sigmoid else torch.softmax(scaled, dim=-1)
        if total is None:
            size = max(n, int(rows.max()) + 1)
            total, count = torch.zeros(size, probs.shape[1]), torch.zeros(size, 1)
        total.index_add_(0, rows, probs)
        count.index_add_(0, rows, torch.ones(len(rows), 1))
    return (total[:n] / count[:n]).numpy()


def window_probabilities(
    net: torch.nn.Module, values: np.ndarray, size: int, batch: int = WINDOWS_PER_BATCH, sigmoid: bool = False,
    temperature: float = 1.0,
) -> np.ndarray:
    """Average the softmax (``sigmoid``: per-label sigmoid) of every window covering a row; windows overlap by half.

    The logits are divided by ``temperature`` first (the model's calibration).  Only ``batch``
    windows exist at a time, and their probabilities are summed with one ``index_add_`` per
    batch.  The network runs on whatever device its weights are on; sums stay on the CPU.
    """
    return averaged_probabilities(window_logits(net, values, size, batch), len(values), sigmoid, temperature)


def fit_temperature(
    net: torch.nn.Module, values: list[np.ndarray], truth: list[np.ndarray], size: int, sigmoid: bool
) -> tuple[float, float, float]:
    """The temperature that minimises the log loss of held-out rows, and the log loss at 1 and at it.

    ``truth`` holds each row's class (``sigmoid``: its labels as a 0/1 matrix).  The window
    logits are computed once; the temperatures tried are a log-spaced grid from 1 to 4: only
    softening.  The held-out rows also chose the checkpoint, so they flatter it; a sharpening
    fit on them made the test rows' calibration worse in ``bench.suite`` (ECE 0.045 -> 0.053
    on ItalyPowerDemand, 0.054 -> 0.068 on ArrowHead).
    """
    parts = [list(window_logits(net, v, size)) for v in values]
    y = np.concatenate(truth)

    def loss(t: float) -> float:
        p = np.concatenate([averaged_probabilities(part, len(v), sigmoid, t) for part, v in zip(parts, values)])
        p = np.clip(p, 1e-7, 1 - 1e-7)
        if sigmoid:
            return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
        return float(-np.log(p[np.arange(len(y)), y]).mean())

    grid = np.exp(np.linspace(0.0, np.log(4.0), 17))
    losses = [loss(float(t)) for t in grid]
    best = int(np.argmin(losses))
    return float(grid[best]), losses[0], losses[best]
