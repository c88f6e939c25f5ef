"""Critic targets of the learned-critic family: pure functions over sampled transitions; Polyak averaging.

For a transition (s, a, R, s', terminated, discount) from a replay buffer (R the n-step reward sum, discount =
γᵏ for the k rewards summed, s' the true next state — the final observation where an episode ended):

    y = R + discount · (1 − terminated) · V(s')                 `td_target`

A time-limit end (truncated, not terminated) bootstraps from V(final observation); only a true terminal
stops bootstrapping. V(s') is what each algorithm makes of its critics at s':

    V(s') = Q̄(s', μ̄(s'))                                       DDPG (target actor and critic)
    V(s') = min_j Q̄_j(s', clip(μ̄(s') + clip(ε, −c, c)))         TD3 (`ensemble_min`, target smoothing)
    V(s') = min_j Q̄_j(s', a') − α log π(a'|s'),  a' ~ π(·|s')    SAC (`soft_value`)
    V(s') = Σ_a π(a|s') [min_j Q̄_j(s', a) − α log π(a|s')]       discrete SAC (`expected_soft_value`)

Bad arguments raise :class:`~pgrad.errors.ConfigError` with a one-line message naming the argument.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c

__all__ = [
    "ensemble_min",
    "expected_soft_value",
    "polyak_update",
    "soft_value",
    "td_target",
    "temperature_loss",
]


def td_target(rewards: Tensor, discount: Tensor, terminated: Tensor, next_values: Tensor) -> Tensor:
    """y = R + discount · (1 − terminated) · V(s'), detached: the regression target of a critic.

    Args:
        rewards: [B] (n-step) reward sums R.
        discount: [B] γᵏ of each sum (or a float γ for one-step transitions).
        terminated: [B] bool (or 0/1): s' is a true terminal, V(s') does not count.
        next_values: [B] V(s') at the true next state.
    """
    rewards = _c.rewards_tensor(rewards, time_major=False)
    next_values = _c.like("next_values", next_values, rewards, "rewards").detach()
    done = _c.flags("terminated", terminated, rewards)
    if isinstance(discount, Tensor):
        discount = _c.like("discount", discount, rewards, "rewards").detach()
    else:
        discount = _c.unit_interval("discount", discount)
    return rewards + discount * torch.where(done, torch.zeros_like(next_values), next_values)


def ensemble_min(q_values: Tensor) -> Tensor:
    """Clipped double-Q: the minimum over the ensemble dimension (dim 0) of [E, ...] critic outputs."""
    q_values = _c.float_tensor("q_values", q_values)
    if q_values.ndim < 1 or q_values.shape[0] < 1:
        raise ConfigError(f"q_values must be [E, ...] with E >= 1 critics, got shape {tuple(q_values.shape)}")
    return q_values.min(dim=0).values


def soft_value(q_values: Tensor, log_prob: Tensor, alpha: float | Tensor) -> Tensor:
    """Entropy-regularised value of a sampled action: V = Q(s, a) − α log π(a|s)  (a ~ π, one sample)."""
    q_values = _c.float_tensor("q_values", q_values)
    log_prob = _c.like("log_prob", log_prob, q_values, "q_values")
    return q_values - _alpha(alpha, q_values) * log_prob


def expected_soft_value(q_values: Tensor, probs: Tensor, log_probs: Tensor, alpha: float | Tensor) -> Tensor:
    """Exact expectation over a categorical policy: V(s) = Σ_a π(a|s) [Q(s, a) − α log π(a|s)].

    Discrete SAC sums over the actions instead of sampling one: a categorical sample has no unbiased
    reparameterisation, and with few actions the sum is exact and cheap. Shapes [B, A] → [B].
    """
    q_values = _c.float_tensor("q_values", q_values)
    probs = _c.like("probs", probs, q_values, "q_values")
    log_probs = _c.like("log_probs", log_probs, q_values, "q_values")
    if q_values.ndim < 1:
        raise ConfigError(f"q_values must be [..., A], got shape {tuple(q_values.shape)}")
    return (probs * (q_values - _alpha(alpha, q_values) * log_probs)).sum(-1)


def temperature_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """SAC's automatic temperature (Haarnoja et al. 2018b): minimise −log α · (log π + H̄) over samples.

    Its gradient −E[log π + H̄] lowers α while the policy's entropy −E[log π] is above the target H̄ and
    raises it below (log α is optimised for positivity; log π is detached). `log_prob` may be [B] (sampled
    actions) or, for discrete SAC, the expected log-probability −H(π(·|s)) per state.
    """
    log_alpha = _c.float_tensor("log_alpha", log_alpha)
    log_prob = _c.float_tensor("log_prob", log_prob).detach()
    target = _c.real("target_entropy", target_entropy, finite=True)
    return -(log_alpha * (log_prob + target)).mean()


def polyak_update(target: Sequence[Tensor], online: Sequence[Tensor], tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ for every pair, in place, in one fused `torch._foreach_lerp_` (no autograd)."""
    tau = _c.unit_interval("tau", tau)
    target, online = list(target), list(online)
    if len(target) != len(online):
        raise ConfigError(f"polyak_update: {len(target)} target tensors for {len(online)} online ones")
    with torch.no_grad():
        torch._foreach_lerp_(target, online, tau)


def _alpha(alpha: float | Tensor, like: Tensor) -> float | Tensor:
    if isinstance(alpha, Tensor):
        if alpha.numel() != 1:
            raise ConfigError(f"alpha must be a scalar, got a tensor of shape {tuple(alpha.shape)}")
        return alpha.detach().to(like.dtype).reshape(())
    value = _c.real("alpha", alpha, finite=True)
    if value < 0:
        raise ConfigError(f"alpha must be >= 0, got {value}")
    return value
