"""Exact tabular MDP models (FrozenLake's own table, seeded random MDPs) and a Gymnasium env sampling them.

A `TabularMDP` holds the whole model as float64 torch tensors: ``P [S, A, S']`` transition probabilities,
``R [S, A]`` expected rewards, ``rho [S]`` start distribution, ``gamma``, and optionally ``terminal [S]``
(bool) and ``transition_rewards [S, A, S']`` (the reward of each transition s, a → s'; R = Σ_s' P r).
`pgrad.lab.exact` computes values and exact policy gradients from it; `TabularEnv` samples from it so that
sample-based estimators run on the very same MDP (through `GymVecEnv`: see `tabular_vec_env`).

Discounting convention. A Gymnasium episode ends when it enters a terminal state (FrozenLake's holes and
goal). The model makes terminal states absorbing with zero reward, so the infinite-horizon discounted value

    J = E[Σ_{t≥0} γᵗ r_t]   (s_0 ~ rho, the model run forever)

equals the expected discounted return of the episodic env *without* a time limit, and the horizon-H value
(`pgrad.lab.exact.tabular_finite_horizon`) equals the expected return of the env truncated after H steps
(FrozenLake-v1's registered time limit is H = 100; FrozenLake8x8-v1's is 200). With terminal states, γ = 1 is
allowed (the undiscounted probability of success), provided episodes end with probability 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError, EnvError

__all__ = ["TabularEnv", "TabularMDP", "from_toy_text", "frozen_lake", "random_mdp", "tabular_vec_env"]

_TOL = 1e-9  # tolerance of the probability checks (rows of P and rho sum to 1)


def _as_float(x: Any, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(x).to(dtype)


@dataclass
class TabularMDP:
    """A finite MDP with known dynamics: see the module docstring.

    Attributes:
        P: ``[S, A, S']`` transition probabilities P(s'|s, a); rows sum to 1.
        R: ``[S, A]`` expected reward of taking a in s.
        rho: ``[S]`` start distribution.
        gamma: discount factor in [0, 1].
        terminal: ``[S]`` bool, absorbing states with zero reward where an episode ends (or None).
        transition_rewards: ``[S, A, S']`` reward of each transition (or None: the reward is R[s, a]). Only
            `TabularEnv` reads it (to sample rewards as the original env gives them); exact values use R.
        name: a label (env names, error messages).

    Tensors are cast to one floating dtype: float64, unless ``P`` is a floating tensor of another dtype.
    The constructor checks shapes, probabilities and that terminal states are absorbing with zero reward.
    """

    P: Tensor
    R: Tensor
    rho: Tensor
    gamma: float
    terminal: Tensor | None = None
    transition_rewards: Tensor | None = None
    name: str = field(default="tabular")

    def __post_init__(self) -> None:
        P = torch.as_tensor(self.P)
        dtype = P.dtype if P.is_floating_point() else torch.float64
        self.P = P.to(dtype)
        self.R = _as_float(self.R, dtype)
        self.rho = _as_float(self.rho, dtype)
        where = f"TabularMDP '{self.name}'"
        if self.P.ndim != 3 or self.P.shape[0] != self.P.shape[2] or self.P.shape[0] < 1:
            raise ConfigError(f"{where}: P must have shape [S, A, S], got {tuple(self.P.shape)}")
        S, A = self.P.shape[:2]
        if self.R.shape != (S, A):
            raise ConfigError(f"{where}: R must have shape [{S}, {A}], got {tuple(self.R.shape)}")
        if self.rho.shape != (S,):
            raise ConfigError(f"{where}: rho must have shape [{S}], got {tuple(self.rho.shape)}")
        if not (torch.isfinite(self.P).all() and (self.P >= 0).all()):
            raise ConfigError(f"{where}: P must hold finite probabilities >= 0")
        row_error = (self.P.sum(-1) - 1).abs().max().item()
        if row_error > _TOL * max(S, 1):
            raise ConfigError(f"{where}: rows of P must sum to 1 (largest error {row_error:.3g})")
        if not torch.isfinite(self.R).all():
            raise ConfigError(f"{where}: R must be finite")
        if not (torch.isfinite(self.rho).all() and (self.rho >= 0).all()):
            raise ConfigError(f"{where}: rho must hold finite probabilities >= 0")
        if abs(self.rho.sum().item() - 1) > _TOL * max(S, 1):
            raise ConfigError(f"{where}: rho must sum to 1, sums to {self.rho.sum().item():.12g}")
        if isinstance(self.gamma, bool) or not 0.0 <= float(self.gamma) <= 1.0:
            raise ConfigError(f"{where}: gamma must be in [0, 1], got {self.gamma!r}")
        self.gamma = float(self.gamma)
        if self.terminal is not None:
            self.terminal = torch.as_tensor(self.terminal, device=self.P.device).to(torch.bool)
            if self.terminal.shape != (S,):
                raise ConfigError(
                    f"{where}: terminal must have shape [{S}], got {tuple(self.terminal.shape)}"
                )
            index = self.terminal.nonzero().squeeze(-1)
            stays = self.P[index, :, index]  # [T, A]: P(s|s, a) for each terminal s
            if (stays < 1 - _TOL).any() or (self.R[self.terminal] != 0).any():
                raise ConfigError(f"{where}: terminal states must be absorbing (P(s|s, a) = 1) with R = 0")
        if self.transition_rewards is not None:
            self.transition_rewards = _as_float(self.transition_rewards, dtype)
            if self.transition_rewards.shape != (S, A, S):
                raise ConfigError(
                    f"{where}: transition_rewards must have shape [{S}, {A}, {S}], "
                    f"got {tuple(self.transition_rewards.shape)}"
                )
            expected = (self.P * self.transition_rewards).sum(-1)
            if not torch.allclose(expected, self.R, rtol=1e-9, atol=1e-12):
                raise ConfigError(f"{where}: R must equal Σ_s' P(s'|s, a) transition_rewards[s, a, s']")

    @property
    def num_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def num_actions(self) -> int:
        return int(self.P.shape[1])

    @property
    def live(self) -> Tensor:
        """``[S]`` bool: states where the episode is still running (not terminal)."""
        if self.terminal is None:
            return torch.ones(self.num_states, dtype=torch.bool, device=self.P.device)
        return ~self.terminal

    def with_gamma(self, gamma: float) -> TabularMDP:
        """The same MDP with another discount factor."""
        return replace(self, gamma=gamma)

    def to(self, dtype: torch.dtype) -> TabularMDP:
        """A copy with every floating tensor cast to ``dtype``."""
        cast = None if self.transition_rewards is None else self.transition_rewards.to(dtype)
        return replace(
            self, P=self.P.to(dtype), R=self.R.to(dtype), rho=self.rho.to(dtype), transition_rewards=cast
        )


def from_toy_text(
    env: gym.Env | str, gamma: float, name: str | None = None, **make_kwargs: Any
) -> TabularMDP:
    """The exact model of a Gymnasium toy-text env from its own table ``env.unwrapped.P``.

    ``P[s][a]`` is a list of ``(prob, next_s, reward, terminated)``; duplicate next states are summed. A state
    entered by a terminated transition becomes terminal: absorbing with zero reward (what the env does next
    is never seen, since the episode ends). The start distribution is ``env.unwrapped.initial_state_distrib``.
    Works for FrozenLake and CliffWalking; raises `ConfigError` for envs where termination is not a property
    of the state entered (Taxi: the same state is entered with and without termination).

    Args:
        env: an env or an env id (then ``gym.make(env, **make_kwargs)``).
        gamma: discount factor of the model.
        name: label; defaults to the env id.
    """
    made = gym.make(env, **make_kwargs) if isinstance(env, str) else env
    base = made.unwrapped
    label = name or (made.spec.id if made.spec is not None else type(base).__name__)
    table = getattr(base, "P", None)
    start = getattr(base, "initial_state_distrib", None)
    if not isinstance(table, dict) or start is None:
        raise ConfigError(f"from_toy_text: env '{label}' has no transition table P / initial_state_distrib")
    if not isinstance(base.observation_space, spaces.Discrete) or not isinstance(
        base.action_space, spaces.Discrete
    ):
        raise ConfigError(f"from_toy_text: env '{label}' must have Discrete observation and action spaces")
    S, A = int(base.observation_space.n), int(base.action_space.n)
    P = np.zeros((S, A, S))
    r = np.zeros((S, A, S))
    seen_reward = np.zeros((S, A, S), dtype=bool)
    entered_terminal = np.zeros(S, dtype=bool)
    entered_live = np.zeros(S, dtype=bool)
    for s in range(S):
        for a in range(A):
            for prob, nxt, reward, done in table[s][a]:
                nxt = int(nxt)
                if prob <= 0:
                    continue
                if seen_reward[s, a, nxt] and r[s, a, nxt] != reward:
                    raise ConfigError(
                        f"from_toy_text: env '{label}': transition ({s}, {a}) → {nxt} has two rewards"
                    )
                P[s, a, nxt] += prob
                r[s, a, nxt] = reward
                seen_reward[s, a, nxt] = True
                (entered_terminal if done else entered_live)[nxt] = True
    both = np.flatnonzero(entered_terminal & entered_live)
    if both.size:
        raise ConfigError(
            f"from_toy_text: env '{label}': states {both[:5].tolist()} are entered both with and without "
            "termination, so termination is not a property of the state (not representable here)"
        )
    terminal = entered_terminal
    index = np.flatnonzero(terminal)  # terminal states absorb with zero reward
    P[index] = 0.0
    P[index, :, index] = 1.0
    r[index] = 0.0
    rho = np.asarray(start, dtype=np.float64)
    return TabularMDP(
        P=torch.from_numpy(P),
        R=torch.from_numpy((P * r).sum(-1)),
        rho=torch.from_numpy(rho / rho.sum()),
        gamma=gamma,
        terminal=torch.from_numpy(terminal),
        transition_rewards=torch.from_numpy(r),
        name=label,
    )


def frozen_lake(
    map_name: str | None = "4x4", is_slippery: bool = True, gamma: float = 0.99, **kwargs: Any
) -> TabularMDP:
    """FrozenLake's exact model, from Gymnasium's own table (``gym.make("FrozenLake-v1", ...).unwrapped.P``).

    Reward 1 on entering the goal (the env's ``reward_schedule`` applies if given); holes and goal are
    terminal (absorbing, zero reward). States are ``row * ncol + col``, actions 0..3 = left, down, right, up.
    Extra keyword arguments (``desc``, ``success_rate``, ``reward_schedule``) go to ``gym.make``.
    """
    env = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=is_slippery, **kwargs)
    slip = "slippery" if is_slippery else "deterministic"
    label = f"FrozenLake-{map_name or 'custom'}-{slip}"
    try:
        return from_toy_text(env, gamma, name=label)
    finally:
        env.close()


def random_mdp(
    num_states: int = 5,
    num_actions: int = 3,
    gamma: float = 0.9,
    seed: int = 0,
    *,
    concentration: float = 1.0,
    branching: int | None = None,
    reward_scale: float = 1.0,
) -> TabularMDP:
    """A seeded random MDP without terminal states.

    Each row P(·|s, a) is Dirichlet(``concentration``) over ``branching`` random next states (all states
    when None); R[s, a] ~ U(0, reward_scale); rho ~ Dirichlet(1). The same arguments give the same MDP.
    """
    if num_states < 1 or num_actions < 1:
        raise ConfigError(
            f"random_mdp: num_states and num_actions must be >= 1, got {num_states}, {num_actions}"
        )
    if not concentration > 0:
        raise ConfigError(f"random_mdp: concentration must be > 0, got {concentration}")
    k = num_states if branching is None else int(branching)
    if not 1 <= k <= num_states:
        raise ConfigError(f"random_mdp: branching must be in [1, {num_states}], got {branching}")
    rng = np.random.default_rng(seed)
    P = np.zeros((num_states, num_actions, num_states))
    for s in range(num_states):
        for a in range(num_actions):
            support = rng.choice(num_states, size=k, replace=False)
            P[s, a, support] = rng.dirichlet(np.full(k, concentration))
    R = rng.uniform(0.0, reward_scale, size=(num_states, num_actions))
    rho = rng.dirichlet(np.ones(num_states))
    return TabularMDP(
        P=torch.from_numpy(P),
        R=torch.from_numpy(R),
        rho=torch.from_numpy(rho),
        gamma=gamma,
        name=f"random-mdp-S{num_states}-A{num_actions}-seed{seed}",
    )


def _sample(cdf: np.ndarray, last: int, u: float) -> int:
    # first index with cdf > u; `last` (the last index of positive probability) guards against round-off
    return min(int(np.searchsorted(cdf, u, side="right")), last)


class TabularEnv(gym.Env):
    """A Gymnasium env sampling a `TabularMDP`: Discrete(S) observations, Discrete(A) actions.

    ``reset`` draws s_0 ~ rho; ``step(a)`` draws s' ~ P(·|s, a) and gives the reward
    ``transition_rewards[s, a, s']`` when the model has them (FrozenLake: 1 on entering the goal), else
    R[s, a]. ``terminated`` = s' is terminal; ``truncated`` = ``max_episode_steps`` steps were taken (as
    Gymnasium's ``TimeLimit``). ``reset(options={"state": s})`` starts from s instead of s_0 ~ rho.
    Without terminal states and with ``max_episode_steps=None`` episodes never end (a continuing task:
    collect fixed-length rollouts). All randomness comes from ``self.np_random``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, mdp: TabularMDP, max_episode_steps: int | None = None):
        if not isinstance(mdp, TabularMDP):
            raise ConfigError(f"TabularEnv: mdp must be a TabularMDP, got {type(mdp).__name__}")
        if max_episode_steps is not None and (isinstance(max_episode_steps, bool) or max_episode_steps < 1):
            raise ConfigError(
                f"TabularEnv: max_episode_steps must be >= 1 or None, got {max_episode_steps!r}"
            )
        self.mdp = mdp
        self.max_episode_steps = max_episode_steps
        P = mdp.P.detach().cpu().double().numpy()
        self._cdf = np.cumsum(P, axis=-1)
        self._last = P.shape[-1] - 1 - np.argmax(P[..., ::-1] > 0, axis=-1)  # [S, A]
        rho = mdp.rho.detach().cpu().double().numpy()
        self._rho_cdf = np.cumsum(rho)
        self._rho_last = len(rho) - 1 - int(np.argmax(rho[::-1] > 0))
        self._terminal = np.zeros(mdp.num_states, dtype=bool)
        if mdp.terminal is not None:
            self._terminal = mdp.terminal.cpu().numpy().astype(bool)
            if (rho[self._terminal] > 0).any():
                raise ConfigError(f"TabularEnv '{mdp.name}': rho puts mass on terminal states")
        self._rewards = None
        if mdp.transition_rewards is not None:
            self._rewards = mdp.transition_rewards.detach().cpu().double().numpy()
        self._R = mdp.R.detach().cpu().double().numpy()
        self.observation_space = spaces.Discrete(mdp.num_states)
        self.action_space = spaces.Discrete(mdp.num_actions)
        self.state = 0
        self.elapsed = 0
        self._done = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        start = None if options is None else options.get("state")
        if start is None:
            self.state = _sample(self._rho_cdf, self._rho_last, self.np_random.random())
        elif isinstance(start, (int, np.integer)) and 0 <= start < self.mdp.num_states:
            if self._terminal[start]:
                raise EnvError(f"TabularEnv '{self.mdp.name}': reset to terminal state {start}")
            self.state = int(start)
        else:
            raise EnvError(
                f"TabularEnv '{self.mdp.name}': reset state {start!r} outside 0..{self.mdp.num_states - 1}"
            )
        self.elapsed = 0
        self._done = False
        return self.state, {}

    def step(self, action):
        if self._done:
            raise EnvError(f"TabularEnv '{self.mdp.name}': step() after the episode ended; call reset()")
        s, a = self.state, int(action)
        if not 0 <= a < self.mdp.num_actions:
            raise EnvError(f"TabularEnv '{self.mdp.name}': action {a} outside 0..{self.mdp.num_actions - 1}")
        nxt = _sample(self._cdf[s, a], int(self._last[s, a]), self.np_random.random())
        reward = self._R[s, a] if self._rewards is None else self._rewards[s, a, nxt]
        self.state = nxt
        self.elapsed += 1
        terminated = bool(self._terminal[nxt])
        truncated = self.max_episode_steps is not None and self.elapsed >= self.max_episode_steps
        self._done = terminated or truncated
        return nxt, float(reward), terminated, bool(truncated), {}


def tabular_vec_env(
    mdp: TabularMDP, num_envs: int = 1, max_episode_steps: int | None = None, **kwargs: Any
) -> GymVecEnv:
    """A `GymVecEnv` of ``num_envs`` `TabularEnv` copies of ``mdp`` (kwargs go to `GymVecEnv`, e.g. dtype)."""

    def factory() -> TabularEnv:
        return TabularEnv(mdp, max_episode_steps)

    factory.__qualname__ = mdp.name  # the env label in error messages
    maker: Callable[[], gym.Env] = factory
    return GymVecEnv(maker, num_envs, **kwargs)
