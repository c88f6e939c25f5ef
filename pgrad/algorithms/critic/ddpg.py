"""DDPG: deep deterministic policy gradient (Silver et al. 2014; Lillicrap et al. 2016).

Estimator — the deterministic policy gradient, through a learned critic:

    ∇θJ ≈ 1/B Σ_i ∇ₐQ(s_i, a)|_{a = μθ(s_i)} ∇θ μθ(s_i)

    μθ(s) = c + h ⊙ tanh(fθ(s))            (c, h: centre and half-width of the action box)

The critic regresses on y = R + γᵏ (1 − terminated) Q̄(s', μ̄(s')) with Polyak-averaged target actor μ̄ and
critic Q̄. Exploration adds Gaussian noise N(0, (σh)²) to μθ(s) — or temporally correlated
Ornstein–Uhlenbeck noise (--noise ou), as the original paper did — and clips to the box.

Defaults: Stable-Baselines3's DDPG (256×256 ReLU, Adam 1e-3, batch 256, τ 0.005, one update per env step,
Gaussian σ = 0.1 of the half-width).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from pgrad.algorithms.common import TensorState, clip_and_step
from pgrad.algorithms.critic.base import OffPolicy, OffPolicyConfig, finite_box
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import deterministic_actor_loss, polyak_update, td_target
from pgrad.optim import make_optimizer
from pgrad.policies.critics import QEnsemble
from pgrad.policies.networks import Policy
from pgrad.run.replay import ReplayBatch


@dataclass
class Config(OffPolicyConfig):
    """DDPG options (`pgrad train ddpg --help`)."""

    actor_lr: float = 1e-3
    """Actor learning rate."""
    critic_lr: float = 1e-3
    """Critic learning rate."""
    noise: Literal["gaussian", "ou"] = "gaussian"
    """Exploration noise: independent Gaussian, or Ornstein–Uhlenbeck (θ 0.15, dt 1e-2)."""
    noise_std: float = 0.1
    """Exploration noise scale σ, as a fraction of the action box's half-width."""


class DeterministicActorCritic(OffPolicy):
    """The parts DDPG and TD3 share: a deterministic actor with its target, critics with their targets, and
    noisy exploration. `critics` is 1 for DDPG, 2 for TD3."""

    critics = 1

    def __init__(self, config: Any, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        space = finite_box(envs, self.name)
        if not config.noise_std >= 0:
            raise ConfigError(f"noise_std must be >= 0, got {config.noise_std}")
        self.policy = Policy(
            envs.obs_dim, space, config.hidden_sizes, config.activation, head="deterministic"
        ).to(device)
        self.critic = QEnsemble(
            envs.obs_dim, space.shape[0], config.hidden_sizes, config.activation, self.critics
        ).to(device)
        self.policy_target = copy.deepcopy(self.policy).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_params, self.critic_params = list(self.policy.parameters()), list(self.critic.parameters())
        self.target_params = [*self.policy_target.parameters(), *self.critic_target.parameters()]
        self.online_params = [*self.actor_params, *self.critic_params]
        self.actor_optimizer = make_optimizer(config.optimizer, self.actor_params, config.actor_lr)
        self.critic_optimizer = make_optimizer(config.optimizer, self.critic_params, config.critic_lr)
        self.half_width = torch.as_tensor((space.high - space.low) / 2, dtype=torch.float32, device=device)
        self.low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
        self.high = torch.as_tensor(space.high, dtype=torch.float32, device=device)
        self.ou_state = torch.zeros(envs.num_envs, space.shape[0], device=device)

    def explore(self, obs: Tensor) -> Tensor:
        action = self.policy.distribution(obs).mode
        noise = torch.randn_like(action) * self.config.noise_std
        if getattr(self.config, "noise", "gaussian") == "ou":
            # dx = −θ x dt + σ √dt ε (θ 0.15, dt 1e-2), restarted at 0 where an episode just ended
            ended = self.collector.last_done[:, None]
            state = torch.where(ended, torch.zeros_like(self.ou_state), self.ou_state)
            self.ou_state = state - 0.15 * state * 1e-2 + 1e-1 * noise
            noise = self.ou_state
        return torch.clamp(action + noise * self.half_width, self.low, self.high)

    def critic_update(self, batch: ReplayBatch, next_actions: Tensor) -> dict[str, Tensor]:
        """Regress every critic on y = R + γᵏ (1 − terminated) min_j Q̄_j(s', a')."""
        with torch.no_grad():
            next_q = self.critic_target(batch.next_obs, next_actions).min(dim=0).values
            target = td_target(batch.rewards, batch.discount, batch.terminated, next_q)
        q = self.critic(batch.obs, batch.actions)
        loss = 0.5 * (q - target).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_and_step(self.critic_optimizer, self.critic_params, self.config.max_grad_norm)
        return {
            "loss/critic": loss.detach(),
            "stats/q_mean": q.detach().mean(),
            "stats/critic_grad_norm": norm,
        }

    def actor_update(self, batch: ReplayBatch) -> dict[str, Tensor]:
        """One step on −mean Q₁(s, μθ(s)): the gradient reaches θ through ∇ₐQ; the critic's weights get
        none."""
        q = self.critic(batch.obs, self.policy.distribution(batch.obs).rsample())[0]
        loss, _ = deterministic_actor_loss(q)
        for p, g in zip(self.actor_params, torch.autograd.grad(loss, self.actor_params), strict=True):
            p.grad = g
        norm = clip_and_step(self.actor_optimizer, self.actor_params, self.config.max_grad_norm)
        polyak_update(self.target_params, self.online_params, self.config.tau)
        return {"loss/actor": loss.detach(), "stats/actor_grad_norm": norm}

    def checkpointed(self) -> dict[str, Any]:
        return {**super().checkpointed(), "noise": TensorState(self, "ou_state")}


class DDPG(DeterministicActorCritic):
    name = "ddpg"
    family = "learned critic"
    summary = "DDPG: deterministic policy gradient ∇ₐQ·∇θμ through a learned critic, Polyak targets"
    Config = Config
    # `pgrad tune`'s search (pgrad.workflow.tune), after rl-zoo's sample_ddpg_params (one learning rate
    # there, two here; noise std from 0.05 rather than 0).
    search_space: ClassVar[dict[str, tuple]] = {
        "actor_lr": ("log", 1e-5, 1e-2),
        "critic_lr": ("log", 1e-5, 1e-2),
        "gamma": ("categorical", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        "batch_size": ("categorical", (64, 100, 128, 256, 512)),
        "tau": ("categorical", (0.001, 0.005, 0.01, 0.02, 0.05, 0.08)),
        "noise": ("categorical", ("gaussian", "ou")),
        "noise_std": ("float", 0.05, 1.0),
        "hidden_sizes": ("categorical", ((64, 64), (256, 256), (400, 300))),
    }

    def update(self, batch: ReplayBatch) -> dict[str, Tensor]:
        with torch.no_grad():
            next_actions = self.policy_target.distribution(batch.next_obs).mode
        return {**self.critic_update(batch, next_actions), **self.actor_update(batch)}
