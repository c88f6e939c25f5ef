"""One optimiser factory used by every algorithm: `make_optimizer("adam", params, lr=3e-4)`."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from pgrad.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """Build a torch optimiser by name: sgd, adam, adamw or rmsprop."""
    if lr <= 0:
        raise ConfigError(f"learning rate must be > 0, got {lr}")
    params = list(params)
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if key == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer '{name}' (known: {', '.join(OPTIMIZERS)})")
