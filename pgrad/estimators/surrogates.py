"""Surrogate losses, KL estimators and the natural-gradient / trust-region machinery.

Everything here is a pure function: tensors in, tensors (or floats) out, no module state.

Conventions:

* Per-sample tensors are flat ``[B]`` (the caller flattens ``[T, N]``); any shape works as long as all the
  per-sample arguments of one call have exactly the same shape (no broadcasting: a silent broadcast is almost
  always a bug) and live on the same device. Secondary tensors are cast to the dtype of the first one
  (``log_prob`` / ``values`` / ``predictions``).
* ``mask`` is an optional bool (or 0/1) tensor of the per-sample shape. Masked-out entries contribute nothing,
  not even to the gradient (they may hold garbage such as ``-inf`` or NaN), and every mean is over the masked
  entries only. A mask selecting nothing gives a loss of 0 that is still connected to the graph (its gradient
  is 0) and "no change" diagnostics (ratios 1, KL 0, fractions 0).
* Loss functions return ``(loss, info)``: ``loss`` is a 0-d tensor to *minimise*, ``info`` a dict of Python
  floats computed without grad (``approx_kl``, ``clip_fraction``, ``ratio_mean``, ``ratio_max``, ``kl``, ...).
* Gradients flow only through the "current" quantities (``log_prob``, ``values``); old log-probs, old values,
  advantages and returns are detached inside.
* Bad arguments raise :class:`~pgrad.errors.ConfigError` with a one-line message naming the argument.

The second half (``flat_params`` ... ``backtracking_line_search``) is the TRPO / natural policy gradient
toolkit: Fisher-vector products by double backprop, conjugate gradient, the KL-constrained step size and the
backtracking line search.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from pgrad.errors import ConfigError

__all__ = [
    "adaptive_kl_beta",
    "backtracking_line_search",
    "clipped_surrogate",
    "conjugate_gradient",
    "explained_variance",
    "fisher_vector_product",
    "flat_grad",
    "flat_params",
    "importance_ratio",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_penalty_surrogate",
    "make_fisher_vector_product",
    "natural_gradient_step",
    "score_function_loss",
    "set_flat_params",
    "value_loss",
]


# ---------------------------------------------------------------------------------------------------------
# argument checks


def _real(name: str, value: object) -> float:
    """A real Python number (or a one-element tensor) as float; bools are rejected."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Tensor)):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ConfigError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().item()
    return float(value)


def _positive(name: str, value: object) -> float:
    x = _real(name, value)
    if not (x > 0.0 and math.isfinite(x)):
        raise ConfigError(f"{name} must be a finite number > 0, got {x}")
    return x


def _non_negative(name: str, value: object) -> float:
    x = _real(name, value)
    if not (x >= 0.0 and math.isfinite(x)):
        raise ConfigError(f"{name} must be a finite number >= 0, got {x}")
    return x


def _int_at_least(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _float_tensor(name: str, x: object) -> Tensor:
    """A floating tensor, NOT detached (the caller decides)."""
    if not isinstance(x, Tensor):
        raise ConfigError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ConfigError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def _like(name: str, x: object, ref: Tensor, ref_name: str) -> Tensor:
    """A floating tensor with exactly the shape and device of ``ref``, cast to its dtype (not detached)."""
    x = _float_tensor(name, x)
    if x.shape != ref.shape:
        raise ConfigError(
            f"{name} has shape {tuple(x.shape)}, expected the shape of {ref_name} {tuple(ref.shape)}"
        )
    if x.device != ref.device:
        raise ConfigError(f"{name} is on device {x.device}, expected the device of {ref_name} ({ref.device})")
    return x.to(ref.dtype)


def _mask(mask: object, ref: Tensor, ref_name: str) -> Tensor | None:
    """The mask as a bool tensor shaped like ``ref``; None (every entry counts) when None.

    None takes the unmasked fast path everywhere: PPO calls these once per minibatch, and on small CPU
    networks the extra where/select kernels of an all-True mask cost as much as the loss itself.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise ConfigError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != ref.shape:
        raise ConfigError(
            f"mask has shape {tuple(mask.shape)}, expected the shape of {ref_name} {tuple(ref.shape)}"
        )
    if mask.device != ref.device:
        raise ConfigError(
            f"mask is on device {mask.device}, expected the device of {ref_name} ({ref.device})"
        )
    mask = mask.detach()
    return mask if mask.dtype == torch.bool else mask != 0


def _masked(x: Tensor, mask: Tensor | None, fill: float = 0.0) -> Tensor:
    """x where mask, else ``fill``; the gradient to masked-out entries is exactly 0 (no NaN leaks through)."""
    return x if mask is None else torch.where(mask, x, torch.full_like(x, fill))


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of x over the masked entries (x must already be 0 where the mask is False); 0 if none."""
    if mask is None:
        return x.sum() / max(x.numel(), 1)
    count = mask.sum().clamp(min=1).to(x.dtype)
    return x.sum() / count


def _masked_stat(x: Tensor, mask: Tensor | None, stat: str, empty: float) -> float:
    """mean / max of a detached tensor over the masked entries as a Python float (``empty`` if none)."""
    with torch.no_grad():
        selected = x.detach() if mask is None else x.detach()[mask]
        if selected.numel() == 0:
            return empty
        return float(selected.mean() if stat == "mean" else selected.max())


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
    log_prob = _float_tensor("log_prob", log_prob)
    advantages = _like("advantages", advantages, log_prob, "log_prob").detach()
    m = _mask(mask, log_prob, "log_prob")
    if normalizer is not None:
        normalizer = _positive("normalizer", normalizer)
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
    log_prob = _float_tensor("log_prob", log_prob)
    old_log_prob = _like("old_log_prob", old_log_prob, log_prob, "log_prob").detach()
    return torch.exp(log_prob - old_log_prob)


def _ratio_parts(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, mask: object):
    """Checked inputs with masked-out entries neutralised: (log ratio, ratio, advantages, mask)."""
    log_prob = _float_tensor("log_prob", log_prob)
    old_log_prob = _like("old_log_prob", old_log_prob, log_prob, "log_prob").detach()
    advantages = _like("advantages", advantages, log_prob, "log_prob").detach()
    m = _mask(mask, log_prob, "log_prob")
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
    eps_high = _positive("clip_coef", clip_coef)
    eps_low = eps_high if clip_coef_low is None else _positive("clip_coef_low", clip_coef_low)
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
    beta = _non_negative("beta", beta)
    log_ratio, ratio, adv, m = _ratio_parts(log_prob, old_log_prob, advantages, mask)
    k3 = _masked(_k3_from_log_ratio(log_ratio), m)
    if kl is None:
        kl_term = _masked_mean(k3, m)
    else:
        kl = _float_tensor("kl", kl)
        if kl.ndim == 0:
            if kl.device != ratio.device:
                raise ConfigError(
                    f"kl is on device {kl.device}, expected the device of log_prob ({ratio.device})"
                )
            kl_term = kl.to(ratio.dtype)
        else:
            kl_term = _masked_mean(_masked(_like("kl", kl, ratio, "log_prob"), m), m)
    loss = -_masked_mean(ratio * adv, m) + beta * kl_term
    info = {
        "kl": float(kl_term.detach()),
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
    beta = _positive("beta", beta)
    kl = _real("kl", kl)
    target_kl = _positive("target_kl", target_kl)
    factor = _positive("factor", factor)
    if factor < 1.0:
        raise ConfigError(f"factor must be >= 1, got {factor}")
    scale = _positive("scale", scale)
    if kl > target_kl * factor:
        return beta * scale
    if kl < target_kl / factor:
        return beta / scale
    return beta


# ---------------------------------------------------------------------------------------------------------
# KL estimators


def _log_pair(log_q: object, log_p: object) -> tuple[Tensor, Tensor]:
    log_q = _float_tensor("log_q", log_q)
    return log_q, _like("log_p", log_p, log_q, "log_q")


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
    values = _float_tensor("values", values)
    returns = _like("returns", returns, values, "values").detach()
    m = _mask(mask, values, "values")
    v = _masked(values, m)
    err = v - _masked(returns, m)
    if clip_coef is None:
        return 0.5 * _masked_mean(err.square(), m), {}
    c = _positive("clip_coef", clip_coef)
    if old_values is None:
        raise ConfigError("value_loss: clip_coef is set but old_values is None (clipping needs old_values)")
    old = _masked(_like("old_values", old_values, values, "values").detach(), m)
    delta = v - old
    clipped_err = old + delta.clamp(-c, c) - _masked(returns, m)
    loss = 0.5 * _masked_mean(torch.maximum(err.square(), clipped_err.square()), m)
    with torch.no_grad():
        frac = _masked_stat((delta.abs() > c).to(values.dtype), m, "mean", 0.0)
    return loss, {"value_clip_fraction": frac}


def explained_variance(predictions: Tensor, targets: Tensor, mask: Tensor | None = None) -> float:
    """Fraction of the targets' variance explained by the predictions (a critic diagnostic).

        EV = 1 − Var[y − ŷ] / Var[y]          y = targets, ŷ = predictions, variances over the masked entries

    1 is perfect, 0 is no better than predicting the mean, negative is worse than that. Population variances
    (the ratio does not depend on the convention for ≥ 2 entries). Returns NaN when Var[y] == 0 (including
    fewer than 2 masked entries, or constant targets), where the quantity is undefined.
    """
    predictions = _float_tensor("predictions", predictions)
    targets = _like("targets", targets, predictions, "predictions")
    m = _mask(mask, predictions, "predictions")
    with torch.no_grad():
        y = targets.detach() if m is None else targets.detach()[m]
        resid = y - (predictions.detach() if m is None else predictions.detach()[m])
        if y.numel() == 0:
            return math.nan
        var_y = float(y.var(correction=0))
        if var_y == 0.0 or not math.isfinite(var_y):
            return math.nan
        return 1.0 - float(resid.var(correction=0)) / var_y


# ---------------------------------------------------------------------------------------------------------
# flat parameter vectors


def _param_list(params: object) -> list[Tensor]:
    if isinstance(params, Tensor):
        params = [params]
    if not isinstance(params, Iterable):
        raise ConfigError(f"params must be a sequence of tensors, got {type(params).__name__}")
    params = list(params)
    if not params:
        raise ConfigError("params is empty")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise ConfigError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
    return params


def flat_params(params: Iterable[Tensor]) -> Tensor:
    """All parameters concatenated into one new 1-D tensor (detached copy), in the order given."""
    return torch.cat([p.detach().reshape(-1) for p in _param_list(params)])


def set_flat_params(params: Iterable[Tensor], flat: Tensor) -> None:
    """Copy consecutive slices of the 1-D ``flat`` into the parameters in place (no autograd record)."""
    params = _param_list(params)
    flat = _float_tensor("flat", flat)
    total = sum(p.numel() for p in params)
    if flat.ndim != 1 or flat.numel() != total:
        raise ConfigError(
            f"flat must be 1-D with {total} elements (the parameter count), got {tuple(flat.shape)}"
        )
    with torch.no_grad():
        offset = 0
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n


def flat_grad(
    output: Tensor, params: Iterable[Tensor], create_graph: bool = False, retain_graph: bool | None = None
) -> Tensor:
    """∇_θ output as one 1-D tensor (parameter order), with zeros for parameters ``output`` does not use.

    Uses ``torch.autograd.grad`` (``.grad`` fields are not touched). ``retain_graph`` defaults to
    ``create_graph`` as in autograd. With ``create_graph=True`` the result is differentiable.
    """
    params = _param_list(params)
    output = _float_tensor("output", output)
    if output.numel() != 1:
        raise ConfigError(f"output must be a scalar, got shape {tuple(output.shape)}")
    if not output.requires_grad:
        return torch.cat([torch.zeros_like(p).reshape(-1) for p in params])
    grads = torch.autograd.grad(
        output.reshape(()), params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True
    )
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


# ---------------------------------------------------------------------------------------------------------
# Fisher-vector products


def make_fisher_vector_product(
    kl_fn: Callable[[], Tensor], params: Sequence[Tensor], damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """Build v ↦ F v + damping · v, doing the first backward pass once (for the many products of CG).

    Calls ``kl_fn()`` once, computes g(θ) = ∇_θ KL with ``create_graph=True`` and keeps that graph; each
    call of the returned function is one more backward pass, ∇_θ (g · v) with ``retain_graph=True``. See
    :func:`fisher_vector_product` for what ``kl_fn`` must return and why this is the Fisher matrix. The graph
    (and its memory) lives as long as the returned function; the parameters must not change meanwhile.

    Args:
        kl_fn: returns mean KL(sg(π_old) ‖ π_θ) at the current θ (= θ_old), see :func:`fisher_vector_product`.
        params: the policy parameters θ (the order defines the flat layout).
        damping: λ ≥ 0 added as λ v (Tikhonov damping; keeps F + λI positive definite for CG).

    Returns:
        fvp(v) for a 1-D v with one entry per parameter element; the result is detached.
    """
    params = _param_list(params)
    damping = _non_negative("damping", damping)
    numel = sum(p.numel() for p in params)
    kl = kl_fn()
    g = flat_grad(kl, params, create_graph=True)

    def fvp(vector: Tensor) -> Tensor:
        vector = _float_tensor("vector", vector)
        if vector.shape != (numel,):
            raise ConfigError(
                f"vector must have shape ({numel},) (the parameter count), got {tuple(vector.shape)}"
            )
        v = vector.detach().to(g.dtype)
        # a g without grad means the KL is (at most) linear in θ: zero curvature
        fv = flat_grad((g * v).sum(), params, retain_graph=True) if g.requires_grad else torch.zeros_like(v)
        return (fv + damping * v).detach()

    return fvp


def fisher_vector_product(
    kl_fn: Callable[[], Tensor], params: Sequence[Tensor], vector: Tensor, damping: float = 0.0
) -> Tensor:
    """F v + damping · v by double backprop, without forming the Fisher matrix F.

        g(θ)  = ∇_θ KL(π_old ‖ π_θ)                  (create_graph=True)
        F v   = ∇_θ (g(θ) · v)  at θ = θ_old           (v held constant)

    ``kl_fn()`` must return the *mean over states* of KL(sg(π_old)(·|s) ‖ π_θ(·|s)), where the old
    distribution was computed from the current parameters and then detached (for example
    ``kl_divergence(Categorical(logits=logits.detach()), Categorical(logits=logits)).mean()``), evaluated at
    the current parameters θ = θ_old. Then the KL is 0 and so is its gradient, but the gradient's graph exists
    and its derivative along v is the Hessian-vector product, and that Hessian is the Fisher matrix:

        ∇²_θ KL(π_old‖π_θ) = −E_{s, a~π_old}[∇²_θ log π_θ(a|s)]
                          = E_{s, a~π_θ}[∇ log π_θ(a|s) ∇ log π_θ(a|s)ᵀ] = F     at θ = θ_old

    (the second line is the information identity, from E_{a~π_θ}[∇ log π_θ] = 0 differentiated once more).
    If nothing is detached the KL is identically 0 and so is the product; the analytic KL is preferable to a
    sampled estimate (whose Hessian is only a sample average of −∇² log π). Each call runs ``kl_fn`` and two
    backward passes; use :func:`make_fisher_vector_product` to reuse the first one across CG iterations.

    Args:
        kl_fn: closure returning the mean KL as a 0-d tensor with grad.
        params: the policy parameters θ.
        vector: 1-D v with one entry per parameter element (the :func:`flat_params` layout).
        damping: λ ≥ 0.

    Returns:
        F v + λ v, detached, same layout as ``vector``.
    """
    return make_fisher_vector_product(kl_fn, params, damping)(vector)


# ---------------------------------------------------------------------------------------------------------
# conjugate gradient, natural step, line search


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum()


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iterations: int = 10, tolerance: float = 1e-10
) -> Tensor:
    """Approximately solve A x = b for a symmetric positive-definite A given only x ↦ A x.

    Standard conjugate gradient from x₀ = 0 (r₀ = p₀ = b):

        α_k = r_kᵀ r_k / p_kᵀ A p_k,   x_{k+1} = x_k + α_k p_k,   r_{k+1} = r_k − α_k A p_k,
        p_{k+1} = r_{k+1} + (r_{k+1}ᵀ r_{k+1} / r_kᵀ r_k) p_k

    It stops after ``iterations`` matrix-vector products, or as soon as ‖r‖² < ``tolerance``; in exact
    arithmetic n iterations solve an n×n system exactly. If pᵀ A p ≤ 0 or is not finite (A not positive
    definite along p) it stops and returns the current iterate (0 if that happens at the first step), so
    the result is always finite when ``matvec`` is finite on it.

    Args:
        matvec: v ↦ A v (e.g. a Fisher-vector product).
        b: right-hand side (any shape; usually the 1-D flat gradient).
        iterations: maximum number of iterations (matvec calls), ≥ 0.
        tolerance: stop when the squared residual norm falls below this, ≥ 0.

    Returns:
        x, detached, shaped like ``b``.
    """
    b = _float_tensor("b", b).detach()
    iterations = _int_at_least("iterations", iterations, 0)
    tolerance = _non_negative("tolerance", tolerance)
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = _dot(r, r)
    for _ in range(iterations):
        if not float(rr) >= tolerance:  # also stops on a NaN residual
            break
        ap = matvec(p).detach().to(b.dtype)
        pap = _dot(p, ap)
        if not (float(pap) > 0.0 and math.isfinite(float(pap))):
            break
        alpha = rr / pap
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = _dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def natural_gradient_step(
    grad: Tensor, fvp: Callable[[Tensor], Tensor], max_kl: float, cg_iterations: int = 10
) -> tuple[Tensor, dict[str, float]]:
    """KL-constrained natural-gradient step (TRPO's step direction and maximal step size).

        x = F⁻¹ g  (by :func:`conjugate_gradient`),    β = sqrt(2 δ / xᵀ F x),    step = β x

    so the quadratic model of the KL, ½ stepᵀ F step, equals δ = ``max_kl``, and the linear model of the
    objective improves by gᵀ step = β gᵀ x. The step is along +F⁻¹g: to *maximise* an objective pass its
    gradient and add the step; to minimise a loss pass −∇loss (then θ + step decreases it).

    Failure: if xᵀ F x ≤ 0 or x / xᵀ F x is not finite (zero gradient, F not positive definite, NaNs), no
    ConfigError is raised: the step is all zeros, ``step_size`` and ``expected_improvement`` are 0 and
    ``natural_step_failed`` is 1.0. The step is never NaN.

    Args:
        grad: 1-D g (e.g. the flat gradient of the surrogate objective).
        fvp: v ↦ F v (+ damping v), e.g. from :func:`make_fisher_vector_product`.
        max_kl: δ > 0.
        cg_iterations: CG iterations (≥ 1); one more ``fvp`` call computes F x.

    Returns:
        (step, info) with info ``step_size`` (β), ``xFx``, ``cg_residual`` (‖F x − g‖, Euclidean norm),
        ``expected_improvement`` (gᵀ step), ``natural_step_failed`` (0.0 or 1.0). ``xFx`` and ``cg_residual``
        are reported as computed, so they may be non-finite when the step failed.
    """
    grad = _float_tensor("grad", grad).detach()
    max_kl = _positive("max_kl", max_kl)
    cg_iterations = _int_at_least("cg_iterations", cg_iterations, 1)
    x = conjugate_gradient(fvp, grad, iterations=cg_iterations)
    fx = fvp(x).detach().to(grad.dtype)
    xfx = float(_dot(x, fx))
    residual = float(torch.linalg.vector_norm(fx - grad))
    ok = xfx > 0.0 and math.isfinite(xfx) and bool(torch.isfinite(x).all())
    if ok:
        beta = math.sqrt(2.0 * max_kl / xfx)
        step = beta * x
        ok = bool(torch.isfinite(step).all()) and math.isfinite(beta)
    if not ok:
        step, beta = torch.zeros_like(grad), 0.0
    info = {
        "step_size": beta,
        "xFx": xfx,
        "cg_residual": residual,
        "expected_improvement": float(_dot(grad, step)) if ok else 0.0,
        "natural_step_failed": 0.0 if ok else 1.0,
    }
    return step, info


def backtracking_line_search(
    f: Callable[[Tensor], tuple[float, float]],
    x0: Tensor,
    full_step: Tensor,
    expected_improvement: float,
    max_kl: float,
    max_backtracks: int = 10,
    accept_ratio: float = 0.1,
    shrink: float = 0.5,
) -> tuple[Tensor, dict[str, float]]:
    """TRPO's backtracking line search on a surrogate *loss* under a KL constraint.

    ``f(x)`` returns (surrogate_loss, mean_kl) at flat parameters x (loss to minimise, KL(π_old ‖ π_x)). With
    L₀ = f(x0)[0], for k = 0 .. max_backtracks−1 it tries x_k = x0 + shrink^k · full_step and accepts the
    first x_k with

        kl_k ≤ max_kl,    L₀ − L_k > 0,    (L₀ − L_k) / (shrink^k · expected_improvement) > accept_ratio

    where ``expected_improvement`` is the first-order decrease of the loss for the full step (−∇Lᵀ full_step,
    i.e. info["expected_improvement"] of :func:`natural_gradient_step` when it was given −∇L). If none is
    accepted (or ``expected_improvement`` ≤ 0 or not finite, i.e. no first-order decrease) it returns x0.
    NaN losses or KLs reject that candidate.

    ``f`` is typically ``lambda x: (set_flat_params(params, x), evaluate())[1]``; it may leave the parameters
    at the last tried point, so the caller must ``set_flat_params(params, result)`` afterwards.

    Args:
        f: x ↦ (loss, kl), floats or one-element tensors. Called once at x0 and once per candidate.
        x0: current flat parameters.
        full_step: the full step (e.g. from :func:`natural_gradient_step`), shaped like x0.
        expected_improvement: first-order loss decrease for the full step.
        max_kl: δ > 0.
        max_backtracks: number of candidates tried, ≥ 1.
        accept_ratio: minimum actual/expected improvement ratio, ≥ 0.
        shrink: step shrink factor in (0, 1).

    Returns:
        (x, info): x is a new tensor (x0's values when rejected); info ``accepted`` (0/1), ``backtracks``
        (k of the accepted candidate, or the number tried when rejected), ``step_fraction`` (shrink^k, 0 when
        rejected), ``improvement`` (L₀ − L_k, 0 when rejected), ``kl`` (kl_k, 0 when rejected).
    """
    x0 = _float_tensor("x0", x0).detach()
    full_step = _like("full_step", full_step, x0, "x0").detach()
    expected_improvement = _real("expected_improvement", expected_improvement)
    max_kl = _positive("max_kl", max_kl)
    max_backtracks = _int_at_least("max_backtracks", max_backtracks, 1)
    accept_ratio = _non_negative("accept_ratio", accept_ratio)
    shrink = _real("shrink", shrink)
    if not 0.0 < shrink < 1.0:
        raise ConfigError(f"shrink must be in (0, 1), got {shrink}")
    rejected = {"accepted": 0.0, "backtracks": 0.0, "step_fraction": 0.0, "improvement": 0.0, "kl": 0.0}
    if not (expected_improvement > 0.0 and math.isfinite(expected_improvement)):
        return x0.clone(), rejected
    loss0 = _real("f(x0) loss", f(x0.clone())[0])
    for k in range(max_backtracks):
        fraction = shrink**k
        x = x0 + fraction * full_step
        loss, kl = f(x)
        loss, kl = _real("f(x) loss", loss), _real("f(x) kl", kl)
        improvement = loss0 - loss
        if (
            kl <= max_kl
            and improvement > 0.0
            and improvement / (fraction * expected_improvement) > accept_ratio
        ):
            info = {
                "accepted": 1.0,
                "backtracks": float(k),
                "step_fraction": fraction,
                "improvement": improvement,
                "kl": kl,
            }
            return x, info
    return x0.clone(), {**rejected, "backtracks": float(max_backtracks)}
