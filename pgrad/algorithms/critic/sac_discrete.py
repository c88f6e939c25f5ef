"""Discrete SAC: soft actor-critic for categorical actions (Christodoulou 2019).

Estimator — the exact expectation over the actions instead of a reparameterised sample (a categorical sample
has no unbiased reparameterisation; relaxations such as Gumbel-Softmax are biased, see the gradient lab):

    ∇θJ ≈ 1/B Σ_i ∇θ Σ_a πθ(a|s_i) [min_j Q_j(s_i, a) − α log πθ(a|s_i)]

The critics output Q(s, ·) for every action; the gradient flows through the probabilities πθ(a|s) (the
critics' values enter as constants: with every action summed there is no action to differentiate through).
The soft target is an expectation too:

    y = R + γᵏ (1 − terminated) Σ_a π(a|s') [min_j Q̄_j(s', a) − α log π(a|s')]

and the temperature holds the policy's entropy near H̄ = `target_entropy_scale` · log|A|.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from gymnasium import spaces
from torch import Tensor

from pgrad.algorithms.common import clip_and_step
from pgrad.algorithms.critic.base import OffPolicy, OffPolicyConfig
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import ensemble_min, expected_soft_value, polyak_update, td_target, temperature_loss
from pgrad.optim import make_optimizer
from pgrad.policies.critics import QEnsemble
from pgrad.policies.networks import Policy
from pgrad.run.replay import ReplayBatch


@dataclass
class Config(OffPolicyConfig):
    """Discrete SAC options (`pgrad train sac_discrete --help`). Defaults: Tianshou's CartPole settings
    (64×64, fixed α 0.05, 3-step returns, actor lr 1e-4, critic lr 1e-3, batch 64) with γ 0.99; with a
    tuned α (--alpha None) the entropy target keeps CartPole's policy too random to balance 500 steps."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the actor and of each critic."""
    batch_size: int = 64
    """Transitions per update."""
    n_step: int = 3
    """n-step returns in the critic target (cut at episode ends)."""
    actor_lr: float = 1e-4
    """Actor learning rate."""
    critic_lr: float = 1e-3
    """Critic learning rate."""
    alpha: float | None = 0.05
    """Fixed entropy temperature α (None: tuned automatically towards target_entropy_scale · log|A|)."""
    init_alpha: float = 1.0
    """Initial α when it is tuned."""
    target_entropy_scale: float = 0.5
    """Entropy target H̄ as a fraction of the maximum entropy log|A| (Christodoulou: 0.98)."""
    alpha_lr: float | None = None
    """Learning rate of log α (None: critic_lr)."""
    critics: int = 2
    """Critics in the ensemble (the target takes their minimum)."""


class DiscreteSAC(OffPolicy):
    name = "sac_discrete"
    family = "learned critic"
    summary = "discrete SAC: exact expectation Σ_a π(a|s)[min Q − α log π] instead of reparameterisation"
    Config = Config
    # `pgrad tune`'s search (pgrad.workflow.tune): step sizes, γ, batch, τ, the fixed temperature α, n.
    search_space: ClassVar[dict[str, tuple]] = {
        "actor_lr": ("log", 1e-5, 1e-2),
        "critic_lr": ("log", 1e-5, 1e-2),
        "gamma": ("categorical", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        "batch_size": ("categorical", (32, 64, 128, 256)),
        "tau": ("categorical", (0.005, 0.01, 0.05, 0.1)),
        "alpha": ("log", 1e-3, 0.5),
        "n_step": ("categorical", (1, 3, 5)),
    }
    action_spaces = (spaces.Discrete,)

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        if not 0 < config.target_entropy_scale <= 1 or config.init_alpha <= 0 or config.critics < 1:
            raise ConfigError("target_entropy_scale must be in (0, 1], init_alpha > 0 and critics >= 1")
        space = envs.single_action_space
        self.policy = Policy(
            envs.obs_dim, space, config.hidden_sizes, config.activation, head="categorical"
        ).to(device)
        self.critic = QEnsemble(
            envs.obs_dim, 0, config.hidden_sizes, config.activation, config.critics, outputs=int(space.n)
        ).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_params, self.critic_params = list(self.policy.parameters()), list(self.critic.parameters())
        self.target_params = list(self.critic_target.parameters())
        self.actor_optimizer = make_optimizer(config.optimizer, self.actor_params, config.actor_lr)
        self.critic_optimizer = make_optimizer(config.optimizer, self.critic_params, config.critic_lr)
        init = torch.tensor(float(config.init_alpha if config.alpha is None else max(config.alpha, 1e-12)))
        self.log_alpha = torch.nn.Parameter(init.log().to(device), requires_grad=config.alpha is None)
        self.alpha_optimizer = make_optimizer("adam", [self.log_alpha], config.alpha_lr or config.critic_lr)
        self.target_entropy = config.target_entropy_scale * float(torch.log(torch.tensor(float(space.n))))
        self.start = int(space.start)

    def explore(self, obs: Tensor) -> Tensor:
        return self.policy.head.to_env_action(self.policy.distribution(obs).sample())

    def update(self, batch: ReplayBatch) -> dict[str, Tensor]:
        config = self.config
        alpha = self.log_alpha.detach().exp()
        actions = batch.actions.long() - self.start  # env actions (with the space's start) → indices
        with torch.no_grad():
            next_dist = self.policy.distribution(batch.next_obs)
            next_q = ensemble_min(self.critic_target(batch.next_obs))  # [B, A]
            next_v = expected_soft_value(next_q, next_dist.probs, next_dist.logits, alpha)
            target = td_target(batch.rewards, batch.discount, batch.terminated, next_v)
        q = self.critic(batch.obs).gather(-1, actions.expand(config.critics, -1)[..., None]).squeeze(-1)
        critic_loss = 0.5 * (q - target).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_norm = clip_and_step(self.critic_optimizer, self.critic_params, config.max_grad_norm)

        dist = self.policy.distribution(batch.obs)
        probs, log_probs = dist.probs, dist.logits  # Categorical normalises logits to log-probabilities
        with torch.no_grad():
            q_all = ensemble_min(self.critic(batch.obs))
        actor_loss = (probs * (alpha * log_probs - q_all)).sum(-1).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_norm = clip_and_step(self.actor_optimizer, self.actor_params, config.max_grad_norm)
        expected_log_prob = (probs * log_probs).sum(-1).detach()  # −H(π(·|s))
        if self.log_alpha.requires_grad:
            alpha_loss = temperature_loss(self.log_alpha, expected_log_prob, self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
        polyak_update(self.target_params, self.critic_params, config.tau)
        return {
            "loss/critic": critic_loss.detach(),
            "loss/actor": actor_loss.detach(),
            "stats/q_mean": q.detach().mean(),
            "stats/entropy": -expected_log_prob.mean(),
            "stats/alpha": alpha,
            "stats/critic_grad_norm": critic_norm,
            "stats/actor_grad_norm": actor_norm,
        }
