"""Where torch runs: the ``DEVICE`` setting resolved once per process.

``auto`` picks CUDA when torch sees a GPU and the CPU otherwise; ``cuda``
insists on a GPU (start-up stops with a ``ConfigError`` naming ``DEVICE``
when there is none); ``cpu`` never uses one.  ``bootstrap`` calls ``use``;
training and inference ask ``current`` where to put the network and tensors.
Saved weights are always moved to the CPU, so a model trained on a GPU loads
on a machine without one.
"""

from __future__ import annotations

import torch

from segmenter.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
_current = torch.device("cpu")


def resolve(name: str) -> torch.device:
    """The torch device for a ``DEVICE`` value."""
    if name == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        raise ConfigError("DEVICE='cuda' but torch finds no CUDA device (use auto or cpu)")
    if name not in DEVICES:
        raise ConfigError(f"DEVICE={name!r} must be one of {', '.join(DEVICES)}")
    return torch.device("cuda") if available else torch.device("cpu")


def use(name: str) -> torch.device:
    """Make ``name`` this process's device and return it."""
    global _current
    _current = resolve(name)
    return _current


def current() -> torch.device:
    """The device training and inference run on (the CPU until ``use`` says otherwise)."""
    return _current
