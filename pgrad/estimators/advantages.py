"""Advantage estimators and baselines: what multiplies ∇ log π(a_t|s_t) after a baseline is subtracted.

Pure functions, same conventions as :mod:`pgrad.estimators.returns`: time-major [T, N] tensors, inputs are
detached (outputs never require grad), output dtype/device = input dtype/device, bad arguments raise
:class:`~pgrad.errors.ConfigError`. Episode-end semantics (terminated / truncated / next_values) are the ones
documented in :mod:`pgrad.estimators.returns`.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c
from pgrad.estimators.returns import _episode_flags, _episode_starts, _first_step_index

__all__ = [
    "discount_weights",
    "episode_index",
    "episode_time",
    "gae",
    "group_relative_advantages",
    "leave_one_out_advantages",
    "mean_baseline",
    "normalize",
    "optimal_baseline",
    "per_step_mean_baseline",
]


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016).

        δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)          V(s_{t+1}) = next_values[t]
        Â_t = δ_t + γ λ (1 − done_t) Â_{t+1},   Â_T = 0,              done = terminated | truncated
        returns_t = Â_t + V(s_t)

    i.e. Â_t = Σ_{k=0}^{e−t} (γλ)^k δ_{t+k} with e the last row of the episode (or T−1). A truncated step
    bootstraps from next_values[t] (V of the final observation) and nothing after it leaks in; a not-done last
    row bootstraps from next_values[T−1]. next_values is not read on terminated steps (may even be NaN).
    λ = 0 gives Â = δ (the TD error); λ = 1 gives returns = ``reward_to_go(..., next_values=next_values)``
    when values[t+1] == next_values[t] wherever step t is not done (true for a correctly collected rollout);
    returns equal ``td_lambda_return`` under the same condition.

    Args:
        rewards: [T, N] float rewards.
        values: [T, N] V(s_t).
        next_values: [T, N] V(s_{t+1}) of the true next state.
        terminated, truncated: [T, N] bool (or 0/1) flags.
        gamma: discount γ ∈ [0, 1].
        lam: λ ∈ [0, 1].

    Returns:
        (advantages, returns), both [T, N] with the dtype/device of ``rewards``.
    """
    rewards = _c.rewards_tensor(rewards)
    values = _c.like("values", values, rewards, "rewards").detach()
    next_values = _c.like("next_values", next_values, rewards, "rewards").detach()
    gamma = _c.unit_interval("gamma", gamma)
    lam = _c.unit_interval("lam", lam)
    term, done = _episode_flags(terminated, truncated, rewards)
    T = rewards.shape[0]
    advantages = torch.empty_like(rewards)
    if T == 0:
        return advantages, advantages.clone()
    zero = torch.zeros_like(rewards)
    deltas = rewards + gamma * torch.where(term, zero, next_values) - values
    following = zero[0]  # Â_T = 0
    gl = gamma * lam
    for t in range(T - 1, -1, -1):
        following = deltas[t] + gl * torch.where(done[t], zero[0], following)
        advantages[t] = following
    return advantages, advantages + values


# ---------------------------------------------------------------------------------------------------------
# baselines


def mean_baseline(returns: Tensor, mask: Tensor | None = None) -> Tensor:
    """Constant batch-mean baseline b = (1/|S|) Σ_{(t,n) ∈ S} G_{t,n}, S = the steps where mask is True.

    Args:
        returns: [T, N] (any shape) float returns.
        mask: optional bool (or 0/1) tensor of the same shape; None means every element.

    Returns:
        0-d tensor (dtype/device of ``returns``); 0 if the mask selects nothing.
    """
    returns = _c.rewards_tensor(returns, "returns", time_major=False)
    mask = _c.flags("mask", mask, returns, "returns") if mask is not None else None
    if mask is None:
        return returns.mean() if returns.numel() > 0 else returns.new_zeros(())
    total = torch.where(mask, returns, torch.zeros_like(returns)).sum()
    count = mask.sum()
    return torch.where(count > 0, total / count.clamp(min=1).to(returns.dtype), torch.zeros_like(total))


def episode_index(terminated: Tensor, truncated: Tensor) -> tuple[Tensor, Tensor]:
    """Number the episodes of a rollout and the steps within each.

        start_t = (t = 0) ∨ done_{t−1},        done = terminated | truncated
        step_in_episode[t] = t − (last start row ≤ t)
        episode_id: 0, 1, …, M−1 in column-major order (all episodes of column 0, then of column 1, …)

    An episode in progress at row 0 counts as starting there (step 0); every column starts a new episode at
    row 0, so ids never span two columns. Vectorised (cumsum / cummax), no loop.

    Args:
        terminated, truncated: [T, N] (or [T, *B]) bool (or 0/1) flags.

    Returns:
        (episode_id, step_in_episode), both int64 with the shape of ``terminated``.
    """
    terminated = _c.tensor("terminated", terminated).detach()
    if terminated.ndim < 1:
        raise ConfigError("terminated must be time-major [T, N], got a 0-d tensor")
    _, done = _episode_flags(terminated, truncated, terminated, "terminated")
    rows = torch.arange(done.shape[0], device=done.device).view((-1,) + (1,) * (done.ndim - 1))
    step_in_episode = rows - _first_step_index(done)
    starts_TB = _episode_starts(done).reshape(done.shape[0], -1)
    # column-major numbering: cumsum over the flattened [B, T] order
    ids_BT = torch.cumsum(starts_TB.T.reshape(-1).long(), dim=0).reshape(starts_TB.shape[1], -1) - 1
    episode_id = ids_BT.T.reshape(done.shape).contiguous()
    return episode_id, step_in_episode.expand(done.shape).contiguous()


def episode_time(terminated: Tensor, truncated: Tensor, start: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Each step's time index t within its episode, continuing the episodes open at row 0 from ``start``.

        t_{0,n} = start_n,    t_{k,n} = 0 if done_{k−1,n} else t_{k−1,n} + 1,    done = terminated | truncated
        next_start_n = 0 if done_{T−1,n} else t_{T−1,n} + 1

    A collector whose rollouts continue episodes across calls (`StepCollector`) passes the ``next_start`` of
    one rollout as the ``start`` of the next, so an episode's steps are numbered 0, 1, 2, … across rollout
    boundaries; ``start`` None means every column starts a new episode at row 0 (then t is the
    ``step_in_episode`` of :func:`episode_index`). Vectorised, no loop.

    Args:
        terminated, truncated: [T, N] (or [T, *B]) bool (or 0/1) flags.
        start: optional [N] (or [*B]) non-negative integer tensor, the time index of row 0.

    Returns:
        (t [T, N], next_start [N]), both int64 (the time index of the row after the rollout).
    """
    terminated = _c.tensor("terminated", terminated).detach()
    if terminated.ndim < 1:
        raise ConfigError("terminated must be time-major [T, N], got a 0-d tensor")
    _, done = _episode_flags(terminated, truncated, terminated, "terminated")
    if start is None:
        start = torch.zeros(done.shape[1:], dtype=torch.long, device=done.device)
    else:
        start = _c.tensor("start", start).detach()
        if start.shape != done.shape[1:]:
            raise ConfigError(
                f"start has shape {tuple(start.shape)}, expected the shape of one row of terminated "
                f"{tuple(done.shape[1:])}"
            )
        if start.dtype == torch.bool or start.dtype.is_floating_point or start.dtype.is_complex:
            raise ConfigError(f"start must be an integer tensor, got {start.dtype}")
        if start.device != done.device:
            raise ConfigError(f"start is on device {start.device}, expected the device of terminated")
        if bool((start < 0).any()):
            raise ConfigError(f"start must be >= 0, got min {int(start.min())}")
        start = start.long()
    if done.shape[0] == 0:
        return torch.zeros(done.shape, dtype=torch.long, device=done.device), start.clone()
    rows = torch.arange(done.shape[0], device=done.device).view((-1,) + (1,) * (done.ndim - 1))
    time = rows - _first_step_index(done)
    # Rows up to the first episode end of a column belong to the episode that was open at row 0.
    first_episode = (torch.cumsum(done.long(), dim=0) - done.long()) == 0
    time = time + torch.where(first_episode, start, torch.zeros_like(start))
    next_start = torch.where(done[-1], torch.zeros_like(start), time[-1] + 1)
    return time.contiguous(), next_start


def discount_weights(
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    start: Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """γᵗ for every step, t its time index in its episode (:func:`episode_time`, continued from ``start``).

    The policy-gradient theorem for the discounted objective J = E[Σ_t γᵗ r_t] weights step t by γᵗ:

        ∇J = E[Σ_t γᵗ ∇ log π(a_t|s_t) Q(s_t, a_t)]     (Sutton et al. 2000; Thomas 2014)

    Nearly every implementation drops γᵗ and so follows Σ_t ∇ log π(a_t|s_t) Q(s_t, a_t), which is not the
    gradient of J (Nota & Thomas 2020); multiplying each step's score-function term (its advantage) by these
    weights restores it. The index must count from the episode's true start, across rollout boundaries:
    hence ``start``.

    Args:
        terminated, truncated: [T, N] bool (or 0/1) flags.
        gamma: discount γ ∈ [0, 1] (γ⁰ = 1, also for γ = 0).
        start: optional [N] non-negative integer tensor, the time index of row 0 (None: 0).
        dtype: floating dtype of the weights (None: torch's default dtype).

    Returns:
        (weights [T, N] in ``dtype``, next_start [N] int64: the ``start`` of the rollout that follows).
    """
    gamma = _c.unit_interval("gamma", gamma)
    time, next_start = episode_time(terminated, truncated, start)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    # In float64 and cast once: γᵗ for t in the thousands stays accurate (and underflows to 0 gracefully).
    weights = torch.pow(torch.tensor(gamma, dtype=torch.float64, device=time.device), time.double())
    return weights.to(dtype), next_start


def per_step_mean_baseline(returns: Tensor, step_in_episode: Tensor, mask: Tensor | None = None) -> Tensor:
    """Time-dependent baseline: the mean return over all (masked) steps with the same time-in-episode index.

        b_{t,n} = Σ_{(t',n') ∈ S, k(t',n') = k(t,n)} G_{t',n'} / |{(t',n') ∈ S : k(t',n') = k(t,n)}|

    with k = ``step_in_episode`` (see :func:`episode_index`) and S the steps where mask is True. Masked-out
    steps still receive the baseline of their index; an index with no masked step gets b = 0.
    Vectorised with scatter_add.

    Args:
        returns: [T, N] float returns.
        step_in_episode: [T, N] non-negative integer tensor.
        mask: optional bool (or 0/1) [T, N]; None means every step.

    Returns:
        [T, N] tensor, dtype/device of ``returns``.
    """
    returns = _c.rewards_tensor(returns, "returns", time_major=False)
    step_in_episode = _c.same_shape("step_in_episode", step_in_episode, returns, "returns").detach()
    dtype = step_in_episode.dtype
    if dtype == torch.bool or dtype.is_floating_point or dtype.is_complex:
        raise ConfigError(f"step_in_episode must be an integer tensor, got {step_in_episode.dtype}")
    mask = _c.flags("mask", mask, returns, "returns") if mask is not None else None
    if returns.numel() == 0:
        return torch.zeros_like(returns)
    index = step_in_episode.reshape(-1).long()
    if bool((index < 0).any()):
        raise ConfigError(f"step_in_episode must be >= 0, got min {int(index.min())}")
    size = int(index.max()) + 1
    weights = (torch.ones_like(returns) if mask is None else mask.to(returns.dtype)).reshape(-1)
    masked_returns = torch.where(weights > 0, returns.reshape(-1), torch.zeros_like(weights))
    sums = returns.new_zeros(size).scatter_add_(0, index, masked_returns)
    counts = returns.new_zeros(size).scatter_add_(0, index, weights)
    means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))
    return means[index].reshape(returns.shape)


def optimal_baseline(score_sums: Tensor, weighted_score_sums: Tensor) -> Tensor:
    """Variance-minimising constant baseline, one per parameter coordinate k.

    For episode i let S_ik = Σ_t ∂_k log π(a_t|s_t) and W_ik = Σ_t ∂_k log π(a_t|s_t) · G_t. The per-episode
    gradient estimate with baseline b_k is g_ik(b_k) = Σ_t ∂_k log π(a_t|s_t)(G_t − b_k) = W_ik − b_k S_ik and

        b_k* = argmin_b Σ_i (W_ik − b S_ik)² = Σ_i W_ik S_ik / Σ_i S_ik²

    (for G_t = G(τ_i), W_ik = S_ik G(τ_i) and this is the textbook b_k = E[S_k² G] / E[S_k²]).
    Coordinates with Σ_i S_ik² = 0 get b_k = 0 (never NaN).

    Args:
        score_sums: [M, P] S_ik (M episodes, P parameters; any trailing shape [M, *P] works).
        weighted_score_sums: [M, P] W_ik, same shape.

    Returns:
        [P] tensor (the trailing shape), dtype/device of ``score_sums``.
    """
    score_sums = _c.rewards_tensor(score_sums, "score_sums")
    weighted = _c.like("weighted_score_sums", weighted_score_sums, score_sums, "score_sums").detach()
    numerator = (weighted * score_sums).sum(dim=0)
    denominator = score_sums.square().sum(dim=0)
    nonzero = denominator > 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1.0), 0.0).to(score_sums.dtype)


# ---------------------------------------------------------------------------------------------------------
# group-relative advantages and normalisation


def group_relative_advantages(rewards: Tensor, eps: float = 1e-8, scale: bool = True) -> Tensor:
    """GRPO advantages: each sample's reward relative to its group of G samples from the same start.

        Â_i = (R_i − mean_j R_j) / (std_j R_j + ε)      (scale=True, GRPO; std = sample std, divisor G − 1)
        Â_i = R_i − mean_j R_j                            (scale=False, Dr. GRPO)

    A group of one sample, and any group whose rewards are all equal, gives exactly 0 (never NaN).

    Args:
        rewards: [..., G] float rewards; the last dimension is the group.
        eps: ε > 0 added to the std.
        scale: divide by the group std (GRPO) or not (Dr. GRPO).

    Returns:
        tensor of the shape/dtype/device of ``rewards``; zero mean over every group.
    """
    rewards = _c.rewards_tensor(rewards)
    eps = _check_eps(eps)
    if rewards.shape[-1] == 0:
        return torch.zeros_like(rewards)
    constant = (rewards == rewards[..., :1]).all(dim=-1, keepdim=True)  # also covers G = 1
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    if scale and rewards.shape[-1] >= 2:
        centred = centred / (rewards.std(dim=-1, keepdim=True, correction=1) + eps)
    return torch.where(constant, torch.zeros_like(centred), centred)


def leave_one_out_advantages(rewards: Tensor) -> Tensor:
    """RLOO advantages (Kool et al. 2019; Ahmadian et al. 2024): baseline = mean of the other k − 1 samples.

        Â_i = R_i − (1/(k−1)) Σ_{j≠i} R_j = k/(k−1) · (R_i − mean_j R_j)

    Args:
        rewards: [..., k] float rewards; the last dimension is the group, k ≥ 2.

    Returns:
        tensor of the shape/dtype/device of ``rewards``; zero mean over every group.
    """
    rewards = _c.rewards_tensor(rewards)
    k = rewards.shape[-1]
    if k < 2:
        raise ConfigError(f"leave_one_out_advantages: group size (last dim of rewards) must be >= 2, got {k}")
    others = rewards.sum(dim=-1, keepdim=True) - rewards
    return rewards - others / (k - 1)


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not float(eps) >= 0.0:
        raise ConfigError(f"eps must be a real number >= 0, got {eps!r}")
    return float(eps)


def normalize(advantages: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Batch-normalise advantages over the masked elements (S = where mask is True):

        μ = (1/|S|) Σ_S a,    σ = sqrt((1/|S|) Σ_S (a − μ)²)   (population std),    out = (a − μ) / (σ + ε)

    Masked-out elements are returned as 0. If S has at most one element, or all its elements are equal, every
    element is 0 (never NaN).

    Args:
        advantages: float tensor, any shape.
        mask: optional bool (or 0/1) tensor of the same shape; None means every element.
        eps: ε ≥ 0 added to σ.

    Returns:
        tensor of the shape/dtype/device of ``advantages``.
    """
    advantages = _c.rewards_tensor(advantages, "advantages", time_major=False)
    eps = _check_eps(eps)
    if mask is None:
        mask = torch.ones(advantages.shape, dtype=torch.bool, device=advantages.device)
    else:
        mask = _c.flags("mask", mask, advantages, "advantages")
    zero = torch.zeros_like(advantages)
    if advantages.numel() == 0:
        return zero
    count = mask.sum().to(advantages.dtype).clamp(min=1)
    mean = torch.where(mask, advantages, zero).sum() / count
    centred = torch.where(mask, advantages - mean, zero)
    std = (centred.square().sum() / count).sqrt()
    inf = torch.full_like(advantages, float("inf"))
    constant = torch.where(mask, advantages, inf).amin() >= torch.where(mask, advantages, -inf).amax()
    out = centred / (std + eps)
    return torch.where(mask & ~constant, out, zero)
