"""The network's forward pass: matrix products on the layers' weights give what the layers themselves give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segmenter.learning.network import Ensemble, SegmenterNet, down_factor, probabilities, reach_dilations
from segmenter.learning.trained_model import window_probabilities


def reference(net: SegmenterNet, x: torch.Tensor) -> torch.Tensor:
    """The logits as the layers compute them: convolution, residual dilated convolutions, strided
    convolution, LSTM, head on the joined features."""
    rows, down = x.shape[1], net.factor
    local = torch.relu(net.conv(x.transpose(1, 2)))
    for layer in net.reach:
        local = local + torch.relu(layer(local))
    padded = torch.nn.functional.pad(local, (0, -rows % down))
    context, _ = net.lstm(torch.relu(net.down(padded)).transpose(1, 2))
    stretched = context.repeat_interleave(down, dim=1)[:, :rows]
    return net.head(torch.cat([stretched, local.transpose(1, 2)], dim=-1))


@pytest.mark.parametrize(
    "rows,down,dilations", [(85, 4, ()), (50, 2, ()), (7, 3, ()), (150, 6, ()), (150, 6, (4,)), (251, 11, (4, 8)),
                            (5, 11, (4, 8))]
)
def test_forward_equals_the_layers(rows: int, down: int, dilations: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = SegmenterNet(3, 5, 64, down, dilations).eval()
    x = torch.randn(4, rows, 3)
    with torch.inference_mode():
        assert net(x).shape == (4, rows, 5)
        assert torch.allclose(net(x), reference(net, x), atol=1e-5)


@pytest.mark.parametrize("dilations", [(), (4, 8)])
def test_gradients_equal_the_layers(dilations: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = SegmenterNet(2, 3, 16, 5, dilations)
    x, weights = torch.randn(3, 48, 2), torch.randn(3, 48, 3)
    grads = []
    for forward in (net, lambda v: reference(net, v)):
        net.zero_grad()
        (forward(x) * weights).sum().backward()
        grads.append({name: p.grad.clone() for name, p in net.named_parameters()})
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-5), name


def test_only_windows_over_200_rows_get_the_dilated_layers() -> None:
    by_window = {w: reach_dilations(down_factor(w)) for w in (24, 100, 150, 200, 201, 251, 4096)}
    assert by_window == {24: (), 100: (), 150: (), 200: (), 201: (4, 8), 251: (4, 8), 4096: (4, 8)}
    net = SegmenterNet(2, 3, 16, down_factor(150), reach_dilations(down_factor(150)))
    assert len(net.reach) == 0 and not any("reach" in name for name in net.state_dict())


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
