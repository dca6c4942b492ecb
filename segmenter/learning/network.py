"""The network: per-row class scores for a window of multichannel samples.

A 1-D convolution extracts local shape (slopes, peaks) from the normalised
channels at full resolution.  A strided convolution merges every ``down``
rows into one step, a bidirectional LSTM gives every step context from both
sides of the window, and its output is stretched back to full resolution and
joined with the full-resolution features, so a linear head can still place
boundaries and instants on the exact row.  ``down`` follows the window
(training picks it so the LSTM sees about ``LSTM_STEPS`` steps per window),
so a window of 400 rows costs the LSTM what one of 50 does; models saved
before ``down`` existed used 2.  ``hidden_size`` is the width of the LSTM
output (half per direction).

Where a step merges 9 rows or more (windows over 200 rows), the strided
convolution alone would see a shape 5 rows at a time.  Such a network first
merges every ``merge`` (4) rows into one position (``coarse``), and two residual
convolutions dilated 1 and 2 positions (``reach``: 4 and 8 rows) widen each
position's view to 32 rows before ``down`` merges positions into a step;
the head also sees each position's features.  At a quarter of the rows they cost
little (``bench.suite``: ArrowHead, 251-row outlines, mean event F1 0.644 ->
0.724 over 36 runs at about the same training time).  ``TRAIN_DILATED`` models of
2026-12-07 ran the reach at full resolution (``merge`` 1, dilated 4 and 8 rows),
models before it have none.

Without reach layers the first convolution is all a step's rows are seen through before
``down`` merges them, so it is wider there: 9 rows rather than 5 (``row_kernel``;
``bench.suite``, 18 paired runs: mean macro-F1 +0.006 on ItalyPowerDemand and +0.005 on
JapaneseVowels, the other sets unchanged; on ArrowHead, whose reach already sees 32 rows,
it cost 0.05 mean event F1).  Models saved before it use 5 everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONV_FEATURES = 32
CONV_KERNEL = 5  # rows the first convolution sees in a network with reach layers (and before row_kernel)
WIDE_KERNEL = 9  # rows it sees in a network without them
LSTM_STEPS = 25
REACH_MERGE = 4  # rows merged into one position before the reach layers
REACH_DILATIONS = (1, 2)  # in positions, each tiling the one below: 1 -> 3 -> 7 positions (28 rows) + 4
# Rows per step from which a network gets them: GunPoint's 150-row windows (6 a step) gained nothing
# and lost a little in the tails, ArrowHead's 251-row ones (11) gained most.
REACH_MIN_FACTOR = 9


def down_factor(sequence_size: int) -> int:
    """Rows merged per LSTM step for a window of ``sequence_size`` rows (2 for 50 rows); from
    ``REACH_MIN_FACTOR`` on a multiple of ``REACH_MERGE`` (251 rows: 12), so positions tile steps."""
    factor = max(2, -(-sequence_size // LSTM_STEPS))
    return factor if factor < REACH_MIN_FACTOR else -(-factor // REACH_MERGE) * REACH_MERGE


def reach(factor: int) -> tuple[tuple[int, ...], int]:
    """The reach layers' dilations (in positions) and the rows merged into a position, for ``factor``
    rows per LSTM step: ((), 1) under ``REACH_MIN_FACTOR`` (windows up to 200 rows), else ((1, 2), 4)."""
    return (REACH_DILATIONS, REACH_MERGE) if factor >= REACH_MIN_FACTOR else ((), 1)


def row_kernel(factor: int) -> int:
    """The first convolution's width in rows for ``factor`` rows per LSTM step: ``WIDE_KERNEL`` where
    the network has no reach layers (windows up to 200 rows), ``CONV_KERNEL`` where it has them."""
    dilations, _ = reach(factor)
    return CONV_KERNEL if dilations else WIDE_KERNEL


class SegmenterNet(nn.Module):
    """(batch, rows, channels) -> (batch, rows, classes) logits."""

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        hidden_size: int,
        down: int = 2,
        dilations: tuple[int, ...] = (),
        merge: int = 1,
        kernel: int = CONV_KERNEL,
    ) -> None:
        super().__init__()
        if down % merge:
            raise ValueError(f"{down} rows a step do not split into positions of {merge} rows")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"a first convolution of {kernel} rows has no middle row")
        per_direction = max(1, hidden_size // 2)
        self.factor = down
        self.conv = nn.Conv1d(n_channels, CONV_FEATURES, kernel, padding=kernel // 2)
        self.coarse = nn.Conv1d(CONV_FEATURES, CONV_FEATURES, merge, stride=merge) if merge > 1 else None
        self.reach = nn.ModuleList(
            nn.Conv1d(CONV_FEATURES, CONV_FEATURES, 3, dilation=d, padding=d) for d in dilations
        )
        self.down = nn.Conv1d(CONV_FEATURES, CONV_FEATURES, kernel_size=down // merge, stride=down // merge)
        self.lstm = nn.LSTM(CONV_FEATURES, per_direction, batch_first=True, bidirectional=True)
        row_features = CONV_FEATURES * (2 if merge > 1 else 1)  # a row's own, and its position's
        self.head = nn.Linear(2 * per_direction + row_features, n_classes)

    @property
    def dilations(self) -> tuple[int, ...]:
        """The residual convolutions' dilations, as their layers hold them (saved with the model)."""
        return tuple(layer.dilation[0] for layer in self.reach)

    @property
    def merge(self) -> int:
        """Rows merged into one position before the residual convolutions (1: none merged)."""
        return 1 if self.coarse is None else self.coarse.stride[0]

    @property
    def kernel(self) -> int:
        """Rows the first convolution sees (saved with the model)."""
        return self.conv.kernel_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[1]
        extra = -rows % self.factor
        kernel = self.kernel
        half = kernel // 2
        # The convolutions run as matrix products on their own weights, with the features held
        # as (batch, rows, features): the layers' mkldnn backward passes took a third of a
        # training step on 150-250-row windows, and their (batch, features, rows) made ``down``
        # copy every feature of every row into step order (a quarter of the network's time on a
        # long series), where now a step's rows are one contiguous block.  ``conv`` takes each
        # row's neighbourhood of ``kernel`` rows plus a 1 for its bias.  The rows padding the
        # last step get features 0, as the strided convolution padded them.
        padded = F.pad(x, (0, 0, half, half))
        taps = [padded[:, k : k + rows] for k in range(kernel)]  # (batch, rows, channels) each
        cols = torch.cat([*taps, torch.ones_like(x[..., :1])], dim=2)  # (batch, rows, kernel*channels + 1)
        weight = torch.cat([self.conv.weight.transpose(1, 2).flatten(1), self.conv.bias[:, None]], dim=1)
        local = torch.relu(torch.matmul(cols, weight.T))  # (batch, rows, features)
        if self.coarse is None:  # the residual layers of a TRAIN_DILATED model ran on the rows
            local = self._reached(local)
        local = F.pad(local, (0, 0, 0, extra)) if extra else local  # the last step's padding rows: 0
        coarse = local
        if self.coarse is not None:  # every ``merge`` rows one position, as ``down`` forms steps
            merged = local.unflatten(1, (-1, self.merge)).flatten(2)
            coarse = self._reached(torch.relu(F.linear(merged, *_as_linear(self.coarse))))
        blocks = coarse.unflatten(1, (-1, self.factor // self.merge)).flatten(2)  # (batch, steps, ...), a view
        steps = torch.relu(F.linear(blocks, *_as_linear(self.down)))
        context, _ = self.lstm(steps)
        # The head is linear, so its context half is applied per LSTM step (and its position part
        # per position) and only the class scores are stretched: the same logits as heading the
        # joined features, without copying ``hidden_size`` + 32 features per row (half the
        # network's time on a long series).
        split = context.shape[-1]
        weight = self.head.weight
        scores, stretch = F.linear(context, weight[:, :split]).transpose(1, 2), self.factor  # per step
        if self.coarse is not None:  # per position
            per_position = F.linear(coarse, weight[:, split + CONV_FEATURES :]).transpose(1, 2)
            scores, stretch = scores.repeat_interleave(self.factor // self.merge, dim=2) + per_position, self.merge
        own = weight[:, split : split + CONV_FEATURES]
        per_row = torch.matmul(own, local.transpose(1, 2)) + self.head.bias[:, None]
        logits = (scores.repeat_interleave(stretch, dim=2) + per_row)[:, :, :rows]
        return logits.transpose(1, 2)  # held as (batch, classes, rows): see ``probabilities``

    def _reached(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (batch, positions, features) through the residual dilated convolutions, each
        as ``conv`` runs: a position's positions -d, 0, +d side by side, then one matrix product."""
        n = features.shape[1]
        for layer in self.reach:
            d = layer.dilation[0]
            wide = F.pad(features, (0, 0, d, d))
            near = torch.cat([wide[:, :n], features, wide[:, 2 * d :]], dim=2)  # (batch, n, 3*features)
            features = features + torch.relu(F.linear(near, *_as_linear(layer)))
        return features


def _as_linear(layer: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution's weight and bias as a linear layer's over its taps' features side by side."""
    return layer.weight.transpose(1, 2).flatten(1), layer.bias


def probabilities(logits: torch.Tensor, sigmoid: bool = False) -> torch.Tensor:
    """Per-row probabilities (batch, rows, classes) from a network's logits: softmax over the
    classes, or one sigmoid per label (``sigmoid``).

    A network here holds its logits as (batch, classes, rows) in memory and hands out the
    transposed view; the softmax runs along the classes where they lie, 15 times faster than
    along the last axis (a few classes per row), which was a fifth of an ensemble's time.
    """
    if sigmoid:
        return torch.sigmoid(logits)
    return torch.softmax(logits.transpose(1, 2), dim=1).transpose(1, 2)


class Ensemble(nn.Module):
    """Networks of one target trained on different parts of the data, applied together.

    ``forward`` returns logits whose activation, as inference takes it, is the
    members' mean probability: the log of the mean class probabilities (softmax
    of it: the mean), or for a multi-label model the log-odds of each label's
    mean presence (sigmoid of it: the mean).
    """

    def __init__(self, members: list[SegmenterNet], multi_label: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.multi_label = multi_label

    @property
    def head(self) -> nn.Linear:
        return self.members[0].head

    @property
    def factor(self) -> int:
        return self.members[0].factor

    @property
    def dilations(self) -> tuple[int, ...]:
        return self.members[0].dilations

    @property
    def merge(self) -> int:
        return self.members[0].merge

    @property
    def kernel(self) -> int:
        return self.members[0].kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            presence = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(dim=0)
            presence = presence.clamp(1e-7, 1 - 1e-7)
            return torch.log(presence) - torch.log1p(-presence)
        probs = torch.stack([probabilities(m(x)).transpose(1, 2) for m in self.members]).mean(dim=0)
        return torch.log(probs.clamp_min(1e-12)).transpose(1, 2)  # (batch, classes, rows) as a member's
