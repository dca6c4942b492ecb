"""Progress bars of the command line: epochs while training, tasks and rows while predicting
(``predict``, and ``evaluate``'s test tasks).

Bars (tqdm) are drawn on stderr only when it is a terminal; in a pipe or a log
file nothing moves and each trained target ends with one summary line, so logs
stay short.  Results still go to stdout untouched.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from segmenter.learning.training import EpochReport


def interactive(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (bars are drawn only then)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class EpochBars:
    """The ``progress`` callback of ``train_project`` for the command line: one bar per target."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = interactive(self.stream)
        self._bar: tqdm | None = None
        self._last: EpochReport | None = None

    def __call__(self, message: object) -> None:
        if not isinstance(message, EpochReport):
            if self.live:
                tqdm.write(str(message), file=self.stream)
            return
        if self._last is not None and message.target != self._last.target:
            self.close()
        if self._bar is None:
            self._bar = tqdm(
                total=message.max_epochs, desc=f"{message.target} epochs", unit="epoch",
                file=self.stream, disable=not self.live, dynamic_ncols=True,
            )
        v = message.validation
        # Early stopping usually ends far before TRAIN_EPOCHS: the bar's end is the latest it can stop.
        self._bar.total = message.epoch + message.epochs_left_at_most
        self._bar.set_postfix(
            val_loss=f"{v.loss:.4f}", bal_acc=f"{v.balanced_accuracy:.3f}", min_f1=f"{v.min_class_f1:.3f}",
            refresh=False,
        )
        self._bar.update(message.epoch - self._bar.n)
        self._last = message

    def close(self) -> None:
        """End the current target's bar with a summary line (the only output in a pipe)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        last = self._last
        if last is not None:
            v = last.validation
            print(
                f"{last.target}: {last.epoch} epochs, best epoch {last.best_epoch}; last epoch val loss "
                f"{v.loss:.4f} balanced acc {v.balanced_accuracy:.3f} min F1 {v.min_class_f1:.3f}",
                file=self.stream, flush=True,
            )
        self._last = None


class PredictionBar:
    """Tasks predicted (the bar) and rows predicted (its postfix)."""

    def __init__(self, tasks: int, stream: TextIO | None = None, desc: str = "predict") -> None:
        stream = stream or sys.stderr
        self.rows = 0
        self._bar = tqdm(total=tasks, desc=desc, unit="task", file=stream, disable=not interactive(stream),
                         dynamic_ncols=True)

    def add_rows(self, rows: int) -> None:
        """Count the rows of one predicted series."""
        self.rows += rows
        self._bar.set_postfix(rows=f"{self.rows:,}", refresh=False)

    def task_done(self) -> None:
        """Advance by one task."""
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
