"""SAC: soft actor-critic with a squashed Gaussian and automatic temperature (Haarnoja et al. 2018a, 2018b).

Estimator — the policy gradient flows through a learned critic by reparameterisation:

    ∇θJ ≈ 1/B Σ_i ∇θ [min_j Q_j(s_i, aθ(s_i, ε_i)) − α log πθ(aθ(s_i, ε_i)|s_i)],   ε_i ~ N(0, I)

    aθ(s, ε) = c + h ⊙ tanh(μθ(s) + σθ(s) ⊙ ε)          c, h: centre and half-width of the action box
    log πθ(a|s) = log N(u; μ, σ²) − Σ_d [log(1 − tanh²(u_d)) + log h_d]    (u = μ + σ ⊙ ε)

The critics are two Q networks (stacked into one batched computation) regressed on the soft TD target

    y = R + γᵏ (1 − terminated) [min_j Q̄_j(s', a') − α log π(a'|s')],   a' ~ π(·|s')

with Polyak-averaged targets Q̄. The temperature α follows −log α · E[log π + H̄] to hold the policy's
entropy near H̄ = −|A| (or is fixed with --alpha). A time-limit end bootstraps from the true final
observation (stored by the replay buffer); only a true terminal does not.

Defaults: Stable-Baselines3's SAC (256×256 ReLU, Adam 3e-4, batch 256, τ 0.005, γ 0.99, one update per env
step) except learning_starts 1000 (SB3: 100).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from pgrad.algorithms.common import clip_and_step
from pgrad.algorithms.critic.base import OffPolicy, OffPolicyConfig, finite_box
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import (
    ensemble_min,
    polyak_update,
    reparameterised_actor_loss,
    soft_value,
    td_target,
    temperature_loss,
)
from pgrad.optim import make_optimizer
from pgrad.policies.critics import QEnsemble
from pgrad.policies.networks import Policy
from pgrad.policies.noise import ColoredNoise
from pgrad.run.replay import ReplayBatch
from pgrad.run.seeding import derive_seed


@dataclass
class Config(OffPolicyConfig):
    """SAC options (`pgrad train sac --help`)."""

    alpha: float | None = None
    """Fixed entropy temperature α (None: tuned automatically towards target_entropy)."""
    init_alpha: float = 1.0
    """Initial α when it is tuned."""
    target_entropy: float | None = None
    """Entropy target H̄ of the tuned α (None: −|A|, the action dimension)."""
    alpha_lr: float | None = None
    """Learning rate of log α (None: critic_lr)."""
    critics: int = 2
    """Critics in the ensemble (the target takes their minimum)."""
    target_update_interval: int = 1
    """Updates between Polyak steps of the target critics."""
    exploration: Literal["white", "pink"] = "white"
    """Noise of the exploring samples: independent per step, or temporally correlated colored noise with
    spectrum 1/f^β (Eberhard et al. 2023: explores tasks that need long consistent pushes)."""
    noise_beta: float = 1.0
    """β of the colored noise (1: pink, 0: white, 2: red)."""


class SAC(OffPolicy):
    name = "sac"
    family = "learned critic"
    summary = "SAC: reparameterised tanh-Gaussian through min of twin soft Q critics, auto temperature"
    Config = Config
    # `pgrad tune`'s search (pgrad.workflow.tune), after rl-zoo's sample_sac_params (α auto-tuned there too).
    search_space: ClassVar[dict[str, tuple]] = {
        "actor_lr": ("log", 1e-5, 1e-2),
        "critic_lr": ("log", 1e-5, 1e-2),
        "gamma": ("categorical", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        "batch_size": ("categorical", (64, 128, 256, 512)),
        "tau": ("categorical", (0.001, 0.005, 0.01, 0.02, 0.05, 0.08)),
        "hidden_sizes": ("categorical", ((64, 64), (256, 256), (400, 300))),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        space = finite_box(envs, self.name)
        if config.critics < 1 or config.target_update_interval < 1:
            raise ConfigError("critics and target_update_interval must be >= 1")
        if (config.alpha is not None and config.alpha < 0) or config.init_alpha <= 0:
            raise ConfigError(
                f"alpha must be >= 0 and init_alpha > 0, got {config.alpha}, {config.init_alpha}"
            )
        self.policy = Policy(
            envs.obs_dim,
            space,
            config.hidden_sizes,
            config.activation,
            head="tanh_gaussian",
            cache_pre_tanh=True,
        ).to(device)
        self.noise = None
        if config.exploration == "pink":
            length = envs.max_episode_steps or 1000
            seed_noise = derive_seed(seed, "noise")
            self.noise = ColoredNoise(config.noise_beta, envs.num_envs, space.shape[0], length, seed_noise)
        self.critic = self.make_critic(envs.obs_dim, space.shape[0]).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_params = list(self.policy.parameters())
        self.critic_params = list(self.critic.parameters())
        self.target_params = list(self.critic_target.parameters())
        options = self.optimizer_options()
        self.actor_optimizer = make_optimizer(config.optimizer, self.actor_params, config.actor_lr, **options)
        self.critic_optimizer = make_optimizer(
            config.optimizer, self.critic_params, config.critic_lr, **options
        )
        init = torch.tensor(float(config.init_alpha if config.alpha is None else max(config.alpha, 1e-12)))
        self.log_alpha = torch.nn.Parameter(init.log().to(device), requires_grad=config.alpha is None)
        self.alpha_optimizer = make_optimizer("adam", [self.log_alpha], config.alpha_lr or config.critic_lr)
        self.target_entropy = (
            float(config.target_entropy) if config.target_entropy is not None else -float(space.shape[0])
        )

    def make_critic(self, obs_dim: int, action_dim: int) -> QEnsemble:
        config = self.config
        return QEnsemble(obs_dim, action_dim, config.hidden_sizes, config.activation, config.critics)

    def optimizer_options(self) -> dict[str, Any]:
        return {}

    def explore(self, obs: Tensor) -> Tensor:
        dist = self.policy.distribution(obs)
        if self.noise is None:
            return dist.sample()
        return dist.sample_with(self.noise(restart=self.collector.last_done))

    def update(self, batch: ReplayBatch) -> dict[str, Tensor]:
        config = self.config
        alpha = self.log_alpha.detach().exp()

        # Critics: regress both on the soft TD target of the target critics (one stacked forward each).
        with torch.no_grad():
            next_dist = self.policy.distribution(batch.next_obs)
            next_actions = next_dist.rsample()
            next_q = ensemble_min(self.critic_target(batch.next_obs, next_actions))
            next_v = soft_value(next_q, next_dist.log_prob(next_actions), alpha)
            target = td_target(batch.rewards, batch.discount, batch.terminated, next_v)
        q = self.critic(batch.obs, batch.actions)  # [E, B]
        critic_loss = 0.5 * (q - target).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_norm = clip_and_step(self.critic_optimizer, self.critic_params, config.max_grad_norm)

        # Actor: the pathwise gradient through the (just updated) critics; their weights get no gradient.
        dist = self.policy.distribution(batch.obs)
        actions = dist.rsample()
        log_prob = dist.log_prob(actions)
        q_pi = ensemble_min(self.critic(batch.obs, actions))
        actor_loss, _ = reparameterised_actor_loss(q_pi, log_prob, alpha)
        for p, g in zip(self.actor_params, torch.autograd.grad(actor_loss, self.actor_params), strict=True):
            p.grad = g
        actor_norm = clip_and_step(self.actor_optimizer, self.actor_params, config.max_grad_norm)

        # Temperature: towards the entropy target.
        if self.log_alpha.requires_grad:
            alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
        if (self.updates + 1) % config.target_update_interval == 0:
            polyak_update(self.target_params, self.critic_params, config.tau)
        return {
            "loss/critic": critic_loss.detach(),
            "loss/actor": actor_loss.detach(),
            "stats/q_mean": q.detach().mean(),
            "stats/entropy": -log_prob.detach().mean(),
            "stats/alpha": alpha,
            "stats/critic_grad_norm": critic_norm,
            "stats/actor_grad_norm": actor_norm,
        }
