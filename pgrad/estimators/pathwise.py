"""Pathwise (reparameterisation) policy-gradient losses: the gradient flows through the action into a critic
or through a differentiable simulator into the rewards.

    learned critic:          ∇θJ ≈ E_s[∇ₐQ(s, a)|_{a = μθ(s)} ∇θ μθ(s)]                     (DPG / DDPG / TD3)
                             ∇θJ ≈ E_{s, ε}[∇θ (Q(s, aθ(s, ε)) − α log πθ(aθ(s, ε)|s))]      (SAC)
    differentiable env:      ∇θJ = ∇θ 1/N Σ_n Σ_t γᵗ r(s_t(θ), a_t(θ)) (+ γ^h V(s_h))       (APG / SHAC)

Each function is a loss to *minimise* whose autograd gradient is the negative pathwise estimate; nothing is
detached except flags (the caller decides what carries grad: e.g. the critic's parameters should be frozen or
left out of the actor optimiser, while the gradient w.r.t. the action or state must flow through Q / V).
Losses return ``(loss, info)``; the actor losses' ``info`` holds detached 0-d tensors (no host sync).
Bad arguments raise :class:`~pgrad.errors.ConfigError`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c
from pgrad.estimators.returns import _first_step_index

__all__ = ["bptt_loss", "deterministic_actor_loss", "reparameterised_actor_loss"]


def deterministic_actor_loss(q_values: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Deterministic policy gradient actor loss (Silver et al. 2014; DDPG, Lillicrap et al. 2016; TD3).

        L(θ) = −mean_i Q(s_i, μθ(s_i))      ∇θL = −mean_i ∇ₐQ(s_i, a)|_{a = μθ(s_i)} ∇θ μθ(s_i)

    Args:
        q_values: [B] Q(s_i, μθ(s_i)), computed from the *current* actor's actions (with grad through a).

    Returns:
        (loss, info) with info ``q_mean``.
    """
    q_values = _c.float_tensor("q_values", q_values)
    if q_values.numel() == 0:
        return q_values.sum() * 0.0, {"q_mean": q_values.new_zeros(())}
    return -q_values.mean(), {"q_mean": q_values.detach().mean()}


def reparameterised_actor_loss(
    q_values: Tensor, log_prob: Tensor, alpha: float | Tensor
) -> tuple[Tensor, dict[str, float]]:
    """Soft actor-critic actor loss with a reparameterised action (Haarnoja et al. 2018).

        L(θ) = mean_i [α log πθ(a_i|s_i) − Q(s_i, a_i)],     a_i = fθ(s_i, ε_i)

    Both terms depend on θ through a_i (and log π also directly); α is detached (its own loss tunes it).

    Args:
        q_values: [B] Q(s_i, a_i) at the reparameterised actions (e.g. the min of twin critics).
        log_prob: [B] log πθ(a_i|s_i) of the same actions, including any tanh / scale correction.
        alpha: entropy temperature α ≥ 0 (float or one-element tensor; detached).

    Returns:
        (loss, info) with info ``q_mean``, ``log_prob_mean`` and ``entropy`` (= −log_prob_mean).
    """
    q_values = _c.float_tensor("q_values", q_values)
    log_prob = _c.like("log_prob", log_prob, q_values, "q_values")
    if isinstance(alpha, torch.Tensor):  # a tensor α (SAC's tuned one) is used as is: no host sync
        if alpha.numel() != 1 or not alpha.is_floating_point():
            raise ConfigError(f"alpha must be a scalar floating tensor, got shape {tuple(alpha.shape)}")
        alpha_value = alpha.detach().reshape(())
    else:
        alpha_value = _c.real("alpha", alpha, finite=True)
        if alpha_value < 0.0:
            raise ConfigError(f"alpha must be >= 0, got {alpha_value}")
    terms = alpha_value * log_prob - q_values
    if terms.numel() == 0:
        zero = q_values.new_zeros(())
        return terms.sum() * 0.0, {"q_mean": zero, "log_prob_mean": zero, "entropy": zero}
    log_prob_mean = log_prob.detach().mean()
    info = {"q_mean": q_values.detach().mean(), "log_prob_mean": log_prob_mean, "entropy": -log_prob_mean}
    return terms.mean(), info


def bptt_loss(
    rewards: Tensor,
    gamma: float,
    terminated: Tensor,
    bootstrap_values: Tensor | None = None,
    truncated: Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Differentiable-return loss of APG (BPTT through the simulator) and SHAC (with a critic bootstrap).

    The rollout window [T, N] is cut into episode segments at episode ends (``terminated | truncated``), as
    everywhere in pgrad: the row after an end belongs to the next episode (the caller reset that env), and the
    discount restarts at 1 there. A segment starting at row s and ending at row e contributes

        G = Σ_{t=s}^{e} γ^{t−s} r_t + γ^{e−s+1} B_e,
        B_e = 0 if terminated[e];  V(s_{e+1}) of the true next state if truncated[e] or e = T−1 (window end)

    and L = −(1/Z) Σ_segments G, with Z = N by default (the mean window return per env; Xu et al. 2022's SHAC
    uses Z = T·N: pass ``normalizer=T * N``). With ``bootstrap_values=None`` nothing is bootstrapped (APG).
    Gradients flow through ``rewards`` and ``bootstrap_values`` (V(s_T) depends on θ through s_T); flags are
    detached. Vectorised: no loop over T or N.

    Args:
        rewards: [T, N] rewards r_t(θ) of a differentiable rollout.
        gamma: discount γ ∈ [0, 1].
        terminated: [T, N] bool (or 0/1): s_{t+1} is a true terminal state.
        bootstrap_values: None; or [N] V(s_T) at the window end (then ``truncated`` may only be set on the
            last row); or [T, N] V(s_{t+1}) of the true next state (final observation at an episode end), read
            only where a segment ends by truncation or at the window end (never on a terminated row, which
            may hold anything, even NaN).
        truncated: optional [T, N] bool (or 0/1) time-limit ends; None means none.
        normalizer: Z > 0; None means N.

    Returns:
        (loss, info) with info ``window_return`` (Σ of the segment returns per env, mean over envs, including
        bootstraps), ``bootstrap_mean`` (mean γ-weighted bootstrap term per env) and ``episode_ends`` (number
        of terminated or truncated rows).
    """
    rewards = _c.float_tensor("rewards", rewards)
    if rewards.ndim != 2:
        raise ConfigError(f"rewards must be time-major [T, N], got shape {tuple(rewards.shape)}")
    gamma = _c.unit_interval("gamma", gamma)
    T, N = rewards.shape
    term = _c.flags("terminated", terminated, rewards)
    trunc = torch.zeros_like(term) if truncated is None else _c.flags("truncated", truncated, rewards)
    done = term | trunc
    if normalizer is not None:
        normalizer = _c.positive("normalizer", normalizer)
    Z = float(N) if normalizer is None else normalizer
    if T == 0 or N == 0:
        loss = rewards.sum() * 0.0
        return loss, {"window_return": 0.0, "bootstrap_mean": 0.0, "episode_ends": 0.0}

    rows = torch.arange(T, device=rewards.device).unsqueeze(1)
    age = (rows - _first_step_index(done)).to(rewards.dtype)  # t − s: steps since the segment started
    discount = gamma**age  # γ^{t−s}; 0**0 = 1, so γ = 0 gives the one-step reward
    total = (discount * rewards).sum()

    boot_term = rewards.new_zeros(())
    if bootstrap_values is not None:
        ends = trunc.clone()
        ends[-1] = True  # the window end bootstraps unless terminated
        ends &= ~term
        bootstrap_values = _c.float_tensor("bootstrap_values", bootstrap_values)  # before reading .ndim
        if bootstrap_values.ndim == 1:
            values = _c.like("bootstrap_values", bootstrap_values, rewards[-1], "rewards[-1]")
            if trunc[:-1].any():
                raise ConfigError(
                    "bootstrap_values has shape [N] but truncated is set before the last row: pass "
                    "bootstrap_values as [T, N] (V of each final observation)"
                )
            values = torch.cat((values.new_zeros(T - 1, N), values.unsqueeze(0)), dim=0)
        else:
            values = _c.like("bootstrap_values", bootstrap_values, rewards, "rewards")
        weighted = torch.where(ends, gamma * discount * values, torch.zeros_like(rewards))
        boot_term = weighted.sum()
        total = total + boot_term

    loss = -total / Z
    info = {
        "window_return": float(total.detach()) / N,
        "bootstrap_mean": float(boot_term.detach()) / N,
        "episode_ends": float(done.sum()),
    }
    return loss, info
