"""The network: per-row class scores for a window of multichannel samples.

A small 1-D convolution extracts local shape (slopes, peaks) from the
normalised channels, a bidirectional LSTM gives every row context from both
sides of the window, and a linear head scores the classes.  ``hidden_size``
is the width of the LSTM output (half per direction), so the default 64 costs
about as much as a one-directional LSTM of 64 while seeing both sides.
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
        self.conv = nn.Conv1d(n_channels, CONV_FEATURES, CONV_KERNEL, padding=CONV_KERNEL // 2)
        self.lstm = nn.LSTM(CONV_FEATURES, max(1, hidden_size // 2), batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * max(1, hidden_size // 2), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        context, _ = self.lstm(features)
        return self.head(context)
