"""The network: per-row class scores for a window of multichannel samples.

A 1-D convolution extracts local shape (slopes, peaks) from the normalised
channels at full resolution.  A strided convolution halves the rows, a
bidirectional LSTM gives every (paired) row context from both sides of the
window, and its output is stretched back to full resolution and joined with
the full-resolution features, so a linear head can still place boundaries and
instants on the exact row.  Running the LSTM, the costly sequential part, over
half the rows halves most of the inference time on long series.
``hidden_size`` is the width of the LSTM output (half per direction).
"""

from __future__ import annotations

import torch
from torch import nn

CONV_FEATURES = 32
CONV_KERNEL = 5


class SegmenterNet(nn.Module):
    """(batch, rows, channels) -> (batch, rows, classes) logits."""

    def __init__(self, n_channels: int, n_classes: int, hidden_size: int) -> None:
        super().__init__()
        per_direction = max(1, hidden_size // 2)
        self.conv = nn.Conv1d(n_channels, CONV_FEATURES, CONV_KERNEL, padding=CONV_KERNEL // 2)
        self.down = nn.Conv1d(CONV_FEATURES, CONV_FEATURES, kernel_size=2, stride=2)
        self.lstm = nn.LSTM(CONV_FEATURES, per_direction, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * per_direction + CONV_FEATURES, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[1]
        local = torch.relu(self.conv(x.transpose(1, 2)))
        if rows % 2:
            local_even = torch.nn.functional.pad(local, (0, 1))
        else:
            local_even = local
        pairs = torch.relu(self.down(local_even)).transpose(1, 2)
        context, _ = self.lstm(pairs)
        context = context.repeat_interleave(2, dim=1)[:, :rows]
        return self.head(torch.cat([context, local.transpose(1, 2)], dim=-1))
