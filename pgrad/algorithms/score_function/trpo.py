"""TRPO: trust-region policy optimisation (Schulman et al. 2015).

Estimator: the natural-gradient direction of NPG (npg.py), x = F⁻¹ g with g = ∇θ E[ρ_t Â_t] and F the
Fisher matrix (Hessian of KL(π_old ‖ πθ) at θ_old), solved by conjugate gradient on Fisher-vector products:

    maximise E[ρ_t Â_t]   subject to   E[KL(π_old ‖ πθ)] ≤ δ

    full step s = √(2δ / xᵀF x) · x; try θ_old + βᵏ s for k = 0, 1, … and accept the first whose true
    mean KL is ≤ δ and whose surrogate improvement is positive and at least --accept-ratio of the linear
    prediction; keep θ_old if none is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from pgrad.algorithms.score_function import npg
from pgrad.errors import ConfigError
from pgrad.estimators import backtracking_line_search, flat_params, set_flat_params


@dataclass
class Config(npg.Config):
    """TRPO options (`pgrad train trpo --help`): NPG's plus the line search (defaults: rl-zoo's)."""

    num_envs: int = 2
    """Sub-envs stepped together."""
    num_steps: int = 512
    """Steps per sub-env per batch."""
    gae_lambda: float = 0.98
    """GAE λ."""
    value_epochs: int = 20
    """Passes over each batch fitting the value network."""
    backtracks: int = 10
    """Maximum line-search steps."""
    shrink: float = 0.8
    """Step shrink factor β per backtrack."""
    accept_ratio: float = 0.1
    """Minimum ratio of actual to linearly-predicted surrogate improvement."""


class TRPO(npg.NPG):
    name = "trpo"
    family = "score function"
    summary = "TRPO: natural step by CG on Fisher-vector products + KL-constrained backtracking line search"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)
    # `pgrad tune`'s search: NPG's and the line search's shrink factor (rl-zoo's choices).
    search_space: ClassVar[dict[str, tuple]] = {
        **npg.NPG.search_space,
        "shrink": ("categorical", (0.6, 0.7, 0.8, 0.9)),
    }

    def __init__(self, config: Config, *args, **kwargs):
        if not 0.0 < config.shrink < 1.0 or config.backtracks < 1:
            raise ConfigError(
                f"shrink must be in (0, 1) and backtracks >= 1, got {config.shrink}, {config.backtracks}"
            )
        super().__init__(config, *args, **kwargs)

    def _policy_step(self, obs, actions, old_log_prob, advantages) -> dict[str, float]:
        surrogate, step, info, mean_kl = self._natural_direction(obs, actions, old_log_prob, advantages)

        @torch.no_grad()
        def loss_and_kl(x: torch.Tensor) -> tuple[float, float]:
            set_flat_params(self.params, x)
            return -float(self._surrogate(obs, actions, old_log_prob, advantages)), float(mean_kl())

        x, search = backtracking_line_search(
            loss_and_kl,
            flat_params(self.params).detach(),
            step,
            expected_improvement=info["expected_improvement"],
            max_kl=self.config.max_kl,
            max_backtracks=self.config.backtracks,
            accept_ratio=self.config.accept_ratio,
            shrink=self.config.shrink,
        )
        with torch.no_grad():
            set_flat_params(self.params, x)
            kl = float(mean_kl())
        return {
            "loss/policy": -float(surrogate),
            "stats/approx_kl": kl,
            **{f"stats/{k}": float(v) for k, v in info.items()},
            **{f"stats/line_search_{k}": float(v) for k, v in search.items()},
        }
