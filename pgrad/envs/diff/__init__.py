"""Differentiable batched torch environments: the differentiable-environment family's playground.

Every env here is a plain object with a functional, batched interface (no hidden episode state, no in-place
ops on anything that requires grad), differentiable in state and action, in float32 or float64:

    state = env.reset(batch_size, generator=None)           # [N, state_dim], env.dtype
    next_state, reward, terminated = env.step(state, action) # [N, state_dim], [N], [N] bool
    obs = env.observe(state)                                 # [N, obs_dim]

``action`` is [N, action_dim]; ``step`` computes in the dtype and on the device of ``state``. ``terminated``
marks a true terminal next state (detached); ``horizon`` is the episode length the caller cuts episodes at (a
truncation, to be bootstrapped from V(final observation) — see ``pgrad.estimators.pathwise.bptt_loss``).
After a termination the caller resets that row (e.g. ``torch.where(terminated[:, None], env.reset(N), s)``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from pgrad.envs.diff.contact import ContactToy
from pgrad.envs.diff.lqr import DiffLQR

__all__ = ["ContactToy", "DiffEnv", "DiffLQR"]


@runtime_checkable
class DiffEnv(Protocol):
    """What a differentiable env provides (structural: nothing needs to subclass it)."""

    state_dim: int
    obs_dim: int
    action_dim: int
    horizon: int
    dtype: torch.dtype

    def reset(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor: ...

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...

    def observe(self, state: Tensor) -> Tensor: ...
