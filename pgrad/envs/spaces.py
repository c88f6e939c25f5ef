"""Observation and action spaces: which ones pgrad supports, how observations become flat float tensors, and
how a space is described in a checkpoint's JSON."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from pgrad.errors import EnvError

OBSERVATION_SPACES = (spaces.Box, spaces.Discrete)
ACTION_SPACES = (spaces.Box, spaces.Discrete)


def check_spaces(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    algorithm: str,
    env: str,
    action_spaces: tuple[type[spaces.Space], ...] = ACTION_SPACES,
) -> None:
    """Reject spaces the algorithm cannot handle before the first step, naming the space and algorithm."""
    if not isinstance(observation_space, OBSERVATION_SPACES):
        raise EnvError(
            f"env '{env}': observation space {observation_space} is not supported by {algorithm} "
            f"(supported: {', '.join(s.__name__ for s in OBSERVATION_SPACES)}); flatten it with a wrapper"
        )
    if isinstance(observation_space, spaces.Box) and not np.issubdtype(observation_space.dtype, np.number):
        raise EnvError(f"env '{env}': observation space {observation_space} has a non-numeric dtype")
    if not isinstance(action_space, action_spaces):
        raise EnvError(
            f"env '{env}': action space {action_space} is not supported by {algorithm} "
            f"(supported: {', '.join(s.__name__ for s in action_spaces)})"
        )
    if isinstance(action_space, spaces.Box) and len(action_space.shape) != 1:
        raise EnvError(
            f"env '{env}': action space {action_space} is not supported by {algorithm} "
            "(Box actions must be 1-D vectors)"
        )


def obs_dim(observation_space: spaces.Space) -> int:
    """Length of the flat float vector an observation becomes (one-hot for Discrete)."""
    if isinstance(observation_space, spaces.Discrete):
        return int(observation_space.n)
    return int(np.prod(observation_space.shape))


def obs_to_tensor(
    space: spaces.Space,
    obs: np.ndarray,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A batch of raw observations [B, *shape] as flat float vectors [B, D] (one-hot for Discrete)."""
    if isinstance(space, spaces.Discrete):
        index = torch.as_tensor(np.asarray(obs) - space.start, dtype=torch.long)
        return torch.nn.functional.one_hot(index, int(space.n)).to(device, dtype)
    flat = np.asarray(obs).reshape(len(obs), -1)
    return torch.as_tensor(flat, device=device, dtype=dtype)


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """JSON description of a Box or Discrete space (for checkpoints)."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": str(space.dtype),
        }
    raise EnvError(f"cannot describe space {space} (only Box and Discrete)")


def space_from_dict(data: dict[str, Any]) -> spaces.Space:
    """Inverse of `space_to_dict`."""
    if data["type"] == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    low = np.asarray(data["low"], dtype=data["dtype"]).reshape(data["shape"])
    high = np.asarray(data["high"], dtype=data["dtype"]).reshape(data["shape"])
    return spaces.Box(low, high, dtype=data["dtype"])
