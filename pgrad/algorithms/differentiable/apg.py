"""APG: analytic policy gradient — backpropagation through time in a differentiable simulator, no critic.

Estimator (Brax's APG; Freeman et al. 2021): the exact gradient of the return of a window of h steps,

    ∇θJ ≈ ∇θ 1/(hN) Σ_n Σ_{t<h} γ^{t−s} r(s_t(θ), aθ(s_t))        (the return restarts at an episode end s)

obtained by differentiating through the dynamics s_{t+1} = f(s_t, aθ(s_t)) with autograd. The state carried in
from the previous window is treated as a constant (truncated BPTT): the gradient sees h steps of consequences
and nothing beyond, which biases it towards myopic policies but keeps its variance and memory bounded. On
smooth dynamics this estimate has far lower variance than the score function; on stiff or discontinuous
dynamics (contact) it explodes or misleads — see `pgrad lab bptt` and docs/differentiable.md.

Defaults: Brax's APG (32-step windows, Adam lr 1e-4 with betas (0.7, 0.95), gradient-norm clip 1) on 64
envs, a deterministic tanh-squashed policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from pgrad.algorithms.common import check_at_least, check_non_negative, check_unit_interval, clip_and_step
from pgrad.algorithms.differentiable.base import gradient_spread, require_differentiable, rollout
from pgrad.envs.base import VecEnv
from pgrad.estimators import bptt_loss
from pgrad.optim import make_optimizer
from pgrad.policies.networks import Policy
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.seeding import derive_seed


@dataclass
class Config:
    """APG options (`pgrad train apg --help`)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy (() for a linear policy)."""
    activation: Literal["elu", "tanh", "relu", "silu"] = "elu"
    """Hidden activation."""
    policy: Literal["deterministic", "tanh_gaussian"] = "deterministic"
    """Deterministic squashed policy, or a reparameterised tanh-Gaussian."""
    num_envs: int = 64
    """Envs simulated together; the gradient averages over them."""
    horizon: int = 32
    """Window length h of truncated BPTT."""
    gamma: float = 0.99
    """Discount γ inside a window."""
    lr: float = 1e-4
    """Adam learning rate."""
    optimizer: str = "adam"
    """sgd, adam, adamw, rmsprop, muon, laprop."""
    betas: tuple[float, float] = (0.7, 0.95)
    """Adam betas (Brax's APG)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0: none)."""
    grad_variance_every: int = 0
    """Every this many iterations also measure the spread of the gradient across envs (0: never)."""


class APG(Algorithm):
    name = "apg"
    family = "differentiable simulator"
    summary = "APG: truncated BPTT through the simulator over h-step windows, no critic"
    Config = Config
    # `pgrad tune`'s search (pgrad.workflow.tune): step size, BPTT horizon, γ, gradient clip.
    search_space: ClassVar[dict[str, tuple]] = {
        "lr": ("log", 1e-5, 1e-2),
        "horizon": ("categorical", (8, 16, 32, 64)),
        "gamma": ("categorical", (0.95, 0.98, 0.99, 0.995)),
        "max_grad_norm": ("categorical", (0.5, 1.0, 5.0)),
    }
    differentiable = True

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_at_least(config, 1, "num_envs", "horizon")
        check_unit_interval(config, "gamma")
        check_non_negative(config, "max_grad_norm", "grad_variance_every")
        require_differentiable(envs, self.name)
        self.policy = Policy(
            envs.obs_dim, envs.single_action_space, config.hidden_sizes, config.activation, head=config.policy
        ).to(device)
        self.params = list(self.policy.parameters())
        options: dict[str, Any] = {"betas": config.betas} if config.optimizer in ("adam", "adamw") else {}
        self.optimizer = make_optimizer(config.optimizer, self.params, config.lr, **options)

    def act(self, obs: Tensor) -> Tensor:
        return self.policy.distribution(obs.to(self.params[0].dtype)).rsample()

    def iteration(self, index: int) -> IterationResult:
        config = self.config
        window = rollout(self.envs, self.act, config.horizon, derive_seed(self.seed, "train", 0))
        h, n = window.rewards.shape

        def loss_of(columns: Tensor | slice) -> Tensor:
            loss, _ = bptt_loss(
                window.rewards[:, columns],
                config.gamma,
                window.terminated[:, columns],
                truncated=window.truncated[:, columns],
                normalizer=h * window.rewards[:, columns].shape[1],
            )
            return loss

        loss = loss_of(slice(None))
        metrics: dict[str, Any] = {}
        if config.grad_variance_every and index % config.grad_variance_every == 0:
            metrics["stats/grad_variance"] = gradient_spread(loss_of, self.params, n)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_and_step(self.optimizer, self.params, config.max_grad_norm)
        metrics.update(
            {
                "loss/policy": loss.detach(),
                "stats/grad_norm": grad_norm,
                "stats/grad_norm_clipped": torch.clamp(grad_norm, max=config.max_grad_norm or float("inf")),
                "stats/window_return": window.rewards.detach().sum(0).mean(),
            }
        )
        return IterationResult(metrics, window.episode_returns, window.episode_lengths)

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])

    def on_resume(self, iteration: int) -> None:
        self.envs.reset(seed=derive_seed(self.seed, "resume", iteration))
