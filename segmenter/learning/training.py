"""The training path: annotated tasks -> one ``TrainedModel`` per target.

Read top to bottom: ``collect_examples`` turns tasks into (series, row labels)
pairs, ``split`` holds out whole tasks whose classes the training tasks also
hold (else a 20% row block of every task; of a single series, its tail) for
validation, ``train_target`` prepares the data and the network, ``fit`` runs
the epochs with early stopping, ``training_record`` writes down what happened,
and ``train_project`` does it for every control/object pair of a labeling config.

Early stopping: after each epoch the held-out data is predicted as at inference
time, in training-length windows (``validate``).  The model is good enough once balanced accuracy reaches
``balanced_accuracy_threshold`` and every range class's F1 reaches
``min_class_f1_threshold`` (classes the held-out rows hold); training then goes on while the validation loss
still improves and stops after ``patience`` epochs without improvement (six
times that while the thresholds are not yet met), ``epochs`` at most, and
within ``time_budget`` seconds.  The checkpoint kept is the best one: thresholds
met first, then lowest loss (``EarlyStop``).  ``bench.patience`` chose the patience
(30: with three networks averaged, 60 took half as much training again and lifted only
ArrowHead's mean macro-F1, by 0.03; the sets that meet their targets meet them at 30), ``bench.suite`` the
augmentation (``augmented``) and the three networks a small project averages
(``members_for``: the seed and the hold-out decide much less).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import reduce
from operator import or_

import numpy as np
import torch
import torch.nn.functional as F

from segmenter import device, shutdown
from segmenter.config import TrainingSettings
from segmenter.errors import SegmenterError, TaskDataError
from segmenter.learning.evaluation import class_scores
from segmenter.learning.network import Ensemble, SegmenterNet, down_factor, reach, row_kernel
from segmenter.learning.novelty import Reference
from segmenter.learning.trained_model import MIN_STD, TrainedModel, standardised, window_probabilities
from segmenter.learning.windows import WindowSource
from segmenter.reading.annotations import MAX_LAYERED_LABELS, RowLabels, choose_annotation, row_labels
from segmenter.reading.labelconfig import Target, parse_label_config
from segmenter.reading.project_settings import (
    MAX_CONTEXT_ROWS,
    MAX_DURATION_ROWS,
    MIN_CONTEXT_ROWS,
    Duration,
    ProjectSettings,
    default_settings,
    read_settings,
    row_spacing,
)
from segmenter.reading.series import Series
from segmenter.reading.task_series import Fetcher, read_task_series

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.2
MAX_CLASS_WEIGHT = 50.0
CONTEXT_QUANTILE = 25  # percentile of the annotated runs (ranges and gaps) the window follows
# At least 24 rows: JapaneseVowels' runs of 7-29 rows (lower quartile 13) got 16-row windows, which
# left its worst event F1 at 0.833; 24 rows gave 0.880 (32: 0.876).  No other suite set's window moves.
MIN_CONTEXT, MAX_CONTEXT = 24, MAX_CONTEXT_ROWS
# Where each member's held-out 20% of a single annotated series starts: one task trains
# three networks on different 80% and averages them, so no row is unused and no seed decides.
SINGLE_TASK_FOLDS = (0.8, 0.0, 0.4)
# Without TRAIN_MEMBERS, a project of several tasks averages three networks up to this many annotated
# rows (every bench.suite set: 3,700-20,300), one above: there the three took 104 s against 24 s on
# bench.training's 50,000 rows (target 60 s), and a large project's budget would be split three ways.
ENSEMBLE_MAX_ROWS = 25_000
AUTO_MEMBERS = 3
# Windows per training step without BATCH_SIZE: 32, and 16 for windows over 200 rows (those whose
# network merges positions).  ArrowHead's 251-row windows make five steps of 32 an epoch; steps of 16
# raised its mean event F1 from 0.719 to 0.782 over 18 bench.suite runs at the same training time.
# The shorter windows of the other sets kept their targets at 16 but trained up to half as long
# again (the suite: 15.6 min against its 15), so they keep 32.
AUTO_BATCH, LONG_WINDOW_BATCH = 32, 16
MAX_SPLIT_TRIES = 50  # whole-task hold-outs tried for one whose classes the training tasks all hold
Progress = Callable[[object], None]  # gets a str line, or an ``EpochReport`` (its str is the line)


class TrainingError(SegmenterError):
    """Training cannot start: no usable annotated task, or nothing to learn."""


@dataclass
class Example:
    """One task's series for one target with its per-row classes."""

    task_id: object
    series: Series
    rows: RowLabels


def collect_examples(
    tasks: list[dict], target: Target, fetcher: Fetcher
) -> tuple[list[Example], list[str]]:
    """Training examples from tasks with a counted annotation; unreadable tasks are skipped.

    Returns the examples and one message per skipped task.
    """
    examples, skipped = [], []
    for task in tasks:
        shutdown.check()  # a download may take a while: a stopping service does not wait for the rest
        annotation = choose_annotation(task)
        if annotation is None:
            continue
        try:
            series = read_task_series(task, target, fetcher)
        except TaskDataError as exc:
            log.error("training skips %s", exc)
            skipped.append(str(exc))
            continue
        rows = row_labels(series, annotation.get("result") or [], target, task.get("id"))
        examples.append(Example(task.get("id"), series, rows))
    return examples, skipped


def class_mask(example: Example) -> int:
    """The classes ``example`` holds as bits (bit k: class k); layered labels count where any row has them."""
    mask = 0
    for c in np.unique(example.rows.class_ids):
        mask |= 1 << int(c)
    p = example.rows.presence
    if p is not None:
        mask |= int(np.bitwise_or.reduce(p[p > 0], initial=0)) << 1
    return mask


def covers(train: list[int], val: list[int]) -> bool:
    """Whether every class of the validation masks also occurs in the training masks."""
    return reduce(or_, val, 0) & ~reduce(or_, train, 0) == 0


def block_bounds(n: int, fold: float) -> tuple[int, int] | None:
    """The 20% block of ``n`` rows held out at ``fold`` of the length; None when too short to spare a row."""
    cut = int(round(n * (1 - VALIDATION_FRACTION)))
    if cut < 1 or n - cut < 1:
        return None
    lo = min(int(round(n * fold)), cut)
    return lo, lo + n - cut


def rows_of(example: Example, sl: slice) -> Example:
    """The rows ``sl`` of ``example``."""
    s = Series(example.series.time[sl], example.series.values[sl], example.series.time_kind)
    presence = None if example.rows.presence is None else example.rows.presence[sl]
    return Example(example.task_id, s, replace(example.rows, class_ids=example.rows.class_ids[sl], presence=presence))


def hold_out_rows(example: Example, fold: float) -> tuple[list[Example], Example | None]:
    """The rows of ``example`` before and after its 20% block at ``fold``, and the block (None: too short)."""
    n = len(example.series)
    bounds = block_bounds(n, fold)
    if bounds is None:
        return [example], None
    lo, hi = bounds
    return [rows_of(example, slice(a, b)) for a, b in ((0, lo), (hi, n)) if b > a], rows_of(example, slice(lo, hi))


def split(
    examples: list[Example], rng: np.random.Generator, fold: float = SINGLE_TASK_FOLDS[0]
) -> tuple[list[Example], list[Example], str]:
    """Training and validation examples, and how validation was chosen.

    Several series: whole tasks (20%, at least one) are held out, chosen so
    that every class of the validation tasks also occurs in the training tasks
    (the seeded order first, then its rotations): judged on a class it never
    sees, a network's validation loss is lowest after the first epoch and that
    near-uniform network would be kept.  When no whole tasks can (e.g. each
    of two tasks holds a class the other lacks), every task holds out
    a 20% block of its rows instead, at the first of ``SINGLE_TASK_FOLDS``
    where the training rows hold every validation class.
    A single series holds out 20% of its rows starting at ``fold`` of its length
    and trains on the rows before and after.
    """
    if len(examples) >= 2:
        n_val = max(1, round(VALIDATION_FRACTION * len(examples)))
        masks = [class_mask(e) for e in examples]
        order = rng.permutation(len(examples))
        for shift in range(min(len(examples), MAX_SPLIT_TRIES)):
            held = set(np.roll(order, -shift)[:n_val].tolist())
            if covers([m for i, m in enumerate(masks) if i not in held], [masks[i] for i in held]):
                val = [e for i, e in enumerate(examples) if i in held]
                train = [e for i, e in enumerate(examples) if i not in held]
                return train, val, f"held-out tasks {[e.task_id for e in val]}"
        tries = []
        for at in SINGLE_TASK_FOLDS:
            parts = [hold_out_rows(e, at) for e in examples]
            train = [kept for kept_parts, _ in parts for kept in kept_parts]
            val = [block for _, block in parts if block is not None]
            tries.append((train, val, at))
            if covers([class_mask(e) for e in train], [class_mask(e) for e in val]):
                break
        else:
            train, val, at = tries[0]
        if not val:
            return examples, examples, "the training data itself (series too short to hold out rows)"
        where = {0.8: "the last 20%", 0.0: "the first 20%"}.get(at, f"20% from {at:.0%}")
        return train, val, (f"{where} of the rows of each task (every choice of whole held-out tasks "
                            f"holds a class the others lack)")
    only = examples[0]
    n = len(only.series)
    bounds = block_bounds(n, fold)
    if bounds is None:
        return examples, examples, "the training data itself (series too short to hold out rows)"
    train, block = hold_out_rows(only, fold)
    lo, hi = bounds
    where = f"last {n - lo} rows" if hi == n else f"rows {lo}-{hi - 1}"
    return train, [block], f"{where} of task {only.task_id}"


def choose_context(
    examples: list[Example], settings: TrainingSettings, context: Duration | None = None
) -> tuple[int, dict]:
    """The window length in rows, and how it was chosen (saved in the model's info).

    The project's ``model_context`` wins: a duration, converted to rows with
    the median row spacing of the examples, at least 2 rows, and at most the
    median length of the annotated series and ``MAX_CONTEXT_ROWS``: a longer
    one would pad every series to it and widen the network's strided
    convolution with it, so it is refused (the window is then chosen as
    without it, and ``problem`` in the info says why).  Then
    ``SEQUENCE_SIZE`` set by the operator.  Otherwise the window follows
    the timescale of the annotations: the lower quartile of the runs of one
    class (annotated ranges and the gaps between them), so a window holds a
    short event whole however many rows per second the signal has, kept
    between 24 and 4096 rows and within the longest series (a shorter one is
    padded).  Half of it (the rule before ``bench.suite``) cut ItalyPowerDemand's
    24-row recordings into windows of 16; whole, its worst event F1 rose from
    0.81 to 0.87, and JapaneseVowels' from 0.83 to 0.88 when the floor rose from
    16 rows to 24 (docs/benchmarks.md).
    """
    if context is None:
        return _default_context(examples, settings)
    spacing = float(np.median([row_spacing(e.series) for e in examples]))
    size = max(MIN_CONTEXT_ROWS, context.rows(spacing))
    typical = int(np.median([len(e.series) for e in examples]))
    limit = min(MAX_CONTEXT_ROWS, max(MIN_CONTEXT_ROWS, typical))
    if size <= limit:
        return size, {"sequence_size": size, "chosen_by": "model_context", "model_context": str(context),
                      "row_spacing": spacing}
    size, info = _default_context(examples, settings)
    problem = (f"model_context={str(context)!r}: {_rows_text(context, spacing)} here, longer than {limit} rows "
               f"(the median annotated series, at most {MAX_CONTEXT_ROWS}); using the default: "
               f"{size} rows chosen by {info['chosen_by']}")
    return size, {**info, "model_context": str(context), "row_spacing": spacing, "problem": problem}


def _rows_text(context: Duration, spacing: float) -> str:
    rows = context.rows(spacing)
    return f"more than {rows} rows" if rows == MAX_DURATION_ROWS else f"{rows} rows"


def _default_context(examples: list[Example], settings: TrainingSettings) -> tuple[int, dict]:
    """The window without ``model_context``: ``SEQUENCE_SIZE``, else chosen from the annotations."""
    if settings.sequence_size is not None:
        return settings.sequence_size, {"sequence_size": settings.sequence_size, "chosen_by": "SEQUENCE_SIZE"}
    runs = []
    for e in examples:
        ids = e.rows.class_ids
        edges = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1, [len(ids)]])
        runs.append(np.diff(edges))
    lengths = np.concatenate(runs)
    quartile = float(np.percentile(lengths, CONTEXT_QUANTILE))
    longest = max(len(e.series) for e in examples)
    size = int(np.clip(round(quartile), MIN_CONTEXT, max(MIN_CONTEXT, min(MAX_CONTEXT, longest))))
    return size, {
        "sequence_size": size,
        "chosen_by": "annotations",
        "runs": int(len(lengths)),
        "run_rows_lower_quartile": round(quartile, 1),
    }


def members_for(examples: list[Example], settings: TrainingSettings) -> int:
    """How many networks a project of several tasks averages: ``TRAIN_MEMBERS``, else three up to
    ``ENSEMBLE_MAX_ROWS`` annotated rows and one above."""
    if settings.members is not None:
        return settings.members
    return AUTO_MEMBERS if sum(len(e.series) for e in examples) <= ENSEMBLE_MAX_ROWS else 1


def batch_size_for(sequence_size: int, settings: TrainingSettings) -> int:
    """Windows per training step: ``BATCH_SIZE``, else ``LONG_WINDOW_BATCH`` for a window whose network
    merges positions (over 200 rows) and ``AUTO_BATCH`` below."""
    if settings.batch_size is not None:
        return settings.batch_size
    _, merge = reach(down_factor(sequence_size))
    return LONG_WINDOW_BATCH if merge > 1 else AUTO_BATCH


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse class frequency over the training rows, capped; absent classes weigh 1."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(np.minimum(weights, MAX_CLASS_WEIGHT), dtype=torch.float32)


@dataclass
class Validation:
    loss: float
    balanced_accuracy: float
    min_class_f1: float
    per_class_f1: dict[int, float]
    confusion: list[list[int]] | None = None  # rows: true class, columns: predicted class


def validate(net: SegmenterNet, val: list[Example], model: TrainedModel, balanced: bool) -> Validation:
    """Predict the held-out series as inference does and score them, in windows of the training length.

    Inference cuts a long series into windows twice as long (``prediction_window``); judged on those,
    training kept checkpoints that scored worse on the suite's test series (ArrowHead's mean event F1
    0.758 against 0.797, ItalyPowerDemand's worst 0.800 against 0.839).
    """
    n_classes = len(model.target.classes)
    truth, pred, nll = [], [], []
    for example in val:
        probs = window_probabilities(net, model.normalise(example.series.values), model.sequence_size)
        y = example.rows.class_ids
        truth.append(y)
        pred.append(probs.argmax(axis=1))
        nll.append(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-8, None)))
    y, p, loss = np.concatenate(truth), np.concatenate(pred), np.concatenate(nll)
    if balanced:
        per_class = [loss[y == c].mean() for c in np.unique(y)]
        mean_loss = float(np.mean(per_class))
    else:
        mean_loss = float(loss.mean())
    s = class_scores(y, p, n_classes)
    active = np.flatnonzero((s.true_count + s.pred_count) > 0)
    per_class = {int(c): float(s.f1[c]) for c in active}
    # A class the held-out rows lack has F1 0 after one stray predicted row: it would hold
    # the thresholds out of reach; its false positives still lower the other classes' F1.
    judged = [f for c, f in per_class.items() if c not in model.instant_classes and s.true_count[c] > 0]
    return Validation(mean_loss, s.balanced_accuracy, min(judged) if judged else 0.0, per_class, s.confusion.tolist())


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch, as the progress callback gets it; ``str()`` is the log line."""

    target: str
    epoch: int
    max_epochs: int
    train_loss: float
    validation: Validation
    best_epoch: int
    epochs_left_at_most: int  # before early stopping ends the fit, if the loss stops improving now

    def __str__(self) -> str:
        v = self.validation
        return (
            f"{self.target} epoch {self.epoch}: train loss {self.train_loss:.4f} "
            f"val loss {v.loss:.4f} balanced acc {v.balanced_accuracy:.3f} min F1 {v.min_class_f1:.3f}"
        )


def validate_layers(net: SegmenterNet, val: list[Example], model: TrainedModel, balanced: bool) -> Validation:
    """``validate`` for a multi-label model: each label scored as present / absent per row.

    Balanced accuracy is the mean over labels, the loss the mean binary
    cross-entropy over labels (balanced: present and absent rows weigh alike).
    """
    n_labels = len(model.target.labels)
    bits = np.arange(n_labels)
    truth, probs = [], []
    for example in val:
        probs.append(
            window_probabilities(net, model.normalise(example.series.values), model.sequence_size, sigmoid=True)
        )
        truth.append((example.rows.presence[:, None] >> bits[None, :]) & 1)
    y, p = np.concatenate(truth), np.clip(np.concatenate(probs), 1e-7, 1 - 1e-7)
    per_f1, accuracies, losses, judged = {}, [], [], []
    for k in range(n_labels):
        t = y[:, k]
        s = class_scores(t, (p[:, k] > 0.5).astype(np.int64), 2)
        nll = -(t * np.log(p[:, k]) + (1 - t) * np.log(1 - p[:, k]))
        if balanced and 0 < t.sum() < len(t):
            losses.append(0.5 * (nll[t == 1].mean() + nll[t == 0].mean()))
        else:
            losses.append(nll.mean())
        if (s.true_count[1] + s.pred_count[1]) > 0:
            per_f1[k + 1] = float(s.f1[1])
            accuracies.append(s.balanced_accuracy)
        if s.true_count[1] > 0 and k + 1 not in model.instant_classes:
            judged.append(float(s.f1[1]))  # as in ``validate``: labels the held-out rows hold
    return Validation(
        float(np.mean(losses)),
        float(np.mean(accuracies)) if accuracies else 0.0,
        min(judged) if judged else 0.0,
        per_f1,
    )


def label_weights(presence: np.ndarray, n_labels: int) -> torch.Tensor:
    """Per-label positive weights for the binary loss: absent rows / present rows, between 1 and the cap."""
    present = ((presence[presence >= 0][:, None] >> np.arange(n_labels)[None, :]) & 1).sum(axis=0)
    absent = (presence >= 0).sum() - present
    weights = np.where(present > 0, absent / np.maximum(present, 1), 1.0)
    return torch.tensor(np.clip(weights, 1.0, MAX_CLASS_WEIGHT), dtype=torch.float32)


@dataclass
class Fit:
    """What the fit loop ends with: the best checkpoint's validation and why it stopped."""

    best: Validation
    best_epoch: int
    epochs: int
    thresholds_met: bool
    stopped_because: str


def thresholds_met(v: Validation, settings: TrainingSettings) -> bool:
    """Whether a validation is good enough: balanced accuracy and the weakest judged class's F1."""
    return (v.balanced_accuracy >= settings.balanced_accuracy_threshold
            and v.min_class_f1 >= settings.min_class_f1_threshold)


# Epochs without improvement allowed, as a multiple of the patience, while the thresholds are unmet
# (bench.patience: 6 rather than 3 lifts ArrowHead, whose networks often never meet them, from worst
# event F1 0.457 to 0.500 and mean macro-F1 0.799 to 0.809, for 6% more summed training; every other
# set scores the same).
UNMET_PATIENCE_FACTOR = 6


@dataclass
class EarlyStop:
    """Which epoch's checkpoint to keep and when to stop, from each epoch's validation alone.

    The best checkpoint: thresholds met first, then lowest loss.  Training stops after
    ``patience`` epochs without a validation-loss improvement once the thresholds have been
    met, ``unmet_patience`` (default ``UNMET_PATIENCE_FACTOR`` times ``patience``) while they
    have not.  ``fit`` feeds it; ``bench.patience`` replays recorded epochs through it to see
    where another rule would have stopped.
    """

    patience: int
    unmet_patience: int | None = None
    best_key: tuple[bool, float] | None = None
    best_epoch: int = 0
    lowest_loss: float = math.inf
    since_improved: int = 0
    ever_met: bool = False

    def record(self, epoch: int, loss: float, met: bool) -> bool:
        """Take one epoch's validation; whether its checkpoint is now the best."""
        self.ever_met |= met
        key = (met, -loss)
        best = self.best_key is None or key > self.best_key
        if best:
            self.best_key, self.best_epoch = key, epoch
        if loss < self.lowest_loss - 1e-4:
            self.lowest_loss, self.since_improved = loss, 0
        else:
            self.since_improved += 1
        return best

    def __post_init__(self) -> None:
        if self.unmet_patience is None:
            self.unmet_patience = UNMET_PATIENCE_FACTOR * self.patience

    @property
    def allowed(self) -> int:
        """Epochs without improvement allowed now: ``patience`` once the thresholds have been met."""
        return self.patience if self.ever_met else self.unmet_patience

    @property
    def epochs_left(self) -> int:
        """Epochs before stopping if the loss does not improve again."""
        return self.allowed - self.since_improved

    def reason(self) -> str | None:
        """Why training stops now, or None while it goes on."""
        if self.since_improved < self.allowed:
            return None
        met = "thresholds met" if self.ever_met else "thresholds not met"
        return f"{met}, no validation-loss improvement for {self.allowed} epochs"


def augmented(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Windows ``x`` (batch, rows, channels) with each window's channels scaled by 1 +- ``amount`` and
    Gaussian noise of a tenth of ``amount`` added: the same motion recorded with another gain and noise."""
    if amount <= 0:
        return x
    scale = rng.uniform(1 - amount, 1 + amount, (len(x), 1, x.shape[2])).astype(np.float32)
    return x * scale + rng.normal(0, amount / 10, x.shape).astype(np.float32)


def fit(
    model: TrainedModel,
    source: WindowSource,
    val: list[Example],
    settings: TrainingSettings,
    rng: np.random.Generator,
    weights: torch.Tensor | None,
    progress: Progress | None = None,
    budget: float | None = None,
) -> Fit:
    """Train ``model.net`` on the windows of ``source`` with early stopping; keeps the best checkpoint.

    ``budget`` (seconds, default ``settings.time_budget``) ends the fit early, keeping the best so far.
    """
    net, n_classes = model.net, model.net.head.out_features
    on = next(net.parameters()).device
    if weights is not None:
        weights = weights.to(on)
    # One fused kernel for every parameter (CPU and CUDA have it): the default steps each tensor
    # from Python, 1 ms of a 7 ms step on JapaneseVowels' short windows.
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, fused=True)
    allowed = settings.time_budget if budget is None else budget
    deadline = time.monotonic() + allowed
    stride = max(1, model.sequence_size // 2)
    batch = batch_size_for(model.sequence_size, settings)
    stop, best_state, best_val, reason = EarlyStop(settings.patience), None, None, "epoch cap"
    judge = validate_layers if model.multi_label else validate
    for epoch in range(1, settings.epochs + 1):
        net.train()
        starts = source.starts(stride, jitter=rng)
        starts = starts[rng.permutation(len(starts))]
        epoch_loss = 0.0
        for i in range(0, len(starts), batch):
            shutdown.check()  # a stopping service ends the fit here, never with a thread inside torch
            x, y = source.gather(starts[i : i + batch])
            if (y >= 0).sum() == 0:
                continue
            logits = net(torch.from_numpy(augmented(x, settings.augment, rng)).to(on))
            target = torch.from_numpy(y).to(on)
            if model.multi_label:  # y holds each row's labels as bits; -1 is padding
                bits = ((target[..., None] >> torch.arange(n_classes, device=on)) & 1).float()
                mask = (target >= 0).float()[..., None]
                per = F.binary_cross_entropy_with_logits(logits, bits, pos_weight=weights, reduction="none")
                loss = (per * mask).sum() / (mask.sum() * n_classes)
            else:
                loss = F.cross_entropy(
                    logits.reshape(-1, n_classes), target.reshape(-1), weight=weights, ignore_index=-1
                )
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            epoch_loss += loss.item() * len(x)
        v = judge(net, val, model, settings.use_class_weights)
        if stop.record(epoch, v.loss, thresholds_met(v, settings)):
            best_state, best_val = copy.deepcopy(net.state_dict()), v
        if progress is not None:
            progress(EpochReport(
                model.target.from_name, epoch, settings.epochs, epoch_loss / max(1, len(starts)), v, stop.best_epoch,
                max(0, min(settings.epochs - epoch, stop.epochs_left)),
            ))
        if (why := stop.reason()) is not None:
            reason = why
            break
        if time.monotonic() > deadline:
            reason = f"time budget of {allowed:.3g} s spent"
            break
    net.load_state_dict(best_state)
    net.eval()
    return Fit(best_val, stop.best_epoch, epoch, bool(stop.best_key[0]), reason)


def training_record(
    examples: list[Example], target: Target, settings: TrainingSettings, result: Fit, held_out: str, seconds: float
) -> dict:
    """The metadata saved with a model: when, how long, why it stopped, validation and data."""
    class_rows = np.bincount(
        np.concatenate([e.rows.class_ids for e in examples]), minlength=len(target.classes)
    )
    labelled = {int(c) for e in examples for c in np.unique(e.rows.class_ids)} - {0}
    best = result.best
    return {
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train_seconds": round(seconds, 2),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "stopped_because": result.stopped_because,
        "validation": {
            "held_out": held_out,
            "loss": round(best.loss, 5),
            "balanced_accuracy": round(best.balanced_accuracy, 4),
            "min_class_f1": round(best.min_class_f1, 4),
            "per_class_f1": {target.classes[c]: round(f, 4) for c, f in best.per_class_f1.items()},
            "thresholds_met": result.thresholds_met,
            "confusion": {"classes": list(target.classes), "rows": best.confusion},
        },
        "data": {
            "tasks": len(examples),
            "rows": int(class_rows.sum()),
            "class_rows": {target.classes[c]: int(n) for c, n in enumerate(class_rows)},
            "labelled_classes": sorted(target.classes[c] for c in labelled),
        },
        "settings": dict(vars(settings)),
        "device": str(device.current()),
    }


def train_target(
    examples: list[Example],
    target: Target,
    settings: TrainingSettings,
    progress: Progress | None = None,
    project: ProjectSettings | None = None,
) -> TrainedModel:
    """Fit one network for ``target`` and return the best validation checkpoint with its record.

    ``project`` (the control's ``model_*`` settings) overrides the window and the epoch cap.
    """
    if not examples:
        raise TrainingError(f"no annotated task to train {target.from_name!r} on")
    project = project or default_settings(target.from_name, target.labels, settings)
    settings = replace(settings, epochs=project.max_epochs)
    started = time.monotonic()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    if settings.series_norm:  # each whole task standardised once, before any of its rows are held out
        examples = [replace(e, series=replace(e.series, values=standardised(e.series.values))) for e in examples]
    train, val, held_out = split(examples, rng)

    train_values = np.concatenate([e.series.values for e in train])
    mean = train_values.mean(axis=0).astype(np.float32)
    std = train_values.std(axis=0).astype(np.float32)
    std[std < MIN_STD] = 1.0

    marked_instant = set().union(*(e.rows.instant_classes for e in examples))
    ranged = set().union(*(e.rows.range_classes for e in examples))
    instant_classes = frozenset(marked_instant - ranged)
    lengths = [n for e in examples for n in e.rows.range_lengths]
    min_rows = max(1, min(lengths) // 2) if lengths else 1

    size, context = choose_context(examples, settings, project.context)
    if "problem" in context:
        log.warning("label config: <TimeSeriesLabels name=%r> %s", target.from_name, context["problem"])
    factor = context["lstm_rows_per_step"] = down_factor(size)
    dilations, merge = reach(factor)
    context["reach_rows_merged"], context["reach_dilations"] = merge, list(dilations)  # dilations in positions
    kernel = context["row_kernel"] = row_kernel(factor)
    # Overlapping regions: one sigmoid per label; otherwise one softmax class per row, as always.
    multi = len(target.labels) <= MAX_LAYERED_LABELS and any(e.rows.overlaps for e in examples)
    n_classes = len(target.labels) if multi else len(target.classes)
    # One task: three networks, each holding out another part of it.  Several tasks: ``members``
    # networks, the first on the split above, the others each on its own random hold-out of tasks.
    one_task = len(examples) == 1 and val is not examples
    folds = SINGLE_TASK_FOLDS if one_task else SINGLE_TASK_FOLDS[:1] * members_for(examples, settings)
    nets, fits = [], []
    for k, fold in enumerate(folds):
        if k:
            torch.manual_seed(settings.seed + k)
            rng = np.random.default_rng([settings.seed, k])
            train, val, held_out_k = split(examples, rng, fold)
        net = SegmenterNet(len(target.channels), n_classes, settings.hidden_size, factor, dilations, merge, kernel)
        net.to(device.current())
        member = TrainedModel(  # without series_norm: the examples are already standardised then
            target, net, mean, std, size, settings.hidden_size, instant_classes, min_rows, multi_label=multi
        )
        rows = [e.rows.presence if multi else e.rows.class_ids for e in train]
        source = WindowSource.build([member.normalise(e.series.values) for e in train], rows, size)
        weigh = label_weights if multi else class_weights
        weights = weigh(np.concatenate(rows), n_classes) if settings.use_class_weights else None
        # Each network gets an equal share of what is left of the budget: a small project's
        # networks stop on their validation curve long before it, a large one's share it evenly.
        share = max(0.0, settings.time_budget - (time.monotonic() - started)) / (len(folds) - k)
        result = fit(member, source, val, settings, rng, weights, progress, share)
        nets.append(net)
        fits.append((result, held_out if k == 0 else held_out_k))
    net = nets[0] if len(nets) == 1 else Ensemble(nets, multi_label=multi).eval()
    model = TrainedModel(
        target, net, mean, std, size, settings.hidden_size, instant_classes, min_rows, multi_label=multi,
        series_norm=settings.series_norm,
    )
    model.reference = Reference.build(  # every annotated row, validation included: what a human has seen
        [member.normalise(e.series.values) for e in examples],  # (already standardised with series_norm)
        [e.rows.presence if multi else e.rows.class_ids for e in examples], size,
    )
    model.info = training_record(examples, target, settings, fits[0][0], held_out, time.monotonic() - started)
    model.info["context"] = context
    model.info["multi_label"] = multi
    model.info["members"] = len(nets)
    model.info["batch_size"] = batch_size_for(size, settings)
    model.info["trained_with"] = project.training_key()
    if len(nets) > 1:
        model.info["ensemble"] = [
            {"held_out": where, "best_epoch": r.best_epoch, "balanced_accuracy": round(r.best.balanced_accuracy, 4),
             "min_class_f1": round(r.best.min_class_f1, 4)}
            for r, where in fits
        ]
    return model


def train_project(
    label_config: str,
    tasks: list[dict],
    fetcher: Fetcher,
    settings: TrainingSettings,
    progress: Progress | None = None,
) -> list[TrainedModel]:
    """One trained model per target of ``label_config``, from the annotated ``tasks``.

    Each target trains under its control's ``model_*`` settings; bad ones are logged and left at their defaults.
    """
    models = []
    project_settings = read_settings(label_config, settings)
    for problem in (p for s in project_settings.values() for p in s.problems):
        log.warning("label config: %s", problem)
    for target in parse_label_config(label_config):
        examples, skipped = collect_examples(tasks, target, fetcher)
        if not examples:
            detail = f"; {len(skipped)} unreadable: {skipped[:3]}" if skipped else ""
            raise TrainingError(f"no task with a submitted annotation for {target.from_name!r}{detail}")
        model = train_target(examples, target, settings, progress, project_settings.get(target.from_name))
        model.info["data"]["skipped_tasks"] = skipped
        models.append(model)
    return models
