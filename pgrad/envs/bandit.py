"""A contextual bandit: one-step episodes with a "prompt" and a reward table, the smallest GRPO/RLOO setting.

Each episode is one step. `reset(seed=…)` draws a context c uniformly among `num_contexts` (from the seed, so
a GRPO group reset with one seed shares its prompt); the observation is c's one-hot vector or a fixed random
feature vector; the action is one of `num_actions`; the reward is the table entry p[c, a] (deterministic) or
a Bernoulli(p[c, a]) draw. The table p ~ U(0, 1)^{C×A} and the feature vectors come from `table_seed` alone,
so every copy of the env (and every run) sees the same problem.

Bernoulli draws use the env's RNG, which `reset(seed=s)` reseeds: sub-envs reset with the same seed share the
uniform u of their reward draw (r = 1[u < p[c, a]]): common random numbers. Each reward keeps its
Bernoulli(p[c, a]) law and R_j stays independent of episode i's action, so group baselines stay unbiased.

`expected_reward(probs)` is the exact objective J(π) = 1/C Σ_c Σ_a π(a|c) p[c, a] of any policy given as a
[C, A] table of probabilities (for exact-gradient checks); `reward_table` is p and `contexts` the [C, D]
observations. Registered as `pgrad/ContextualBandit-v0` (keyword arguments go to `ContextualBandit`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from pgrad.errors import ConfigError

ENV_ID = "pgrad/ContextualBandit-v0"


class ContextualBandit(gym.Env):
    """See the module docstring.

    Args:
        num_contexts: number of contexts (prompts) C ≥ 1.
        num_actions: number of actions A ≥ 2.
        features: "one_hot" (observation = one-hot of c, D = C) or "random" (fixed N(0, 1) vectors,
            D = feature_dim).
        feature_dim: D for random features.
        reward: "bernoulli" (r ~ Bernoulli(p[c, a])) or "deterministic" (r = p[c, a]).
        table_seed: seed of the reward table and the feature vectors.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "episode_length": 1}  # every episode: 1 step

    def __init__(
        self,
        num_contexts: int = 8,
        num_actions: int = 4,
        features: Literal["one_hot", "random"] = "one_hot",
        feature_dim: int = 8,
        reward: Literal["bernoulli", "deterministic"] = "bernoulli",
        table_seed: int = 0,
    ):
        if num_contexts < 1 or num_actions < 2:
            raise ConfigError(
                "ContextualBandit: num_contexts must be >= 1 and num_actions >= 2, "
                f"got {num_contexts}, {num_actions}"
            )
        if features not in ("one_hot", "random"):
            raise ConfigError(f"ContextualBandit: features must be 'one_hot' or 'random', got '{features}'")
        if reward not in ("bernoulli", "deterministic"):
            raise ConfigError(
                f"ContextualBandit: reward must be 'bernoulli' or 'deterministic', got '{reward}'"
            )
        if features == "random" and feature_dim < 1:
            raise ConfigError(f"ContextualBandit: feature_dim must be >= 1, got {feature_dim}")
        self.num_contexts = int(num_contexts)
        self.num_actions = int(num_actions)
        self.reward_kind = reward
        rng = np.random.default_rng(table_seed)
        self.reward_table = rng.uniform(0.0, 1.0, size=(num_contexts, num_actions))
        if features == "one_hot":
            self.contexts = np.eye(num_contexts, dtype=np.float32)
            self.observation_space = spaces.Box(0.0, 1.0, shape=(num_contexts,), dtype=np.float32)
        else:
            self.contexts = rng.standard_normal((num_contexts, feature_dim)).astype(np.float32)
            self.observation_space = spaces.Box(-np.inf, np.inf, shape=(feature_dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(num_actions)
        self.context = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.context = int(self.np_random.integers(self.num_contexts))
        return self.contexts[self.context].copy(), {"context": self.context}

    def step(self, action):
        p = float(self.reward_table[self.context, int(action)])
        reward = p if self.reward_kind == "deterministic" else float(self.np_random.random() < p)
        # The final observation repeats the prompt; the episode always terminates after one step.
        return self.contexts[self.context].copy(), reward, True, False, {"context": self.context}

    def expected_reward(self, probs: np.ndarray | torch.Tensor) -> float:
        """J(π) = 1/C Σ_c Σ_a π(a|c) p[c, a] for a policy given as probabilities [C, A] (rows sum to 1)."""
        if isinstance(probs, torch.Tensor):
            probs = probs.detach().cpu().numpy()
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != self.reward_table.shape:
            raise ConfigError(
                f"expected_reward: probs must have shape {self.reward_table.shape} (contexts, actions), "
                f"got {probs.shape}"
            )
        return float((probs * self.reward_table).sum(axis=1).mean())

    @property
    def optimal_reward(self) -> float:
        """J of the best policy (argmax action in every context)."""
        return float(self.reward_table.max(axis=1).mean())


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="pgrad.envs.bandit:ContextualBandit")
