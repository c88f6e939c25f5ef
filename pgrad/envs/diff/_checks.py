"""Argument checks shared by the differentiable envs: each raises `ConfigError` with a one-line message."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from pgrad.errors import ConfigError


def _real(name: str, value: object, *, low: float | None = None, strict: bool = False) -> float:
    """A finite real number (bools rejected), optionally > low (strict) or >= low."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ConfigError(f"{name} must be finite, got {x}")
    if low is not None and (x <= low if strict else x < low):
        raise ConfigError(f"{name} must be {'>' if strict else '>='} {low}, got {x}")
    return x


def _int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _float_dtype(dtype: object) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype  # type: ignore[return-value]


def _check_state(state: object, dim: int, env: str) -> Tensor:
    if not isinstance(state, Tensor) or not state.is_floating_point():
        raise ConfigError(f"{env}: state must be a floating torch.Tensor [N, {dim}], got {state!r:.60}")
    if state.ndim != 2 or state.shape[1] != dim:
        raise ConfigError(f"{env}: state must have shape [N, {dim}], got {tuple(state.shape)}")
    return state


def _check_action(action: object, state: Tensor, dim: int, env: str) -> Tensor:
    if not isinstance(action, Tensor) or not action.is_floating_point():
        raise ConfigError(f"{env}: action must be a floating torch.Tensor [N, {dim}], got {action!r:.60}")
    if action.shape != (state.shape[0], dim):
        raise ConfigError(
            f"{env}: action must have shape [N, {dim}] = {(state.shape[0], dim)}, got {tuple(action.shape)}"
        )
    return action.to(state.dtype)


def _batch_size(batch_size: object) -> int:
    return _int("batch_size", batch_size, 1)


def _action_bound(value: object) -> float:
    """A bound b > 0 on |action| (math.inf: unbounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value <= 0:
        raise ConfigError(f"action_bound must be a number > 0 (math.inf: unbounded), got {value!r}")
    return float(value)


def _uniform(
    n: int, low: Tensor, high: Tensor, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """[n, d] uniform draws in [low, high) (float64, from ``generator``)."""
    u = torch.rand(n, low.shape[0], generator=generator, dtype=torch.float64, device=device)
    return low.to(device) + (high - low).to(device) * u
