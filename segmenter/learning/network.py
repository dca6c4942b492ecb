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
convolution alone sees a shape 5 rows at a time.  With ``TRAIN_DILATED``, two
residual convolutions dilated 4 and 8 rows (``reach``) first widen each row's
features to 29 rows, so a step knows the stroke it sits in (``bench.suite``:
ArrowHead, 251-row outlines at 11 rows a step, worst event F1 0.50 -> 0.67, at
1.8x the training time).  Models saved before they existed have none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONV_FEATURES = 32
CONV_KERNEL = 5
LSTM_STEPS = 25
REACH_DILATIONS = (4, 8)  # each tiles the features below it: 5 -> 13 -> 29 rows seen
# Rows per step from which a network may get them: GunPoint's 150-row windows (6 a step) gained nothing
# from dilation 4 alone and lost a little in the tails, ArrowHead's 251-row ones (11) gained most.
REACH_MIN_FACTOR = 9


def down_factor(sequence_size: int) -> int:
    """Rows merged per LSTM step for a window of ``sequence_size`` rows (2 for today's 50)."""
    return max(2, -(-sequence_size // LSTM_STEPS))


def reach_dilations(factor: int) -> tuple[int, ...]:
    """Dilations of the residual convolutions for ``factor`` rows per LSTM step: none under
    ``REACH_MIN_FACTOR`` (windows up to 200 rows train and predict as before), else 4 and 8."""
    return REACH_DILATIONS if factor >= REACH_MIN_FACTOR else ()


class SegmenterNet(nn.Module):
    """(batch, rows, channels) -> (batch, rows, classes) logits."""

    def __init__(
        self, n_channels: int, n_classes: int, hidden_size: int, down: int = 2, dilations: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        per_direction = max(1, hidden_size // 2)
        self.factor = down
        self.conv = nn.Conv1d(n_channels, CONV_FEATURES, CONV_KERNEL, padding=CONV_KERNEL // 2)
        self.reach = nn.ModuleList(
            nn.Conv1d(CONV_FEATURES, CONV_FEATURES, 3, dilation=d, padding=d) for d in dilations
        )
        self.down = nn.Conv1d(CONV_FEATURES, CONV_FEATURES, kernel_size=down, stride=down)
        self.lstm = nn.LSTM(CONV_FEATURES, per_direction, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * per_direction + CONV_FEATURES, n_classes)

    @property
    def dilations(self) -> tuple[int, ...]:
        """The residual convolutions' dilations, as their layers hold them (saved with the model)."""
        return tuple(layer.dilation[0] for layer in self.reach)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[1]
        extra = -rows % self.factor
        half = CONV_KERNEL // 2
        # The convolutions run as matrix products on their own weights, with the features held
        # as (batch, rows, features): the layers' mkldnn backward passes took a third of a
        # training step on 150-250-row windows, and their (batch, features, rows) made ``down``
        # copy every feature of every row into step order (a quarter of the network's time on a
        # long series), where now a step's rows are one contiguous block.  ``conv`` takes each
        # row's 5-row neighbourhood plus a 1 for its bias.  The rows padding the last step get
        # features 0, as the strided convolution padded them.
        padded = F.pad(x, (0, 0, half, half))
        taps = [padded[:, k : k + rows] for k in range(CONV_KERNEL)]  # (batch, rows, channels) each
        cols = torch.cat([*taps, torch.ones_like(x[..., :1])], dim=2)  # (batch, rows, 5*channels + 1)
        weight = torch.cat([self.conv.weight.transpose(1, 2).flatten(1), self.conv.bias[:, None]], dim=1)
        local = torch.relu(torch.matmul(cols, weight.T))  # (batch, rows, features)
        for layer in self.reach:  # the same way: each row's rows -d, 0, +d side by side
            d = layer.dilation[0]
            wide = F.pad(local, (0, 0, d, d))
            near = torch.cat([wide[:, :rows], local, wide[:, 2 * d :]], dim=2)  # (batch, rows, 3*features)
            local = local + torch.relu(F.linear(near, layer.weight.transpose(1, 2).flatten(1), layer.bias))
        local = F.pad(local, (0, 0, 0, extra)) if extra else local  # the last step's padding rows: 0
        blocks = local.unflatten(1, (-1, self.factor)).flatten(2)  # (batch, steps, factor*features), a view
        steps = torch.relu(F.linear(blocks, self.down.weight.transpose(1, 2).flatten(1), self.down.bias))
        context, _ = self.lstm(steps)
        # The head is linear, so its context half is applied per LSTM step and only the class
        # scores are stretched: the same logits as heading the joined features, without copying
        # ``hidden_size`` + 32 features per row (half the network's time on a long series).
        split = context.shape[-1]
        per_step = F.linear(context, self.head.weight[:, :split]).transpose(1, 2)
        per_row = torch.matmul(self.head.weight[:, split:], local.transpose(1, 2)) + self.head.bias[:, None]
        logits = (per_step.repeat_interleave(self.factor, dim=2) + per_row)[:, :, :rows]
        return logits.transpose(1, 2)  # held as (batch, classes, rows): see ``probabilities``


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            presence = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(dim=0)
            presence = presence.clamp(1e-7, 1 - 1e-7)
            return torch.log(presence) - torch.log1p(-presence)
        probs = torch.stack([probabilities(m(x)).transpose(1, 2) for m in self.members]).mean(dim=0)
        return torch.log(probs.clamp_min(1e-12)).transpose(1, 2)  # (batch, classes, rows) as a member's
