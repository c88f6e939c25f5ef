"""SAPO: soft analytic policy optimisation — maximum-entropy SHAC (Xing et al. 2025, "Stabilizing
Reinforcement Learning in Differentiable Multiphysics Simulation").

Estimator — SHAC's windowed BPTT on the soft (entropy-regularised) return:

    ∇θJ ≈ ∇θ 1/(hN) Σ_n [ Σ_{t<h} γ^{t−t₀} (r(s_t, a_t) − α log πθ(a_t|s_t)) + γ^{h} ½ (V₁ + V₂)(s_h) ],
    a_t = aθ(s_t, ε_t) = tanh(μθ(s_t) + σθ(s_t) ε_t)  (reparameterised)

Each step's entropy bonus −α log π(a_t|s_t) sits inside the differentiable return: its gradient reaches θ both
directly (the log-density of the sample, with the tanh log-det-Jacobian) and through the states the action
leads to. The critics learn the soft value: their TD(λ) targets use the same soft rewards, with the minimum
of the two critics at the next states (pessimistic targets), while the actor's bootstrap uses their mean; no
target network. The temperature α follows the SAC rule, −log α · E[log π + H̄] with H̄ = −|A|, so the
policy's entropy is held near H̄ rather than collapsing, which is what stabilises BPTT's sharp gradients.
The policy's log σ is state-dependent and softly bounded to [−5, 2].

Defaults: SHAC's (64 envs × 32-step windows, ELU + LayerNorm 64×64, actor 5e-3, critic 1e-3, Adam betas
(0.7, 0.95), clip 1, γ 0.99, λ 0.95, 16 × 4 critic minibatches), α from 0.1 with lr 5e-3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from pgrad.algorithms.common import TensorState, check_at_least
from pgrad.algorithms.differentiable.base import TwinCritics, Window, frozen
from pgrad.algorithms.differentiable.shac import SHAC
from pgrad.algorithms.differentiable.shac import Config as SHACConfig
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import temperature_loss
from pgrad.optim import make_optimizer
from pgrad.policies.networks import Policy


@dataclass
class Config(SHACConfig):
    """SAPO options (`pgrad train sapo --help`)."""

    init_alpha: float = 0.1
    """Initial entropy temperature α."""
    alpha_lr: float = 5e-3
    """Learning rate of log α (0: α stays at init_alpha)."""
    target_entropy: float | None = None
    """Entropy target H̄ (None: −|A|)."""
    critics: int = 2
    """Value networks in the ensemble (targets: minimum; actor's bootstrap: mean)."""


class SAPO(TwinCritics, SHAC):
    name = "sapo"
    family = "differentiable simulator"
    summary = "SAPO: maximum-entropy SHAC, entropy inside the differentiable return, auto temperature"
    Config = Config
    # `pgrad tune`'s search (pgrad.workflow.tune): SHAC's and the entropy temperature's start and step size.
    search_space: ClassVar[dict[str, tuple]] = {
        "actor_lr": ("log", 1e-4, 1e-2),
        "critic_lr": ("log", 1e-4, 1e-2),
        "horizon": ("categorical", (16, 32, 64)),
        "gamma": ("categorical", (0.98, 0.99, 0.995)),
        "lam": ("categorical", (0.9, 0.95, 0.99)),
        "init_alpha": ("log", 0.01, 1.0),
        "alpha_lr": ("log", 1e-4, 1e-2),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        check_at_least(config, 1, "critics")
        if not (config.init_alpha > 0 and config.alpha_lr >= 0):
            raise ConfigError(
                f"need init_alpha > 0 and alpha_lr >= 0, got {config.init_alpha}, {config.alpha_lr}"
            )
        super().__init__(config, envs, seed, device, total_steps)
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(config.init_alpha), device=device).log())
        self.alpha_optimizer = make_optimizer("adam", [self.log_alpha], max(config.alpha_lr, 1e-12))
        action_dim = envs.single_action_space.shape[0]
        self.target_entropy = -float(action_dim) if config.target_entropy is None else config.target_entropy

    def make_policy(self, **head_options: Any) -> Policy:
        return super().make_policy(state_dependent_std=True, cache_pre_tanh=True, **head_options)

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.policy.distribution(obs.to(self.actor_params[0].dtype))
        action = dist.rsample()
        return action, dist.log_prob(action)

    def window_rewards(self, window: Window) -> Tensor:
        """r_t − α log π(a_t|s_t): the soft reward (α a constant here; it has its own update)."""
        alpha = self.log_alpha.detach().exp()
        return window.rewards.to(window.log_probs.dtype) - alpha * window.log_probs

    def bootstrap_values(self, obs: Tensor) -> Tensor:
        with frozen(self.critic):  # the actor's loss must not train the critics
            return self.critic(obs).mean(dim=0)

    def after_actor_step(self, window: Window) -> dict[str, Tensor]:
        """The temperature step towards the entropy target, on the window's log-probabilities."""
        log_probs = window.log_probs.detach()
        if self.config.alpha_lr > 0:
            loss = temperature_loss(self.log_alpha, log_probs.flatten(), self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.alpha_optimizer.step()
        return {"stats/alpha": self.log_alpha.detach().exp(), "stats/entropy": -log_probs.mean()}

    def checkpointed(self) -> dict[str, Any]:
        return {
            **super().checkpointed(),
            "temperature": TensorState(self, "log_alpha"),
            "alpha_optimizer": self.alpha_optimizer,
        }
