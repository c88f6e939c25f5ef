"""Score-function surrogate losses, KL estimators and the critic loss: pure functions, tensors in and out.

Conventions:

* Per-sample tensors are flat ``[B]`` (the caller flattens ``[T, N]``); any shape works as long as all the
  per-sample arguments of one call have exactly the same shape (no broadcasting: a silent broadcast is almost
  always a bug) and live on the same device. Secondary tensors are cast to the dtype of the first one
  (``log_prob`` / ``values`` / ``predictions``).
* ``mask`` is an optional bool (or 0/1) tensor of the per-sample shape. Masked-out entries contribute nothing,
  not even to the gradient (they may hold garbage such as ``-inf`` or NaN), and every mean is over the masked
  entries only. A mask selecting nothing gives a loss of 0 that is still connected to the graph (its gradient
  is 0) and "no change" diagnostics (ratios 1, KL 0, fractions 0).
* Loss functions return ``(loss, info)``: ``loss`` is a 0-d tensor to *minimise*, ``info`` a dict of detached
  0-d tensors (``approx_kl``, ``clip_fraction``, ``ratio_mean``, ``ratio_max``, ``kl``, ...): no device sync
  per call; the caller converts them to numbers once, when it logs.
* Gradients flow only through the "current" quantities (``log_prob``, ``values``); old log-probs, old values,
  advantages and returns are detached inside.
* Bad arguments raise :class:`~pgrad.errors.ConfigError` with a one-line message naming the argument.

The natural-gradient / TRPO machinery lives in :mod:`pgrad.estimators.trust_region`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c

__all__ = [
    "adaptive_kl_beta",
    "clipped_surrogate",
    "explained_variance",
    "importance_ratio",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_penalty_surrogate",
    "score_function_loss",
    "value_loss",
]


# ---------------------------------------------------------------------------------------------------------
# masked reductions


def _masked(x: Tensor, mask: Tensor | None, fill: float = 0.0) -> Tensor:
    """x where mask, else ``fill``; the gradient to masked-out entries is exactly 0 (no NaN leaks through)."""
    return x if mask is None else torch.where(mask, x, torch.full_like(x, fill))


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of x over the masked entries (x must already be 0 where the mask is False); 0 if none."""
    if mask is None:
        return x.sum() / max(x.numel(), 1)
    count = mask.sum().clamp(min=1).to(x.dtype)
    return x.sum() / count


def _masked_stat(x: Tensor, mask: Tensor | None, stat: str, empty: float) -> Tensor:
    """mean / max of a detached tensor over the masked entries, a 0-d tensor (``empty`` if none); no sync."""
    with torch.no_grad():
        x = x.detach()
        if mask is None:
            if x.numel() == 0:
                return x.new_full((), empty)
            return x.mean() if stat == "mean" else x.max()
        count = mask.sum()
        if stat == "mean":
            value = torch.where(mask, x, torch.zeros_like(x)).sum() / count.clamp(min=1).to(x.dtype)
        else:
            filled = torch.where(mask, x, torch.full_like(x, -math.inf))
            value = filled.max() if x.numel() else x.new_zeros(())
        return torch.where(count > 0, value, x.new_full((), empty))


# ---------------------------------------------------------------------------------------------------------
# likelihood-ratio surrogates


def score_function_loss(
    log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    normalizer: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Score-function (REINFORCE) surrogate loss.

        L(θ) = −(1/Z) Σ_{i ∈ S} log π_θ(a_i|s_i) · Â_i        S = masked entries, Z = normalizer (default |S|)

    Its gradient −(1/Z) Σ_i Â_i ∇ log π_θ(a_i|s_i) is the negative score-function (likelihood-ratio) estimate
    of ∇J, so minimising L ascends J. The advantages are detached. Use ``normalizer`` for a sum normalised by
    something other than the sample count, e.g. the number of episodes (per-trajectory REINFORCE).

    Args:
        log_prob: [B] log π_θ(a_i|s_i), with grad.
        advantages: [B] Â_i (any return / advantage / baselined return); detached inside.
        mask: optional [B] bool (or 0/1).
        normalizer: Z > 0; None means the number of masked entries (L is then a mean; 0 if the mask is empty).

    Returns:
        (loss, info) with info ``log_prob_mean`` and ``advantage_mean`` (over masked entries, 0 if empty).
    """
    log_prob = _c.float_tensor("log_prob", log_prob)
    advantages = _c.like("advantages", advantages, log_prob, "log_prob").detach()
    m = _c.optional_mask(mask, log_prob, "log_prob")
    if normalizer is not None:
        normalizer = _c.positive("normalizer", normalizer)
    terms = _masked(log_prob, m) * _masked(advantages, m)
    loss = -terms.sum() / normalizer if normalizer is not None else -_masked_mean(terms, m)
    info = {
        "log_prob_mean": _masked_stat(log_prob, m, "mean", 0.0),
        "advantage_mean": _masked_stat(advantages, m, "mean", 0.0),
    }
    return loss, info


def importance_ratio(log_prob: Tensor, old_log_prob: Tensor) -> Tensor:
    """Per-sample likelihood ratio ρ_i = π_θ(a_i|s_i) / π_old(a_i|s_i) = exp(log π_θ − log π_old).

    ``old_log_prob`` is detached; the gradient is ∇ρ = ρ ∇ log π_θ. Shape/dtype/device of ``log_prob``.
    """
    log_prob = _c.float_tensor("log_prob", log_prob)
    old_log_prob = _c.like("old_log_prob", old_log_prob, log_prob, "log_prob").detach()
    return torch.exp(log_prob - old_log_prob)


def _ratio_parts(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, mask: object):
    """Checked inputs with masked-out entries neutralised: (log ratio, ratio, advantages, mask)."""
    log_prob = _c.float_tensor("log_prob", log_prob)
    old_log_prob = _c.like("old_log_prob", old_log_prob, log_prob, "log_prob").detach()
    advantages = _c.like("advantages", advantages, log_prob, "log_prob").detach()
    m = _c.optional_mask(mask, log_prob, "log_prob")
    log_ratio = _masked(log_prob, m) - _masked(old_log_prob, m)  # 0 (ratio 1) where masked out
    return log_ratio, torch.exp(log_ratio), _masked(advantages, m), m


def _k3_from_log_ratio(log_ratio: Tensor) -> Tensor:
    """(r − 1) − log r with log r given; ≥ 0, accurate for r ≈ 1 (expm1)."""
    return (torch.expm1(log_ratio) - log_ratio).clamp(min=0.0)


def clipped_surrogate(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    clip_coef: float,
    mask: Tensor | None = None,
    clip_coef_low: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped surrogate loss (Schulman et al. 2017), optionally with DAPO's asymmetric clip range.

        ρ_i = π_θ(a_i|s_i) / π_old(a_i|s_i)
        L(θ) = −mean_i min(ρ_i Â_i, clip(ρ_i, 1 − ε_low, 1 + ε) Â_i)      ε = clip_coef, ε_low = clip_coef_low

    The per-sample gradient is Â_i ∇ρ_i, except that it is 0 where the clip is active, i.e. Â_i > 0 and
    ρ_i > 1 + ε, or Â_i < 0 and ρ_i < 1 − ε_low (the objective is pessimistic: the ratio is never pushed
    further out of the trust region, but a move back in is always followed). ε_low defaults to ε; a larger ε
    than ε_low ("clip-higher", DAPO, Yu et al. 2025) lets low-probability actions grow more.

    Args:
        log_prob: [B] log π_θ(a|s), with grad.
        old_log_prob: [B] log π_old(a|s) of the policy that collected the data (detached inside).
        advantages: [B] Â (detached inside).
        clip_coef: ε > 0 (upper bound 1 + ε).
        mask: optional [B] bool (or 0/1).
        clip_coef_low: ε_low > 0 (lower bound 1 − ε_low; ε_low ≥ 1 means no lower clip); None means ε_low = ε.

    Returns:
        (loss, info): info ``approx_kl`` = mean((ρ − 1) − log ρ) (the k3 estimate of KL(π_old‖π_θ), ≥ 0),
        ``clip_fraction`` = fraction of samples with ρ > 1 + ε or ρ < 1 − ε_low, ``ratio_mean``,
        ``ratio_max``.
    """
    eps_high = _c.positive("clip_coef", clip_coef)
    eps_low = eps_high if clip_coef_low is None else _c.positive("clip_coef_low", clip_coef_low)
    log_ratio, ratio, adv, m = _ratio_parts(log_prob, old_log_prob, advantages, mask)
    low, high = 1.0 - eps_low, 1.0 + eps_high
    surrogate = torch.minimum(ratio * adv, ratio.clamp(low, high) * adv)
    loss = -_masked_mean(surrogate, m)
    with torch.no_grad():
        clipped = (ratio > high) | (ratio < low)
        clipped = clipped if m is None else clipped & m
        info = {
            "approx_kl": _masked_stat(_k3_from_log_ratio(log_ratio), m, "mean", 0.0),
            "clip_fraction": _masked_stat(clipped.to(ratio.dtype), m, "mean", 0.0),
            "ratio_mean": _masked_stat(ratio, m, "mean", 1.0),
            "ratio_max": _masked_stat(ratio, m, "max", 1.0),
        }
    return loss, info


def kl_penalty_surrogate(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    beta: float,
    kl: Tensor | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's adaptive-KL-penalty surrogate loss (Schulman et al. 2017, section 4).

        L(θ) = −mean_i ρ_i Â_i + β · KL(π_old ‖ π_θ)                    ρ_i = π_θ(a_i|s_i) / π_old(a_i|s_i)

    The KL term is either ``kl`` as given or, when ``kl`` is None, the k3 sample estimate with the actions
    sampled from π_old (see :func:`kl_k3` with q = π_old, p = π_θ, r = p/q = ρ):

        KL(π_old ‖ π_θ) ≈ mean_i (ρ_i − 1) − log ρ_i

    It is ≥ 0 per sample, unbiased in value and in gradient (E_old[∇ρ] = ∇ Σ_a π_θ = 0, so E[∇k3] =
    −E_old[∇ log π_θ] = ∇KL), and its gradient vanishes at θ = θ_old.

    Args:
        log_prob, old_log_prob, advantages, mask: as in :func:`clipped_surrogate`.
        beta: penalty coefficient β ≥ 0 (adapt it between updates with :func:`adaptive_kl_beta`).
        kl: optional KL(π_old ‖ π_θ) *with grad*: a 0-d tensor used as is (e.g. the mean of
            ``torch.distributions.kl_divergence(old_dist, new_dist)`` with the old distribution detached),
            or a per-sample tensor shaped like ``log_prob`` (averaged over the masked entries).

    Returns:
        (loss, info): info ``kl`` (the KL term's value), ``approx_kl`` (the k3 estimate, always),
        ``ratio_mean``, ``ratio_max``.
    """
    beta = _c.non_negative("beta", beta)
    log_ratio, ratio, adv, m = _ratio_parts(log_prob, old_log_prob, advantages, mask)
    k3 = _masked(_k3_from_log_ratio(log_ratio), m)
    if kl is None:
        kl_term = _masked_mean(k3, m)
    else:
        kl = _c.float_tensor("kl", kl)
        if kl.ndim == 0:
            if kl.device != ratio.device:
                raise ConfigError(
                    f"kl is on device {kl.device}, expected the device of log_prob ({ratio.device})"
                )
            kl_term = kl.to(ratio.dtype)
        else:
            kl_term = _masked_mean(_masked(_c.like("kl", kl, ratio, "log_prob"), m), m)
    loss = -_masked_mean(ratio * adv, m) + beta * kl_term
    info = {
        "kl": kl_term.detach(),
        "approx_kl": _masked_stat(k3, m, "mean", 0.0),
        "ratio_mean": _masked_stat(ratio, m, "mean", 1.0),
        "ratio_max": _masked_stat(ratio, m, "max", 1.0),
    }
    return loss, info


def adaptive_kl_beta(
    beta: float, kl: float | Tensor, target_kl: float, factor: float = 1.5, scale: float = 2.0
) -> float:
    """Adaptive KL-penalty coefficient update of PPO (Schulman et al. 2017, section 4).

        β ← β · scale     if KL > target · factor
        β ← β / scale     if KL < target / factor
        β ← β             otherwise (the boundaries themselves keep β)

    ``kl`` is the mean KL(π_old ‖ π_θ) measured after the update. A NaN ``kl`` leaves β unchanged.

    Args:
        beta: current β > 0.
        kl: measured KL (float or one-element tensor).
        target_kl: d_targ > 0.
        factor: tolerance band factor ≥ 1 (paper: 1.5).
        scale: multiplicative change > 0 (paper: 2).

    Returns:
        The new β as a float.
    """
    beta = _c.positive("beta", beta)
    kl = _c.real("kl", kl)
    target_kl = _c.positive("target_kl", target_kl)
    factor = _c.positive("factor", factor)
    if factor < 1.0:
        raise ConfigError(f"factor must be >= 1, got {factor}")
    scale = _c.positive("scale", scale)
    if kl > target_kl * factor:
        return beta * scale
    if kl < target_kl / factor:
        return beta / scale
    return beta


# ---------------------------------------------------------------------------------------------------------
# KL estimators


def _log_pair(log_q: object, log_p: object) -> tuple[Tensor, Tensor]:
    log_q = _c.float_tensor("log_q", log_q)
    return log_q, _c.like("log_p", log_p, log_q, "log_q")


def kl_k1(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Naive per-sample estimator of KL(q ‖ p) from samples x ~ q (Schulman, "Approximating KL divergence").

        k1(x) = log q(x) − log p(x)          E_q[k1] = KL(q‖p)  (unbiased, high variance, can be negative)

    Args:
        log_q: log q(x_i) of the sampling distribution.
        log_p: log p(x_i), same shape.

    Returns:
        Per-sample estimates (shape of ``log_q``). Gradients flow through both arguments: detach the one
        that is fixed.
    """
    log_q, log_p = _log_pair(log_q, log_p)
    return log_q - log_p


def kl_k2(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Low-variance, *biased* per-sample estimator of KL(q ‖ p) from samples x ~ q.

        k2(x) = ½ (log p(x) − log q(x))²       ≥ 0;  E_q[k2] = KL(q‖p) + O(δ³) for p = q + δ

    (its expectation is an f-divergence that agrees with KL to second order). Arguments as in :func:`kl_k1`.
    """
    log_q, log_p = _log_pair(log_q, log_p)
    return 0.5 * (log_p - log_q).square()


def kl_k3(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Unbiased, low-variance, always non-negative per-sample estimator of KL(q ‖ p) from samples x ~ q.

        r = p(x)/q(x),    k3(x) = (r − 1) − log r           E_q[k3] = E_q[r] − 1 + KL(q‖p) = KL(q‖p)

    (log r is the k1 estimate with the control variate r − 1, whose mean under q is 0; k3 ≥ 0 since
    log r ≤ r − 1.) Computed as expm1(log r) − log r, accurate for r ≈ 1.

    Use in PPO: KL(π_old ‖ π_θ) with samples from π_old is k3 with q = π_old, p = π_θ (r = the importance
    ratio ρ). Use in GRPO (Shao et al. 2024): the per-token KL to a reference policy π_ref with samples from
    π_θ is k3 with q = π_θ, p = π_ref, i.e. ``kl_k3(log_q=logp_theta, log_p=logp_ref)`` =
    π_ref/π_θ − log(π_ref/π_θ) − 1 (detach ``log_p``; the gradient then flows through π_θ).

    Arguments as in :func:`kl_k1`.
    """
    log_q, log_p = _log_pair(log_q, log_p)
    return _k3_from_log_ratio(log_p - log_q)


# ---------------------------------------------------------------------------------------------------------
# critic


def value_loss(
    values: Tensor,
    returns: Tensor,
    old_values: Tensor | None = None,
    clip_coef: float | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Squared-error critic loss, with PPO's optional value clipping.

        unclipped:  L = ½ mean_i (V_i − R_i)²
        clipped:    V^clip_i = V^old_i + clip(V_i − V^old_i, −c, c)
                    L = ½ mean_i max((V_i − R_i)², (V^clip_i − R_i)²)

    Clipping is applied only when both ``clip_coef`` and ``old_values`` are given (``old_values`` alone is
    ignored, so a caller may always pass it and switch clipping with ``clip_coef``). ``returns`` and
    ``old_values`` are detached.

    Args:
        values: [B] V_θ(s_i), with grad.
        returns: [B] regression targets R_i.
        old_values: [B] V_old(s_i) predicted when the data was collected.
        clip_coef: c > 0.
        mask: optional [B] bool (or 0/1).

    Returns:
        (loss, info): info is empty without clipping; with clipping ``value_clip_fraction`` = fraction of
        samples with |V − V_old| > c (where the clamp is active).
    """
    values = _c.float_tensor("values", values)
    returns = _c.like("returns", returns, values, "values").detach()
    m = _c.optional_mask(mask, values, "values")
    v = _masked(values, m)
    err = v - _masked(returns, m)
    if clip_coef is None:
        return 0.5 * _masked_mean(err.square(), m), {}
    c = _c.positive("clip_coef", clip_coef)
    if old_values is None:
        raise ConfigError("value_loss: clip_coef is set but old_values is None (clipping needs old_values)")
    old = _masked(_c.like("old_values", old_values, values, "values").detach(), m)
    delta = v - old
    clipped_err = old + delta.clamp(-c, c) - _masked(returns, m)
    loss = 0.5 * _masked_mean(torch.maximum(err.square(), clipped_err.square()), m)
    with torch.no_grad():
        frac = _masked_stat((delta.abs() > c).to(values.dtype), m, "mean", 0.0)
    return loss, {"value_clip_fraction": frac}


def explained_variance(predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Fraction of the targets' variance explained by the predictions (a critic diagnostic), a 0-d tensor.

        EV = 1 − Var[y − ŷ] / Var[y]          y = targets, ŷ = predictions, variances over the masked entries

    1 is perfect, 0 is no better than predicting the mean, negative is worse than that. Population variances
    (the ratio does not depend on the convention for ≥ 2 entries). NaN when Var[y] == 0 (including fewer
    than 2 masked entries, or constant targets), where the quantity is undefined.
    """
    predictions = _c.float_tensor("predictions", predictions)
    targets = _c.like("targets", targets, predictions, "predictions")
    m = _c.optional_mask(mask, predictions, "predictions")
    with torch.no_grad():
        y = targets.detach() if m is None else targets.detach()[m]
        resid = y - (predictions.detach() if m is None else predictions.detach()[m])
        if y.numel() == 0:
            return y.new_full((), math.nan)
        var_y = y.var(correction=0)
        explained = 1.0 - resid.var(correction=0) / var_y
        return torch.where((var_y > 0) & torch.isfinite(var_y), explained, y.new_full((), math.nan))
