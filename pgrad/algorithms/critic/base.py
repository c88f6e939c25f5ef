"""What every learned-critic algorithm shares: the options of off-policy training, the replay buffer, the
collector, the sampling generator and the loop of one iteration (collect, then update). Each algorithm file
adds only its networks, its exploration and its update — where its gradient estimator lives.

One iteration: `train_freq` vector steps (each adds `num_envs` transitions) with `explore(obs)`, uniform
random actions until `learning_starts` env steps, then `gradient_steps` updates on batches sampled from the
replay. The update-to-data ratio is gradient_steps / (train_freq · num_envs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from gymnasium import spaces

from pgrad.algorithms.common import (
    TensorState,
    accumulate,
    check_at_least,
    check_non_negative,
    check_unit_interval,
)
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.replay import ReplayBatch, ReplayBuffer
from pgrad.run.seeding import derive_seed
from pgrad.run.transitions import TransitionCollector


@dataclass
class OffPolicyConfig:
    """Options every learned-critic algorithm shares (its own follow)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and of each critic."""
    activation: Literal["relu", "tanh", "elu", "silu"] = "relu"
    """Hidden activation."""
    num_envs: int = 1
    """Sub-envs stepped together; each vector step adds num_envs transitions."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions."""
    learning_starts: int = 1000
    """Env steps of uniformly random actions before the first update."""
    batch_size: int = 256
    """Transitions per update."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Polyak rate of the target networks: θ̄ ← (1 − τ) θ̄ + τ θ."""
    n_step: int = 1
    """n-step returns in the critic target (cut at episode ends)."""
    train_freq: int = 1
    """Vector steps collected per iteration."""
    gradient_steps: int = 1
    """Updates per iteration (update-to-data ratio = gradient_steps / (train_freq · num_envs))."""
    actor_lr: float = 3e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate."""
    optimizer: str = "adam"
    """sgd, adam, adamw, rmsprop, muon, laprop."""
    max_grad_norm: float = 0.0
    """Global gradient-norm clip per network (0: none)."""


def check_config(config: OffPolicyConfig) -> None:
    """One-line errors for invalid off-policy options."""
    check_at_least(config, 1, "num_envs", "buffer_size", "batch_size", "n_step", "train_freq")
    check_non_negative(config, "learning_starts", "gradient_steps", "max_grad_norm")
    check_unit_interval(config, "gamma", "tau")
    if config.buffer_size < config.num_envs * config.n_step:
        raise ConfigError(f"buffer_size ({config.buffer_size}) holds less than n_step vector steps")
    # A full buffer can sample all its rows but the last n − 1 (their n-step sums are not known yet): a larger
    # batch would never be drawn, and training would silently never update.
    most = (config.buffer_size // config.num_envs - config.n_step + 1) * config.num_envs
    if config.batch_size > most:
        raise ConfigError(
            f"batch_size ({config.batch_size}) is more than the replay buffer can ever sample ({most}: "
            f"buffer_size {config.buffer_size}, num_envs {config.num_envs}, n_step {config.n_step})"
        )


def finite_box(envs: VecEnv, algorithm: str) -> spaces.Box:
    """The env's Box action space, refused in one line when a bound is infinite (actions are squashed)."""
    space = envs.single_action_space
    if not isinstance(space, spaces.Box):
        raise ConfigError(f"{algorithm} needs a Box action space, env '{envs.label}' has {space}")
    if not (
        torch.isfinite(torch.as_tensor(space.low)).all() and torch.isfinite(torch.as_tensor(space.high)).all()
    ):
        raise ConfigError(
            f"{algorithm} squashes actions into the Box bounds; env '{envs.label}' has infinite bounds "
            f"{space}: wrap it with gymnasium.wrappers.ClipAction / RescaleAction"
        )
    return space


# Attributes a learned-critic algorithm may have that a checkpoint must hold (see `OffPolicy.checkpointed`).
PARTS = (
    "policy",
    "critic",
    "policy_target",
    "critic_target",
    "actor_optimizer",
    "critic_optimizer",
    "alpha_optimizer",
    "noise",
)


class OffPolicy(Algorithm):
    """The shared loop (see the module docstring); subclasses define `explore` and `update`."""

    free_state = ("buffer",)  # checked by ReplayBuffer.load_state_dict against its own layout

    def __init__(self, config: Any, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        space = envs.single_action_space
        discrete = isinstance(space, spaces.Discrete)
        self.buffer = ReplayBuffer(
            config.buffer_size,
            envs.obs_dim,
            () if discrete else tuple(space.shape),
            envs.num_envs,
            device=device,
            action_dtype=torch.long if discrete else torch.float32,
            n_step=config.n_step,
            gamma=config.gamma,
        )
        self.collector = TransitionCollector(
            envs, self.buffer, derive_seed(seed, "train", 0), config.learning_starts
        )
        self.generator = torch.Generator(device).manual_seed(derive_seed(seed, "replay"))
        self.updates = 0

    # -- what an algorithm defines ---------------------------------------------------------------------------
    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """Env actions [N, ...] for the current observations, exploration included (no grad)."""
        raise NotImplementedError

    def update(self, batch: ReplayBatch) -> dict[str, torch.Tensor]:
        """One gradient update on a sampled batch; returns detached diagnostics (tensors: no sync)."""
        raise NotImplementedError

    def checkpointed(self) -> dict[str, Any]:
        """Everything with a state_dict that a checkpoint must hold: the networks, optimisers and exploration
        noise of `PARTS` the algorithm has, and SAC's temperature log α."""
        parts = {name: getattr(self, name) for name in PARTS if getattr(self, name, None) is not None}
        if hasattr(self, "log_alpha"):
            parts["temperature"] = TensorState(self, "log_alpha")
        return parts

    # -- the loop --------------------------------------------------------------------------------------------
    def iteration(self, index: int) -> IterationResult:
        config = self.config
        with torch.inference_mode():
            returns, lengths = self.collector.collect(self.explore, config.train_freq)
        sums: dict[str, Any] = {}
        steps = 0
        if self.envs.global_step >= config.learning_starts and self.buffer.num_valid() >= config.batch_size:
            for _ in range(config.gradient_steps):
                accumulate(sums, self.update(self.buffer.sample(config.batch_size, self.generator)))
                self.updates += 1
                steps += 1
        metrics = {k: v / steps for k, v in sums.items()}
        metrics["stats/updates"] = self.updates
        metrics["stats/buffer_size"] = len(self.buffer)
        return IterationResult(metrics, returns, lengths)

    # -- checkpointing ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **{name: part.state_dict() for name, part in self.checkpointed().items()},
            "buffer": self.buffer.state_dict(),
            "collector": self.collector.state_dict(),
            "generator": self.generator.get_state(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, part in self.checkpointed().items():
            part.load_state_dict(state[name])
        self.buffer.load_state_dict(state["buffer"])
        self.collector.load_state_dict(state["collector"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])

    def on_resume(self, iteration: int) -> None:
        # Gymnasium env state cannot be saved without pickle: resumed runs start new episodes, and the
        # buffer's open episodes end there (truncated: they bootstrap from their last next_obs).
        self.collector.restart(derive_seed(self.seed, "resume", iteration))
