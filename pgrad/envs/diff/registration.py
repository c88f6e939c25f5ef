"""Gymnasium ids of the differentiable envs, the default task behind each, and their registration.

=========================  ==============================================================================
id                         task (``make_diff_env(id, **kwargs)``; kwargs override the defaults)
=========================  ==============================================================================
pgrad/DiffPendulum-v0      ``DiffPendulum()``: Gymnasium's Pendulum-v1, 200 steps
pgrad/CartPoleSwingUp-v0   ``CartPoleSwingUp()``: SHAC's cart-pole swing-up, 240 steps
pgrad/DiffLQR-v0           ``DiffLQR.random(4, 2, seed=0, spectral_radius=0.95, action_bound=5.0)``: Q = I,
                           R = I, x₀ ~ N(0, I), 50 steps (stable open loop, so a random policy's return
                           stays bounded; expected return −27.4 with u = 0, −7.16 with the optimum)
pgrad/ContactToy-v0        ``ContactToy(action_bound=10.0)``: smooth reward, wall stiffness 1000, 50 steps
=========================  ==============================================================================

``register_envs()`` (run when ``pgrad.envs`` is imported) registers each id with the Gymnasium adapter
(``pgrad.envs.diff.gym_adapter.DiffGymEnv``, float64 simulation, float32 observations) and
``max_episode_steps`` = the default task's horizon. Keyword arguments of ``gymnasium.make`` go to the task's
constructor; one that changes ``horizon`` needs a matching ``max_episode_steps=`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from pgrad.envs.diff.cartpole_swingup import CartPoleSwingUp
from pgrad.envs.diff.contact import ContactToy
from pgrad.envs.diff.lqr import DiffLQR
from pgrad.envs.diff.pendulum import DiffPendulum
from pgrad.errors import EnvError

if TYPE_CHECKING:
    from pgrad.envs.base import DiffEnv

__all__ = ["DIFF_ENV_FACTORIES", "make_diff_env", "register_envs"]


def default_lqr(**kwargs: Any) -> DiffLQR:
    """The ``pgrad/DiffLQR-v0`` task (keyword arguments of ``DiffLQR.random`` override the defaults)."""
    defaults: dict[str, Any] = {"n": 4, "m": 2, "seed": 0, "spectral_radius": 0.95, "action_bound": 5.0}
    return DiffLQR.random(**{**defaults, **kwargs})


def default_contact_toy(**kwargs: Any) -> ContactToy:
    """The ``pgrad/ContactToy-v0`` task (keyword arguments of ``ContactToy`` override the defaults)."""
    return ContactToy(**{"action_bound": 10.0, **kwargs})


DIFF_ENV_FACTORIES: dict[str, Callable[..., DiffEnv]] = {
    "pgrad/DiffPendulum-v0": DiffPendulum,
    "pgrad/CartPoleSwingUp-v0": CartPoleSwingUp,
    "pgrad/DiffLQR-v0": default_lqr,
    "pgrad/ContactToy-v0": default_contact_toy,
}


def make_diff_env(env_id: str, **kwargs: Any) -> DiffEnv:
    """The differentiable env behind a registered id (kwargs, e.g. ``dtype``, go to its constructor)."""
    if env_id not in DIFF_ENV_FACTORIES:
        raise EnvError(f"no differentiable env '{env_id}' (available: {', '.join(DIFF_ENV_FACTORIES)})")
    try:
        return DIFF_ENV_FACTORIES[env_id](**kwargs)
    except TypeError as exc:
        raise EnvError(f"env '{env_id}': bad keyword arguments {sorted(kwargs)}: {exc}") from None


def register_envs() -> None:
    """Register every id of ``DIFF_ENV_FACTORIES`` with Gymnasium (idempotent)."""
    for env_id, factory in DIFF_ENV_FACTORIES.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="pgrad.envs.diff.gym_adapter:DiffGymEnv",
                kwargs={"env": env_id},
                max_episode_steps=factory().horizon,
            )
