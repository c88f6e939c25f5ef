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
``action_bound`` b: actions are meant to lie in [−b, b]^action_dim (math.inf: unbounded); envs whose dynamics
saturate clip them themselves (gradient 0 beyond the bound).

Cutting the graph between windows (truncated BPTT, SHAC-style short horizons): there is exactly one way,
``state = state.detach()``. States carry the whole autograd history of the rollout that produced them and
nothing else does (envs keep no state between calls), so detaching the state you carry into the next window
is all it takes.

The envs (each module's docstring has its equations):

=====================  ===================================  =====  =====  =======  =========  ============
class                  task                                 state  obs    action   horizon    terminates
=====================  ===================================  =====  =====  =======  =========  ============
``DiffPendulum``       Gymnasium's Pendulum-v1, exactly     2      3      1, ±2    200        never
``CartPoleSwingUp``    SHAC's cart-pole swing-up            4      5      1, ±1    240        never
``DiffLQR``            x' = Ax + Bu, quadratic cost         n      n      m, ±∞    50         never
``ContactToy``         point mass vs a penalty-spring wall  2      2      1, ±∞    50         past x_limit
=====================  ===================================  =====  =====  =======  =========  ============

``DiffLQR`` also gives exact references (``expected_return``, ``riccati_gains``, ``optimal_gain``,
``optimal_return``); ``ContactToy.contact_force`` is a per-step contact signal for horizon-adaptive methods.

The same tasks for model-free algorithms: ``DiffGymEnv`` (a ``gymnasium.Env``, registered as
``pgrad/DiffPendulum-v0``, ``pgrad/CartPoleSwingUp-v0``, ``pgrad/DiffLQR-v0``, ``pgrad/ContactToy-v0`` when
this package is imported; defaults in ``pgrad.envs.diff.registration``) and ``DiffVecEnv`` (a batched
``pgrad.envs.base.VecEnv`` with same-step autoreset, the ``--backend native`` twin of those ids).
"""

from __future__ import annotations

from pgrad.envs.base import DiffEnv
from pgrad.envs.diff.cartpole_swingup import CartPoleSwingUp
from pgrad.envs.diff.contact import ContactToy
from pgrad.envs.diff.gym_adapter import DiffGymEnv
from pgrad.envs.diff.lqr import DiffLQR
from pgrad.envs.diff.pendulum import DiffPendulum
from pgrad.envs.diff.registration import DIFF_ENV_FACTORIES, make_diff_env, register_envs
from pgrad.envs.diff.vec_env import NATIVE_DIFF_ENVS, DiffVecEnv

__all__ = [
    "DIFF_ENV_FACTORIES",
    "NATIVE_DIFF_ENVS",
    "CartPoleSwingUp",
    "ContactToy",
    "DiffEnv",
    "DiffGymEnv",
    "DiffLQR",
    "DiffPendulum",
    "DiffVecEnv",
    "make_diff_env",
    "register_envs",
]

register_envs()  # the Gymnasium ids pgrad/DiffPendulum-v0, … (see registration.py)
