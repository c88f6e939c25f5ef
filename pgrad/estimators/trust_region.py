"""The natural-gradient / trust-region toolkit of NPG and TRPO: flat parameter vectors, Fisher-vector products
by double backprop, conjugate gradient, the KL-constrained step size and the backtracking line search.

Pure functions over tensors and parameter lists; bad arguments raise :class:`~pgrad.errors.ConfigError` with a
one-line message naming the argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c

__all__ = [
    "backtracking_line_search",
    "conjugate_gradient",
    "fisher_vector_product",
    "flat_grad",
    "flat_jacobian",
    "flat_params",
    "make_fisher_vector_product",
    "natural_gradient_step",
    "set_flat_params",
]


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
    flat = _c.float_tensor("flat", flat)
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
    output = _c.float_tensor("output", output)
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


def flat_jacobian(outputs: Tensor, params: Iterable[Tensor], retain_graph: bool = False) -> Tensor:
    """Jacobian ``[K, P]`` of a vector of K scalars w.r.t. all parameters, flattened in parameter order (one
    batched backward pass; zeros for parameters the outputs do not use). REINFORCE's optimal baseline needs
    the per-episode score sums S_i = ∇θ Σ_t log π as rows."""
    params = _param_list(params)
    outputs = _c.float_tensor("outputs", outputs)
    if outputs.ndim != 1:
        raise ConfigError(f"outputs must be a 1-D vector of scalars, got shape {tuple(outputs.shape)}")
    k = len(outputs)
    eye = torch.eye(k, dtype=outputs.dtype, device=outputs.device)
    grads = torch.autograd.grad(
        outputs, params, grad_outputs=eye, is_grads_batched=True, allow_unused=True, retain_graph=retain_graph
    )
    return torch.cat(
        [
            (g if g is not None else outputs.new_zeros(k, *p.shape)).reshape(k, -1)
            for g, p in zip(grads, params, strict=True)
        ],
        dim=1,
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
    damping = _c.non_negative("damping", damping)
    numel = sum(p.numel() for p in params)
    kl = kl_fn()
    g = flat_grad(kl, params, create_graph=True)

    def fvp(vector: Tensor) -> Tensor:
        vector = _c.float_tensor("vector", vector)
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
    b = _c.float_tensor("b", b).detach()
    iterations = _c.int_at_least("iterations", iterations, 0)
    tolerance = _c.non_negative("tolerance", tolerance)
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
    grad = _c.float_tensor("grad", grad).detach()
    max_kl = _c.positive("max_kl", max_kl)
    cg_iterations = _c.int_at_least("cg_iterations", cg_iterations, 1)
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
    x0 = _c.float_tensor("x0", x0).detach()
    full_step = _c.like("full_step", full_step, x0, "x0").detach()
    expected_improvement = _c.real("expected_improvement", expected_improvement)
    max_kl = _c.positive("max_kl", max_kl)
    max_backtracks = _c.int_at_least("max_backtracks", max_backtracks, 1)
    accept_ratio = _c.non_negative("accept_ratio", accept_ratio)
    shrink = _c.real("shrink", shrink)
    if not 0.0 < shrink < 1.0:
        raise ConfigError(f"shrink must be in (0, 1), got {shrink}")
    rejected = {"accepted": 0.0, "backtracks": 0.0, "step_fraction": 0.0, "improvement": 0.0, "kl": 0.0}
    if not (expected_improvement > 0.0 and math.isfinite(expected_improvement)):
        return x0.clone(), rejected
    loss0 = _c.real("f(x0) loss", f(x0.clone())[0])
    for k in range(max_backtracks):
        fraction = shrink**k
        x = x0 + fraction * full_step
        loss, kl = f(x)
        loss, kl = _c.real("f(x) loss", loss), _c.real("f(x) kl", kl)
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
