"""Zeroth-order gradient estimators for a black-box objective f(θ): finite differences, Gaussian smoothing
(antithetic evolution strategies) and Suh et al. 2022's α-order mix with a first-order estimate.

The objective is a **batched** callable: ``f(thetas)`` maps a [B, P] batch of parameter vectors to a [B]
tensor of values (e.g. the mean return of B policies, each rolled out on its own envs). Every estimator
builds all the points it needs and evaluates them in one call (or in chunks of ``chunk_size`` rows), without
grad; wrap a function of a single [P] vector with :func:`batched`. An estimator returns
``(gradient [P], evaluations)``, ``evaluations`` being the number of rows f was evaluated on, the cost the lab
compares estimators by.

Which gradient each estimates:

* :func:`finite_difference_gradient`: ∇f(θ) itself, with a truncation error O(ε) (forward) or O(ε²) (central;
  exact for quadratic f) plus a round-off error O(u·|f|/ε) (u the unit round-off), so the error against ε is a
  V (minimum near ε ≈ u^{1/2} forward, u^{1/3} central).
* :func:`gaussian_smoothing_gradient`: ∇F_σ(θ) with F_σ(θ) = E_{ε~N(0,I)} f(θ + σε) (Nesterov & Spokoiny 2017;
  Salimans et al. 2017), unbiased for F_σ, which is f's gradient for quadratic f. Works where f is
  discontinuous, which a pathwise gradient does not (Suh et al. 2022's Heaviside example).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c

__all__ = [
    "adaptive_alpha_order_gradient",
    "alpha_order_gradient",
    "batched",
    "finite_difference_gradient",
    "gaussian_smoothing_gradient",
    "gaussian_smoothing_samples",
]

BatchedFunction = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------------------------------------------------
# argument checks


def _what(x: object) -> str:
    """A bad argument in one line: a tensor's dtype and shape (its repr spans lines), else its repr, cut."""
    return f"a {x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"{x!r:.60}"


def _check_theta(theta: object) -> Tensor:
    if not isinstance(theta, Tensor) or not theta.is_floating_point():
        raise ConfigError(f"theta must be a floating torch.Tensor [P], got {_what(theta)}")
    if theta.ndim != 1 or theta.numel() < 1:
        raise ConfigError(
            f"theta must be a 1-D parameter vector [P] with P >= 1, got shape {tuple(theta.shape)}"
        )
    return theta.detach()


def _evaluate(
    f: BatchedFunction, rows: Callable[[int, int], Tensor], count: int, chunk_size: int | None
) -> Tensor:
    """f on ``count`` points built by ``rows(start, stop)`` -> [stop − start, P] a chunk at a time (a
    finite-difference sweep over P coordinates never holds a [2P, P] matrix): [count], without grad."""
    if not callable(f):
        raise ConfigError(f"f must be callable, got {type(f).__name__}")
    step = count if chunk_size is None else _c.int_at_least("chunk_size", chunk_size, 1)
    outs = []
    with torch.no_grad():
        for start in range(0, count, step):
            points = rows(start, min(start + step, count))
            out = f(points)
            if not isinstance(out, Tensor) or out.shape != (points.shape[0],):
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ConfigError(
                    f"f must map a [B, P] batch to a [B] tensor: got {got} for B = {points.shape[0]}"
                )
            outs.append(out.detach().to(points.dtype))
    return torch.cat(outs)


def _slicer(points: Tensor) -> Callable[[int, int], Tensor]:
    return lambda start, stop: points[start:stop]


def batched(f_single: Callable[[Tensor], Tensor | float]) -> BatchedFunction:
    """Turn a function of one parameter vector [P] -> scalar into the [B, P] -> [B] form (a Python loop over
    the rows: for black boxes that cannot evaluate a batch; a vectorised f is much faster)."""

    def f(thetas: Tensor) -> Tensor:
        values = [torch.as_tensor(f_single(row), dtype=thetas.dtype).reshape(()) for row in thetas]
        return torch.stack(values) if values else thetas.new_zeros(0)

    return f


# ---------------------------------------------------------------------------------------------------------
# finite differences


def finite_difference_gradient(
    f: BatchedFunction,
    theta: Tensor,
    epsilon: float,
    central: bool = True,
    f_theta: float | Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, int]:
    """Coordinate-wise finite differences, one perturbation per coordinate.

        central:  ĝ_i = (f(θ + ε e_i) − f(θ − ε e_i)) / h_i          (2P evaluations)
        forward:  ĝ_i = (f(θ + ε e_i) − f(θ)) / h_i                  (P evaluations, +1 for f(θ) unless given)

    where h_i is the step actually taken in floating point, (θ_i + ε) − (θ_i − ε) resp. (θ_i + ε) − θ_i (a
    standard trick that removes the representation error of the step itself).

    Args:
        f: batched objective [B, P] -> [B].
        theta: [P] point.
        epsilon: step ε > 0.
        central: central (default) or forward differences.
        f_theta: f(θ) if already known (forward differences only), saving one evaluation.
        chunk_size: evaluate at most this many rows per call of f.

    Returns:
        (gradient [P] in θ's dtype, number of evaluations).
    """
    theta = _check_theta(theta)
    eps = _c.positive("epsilon", epsilon)
    P = theta.numel()

    def coordinate_rows(start: int, stop: int) -> Tensor:
        """Rows θ + ε e_i for i in [start, stop) ∩ [0, P), then θ − ε e_{i−P} (central) or θ (forward)."""
        index = torch.arange(start, stop, device=theta.device)
        points = theta.expand(stop - start, P).clone()
        coord = index % P
        if central:
            sign = torch.where(index < P, 1.0, -1.0).to(theta.dtype)
        else:
            sign = (index < P).to(theta.dtype)  # row P is θ itself
            coord = torch.where(index < P, coord, torch.zeros_like(coord))
        rows = torch.arange(stop - start, device=theta.device)
        points[rows, coord] = theta[coord] + sign * eps
        return points

    if central:
        values = _evaluate(f, coordinate_rows, 2 * P, chunk_size)
        steps = (theta + eps) - (theta - eps)  # the steps actually taken, in floating point
        return (values[:P] - values[P:]) / steps, 2 * P
    if f_theta is not None:
        if isinstance(f_theta, bool) or not isinstance(f_theta, (numbers.Real, Tensor)):
            raise ConfigError(f"f_theta must be a real number, got {f_theta!r}")
        center = torch.as_tensor(f_theta, dtype=theta.dtype, device=theta.device).detach().reshape(())
        values, evaluations = _evaluate(f, coordinate_rows, P, chunk_size), P
    else:
        all_values = _evaluate(f, coordinate_rows, P + 1, chunk_size)
        values, center, evaluations = all_values[:P], all_values[P], P + 1
    steps = (theta + eps) - theta
    return (values - center) / steps, evaluations


# ---------------------------------------------------------------------------------------------------------
# Gaussian smoothing


def gaussian_smoothing_samples(
    f: BatchedFunction,
    theta: Tensor,
    sigma: float,
    num_samples: int,
    antithetic: bool = True,
    baseline: float | Tensor | str | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, int]:
    """Per-direction Gaussian-smoothing estimates of ∇F_σ(θ), F_σ(θ) = E_{ε~N(0,I)} f(θ + σε).

    Stein's identity gives ∇F_σ(θ) = E[f(θ + σε) ε] / σ. For directions ε_1..ε_S ~ N(0, I_P):

        antithetic:  ĝ_s = (f(θ + σε_s) − f(θ − σε_s)) ε_s / (2σ)       (2S evaluations)
        one-sided:   ĝ_s = (f(θ + σε_s) − b) ε_s / σ                      (S evaluations, + 1 if b = "center")

    Each ĝ_s is unbiased for ∇F_σ. The antithetic pair cancels every even-order term of f around θ (the
    constant and the quadratic): on a quadratic f it is exactly (∇f(θ)·ε) ε, so its variance does not depend
    on f(θ) or the curvature. The one-sided form's baseline b (any constant, E[ε] = 0 keeps it unbiased)
    removes the constant term: b = f(θ) (``"center"``) is Suh et al. 2022's zeroth-order batched gradient.

    Args:
        f: batched objective [B, P] -> [B].
        theta: [P] centre.
        sigma: smoothing scale σ > 0.
        num_samples: number S of directions ε_s.
        antithetic: use ±ε pairs (default) or one-sided evaluations.
        baseline: one-sided only: None (0), a number, or ``"center"`` (evaluate f(θ), one more evaluation).
        generator: optional torch.Generator for ε (on θ's device).
        chunk_size: evaluate at most this many rows per call of f.

    Returns:
        (estimates [S, P] in θ's dtype, number of evaluations).
    """
    theta = _check_theta(theta)
    sig = _c.positive("sigma", sigma)
    S = _c.int_at_least("num_samples", num_samples, 1)
    if antithetic and baseline is not None:
        raise ConfigError("baseline is only used by the one-sided estimator (antithetic=False); pass None")
    eps = torch.randn(S, theta.numel(), generator=generator, dtype=theta.dtype, device=theta.device)
    if antithetic:
        values = _evaluate(f, _slicer(torch.cat((theta + sig * eps, theta - sig * eps))), 2 * S, chunk_size)
        return ((values[:S] - values[S:]) / (2.0 * sig)).unsqueeze(1) * eps, 2 * S
    if isinstance(baseline, str):
        if baseline != "center":
            raise ConfigError(f"baseline must be None, a number or 'center', got {baseline!r}")
        values = _evaluate(f, _slicer(torch.cat((theta + sig * eps, theta.unsqueeze(0)))), S + 1, chunk_size)
        values, b, evaluations = values[:S], values[S], S + 1
    else:
        if baseline is not None and (
            isinstance(baseline, bool) or not isinstance(baseline, (numbers.Real, Tensor))
        ):
            raise ConfigError(f"baseline must be None, a number or 'center', got {baseline!r}")
        b = 0.0 if baseline is None else torch.as_tensor(baseline, dtype=theta.dtype).detach().reshape(())
        values, evaluations = _evaluate(f, _slicer(theta + sig * eps), S, chunk_size), S
    return ((values - b) / sig).unsqueeze(1) * eps, evaluations


def gaussian_smoothing_gradient(
    f: BatchedFunction,
    theta: Tensor,
    sigma: float,
    num_samples: int,
    antithetic: bool = True,
    baseline: float | Tensor | str | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, int]:
    """The mean of :func:`gaussian_smoothing_samples` (same arguments): an unbiased estimate of ∇F_σ(θ).

    Returns:
        (gradient [P] in θ's dtype, number of evaluations).
    """
    samples, evaluations = gaussian_smoothing_samples(
        f, theta, sigma, num_samples, antithetic, baseline, generator, chunk_size
    )
    return samples.mean(0), evaluations


# ---------------------------------------------------------------------------------------------------------
# α-order mix (Suh, Simchowitz, Zhang & Tedrake 2022, "Do Differentiable Simulators Give Better Policy
# Gradients?", ICML)


def alpha_order_gradient(first_order: Tensor, zeroth_order: Tensor, alpha: float) -> Tensor:
    """α-order batched gradient: ∇̄[α] = α ∇̄[1] + (1 − α) ∇̄[0], α ∈ [0, 1].

    ∇̄[1] is a first-order (pathwise: mean of ∇f(θ + σε_i)) and ∇̄[0] a zeroth-order (e.g.
    :func:`gaussian_smoothing_gradient`) estimate of the same smoothed gradient. With independent samples the
    variance is α² Var ∇̄[1] + (1 − α)² Var ∇̄[0] and the bias α · bias(∇̄[1]).

    Args:
        first_order, zeroth_order: gradient estimates of the same shape.
        alpha: mixing weight in [0, 1] (1: first order only, 0: zeroth order only).
    """
    for name, x in (("first_order", first_order), ("zeroth_order", zeroth_order)):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ConfigError(f"{name} must be a floating torch.Tensor, got {_what(x)}")
    if first_order.shape != zeroth_order.shape:
        raise ConfigError(
            f"first_order has shape {tuple(first_order.shape)}, "
            f"zeroth_order has shape {tuple(zeroth_order.shape)}"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}")
    a = float(alpha)
    return a * first_order + (1.0 - a) * zeroth_order.to(first_order.dtype)


def adaptive_alpha_order_gradient(
    first_order_samples: Tensor,
    zeroth_order_samples: Tensor,
    gamma: float,
    bound: float,
    delta: float = 0.05,
) -> tuple[Tensor, dict[str, float]]:
    """Suh et al. 2022's α-order gradient with α chosen from the samples (their §4, "robustness constraint").

    With ḡ1, ḡ0 the sample means of the B1 first- and B0 zeroth-order per-sample estimates, v1, v0 the
    variances of those means (trace of the empirical covariance / batch size) and σ0² = B0 · v0:

        ε  = √(2 σ0² log((P+1)/δ) / B0) + 2 L log((P+1)/δ) / (3 B0)
             (vector Bernstein: ‖ḡ0 − ∇F‖ ≤ ε with probability ≥ 1 − δ when every ‖zeroth sample‖ ≤ L)
        α  = argmin_α α² v1 + (1 − α)² v0   s.t.   ε + α ‖ḡ1 − ḡ0‖ ≤ γ
           = 0                                      if ε > γ (the zeroth-order estimate is too uncertain
                                                    to vouch for the first-order one)
           = min(v0 / (v0 + v1), (γ − ε) / ‖ḡ1 − ḡ0‖)   otherwise

    so the low-variance first-order estimate is used as far as it provably agrees with the unbiased one; a
    pathwise gradient that is biased (a discontinuity) gets pulled away from. The reference implementation
    (hjsuh94/alpha_gradient) uses equal batch sizes, where v0 / (v0 + v1) = σ0² / (σ0² + σ1²).

    Args:
        first_order_samples: [B1, P] per-sample first-order estimates ∇f(θ + σε_i).
        zeroth_order_samples: [B0, P] per-sample zeroth-order estimates (:func:`gaussian_smoothing_samples`).
        gamma: γ > 0, the tolerated bias (norm).
        bound: L > 0, a bound on the norm of one zeroth-order sample.
        delta: δ ∈ (0, 1), the allowed probability that the confidence bound fails.

    Returns:
        (gradient [P], info) with info ``alpha``, ``epsilon``, ``gap`` (‖ḡ1 − ḡ0‖), ``var_first`` and
        ``var_zeroth`` (v1, v0).
    """
    first, zeroth = first_order_samples, zeroth_order_samples
    for name, x in (("first_order_samples", first), ("zeroth_order_samples", zeroth)):
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 2 or x.shape[0] < 2:
            raise ConfigError(f"{name} must be a floating [B, P] tensor with B >= 2, got {_what(x)}")
    if first.shape[1] != zeroth.shape[1]:
        raise ConfigError(
            f"first_order_samples has P = {first.shape[1]} but zeroth_order_samples has P = {zeroth.shape[1]}"
        )
    gam = _c.positive("gamma", gamma)
    L = _c.positive("bound", bound)
    d = _c.positive("delta", delta)
    if d >= 1.0:
        raise ConfigError(f"delta must be in (0, 1), got {d}")
    first, zeroth = first.detach(), zeroth.detach().to(first.dtype)
    B1, B0, P = first.shape[0], zeroth.shape[0], first.shape[1]
    g1, g0 = first.mean(0), zeroth.mean(0)
    sigma0_sq = float((zeroth - g0).square().sum(1).mean())  # per-sample variance (trace)
    v0 = sigma0_sq / B0
    v1 = float((first - g1).square().sum(1).mean()) / B1
    log_term = math.log((P + 1) / d)
    eps = math.sqrt(2.0 * sigma0_sq * log_term / B0) + 2.0 * L * log_term / (3.0 * B0)
    gap = float(torch.linalg.vector_norm(g1 - g0))
    if eps > gam:
        alpha = 0.0
    else:
        alpha = v0 / (v0 + v1) if v0 + v1 > 0.0 else 1.0
        if alpha * gap > gam - eps:
            alpha = (gam - eps) / gap
    gradient = alpha * g1 + (1.0 - alpha) * g0
    info = {"alpha": alpha, "epsilon": eps, "gap": gap, "var_first": v1, "var_zeroth": v0}
    return gradient, info
