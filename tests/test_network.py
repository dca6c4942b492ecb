"""The network's forward pass: matrix products on the layers' weights give what the layers themselves give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import synthetic
from segmenter.learning.network import (
    CONV_FEATURES,
    Ensemble,
    SegmenterNet,
    down_factor,
    probabilities,
    reach,
    row_kernel,
)
from segmenter.learning.trained_model import TrainedModel, prediction_window, window_probabilities
from segmenter.reading.labelconfig import parse_label_config
from segmenter.reading.series import Series


def reference(net: SegmenterNet, x: torch.Tensor) -> torch.Tensor:
    """The logits as the layers compute them: convolution, merged positions and residual dilated
    convolutions (on the rows where none are merged), strided convolution, LSTM, head on the joined
    features."""
    rows, down, merge = x.shape[1], net.factor, net.merge
    local = torch.relu(net.conv(x.transpose(1, 2)))
    if merge == 1:
        for layer in net.reach:
            local = local + torch.relu(layer(local))
    padded = torch.nn.functional.pad(local, (0, -rows % down))
    coarse = padded
    if merge > 1:
        coarse = torch.relu(net.coarse(padded))
        for layer in net.reach:
            coarse = coarse + torch.relu(layer(coarse))
    context, _ = net.lstm(torch.relu(net.down(coarse)).transpose(1, 2))
    joined = [context.repeat_interleave(down, dim=1), padded.transpose(1, 2)]
    if merge > 1:
        joined.append(coarse.transpose(1, 2).repeat_interleave(merge, dim=1))
    return net.head(torch.cat(joined, dim=-1))[:, :rows]


@pytest.mark.parametrize(
    "rows,down,dilations,merge,kernel",
    [(85, 4, (), 1, 5), (85, 4, (), 1, 9), (50, 2, (), 1, 9), (7, 3, (), 1, 5), (7, 3, (), 1, 9), (150, 6, (), 1, 9),
     (150, 6, (4,), 1, 5), (251, 11, (4, 8), 1, 5), (5, 11, (4, 8), 1, 5), (251, 12, (1, 2), 4, 5),
     (201, 12, (1, 2), 4, 5), (5, 12, (1, 2), 4, 5), (64, 8, (), 2, 5)],
)
def test_forward_equals_the_layers(rows: int, down: int, dilations: tuple[int, ...], merge: int, kernel: int) -> None:
    torch.manual_seed(0)
    net = SegmenterNet(3, 5, 64, down, dilations, merge, kernel).eval()
    x = torch.randn(4, rows, 3)
    with torch.inference_mode():
        assert net(x).shape == (4, rows, 5)
        assert torch.allclose(net(x), reference(net, x), atol=1e-5)


@pytest.mark.parametrize("down,dilations,merge,kernel", [(5, (), 1, 9), (5, (), 1, 5), (5, (4, 8), 1, 5),
                                                         (8, (1, 2), 4, 5)])
def test_gradients_equal_the_layers(down: int, dilations: tuple[int, ...], merge: int, kernel: int) -> None:
    torch.manual_seed(0)
    net = SegmenterNet(2, 3, 16, down, dilations, merge, kernel)
    x, weights = torch.randn(3, 48, 2), torch.randn(3, 48, 3)
    grads = []
    for forward in (net, lambda v: reference(net, v)):
        net.zero_grad()
        (forward(x) * weights).sum().backward()
        grads.append({name: p.grad.clone() for name, p in net.named_parameters()})
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-5), name


def test_only_windows_over_200_rows_get_merged_positions_and_the_reach_layers() -> None:
    by_window = {w: (down_factor(w), *reach(down_factor(w)), row_kernel(down_factor(w)))
                 for w in (24, 100, 150, 200, 201, 251, 4096)}
    assert by_window == {  # and the windows without them a first convolution 9 rows wide
        24: (2, (), 1, 9), 100: (4, (), 1, 9), 150: (6, (), 1, 9), 200: (8, (), 1, 9),
        201: (12, (1, 2), 4, 5), 251: (12, (1, 2), 4, 5), 4096: (164, (1, 2), 4, 5),
    }
    net = SegmenterNet(2, 3, 16, down_factor(150), *reach(down_factor(150)), row_kernel(down_factor(150)))
    assert net.merge == 1 and len(net.reach) == 0 and net.conv.weight.shape == (CONV_FEATURES, 2, 9)
    assert not any(part in name for name in net.state_dict() for part in ("reach", "coarse"))
    wide = SegmenterNet(2, 3, 16, down_factor(251), *reach(down_factor(251)))
    assert wide.merge == 4 and wide.dilations == (1, 2) and wide.down.kernel_size == (3,)
    with pytest.raises(ValueError, match="positions of 4 rows"):
        SegmenterNet(2, 3, 16, 11, (1, 2), 4)
    with pytest.raises(ValueError, match="no middle row"):
        SegmenterNet(2, 3, 16, 2, kernel=4)


def test_split_head_trains() -> None:
    torch.manual_seed(0)
    net = SegmenterNet(2, 3, 16, 2)
    net(torch.randn(2, 10, 2)).sum().backward()
    assert net.head.weight.grad is not None and net.head.weight.grad.abs().sum() > 0
    assert net.head.bias.grad is not None


def test_ensemble_is_the_mean_probability() -> None:
    torch.manual_seed(0)
    members = [SegmenterNet(2, 3, 16, 2).eval() for _ in range(3)]
    x = torch.randn(2, 10, 2)
    with torch.inference_mode():
        mean = torch.stack([torch.softmax(m(x), dim=-1) for m in members]).mean(dim=0)
        assert torch.allclose(torch.softmax(Ensemble(members)(x), dim=-1), mean, atol=1e-6)


def test_probabilities_are_the_softmax_over_the_classes_of_each_row() -> None:
    torch.manual_seed(0)
    net = SegmenterNet(2, 4, 16, 3).eval()
    x = torch.randn(3, 20, 2)
    with torch.inference_mode():
        logits = net(x)
        p = probabilities(logits)
        assert p.shape == (3, 20, 4)
        assert torch.allclose(p, torch.softmax(logits.contiguous(), dim=-1), atol=1e-6)
        assert torch.allclose(p.sum(dim=-1), torch.ones(3, 20))
        assert torch.equal(probabilities(logits, sigmoid=True), torch.sigmoid(logits))


@pytest.mark.parametrize("rows_per_batch", [1, 100, 1000])
def test_window_probabilities_do_not_depend_on_the_chunks(rows_per_batch: int) -> None:
    torch.manual_seed(0)
    net = SegmenterNet(2, 3, 16, 2).eval()
    values = np.random.default_rng(0).normal(size=(1003, 2)).astype(np.float32)
    whole = window_probabilities(net, values, 40, rows_per_batch=10**6)
    chunked = window_probabilities(net, values, 40, rows_per_batch=rows_per_batch)
    assert whole.shape == (1003, 3)
    assert np.allclose(whole.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(chunked, whole, atol=1e-6)


def test_prediction_windows_are_twice_the_training_window_where_the_series_holds_two() -> None:
    assert [prediction_window(40, n) for n in (1, 40, 79, 80, 1000)] == [40, 40, 40, 80, 80]


class _Probe(torch.nn.Module):
    """Equal logits for every row of 3 classes; remembers the window lengths it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(1, 3)
        self.seen: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(x.shape[1])
        return torch.zeros(x.shape[0], 3, x.shape[1]).transpose(1, 2)


@pytest.mark.parametrize(("rows", "window"), [(30, 40), (79, 40), (80, 80), (1003, 80)])
def test_a_model_cuts_a_series_of_two_training_windows_into_windows_twice_as_long(rows: int, window: int) -> None:
    [target] = parse_label_config(synthetic.label_config(channels=2))
    probe = _Probe()
    model = TrainedModel(target, probe, np.zeros(2, np.float32), np.ones(2, np.float32), 40, 16, frozenset(), 1)
    series = Series(np.arange(rows, dtype=np.float64), np.zeros((rows, 2)), "numeric")
    p = model.probabilities(series)
    assert probe.seen == {window}
    assert p.shape == (rows, 3)
    assert np.allclose(p, 1 / 3)
    probe.seen.clear()
    window_probabilities(probe, np.zeros((rows, 2), np.float32), 40)  # as validation cuts them
    assert probe.seen == {40}
