"""SHAC: short-horizon actor-critic (Xu et al. 2022, "Accelerated Policy Learning with Parallel Differentiable
Simulation").

Estimator — BPTT through the simulator over a short window, closed by a learned critic:

    ∇θJ ≈ ∇θ 1/(hN) Σ_n [ Σ_{t<h} γ^{t−t₀} r(s_t(θ), aθ(s_t)) + γ^{h} V̄(s_h(θ)) ]

The window return restarts at an episode end; there V̄ = 0 after a true termination and V̄(final
observation) after a time-limit end (`pgrad.estimators.bptt_loss`). Gradients flow through the rewards and
through s_h into the target critic V̄ (whose weights stay fixed): the critic carries the consequences beyond
the window that APG's truncation drops, so windows can stay short (h = 32), where BPTT's gradient is still
well behaved, without the myopia.

The critic V regresses on TD(λ) targets of the window (λ-returns with V̄ at the next states) for
`critic_iterations` passes of `critic_minibatches` minibatches; the target follows V̄ ← α V̄ + (1 − α) V
with α = `target_alpha`. Observations are normalised with running statistics.

Defaults: the paper's CartPole swing-up setting (../shared/FACTS.md): 64 envs × 32-step windows, actor and
critic 64×64 ELU + LayerNorm, actor lr 5e-3 (the paper: 1e-2; see Config), critic lr 1e-3, Adam betas
(0.7, 0.95), gradient clip 1, γ 0.99, λ 0.95, 16 critic passes of 4 minibatches, α 0.2, and the reference
implementation's linear decay of both learning rates to 0 over the budget.

AHAC and SAPO (ahac.py, sapo.py) are SHAC with other networks, windows, rewards or closing critics: the
methods below marked as what they change are the only places they differ.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from pgrad.algorithms.common import (
    LinearDecay,
    anneal_lr,
    check_at_least,
    check_non_negative,
    check_unit_interval,
    clip_and_step,
    extension_note,
    fit_value,
)
from pgrad.algorithms.differentiable.base import Window, gradient_spread, require_differentiable, rollout
from pgrad.envs.base import VecEnv
from pgrad.estimators import bptt_loss, explained_variance, td_lambda_return
from pgrad.optim import make_optimizer
from pgrad.policies.networks import Policy, ValueNetwork
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.seeding import derive_seed


@dataclass
class Config:
    """SHAC options (`pgrad train shac --help`)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the actor and the critic."""
    activation: Literal["elu", "tanh", "relu", "silu"] = "elu"
    """Hidden activation (LayerNorm after each hidden layer)."""
    num_envs: int = 64
    """Envs simulated together."""
    horizon: int = 32
    """Window length h."""
    gamma: float = 0.99
    """Discount γ."""
    lam: float = 0.95
    """λ of the critic's TD(λ) targets."""
    actor_lr: float = 5e-3
    """Actor learning rate (the paper: 1e-2; here 5e-3 solved swing-up in 3/3 seeds at 1M steps where 1e-2
    reached −667 and left Pendulum short of −200)."""
    critic_lr: float = 1e-3
    """Critic learning rate."""
    betas: tuple[float, float] = (0.7, 0.95)
    """Adam betas of both networks."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of the actor (0: none)."""
    critic_iterations: int = 16
    """Passes over the window's states fitting the critic."""
    critic_minibatches: int = 4
    """Minibatches per critic pass."""
    target_alpha: float = 0.2
    """Target critic update V̄ ← α V̄ + (1 − α) V."""
    anneal_lr: bool = True
    """Decay both learning rates linearly to 0 over the step budget (the reference implementation's
    schedule: late windows then refine instead of kicking a good policy away)."""
    init_std: float = 1.0
    """Initial standard deviation of the actor's pre-tanh Gaussian."""
    grad_variance_every: int = 0
    """Every this many iterations also measure the spread of the actor gradient across envs (0: never)."""


class SHAC(Algorithm):
    name = "shac"
    family = "differentiable simulator"
    summary = "SHAC: BPTT over short windows closed by a learned critic's γ^h V(s_h), TD(λ) critic"
    Config = Config
    # `pgrad tune`'s search (pgrad.workflow.tune): step sizes, the short horizon, γ, TD(λ), critic updates.
    search_space: ClassVar[dict[str, tuple]] = {
        "actor_lr": ("log", 1e-4, 1e-2),
        "critic_lr": ("log", 1e-4, 1e-2),
        "horizon": ("categorical", (16, 32, 64)),
        "gamma": ("categorical", (0.98, 0.99, 0.995)),
        "lam": ("categorical", (0.9, 0.95, 0.99)),
        "critic_iterations": ("categorical", (4, 8, 16)),
    }
    differentiable = True

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_at_least(config, 1, "num_envs", "horizon", "critic_iterations", "critic_minibatches")
        check_unit_interval(config, "gamma", "lam", "target_alpha")
        check_non_negative(config, "max_grad_norm", "grad_variance_every")
        require_differentiable(envs, self.name)
        self.policy = self.make_policy()
        self.critic, self.critic_target = self.make_critics()
        self.actor_params = list(self.policy.parameters())
        self.critic_params = list(self.critic.parameters())
        betas = {"betas": config.betas}
        self.actor_optimizer = make_optimizer("adam", self.actor_params, config.actor_lr, **betas)
        self.critic_optimizer = make_optimizer("adam", self.critic_params, config.critic_lr, **betas)
        self.schedule = LinearDecay(total_steps)  # --anneal-lr

    def act(self, obs: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return self.policy.distribution(obs.to(self.actor_params[0].dtype)).rsample()

    # What AHAC and SAPO change: the networks, the window, the rewards inside it, and which critic closes it.
    def make_policy(self, **head_options: Any) -> Policy:
        """A tanh-squashed Gaussian actor, ELU + LayerNorm, normalised observations."""
        config = self.config
        return Policy(
            self.envs.obs_dim,
            self.envs.single_action_space,
            config.hidden_sizes,
            config.activation,
            head="tanh_gaussian",
            layer_norm=True,
            normalize_obs=True,
            init_std=config.init_std,
            **head_options,
        ).to(self.device)

    def make_critics(self) -> tuple[nn.Module, nn.Module | None]:
        """The critic V and the target critic V̄ (a frozen copy)."""
        config = self.config
        net = dict(hidden_sizes=config.hidden_sizes, activation=config.activation, normalize_obs=True)
        critic = ValueNetwork(self.envs.obs_dim, layer_norm=True, **net).to(self.device)
        return critic, copy.deepcopy(critic).requires_grad_(False)

    def window(self) -> Window:
        """The next differentiable window of `horizon` steps."""
        return rollout(self.envs, self.act, self.config.horizon, derive_seed(self.seed, "train", 0))

    def window_rewards(self, window: Window) -> Tensor:
        """The rewards the window's return sums (SAPO adds the entropy bonus)."""
        return window.rewards

    def bootstrap_values(self, obs: Tensor) -> Tensor:
        """V̄(s) closing the actor's return: the target critic (its weights get no update from the actor)."""
        return self.critic_target(obs)

    def target_values(self, obs: Tensor) -> Tensor:
        """V(s) inside the critic's TD(λ) targets: the target critic."""
        return self.critic_target(obs)

    def after_critic_fit(self) -> None:
        """V̄ ← α V̄ + (1 − α) V."""
        with torch.no_grad():
            torch._foreach_lerp_(
                list(self.critic_target.parameters()), self.critic_params, 1 - self.config.target_alpha
            )

    def window_loss(self, window: Window, columns: Tensor | slice = slice(None)) -> tuple[Tensor, dict]:
        """The actor's loss: minus the mean discounted window return closed by γᵏ V̄(s) (`bptt_loss`)."""
        dtype = self.actor_params[0].dtype
        finals = window.final_obs[:, columns].to(dtype)
        bootstrap = self.bootstrap_values(finals)  # gradient flows through s into V̄, not into V̄'s weights
        rewards = self.window_rewards(window)[:, columns]
        h, n = rewards.shape
        return bptt_loss(
            rewards.to(dtype),
            self.config.gamma,
            window.terminated[:, columns],
            bootstrap_values=bootstrap,
            truncated=window.segment_ends[:, columns],
            normalizer=h * n,
        )

    def iteration(self, index: int) -> IterationResult:
        config = self.config
        fraction = self.schedule.fraction(self.envs.global_step) if config.anneal_lr else 1.0
        lr = anneal_lr(self.actor_optimizer, fraction)
        anneal_lr(self.critic_optimizer, fraction)
        window = self.window()
        loss, info = self.window_loss(window)
        metrics: dict[str, Any] = {}
        if config.grad_variance_every and index % config.grad_variance_every == 0:
            n = window.rewards.shape[1]
            metrics["stats/grad_variance"] = gradient_spread(
                lambda cols: self.window_loss(window, cols)[0], self.actor_params, n
            )
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_and_step(self.actor_optimizer, self.actor_params, config.max_grad_norm)
        metrics.update(self.after_actor_step(window))
        metrics.update(self.fit_critic(window))
        obs = window.obs.flatten(0, 1).to(self.actor_params[0].dtype)
        self.policy.normalizer.update(obs)  # after the update: the window acted with the old statistics
        self.critic.normalizer.update(obs)
        if self.critic_target is not None:
            self.critic_target.normalizer.load_state_dict(self.critic.normalizer.state_dict())
        metrics.update(
            {
                "loss/policy": loss.detach(),
                "stats/grad_norm": grad_norm,
                "stats/grad_norm_clipped": torch.clamp(grad_norm, max=config.max_grad_norm or float("inf")),
                "stats/window_return": torch.tensor(info["window_return"]),
                "stats/lr": torch.tensor(lr),
            }
        )
        return IterationResult(metrics, window.episode_returns, window.episode_lengths)

    def after_actor_step(self, window: Window) -> dict[str, Tensor]:
        """Anything else learned from the window after the actor's step (SAPO: the temperature)."""
        return {}

    def fit_critic(self, window: Window) -> dict[str, Tensor]:
        """Regress V on the window's TD(λ) returns (`target_values` at the next states), then
        `after_critic_fit` (SHAC: move V̄ towards V)."""
        config = self.config
        dtype = self.actor_params[0].dtype
        with torch.no_grad():
            obs, finals = window.obs.to(dtype), window.final_obs.detach().to(dtype)
            values, next_values = self.target_values(obs), self.target_values(finals)
            targets = td_lambda_return(
                self.window_rewards(window).detach().to(dtype),
                values,
                next_values,
                window.terminated,
                window.truncated,
                config.gamma,
                config.lam,
            )
            before = self.critic(obs)
        loss = fit_value(
            self.critic,
            self.critic_optimizer,
            obs.flatten(0, 1),
            targets.flatten(),
            config.critic_iterations,
            config.critic_minibatches,
        )
        self.after_critic_fit()
        predicted = before.reshape(-1, *targets.shape).mean(dim=0)  # an ensemble's mean prediction
        return {
            "loss/value": loss,
            "stats/explained_variance": explained_variance(predicted.flatten(), targets.flatten()),
        }

    def checkpointed(self) -> dict[str, Any]:
        """The parts of the checkpoint, each with a state_dict() and load_state_dict()."""
        names = ("policy", "critic", "critic_target", "actor_optimizer", "critic_optimizer", "schedule")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.checkpointed().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, part in self.checkpointed().items():
            part.load_state_dict(state[name])

    def extend_budget(self, step: int, total_steps: int) -> str | None:
        self.total_steps = total_steps
        self.schedule.extend(step, total_steps)
        return extension_note(self.schedule, step, "learning rates") if self.config.anneal_lr else None

    def on_resume(self, iteration: int) -> None:
        self.envs.reset(seed=derive_seed(self.seed, "resume", iteration))
