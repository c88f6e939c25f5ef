"""Gradients through categorical samples: straight-through, Gumbel-Softmax and ReinMax.

Each function takes logits θ [..., K] (any leading batch shape, softmax over the last dimension) and returns a
tensor of the same shape that can be fed to a downstream function f in place of a one-hot sample D. The
gradient that reaches θ through it is a (biased, low-variance) estimate of ∇θ E_{D ~ Cat(softmax θ)}[f(D)],
the quantity the score-function estimator gets unbiased but noisy. With π = softmax(θ), the exact gradient is

    ∇θ E[f(D)] = Σ_k f(e_k) ∇θ π_k        (e_k the k-th one-hot vector)

How the three compare (Liu et al. 2023, §3–4):

* straight-through, τ = 1: E[ĝ] = Σ_j π_j Σ_i ∇θπ_i ∂f/∂D_i|_{D=e_j}, a first-order (forward-Euler) Taylor
  approximation of f(e_i) − f(e_j). Unbiased when f is linear, biased otherwise.
* ReinMax: Heun's method (the trapezoidal rule) for the same difference, ½(∇f(e_i) + ∇f(e_j))·(e_i − e_j):
  second-order accurate, so unbiased when f is linear *or quadratic* (τ = 1), for one extra softmax.
* Gumbel-Softmax (soft) evaluates f at a relaxed, non-one-hot point, so both the value and the gradient are
  of a different (smoothed) objective; with ``hard=True`` the value is an exact sample but the gradient is
  still that of the relaxation. Biased even for linear f; the bias vanishes as τ → 0 while the variance grows.

Hard outputs are exactly one-hot in the forward pass (the gradient trick adds ``y − y.detach()``, which is
exactly 0 in floating point). Samples are drawn from ``generator`` when given (it must live on the logits'
device). Logits may hold −inf for impossible categories: those are never sampled and get a zero gradient.
Every function is pure: no state, no in-place op on anything that requires grad.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c

__all__ = ["gumbel_softmax", "reinmax", "straight_through"]


def _check_logits(logits: object) -> Tensor:
    if not isinstance(logits, Tensor):
        raise ConfigError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ConfigError(f"logits must have a floating dtype, got {logits.dtype}")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ConfigError(f"logits must have shape [..., K] with K >= 1, got {tuple(logits.shape)}")
    return logits


def _one_hot_sample(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """Exact one-hot draws D ~ Cat(probs) (no grad), shape/dtype of ``probs``."""
    flat = probs.detach().reshape(-1, probs.shape[-1])
    index = torch.multinomial(flat, 1, generator=generator)  # [B, 1]
    return torch.zeros_like(flat).scatter_(-1, index, 1.0).reshape(probs.shape)


def _gumbel(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gumbel noise −log E, E ~ Exp(1), shaped like ``like`` (no grad)."""
    exp = torch.empty_like(like, memory_format=torch.contiguous_format).exponential_(generator=generator)
    return -torch.log(exp.clamp_min(torch.finfo(like.dtype).tiny))


def _softmax_jacobian_surrogate(p: Tensor, logits: Tensor) -> Tensor:
    """A tensor equal to the (constant) distribution ``p`` whose Jacobian w.r.t. ``logits`` is that of the
    softmax at ``p``: ∂y_i/∂θ_j = p_i (δ_ij − p_j).

    Same as softmax(sg(log p − θ) + θ) (ReinMax's Algorithm 2, line 4) but without logs, so zero
    probabilities and −inf logits stay finite.
    """
    p = p.detach()
    finite = torch.isfinite(logits)
    z = torch.where(finite, logits, torch.zeros_like(logits))
    z = z - z.detach()  # value exactly 0, gradient the identity
    return p * (1.0 + z - (p * z).sum(-1, keepdim=True))


def straight_through(
    logits: Tensor, generator: torch.Generator | None = None, *, temperature: float = 1.0
) -> Tensor:
    """Straight-through estimator (Bengio, Léonard & Courville 2013).

    Forward: a one-hot sample D ~ Cat(softmax θ). Backward: the gradient of softmax(θ/τ), i.e. the output is
    D + π_τ − sg(π_τ) with π_τ = softmax(θ/τ), so ∇θ f(D̂) = (1/τ) J(π_τ)ᵀ ∂f/∂D |_{D}, J(p) = diag p − p pᵀ.

    Args:
        logits: [..., K] float logits θ (with grad).
        generator: optional torch.Generator for the sample.
        temperature: τ > 0 of the backward softmax only (the sample always follows softmax θ); 1 is the
            classic estimator, unbiased for linear f.

    Returns:
        [..., K] tensor, exactly one-hot in value.
    """
    logits = _check_logits(logits)
    tau = _c.positive("temperature", temperature)
    sample = _one_hot_sample(torch.softmax(logits.detach(), dim=-1), generator)
    soft = torch.softmax(logits / tau, dim=-1)
    return sample + (soft - soft.detach())


def gumbel_softmax(
    logits: Tensor, temperature: float, hard: bool = False, generator: torch.Generator | None = None
) -> Tensor:
    """Gumbel-Softmax / Concrete relaxation (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017).

        y = softmax((θ + g) / τ),      g_k ~ Gumbel(0, 1) i.i.d.

    ``hard=False`` returns y itself (a point inside the simplex; its gradient is the exact pathwise gradient
    of the relaxed objective E_g[f(y)]). ``hard=True`` is straight-through Gumbel: the forward value is the
    one-hot of argmax(θ + g), which is an exact sample of Cat(softmax θ) (the Gumbel-max trick), and the
    backward pass is that of y.

    Args:
        logits: [..., K] float logits θ (with grad).
        temperature: τ > 0; smaller is closer to one-hot (less bias) with larger gradient variance.
        hard: one-hot forward value with the relaxed gradient.
        generator: optional torch.Generator for the Gumbel noise.

    Returns:
        [..., K] tensor; exactly one-hot in value when ``hard``.
    """
    logits = _check_logits(logits)
    tau = _c.positive("temperature", temperature)
    noisy = logits + _gumbel(logits.detach(), generator)
    soft = torch.softmax(noisy / tau, dim=-1)
    if not hard:
        return soft
    index = noisy.detach().argmax(dim=-1, keepdim=True)
    sample = torch.zeros_like(soft, memory_format=torch.contiguous_format).scatter_(-1, index, 1.0)
    return sample + (soft - soft.detach())


def reinmax(logits: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """ReinMax (Liu, Dong, Liu, Yu & Gao 2023, "Bridging Discrete and Backpropagation: Straight-Through and
    Beyond", NeurIPS; Algorithm 2): a second-order (Heun's method) straight-through estimator.

        π₀ = softmax(θ),   D ~ Cat(π₀) one-hot
        π₁ = (D + softmax(θ/τ)) / 2,  given the Jacobian of a softmax at π₁: softmax(sg(ln π₁ − θ) + θ)
        π₂ = 2 π₁ − ½ π₀
        D̂ = D + π₂ − sg(π₂)

    so ∇θ f(D̂) = 2 J(π₁)ᵀ ∂f/∂D − ½ J(π₀)ᵀ ∂f/∂D with J(p) = diag(p) − p pᵀ, both at D. With τ = 1 its
    expectation equals the trapezoidal-rule approximation of the exact gradient (see the module docstring):
    unbiased for linear and quadratic f. The paper recommends τ ≥ 1 (unlike Gumbel-Softmax's τ < 1); any
    τ > 0 is accepted here for study.

    Args:
        logits: [..., K] float logits θ (with grad).
        temperature: τ > 0 of the softmax inside π₁ (the sample always follows softmax θ).
        generator: optional torch.Generator for the sample.

    Returns:
        [..., K] tensor, exactly one-hot in value.
    """
    logits = _check_logits(logits)
    tau = _c.positive("temperature", temperature)
    pi0 = torch.softmax(logits, dim=-1)
    sample = _one_hot_sample(pi0, generator)
    pi1_value = 0.5 * (sample + torch.softmax(logits.detach() / tau, dim=-1))
    pi1 = _softmax_jacobian_surrogate(pi1_value, logits)
    pi2 = 2.0 * pi1 - 0.5 * pi0
    return sample + (pi2 - pi2.detach())
