"""Importance weights for off-policy policy gradients: data from a behaviour policy π_b, gradient of π_θ.

Pure functions, same conventions as :mod:`pgrad.estimators.returns`: time-major [T, N] tensors with
terminated/truncated episode ends (both end an episode; an episode open at row 0 starts there, a not-done last
row ends one), inputs detached (outputs never require grad), bad arguments raise
:class:`~pgrad.errors.ConfigError`.

With ρ_k = π_θ(a_k|s_k) / π_b(a_k|s_k) and s the first row of step t's episode, e its last row:

    per-decision weight   w_t = Π_{k=s}^{t} ρ_k     (the actions up to t; Precup, Sutton & Singh 2000)
    trajectory weight     w   = Π_{k=s}^{e} ρ_k     (every action of the episode; the same for all its steps)

Both are unbiased, E_b[w f(τ)] = E_θ[f(τ)] for any f of the actions they cover, and both have a variance that
grows exponentially with the horizon. Products are formed as sums of log ratios in float64
(:func:`cumulative_log_ratio`), so only the final ``exp`` can overflow (float32 above log w ≈ 88, float64
above ≈ 709): pass float64 log ratios to get float64 weights. :func:`clip_weights` truncates weights at c
(Ionides 2008) and/or self-normalises them (weighted importance sampling: biased, consistent, bounded);
:func:`effective_sample_size` measures how many samples the weights are worth. The policy-gradient estimator
itself is :func:`importance_weighted_advantages`:

    ∇J ≈ 1/M Σ_i Σ_t ∇ log π_θ(a_t|s_t) Ψ̃_t,
    Ψ̃_t = Σ_{t'=t}^{e} γ^{t'−t} w_{t'} r_{t'} + γ^{e−t+1} w_e B_e − w_t b(s_t).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c
from pgrad.estimators.advantages import episode_index
from pgrad.estimators.returns import _episode_flags, _episode_starts, _first_step_index, reward_to_go

__all__ = [
    "clip_weights",
    "cumulative_log_ratio",
    "effective_sample_size",
    "importance_weighted_advantages",
    "per_decision_weights",
    "trajectory_weights",
]

# A log ratio of −inf (π_θ(a|s) = 0) would turn the float64 cumsum below into NaN (−inf − −inf) for the
# later episodes of the column; e^−1000 is exactly 0 in float64 all the same.
_MIN_LOG_RATIO = -1000.0


def _last_step_index(done: Tensor) -> Tensor:
    """For every step, the row (int64) of its episode's last step (a done row, or T−1)."""
    T = done.shape[0]
    rows = torch.arange(T, device=done.device).view((T,) + (1,) * (done.ndim - 1)).expand(done.shape)
    ends = done.clone()
    if T:
        ends[T - 1] = True
    end_rows = torch.where(ends, rows, torch.full_like(rows, T - 1))
    return torch.flip(torch.cummin(torch.flip(end_rows, [0]), dim=0).values, [0])


def cumulative_log_ratio(log_ratio: Tensor, terminated: Tensor, truncated: Tensor) -> Tensor:
    """Log of the per-decision weight: L_t = Σ_{k=s}^{t} log ρ_k, s the first row of step t's episode.

    Computed as a float64 cumulative sum per column minus its value before the episode start (vectorised;
    the float64 sums keep the rounding error ~1e−16 · |column sum|). Log ratios below −1000 (including −inf)
    are raised to −1000, whose weight is exactly 0 in float64 as well.

    Args:
        log_ratio: [T, N] float log π_θ(a_t|s_t) − log π_b(a_t|s_t).
        terminated, truncated: [T, N] bool (or 0/1) episode-end flags.

    Returns:
        [T, N] tensor, dtype/device of ``log_ratio``.
    """
    log_ratio = _c.rewards_tensor(log_ratio, "log_ratio")
    _, done = _episode_flags(terminated, truncated, log_ratio, "log_ratio")
    if log_ratio.shape[0] == 0:
        return log_ratio.clone()
    x = log_ratio.double().clamp(min=_MIN_LOG_RATIO)
    total = torch.cumsum(x, dim=0)
    first = _first_step_index(done)
    before_start = torch.gather(total, 0, first) - torch.gather(x, 0, first)
    return (total - before_start).to(log_ratio.dtype)


def per_decision_weights(log_ratio: Tensor, terminated: Tensor, truncated: Tensor) -> Tensor:
    """Per-decision importance weights w_t = Π_{k=s}^{t} ρ_k = exp(L_t) (Precup et al. 2000).

    Args:
        log_ratio: [T, N] float log ρ_t.
        terminated, truncated: [T, N] bool (or 0/1) episode-end flags.

    Returns:
        [T, N] non-negative tensor, dtype/device of ``log_ratio`` (inf where exp(L_t) overflows the dtype).
    """
    log_ratio = _c.rewards_tensor(log_ratio, "log_ratio")
    return torch.exp(cumulative_log_ratio(log_ratio.double(), terminated, truncated)).to(log_ratio.dtype)


def trajectory_weights(log_ratio: Tensor, terminated: Tensor, truncated: Tensor) -> Tensor:
    """Trajectory importance weights w = Π_{k=s}^{e} ρ_k over the whole episode, given to each of its steps.

    An episode open at row 0 starts there and one open at the last row ends there (only its part inside the
    rollout counts, as in :func:`~pgrad.estimators.returns.total_return`).

    Args:
        log_ratio: [T, N] float log ρ_t.
        terminated, truncated: [T, N] bool (or 0/1) episode-end flags.

    Returns:
        [T, N] non-negative tensor, dtype/device of ``log_ratio``; constant within an episode.
    """
    log_ratio = _c.rewards_tensor(log_ratio, "log_ratio")
    _, done = _episode_flags(terminated, truncated, log_ratio, "log_ratio")
    cumulative = cumulative_log_ratio(log_ratio.double(), terminated, truncated)
    if log_ratio.shape[0] == 0:
        return log_ratio.clone()
    return torch.exp(torch.gather(cumulative, 0, _last_step_index(done))).to(log_ratio.dtype)


def clip_weights(
    weights: Tensor,
    max_weight: float | None = None,
    *,
    self_normalize: bool = False,
    terminated: Tensor | None = None,
    truncated: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Truncate importance weights at c and/or self-normalise them (weighted importance sampling).

    Truncation (Ionides 2008, "Truncated importance sampling"): w ← min(w, c). It bounds the variance at the
    price of a bias towards the behaviour policy's actions (the mass of w above c is dropped). Retrace's c̄
    (Munos et al. 2016) truncates each ratio instead; clamp the log ratios at log c̄ before
    :func:`cumulative_log_ratio` for that.

    Self-normalisation (``self_normalize=True``; needs the episode flags) divides by the batch estimate of
    E_b[w] = 1, taken over the M episodes that have a step in ``mask``:

        w̃_t = w_t / Z_k,     Z_k = 1/M Σ_j w^j_{min(k, L_j − 1)},     k = step of t within its episode

    where L_j is episode j's length and an episode that has ended keeps its last weight (the absorbing-state
    convention of weighted per-decision IS, Precup et al. 2000; a stopped martingale, so E_b[Z_k] = 1).
    For trajectory weights (constant within an episode) Z_k = 1/M Σ_j w_j for every k, and
    1/M Σ_i w̃_i g_i = Σ_i w_i g_i / Σ_j w_j is weighted importance sampling. The result is biased (O(1/M))
    but consistent, lower in variance, and each normalised weight is at most M. It is invariant to a common
    scale of the weights. Truncation is applied first.

    Args:
        weights: [T, N] (any shape without self-normalisation) non-negative weights.
        max_weight: c > 0, or None for no truncation.
        self_normalize: divide by Z_k as above.
        terminated, truncated: [T, N] bool (or 0/1) episode-end flags (required with self_normalize).
        mask: optional [T, N] bool: the steps in the batch (whole episodes); only they enter Z. Entries
            outside the mask are truncated and divided by the Z of their step index too.

    Returns:
        tensor of the shape/dtype/device of ``weights``; unchanged if no episode is in the mask.
    """
    weights = _c.rewards_tensor(weights, "weights", time_major=False)
    if max_weight is not None:
        if isinstance(max_weight, bool) or not isinstance(max_weight, numbers.Real):
            raise ConfigError(f"max_weight must be a number > 0 or None, got {max_weight!r}")
        if not float(max_weight) > 0.0:  # also rejects NaN
            raise ConfigError(f"max_weight must be > 0, got {max_weight}")
        weights = weights.clamp(max=float(max_weight))
    if not self_normalize:
        return weights
    if terminated is None or truncated is None:
        raise ConfigError("clip_weights: self_normalize needs the terminated and truncated flags")
    if weights.ndim < 1:
        raise ConfigError("weights must be time-major [T, N] to self-normalise, got a 0-d tensor")
    _, done = _episode_flags(terminated, truncated, weights, "weights")
    in_batch = torch.ones_like(done) if mask is None else _c.flags("mask", mask, weights, "weights")
    if weights.numel() == 0:
        return weights
    _, step = episode_index(done, torch.zeros_like(done))
    starts = _episode_starts(done) & in_batch
    episodes = int(starts.sum())
    if episodes == 0:
        return weights
    w = weights.double()
    K = int(step.max()) + 1
    zero = torch.zeros_like(w)
    # Σ_j over episodes still running at step k, plus Σ_j of the last weight of episodes shorter than k+1.
    running = w.new_zeros(K).scatter_add_(0, step.reshape(-1), torch.where(in_batch, w, zero).reshape(-1))
    last = done.clone()
    last[-1] = True
    ended = last & in_batch
    finals = w.new_zeros(K + 1).scatter_add_(
        0, (step + 1).reshape(-1), torch.where(ended, w, zero).reshape(-1)
    )
    Z = (running + torch.cumsum(finals, 0)[:K]) / episodes
    Z_t = Z[step]
    out = torch.where(Z_t > 0, w / torch.where(Z_t > 0, Z_t, 1.0), zero)
    return out.to(weights.dtype)


def effective_sample_size(weights: Tensor, mask: Tensor | None = None) -> float:
    """Kish's effective sample size ESS = (Σ w)² / Σ w² of non-negative weights (over the masked entries).

    ESS = n for equal weights and → 1 when one weight dominates; ESS / n is the fraction of the batch the
    weighted estimate is worth. Computed in float64 on w / max w (scale-invariant, so large weights do not
    overflow w²). Pass one weight per independent sample (e.g. one trajectory weight per episode).

    Args:
        weights: float tensor of any shape, ≥ 0 (inf counts as one dominating weight).
        mask: optional bool (or 0/1) tensor of the same shape.

    Returns:
        ESS as a Python float; 0.0 if no entry is selected or all are 0.
    """
    weights = _c.rewards_tensor(weights, "weights", time_major=False)
    if mask is not None:
        weights = weights[_c.flags("mask", mask, weights, "weights")]
    w = weights.double().reshape(-1)
    if w.numel() == 0:
        return 0.0
    if bool(torch.isnan(w).any()) or bool((w < 0).any()):
        raise ConfigError("effective_sample_size: weights must be non-negative numbers (got negative or NaN)")
    if bool(torch.isinf(w).any()):  # the infinite weights dominate equally
        return float(torch.isinf(w).sum())
    top = float(w.max())
    if top == 0.0 or not math.isfinite(top):
        return 0.0
    w = w / top
    return float(w.sum() ** 2 / w.square().sum())


def importance_weighted_advantages(
    weights: Tensor,
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    baselines: Tensor | None = None,
    next_values: Tensor | None = None,
) -> Tensor:
    """Coefficient Ψ̃_t of ∇ log π_θ(a_t|s_t) in the importance-sampled policy gradient.

        Ψ̃_t = Σ_{t'=t}^{e} γ^{t'−t} w_{t'} r_{t'} + γ^{e−t+1} w_e B_e − w_t b_t,
        ∇J ≈ 1/M Σ_i Σ_t ∇ log π_θ(a_t|s_t) Ψ̃_t

    with e the last row of step t's episode and B_e the bootstrap of :func:`reward_to_go` (0 without
    ``next_values`` or on termination; V(final observation) = next_values[e] on truncation).

    * Per-decision weights (:func:`per_decision_weights`): each reward r_{t'} carries the weight of the
      actions that produced it, w_{t'} = Π_{k≤t'} ρ_k, and the baseline term carries w_t (b_t depends on
      s_t, which depends on the actions before t only). This is the exact per-decision form: the term
      ∇ log π(a_t|s_t) γ^{t'−t} r_{t'} depends on the actions up to t' ≥ t, so its unbiased weight is w_{t'};
      weighting the whole reward-to-go G_t by w_t alone would be biased whenever future actions matter.
    * Trajectory weights (:func:`trajectory_weights`, constant w within the episode): Ψ̃_t = w (G_t − b_t).

    Both are unbiased for any baseline that depends on the state only; clipped or self-normalised weights
    (:func:`clip_weights`) are not.

    Args:
        weights: [T, N] importance weights (per-decision or trajectory, clipped/normalised or not).
        rewards: [T, N] float rewards.
        terminated, truncated: [T, N] bool (or 0/1) flags.
        gamma: discount γ ∈ [0, 1].
        baselines: optional [T, N] b(s_t) (0 if None).
        next_values: optional [T, N] V(s_{t+1}) of the true next state, read on truncation only.

    Returns:
        [T, N] tensor, dtype/device of ``rewards``.
    """
    rewards = _c.rewards_tensor(rewards)
    weights = _c.like("weights", weights, rewards, "rewards").detach()
    weighted_next = None
    if next_values is not None:
        # never read on terminated steps (may hold NaN there): keep it out of the product
        term, _ = _episode_flags(terminated, truncated, rewards)
        nv = _c.like("next_values", next_values, rewards, "rewards").detach()
        weighted_next = torch.where(term, torch.zeros_like(nv), weights * nv)
    psi = reward_to_go(weights * rewards, terminated, truncated, gamma, weighted_next)
    if baselines is not None:
        psi = psi - weights * _c.like("baselines", baselines, rewards, "rewards").detach()
    return psi
