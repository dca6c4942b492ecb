"""The predict path: a trained model + tasks -> Label Studio predictions.

Read top to bottom: ``TrainedModel`` (network + everything needed to apply it),
``probabilities`` (sliding windows with 50% overlap, per-row probabilities
averaged over the windows covering each row, computed in bounded chunks), and
``predict_task`` (series -> probabilities -> regions -> one prediction).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from segmenter.errors import SegmenterError
from segmenter.labelconfig import Target, parse_label_config
from segmenter.network import SegmenterNet
from segmenter.regions import to_results
from segmenter.series import Series
from segmenter.taskdata import Fetcher, read_task_series
from segmenter.windows import WindowSource

log = logging.getLogger(__name__)

WINDOWS_PER_BATCH = 2048


@dataclass
class TrainedModel:
    """A network for one target plus the data handling it was trained with."""

    target: Target
    net: SegmenterNet
    mean: np.ndarray  # float32 (channels,)
    std: np.ndarray  # float32 (channels,)
    sequence_size: int
    hidden_size: int
    instant_classes: frozenset[int] = frozenset()
    min_segment_rows: int = 1
    info: dict = field(default_factory=dict)

    def to_state(self) -> dict:
        """Plain tensors and values only, loadable with ``torch.load(weights_only=True)``."""
        return {
            "target": {
                "from_name": self.target.from_name,
                "to_name": self.target.to_name,
                "data_key": self.target.data_key,
                "value_type": self.target.value_type,
                "labels": list(self.target.labels),
                "channels": list(self.target.channels),
                "time_column": self.target.time_column,
                "time_format": self.target.time_format,
                "sep": self.target.sep,
            },
            "signature": self.target.signature(),
            "weights": self.net.state_dict(),
            "mean": torch.from_numpy(self.mean.astype(np.float32)),
            "std": torch.from_numpy(self.std.astype(np.float32)),
            "sequence_size": self.sequence_size,
            "hidden_size": self.hidden_size,
            "instant_classes": sorted(self.instant_classes),
            "min_segment_rows": self.min_segment_rows,
            "info": self.info,
        }

    @classmethod
    def from_state(cls, state: dict) -> TrainedModel:
        """Rebuild a model saved by ``to_state``."""
        t = state["target"]
        target = Target(
            from_name=t["from_name"],
            to_name=t["to_name"],
            data_key=t["data_key"],
            value_type=t["value_type"],
            labels=tuple(t["labels"]),
            channels=tuple(t["channels"]),
            time_column=t["time_column"],
            time_format=t["time_format"],
            sep=t["sep"],
        )
        net = SegmenterNet(len(target.channels), len(target.classes), int(state["hidden_size"]))
        net.load_state_dict(state["weights"])
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
        )

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Channels scaled with the training data's per-channel statistics."""
        return ((values - self.mean) / self.std).astype(np.float32, copy=False)

    def probabilities(self, series: Series) -> np.ndarray:
        """Per-row class probabilities (rows, classes) for one series."""
        return window_probabilities(self.net, self.normalise(series.values), self.sequence_size)


def window_probabilities(
    net: torch.nn.Module, values: np.ndarray, size: int, batch: int = WINDOWS_PER_BATCH
) -> np.ndarray:
    """Average the softmax of every window covering a row; windows overlap by half.

    Only ``batch`` windows exist at a time, so memory stays bounded for
    million-row series; the sums are accumulated with one ``index_add_`` per batch.
    """
    n = len(values)
    source = WindowSource.build([values], None, size)
    starts = source.starts(stride=max(1, math.ceil(size / 2)))
    n_classes = net.head.out_features
    total = torch.zeros(source.values.shape[0], n_classes)
    count = torch.zeros(source.values.shape[0], 1)
    offsets = torch.arange(size)
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(starts), batch):
            chunk = starts[i : i + batch]
            windows, _ = source.gather(chunk)
            probs = torch.softmax(net(torch.from_numpy(windows)), dim=-1)
            rows = (torch.from_numpy(chunk)[:, None] + offsets[None, :]).reshape(-1)
            total.index_add_(0, rows, probs.reshape(-1, n_classes))
            count.index_add_(0, rows, torch.ones(len(rows), 1))
    net.train(was_training)
    return (total[:n] / count[:n]).numpy()


def fitting_models(models: list[TrainedModel], label_config: str) -> list[TrainedModel]:
    """The models trained for a target of ``label_config`` exactly as it is now.

    A model trained for other labels, channels or time handling is never
    applied to a changed config.
    """
    wanted = {t.signature() for t in parse_label_config(label_config)}
    return [m for m in models if m.target.signature() in wanted]


def predict_task(models: list[TrainedModel], task: dict, fetcher: Fetcher) -> dict:
    """One Label Studio prediction (``result`` + task ``score``) over all targets.

    The task score is the lowest of the targets' scores: the task is as
    uncertain as its most uncertain series.
    """
    results: list[dict] = []
    scores: list[float] = []
    for model in models:
        series = read_task_series(task, model.target, fetcher)
        probs = model.probabilities(series)
        regions, score = to_results(
            series, probs, model.target, model.instant_classes, model.min_segment_rows
        )
        results.extend(regions)
        scores.append(score)
    return {"result": results, "score": round(min(scores), 4) if scores else 0.0}


def predict_tasks(models: list[TrainedModel], tasks: list[dict], fetcher: Fetcher) -> list[dict]:
    """One prediction per task, in order; a task that fails gets an empty result and a log line."""
    out = []
    for task in tasks:
        try:
            out.append(predict_task(models, task, fetcher))
        except SegmenterError as exc:
            log.error("prediction skipped for task %s: %s", task.get("id"), exc)
            out.append({"result": [], "score": 0.0})
        except Exception:  # one broken task must not cost the others their predictions
            log.exception("prediction failed for task %s", task.get("id"))
            out.append({"result": [], "score": 0.0})
    return out
