"""Argument checks shared by every estimator module: one-line `ConfigError`s that name the argument.

Conventions they enforce: no broadcasting between per-sample tensors (a silent broadcast is almost always a
bug), one device per call, bools are not numbers, flags are bool or 0/1 numbers (nonzero = set).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from pgrad.errors import ConfigError

# -- numbers -----------------------------------------------------------------------------------------------


def _traced(value: object) -> bool:
    """A tensor coefficient inside torch.compile: checked by the caller before the compiled call (`.item()`
    here would break the graph, and a Python float would be compiled in as a constant)."""
    return isinstance(value, Tensor) and torch.compiler.is_compiling()


def real(name: str, value: object, finite: bool = False) -> float:
    """A real Python number (or a one-element tensor, detached) as float; bools are rejected."""
    if _traced(value):
        return value  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Tensor):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ConfigError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().item()
    x = float(value)
    if finite and not math.isfinite(x):
        raise ConfigError(f"{name} must be finite, got {x}")
    return x


def positive(name: str, value: object) -> float:
    """A finite real number > 0."""
    if _traced(value):
        return value  # type: ignore[return-value]
    x = real(name, value)
    if not (x > 0.0 and math.isfinite(x)):
        raise ConfigError(f"{name} must be a finite number > 0, got {x}")
    return x


def non_negative(name: str, value: object) -> float:
    """A finite real number >= 0."""
    if _traced(value):
        return value  # type: ignore[return-value]
    x = real(name, value)
    if not (x >= 0.0 and math.isfinite(x)):
        raise ConfigError(f"{name} must be a finite number >= 0, got {x}")
    return x


def unit_interval(name: str, value: object) -> float:
    """A real number in [0, 1] (γ, λ)."""
    if _traced(value):
        return value  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Tensor):
        raise ConfigError(f"{name} must be a real number in [0, 1], got {value!r}")
    x = real(name, value)
    if not 0.0 <= x <= 1.0:  # also rejects NaN
        raise ConfigError(f"{name} must be in [0, 1], got {x}")
    return x


def int_at_least(name: str, value: object, low: int) -> int:
    """An integer (not a bool) >= low."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return int(value)


# -- tensors -----------------------------------------------------------------------------------------------


def tensor(name: str, x: object) -> Tensor:
    """A torch.Tensor, NOT detached (the caller decides)."""
    if not isinstance(x, Tensor):
        raise ConfigError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def float_tensor(name: str, x: object) -> Tensor:
    """A floating tensor, NOT detached (the caller decides)."""
    x = tensor(name, x)
    if not x.is_floating_point():
        raise ConfigError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def rewards_tensor(rewards: object, name: str = "rewards", time_major: bool = True) -> Tensor:
    """A floating tensor, detached; time-major ones need at least one (time) dimension."""
    rewards = float_tensor(name, rewards).detach()
    if time_major and rewards.ndim < 1:
        raise ConfigError(f"{name} must be time-major [T, N], got a 0-d tensor")
    return rewards


def same_shape(name: str, x: object, ref: Tensor, ref_name: str) -> Tensor:
    """A tensor with exactly the shape and device of ``ref`` (any dtype, not detached)."""
    x = tensor(name, x)
    if x.shape != ref.shape:
        raise ConfigError(
            f"{name} has shape {tuple(x.shape)}, expected the shape of {ref_name} {tuple(ref.shape)}"
        )
    if x.device != ref.device:
        raise ConfigError(f"{name} is on device {x.device}, expected the device of {ref_name} ({ref.device})")
    return x


def like(name: str, x: object, ref: Tensor, ref_name: str) -> Tensor:
    """A floating tensor with exactly the shape and device of ``ref``, cast to its dtype (not detached)."""
    x = same_shape(name, float_tensor(name, x), ref, ref_name)
    return x.to(ref.dtype)


def flags(name: str, x: object, ref: Tensor, ref_name: str = "rewards") -> Tensor:
    """terminated / truncated / mask shaped like ``ref``: bool, or 0/1 numbers; returned as bool, detached."""
    x = same_shape(name, x, ref, ref_name).detach()
    return x if x.dtype == torch.bool else x != 0


def optional_mask(mask: object, ref: Tensor, ref_name: str) -> Tensor | None:
    """The mask as a bool tensor shaped like ``ref``; None (every entry counts) when None.

    None takes the unmasked fast path everywhere: PPO calls the losses once per minibatch, and on small CPU
    networks the extra where/select kernels of an all-True mask cost as much as the loss itself.
    """
    return None if mask is None else flags("mask", mask, ref, ref_name)
