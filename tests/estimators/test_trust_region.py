"""The natural-gradient toolkit (pgrad.estimators.trust_region) against explicit references.

The Fisher-vector products are checked against Fisher matrices built three independent ways on tiny policies
(closed form, the expected outer product of the scores summed exactly over actions, and the Hessian of the
mean KL from torch.autograd.functional.hessian), in float64.
"""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from pgrad.errors import ConfigError
from pgrad.estimators import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flat_params,
    make_fisher_vector_product,
    natural_gradient_step,
    set_flat_params,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=gen(seed), dtype=F64)


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-10) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


# =========================================================================================================
# tiny policies for the Fisher tests. Each has `params` (a list of leaf tensors), `flat_fn(theta)` giving the
# distribution parameters from a flat vector, and `dist(out)` building the torch distribution.


class LinearSoftmax:
    """logits[s] = x_s W, W: [3 features, 4 actions] (12 params), 5 states with dense random features."""

    def __init__(self) -> None:
        self.x = randn(5, 3, seed=1)
        self.w = randn(3, 4, seed=2).requires_grad_()
        self.params = [self.w]

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        return self.x @ theta.view(3, 4)

    def closed_form_fisher(self) -> torch.Tensor:
        # score of log π(a|s) wrt W[d, a'] is x_d (δ_{aa'} − π_a'), so F_s = (x xᵀ) ⊗ (diag π − π πᵀ)
        pi = torch.softmax(self.logits(self.w.detach().reshape(-1)), dim=-1)
        blocks = [
            torch.kron(torch.outer(xs, xs), torch.diag(p) - torch.outer(p, p))
            for xs, p in zip(self.x, pi, strict=True)
        ]
        return torch.stack(blocks).mean(0)


class TinyMLP:
    """Categorical policy: 6 observations (3-d) -> tanh(5) -> 4 logits, plus one parameter it never uses."""

    shapes: ClassVar = [(3, 5), (5,), (5, 4), (4,), (2,)]  # the last one is unused

    def __init__(self) -> None:
        self.obs = randn(6, 3, seed=3)
        self.params = [randn(*s, seed=10 + i, scale=0.8).requires_grad_() for i, s in enumerate(self.shapes)]

    def unflatten(self, theta: torch.Tensor) -> list[torch.Tensor]:
        out, offset = [], 0
        for s in self.shapes:
            n = math.prod(s)
            out.append(theta[offset : offset + n].view(s))
            offset += n
        return out

    def logits_from(self, w1, b1, w2, b2, _unused) -> torch.Tensor:
        return torch.tanh(self.obs @ w1 + b1) @ w2 + b2

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        return self.logits_from(*self.unflatten(theta))


class DiagGaussian:
    """mean[s] = x_s W + b (W: [3, 2], b: [2]), state-independent log_std [2]: 10 params, 4 states."""

    def __init__(self) -> None:
        self.x = randn(4, 3, seed=4)
        self.w = randn(3, 2, seed=5).requires_grad_()
        self.b = randn(2, seed=6).requires_grad_()
        self.log_std = randn(2, seed=7, scale=0.5).requires_grad_()
        self.params = [self.w, self.b, self.log_std]

    def mean_std(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, b, log_std = theta[:6].view(3, 2), theta[6:8], theta[8:10]
        return self.x @ w + b, log_std.exp().expand(self.x.shape[0], 2)

    def closed_form_fisher(self) -> torch.Tensor:
        # mean block: E[(a−μ)(a−μ)ᵀ]/σ⁴ = diag(1/σ²) pulled back through ∂μ/∂(W, b);
        # log-std block: Var(z² − 1) = 2; cross terms are odd moments of a Gaussian, 0.
        inv_var = torch.exp(-2 * self.log_std.detach())
        fisher = torch.zeros(10, 10, dtype=F64)
        for xs in self.x:
            jac = torch.zeros(2, 8, dtype=F64)  # ∂μ_a / ∂(W[d, a'], b[a'])
            for a in range(2):
                for d in range(3):
                    jac[a, d * 2 + a] = xs[d]
                jac[a, 6 + a] = 1.0
            fisher[:8, :8] += jac.T @ torch.diag(inv_var) @ jac
        fisher[:8, :8] /= self.x.shape[0]
        fisher[8:, 8:] = 2.0 * torch.eye(2, dtype=F64)
        return fisher


def categorical_kl_fn(policy, theta_fn):
    """Mean KL(sg(π_old) ‖ π_θ) with the analytic categorical KL, old = current detached."""

    def kl_fn() -> torch.Tensor:
        logits = theta_fn()
        return kl_divergence(Categorical(logits=logits.detach()), Categorical(logits=logits)).mean()

    return kl_fn


def linear_kl_fn(policy: LinearSoftmax):
    return categorical_kl_fn(policy, lambda: policy.x @ policy.w)


def mlp_kl_fn(policy: TinyMLP):
    return categorical_kl_fn(policy, lambda: policy.logits_from(*policy.params))


def gaussian_kl_fn(policy: DiagGaussian):
    def kl_fn() -> torch.Tensor:
        mean = policy.x @ policy.w + policy.b
        std = policy.log_std.exp().expand_as(mean)
        old = Normal(mean.detach(), std.detach())
        return kl_divergence(old, Normal(mean, std)).sum(-1).mean()

    return kl_fn


def hessian_of_mean_kl(logits_or_dist_fn, theta0: torch.Tensor) -> torch.Tensor:
    """∇² of θ ↦ mean KL(π_θ0 ‖ π_θ) at θ = θ0 by torch.autograd.functional.hessian (old is a constant)."""
    return torch.autograd.functional.hessian(logits_or_dist_fn, theta0.clone())


def categorical_hessian(policy) -> torch.Tensor:
    theta0 = flat_params(policy.params)
    old = Categorical(logits=policy.logits(theta0))
    return hessian_of_mean_kl(
        lambda th: kl_divergence(old, Categorical(logits=policy.logits(th))).mean(), theta0
    )


def gaussian_hessian(policy: DiagGaussian) -> torch.Tensor:
    theta0 = flat_params(policy.params)
    old = Normal(*policy.mean_std(theta0))
    return hessian_of_mean_kl(
        lambda th: kl_divergence(old, Normal(*policy.mean_std(th))).sum(-1).mean(), theta0
    )


def categorical_score_fisher(policy) -> torch.Tensor:
    """F = mean_s Σ_a π(a|s) ∇ log π(a|s) ∇ log π(a|s)ᵀ, the exact expectation (sum over the actions)."""
    theta = flat_params(policy.params).requires_grad_()
    log_pi = torch.log_softmax(policy.logits(theta), dim=-1)
    n_states, n_actions = log_pi.shape
    fisher = torch.zeros(theta.numel(), theta.numel(), dtype=F64)
    for s in range(n_states):
        for a in range(n_actions):
            (score,) = torch.autograd.grad(log_pi[s, a], theta, retain_graph=True)
            fisher += log_pi[s, a].exp().detach() * torch.outer(score, score)
    return fisher / n_states


def check_fvp(fvp_of, fisher: torch.Tensor, damping: float, seeds=range(5)) -> None:
    """fvp_of(v) == (F + damping I) v for several random vectors, to 1e-8."""
    n = fisher.shape[0]
    for seed in seeds:
        v = randn(n, seed=100 + seed)
        expected = fisher @ v + damping * v
        torch.testing.assert_close(fvp_of(v), expected, rtol=1e-8, atol=1e-8)


def all_fishers(name: str):
    """(policy, kl_fn, [independent explicit Fisher matrices])."""
    if name == "linear_softmax":
        pol = LinearSoftmax()
        return (
            pol,
            linear_kl_fn(pol),
            [pol.closed_form_fisher(), categorical_score_fisher(pol), categorical_hessian(pol)],
        )
    if name == "mlp":
        pol = TinyMLP()
        return pol, mlp_kl_fn(pol), [categorical_score_fisher(pol), categorical_hessian(pol)]
    pol = DiagGaussian()
    return pol, gaussian_kl_fn(pol), [pol.closed_form_fisher(), gaussian_hessian(pol)]


POLICIES = ["linear_softmax", "mlp", "gaussian"]


@pytest.mark.parametrize("name", POLICIES)
def test_explicit_fishers_agree(name):
    """The references themselves: closed form, score outer product and KL Hessian are the same matrix."""
    _, _, fishers = all_fishers(name)
    for other in fishers[1:]:
        torch.testing.assert_close(other, fishers[0], rtol=1e-10, atol=1e-10)
    assert fishers[0].abs().max() > 0.05  # not degenerate


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fisher_vector_product_matches_explicit_fisher(name, damping):
    policy, kl_fn, fishers = all_fishers(name)
    fisher = fishers[0]
    check_fvp(lambda v: fisher_vector_product(kl_fn, policy.params, v, damping=damping), fisher, damping)
    reusable = make_fisher_vector_product(kl_fn, policy.params, damping=damping)
    check_fvp(reusable, fisher, damping)
    check_fvp(reusable, fisher, damping, seeds=range(2))  # the retained graph survives many products
    for p in policy.params:
        assert p.grad is None  # .grad fields untouched


def test_fisher_vector_product_unused_param_and_output_detached():
    policy = TinyMLP()
    n = sum(p.numel() for p in policy.params)
    v = randn(n, seed=9)
    out = fisher_vector_product(mlp_kl_fn(policy), policy.params, v, damping=0.3)
    assert not out.requires_grad
    close(out[-2:], 0.3 * v[-2:])  # the unused parameter has zero curvature: only damping remains
    assert out[:-2].abs().max() > 1e-3


def test_fisher_check_rejects_wrong_products():
    """The comparison would catch a missing damping term, a sign error, or a KL with nothing detached."""
    policy, kl_fn, (fisher, *_) = all_fishers("linear_softmax")
    fvp = make_fisher_vector_product(kl_fn, policy.params, damping=0.1)
    with pytest.raises(AssertionError):
        check_fvp(lambda v: fvp(v) - 0.1 * v, fisher, 0.1)  # damping dropped
    with pytest.raises(AssertionError):
        check_fvp(lambda v: -fvp(v), fisher, 0.1)

    def undetached_kl() -> torch.Tensor:
        logits = policy.x @ policy.w
        return kl_divergence(Categorical(logits=logits), Categorical(logits=logits)).mean()

    with pytest.raises(AssertionError):
        check_fvp(lambda v: fisher_vector_product(undetached_kl, policy.params, v), fisher, 0.0)
    # a sampled k1 KL in the wrong direction, E_old[log π_θ − log π_old], has Hessian −F here
    pi = torch.softmax(policy.x @ policy.w.detach(), dim=-1)

    def wrong_direction_kl() -> torch.Tensor:
        log_pi = torch.log_softmax(policy.x @ policy.w, dim=-1)
        return (pi * (log_pi - log_pi.detach())).sum(-1).mean()

    with pytest.raises(AssertionError):
        check_fvp(lambda v: fisher_vector_product(wrong_direction_kl, policy.params, v), fisher, 0.0)


def test_fisher_vector_product_bad_arguments():
    policy = LinearSoftmax()
    with pytest.raises(ConfigError, match="damping"):
        fisher_vector_product(linear_kl_fn(policy), policy.params, torch.zeros(12, dtype=F64), damping=-1.0)
    with pytest.raises(ConfigError, match="vector"):
        fisher_vector_product(linear_kl_fn(policy), policy.params, torch.zeros(11, dtype=F64))
    with pytest.raises(ConfigError, match="params"):
        fisher_vector_product(linear_kl_fn(policy), [], torch.zeros(12, dtype=F64))


# =========================================================================================================
# flat parameters


def test_flat_params_roundtrip_and_flat_grad():
    policy = TinyMLP()
    flat = flat_params(policy.params)
    assert flat.shape == (sum(p.numel() for p in policy.params),) and not flat.requires_grad
    close(flat[:15], policy.params[0].detach().reshape(-1))
    new = randn(flat.numel(), seed=5)
    set_flat_params(policy.params, new)
    close(flat_params(policy.params), new)
    assert all(p.is_leaf and p.requires_grad for p in policy.params)
    flat[0] = 123.0  # a copy, not a view
    assert policy.params[0].reshape(-1)[0] != 123.0

    out = policy.logits_from(*policy.params).square().sum()
    g = flat_grad(out, policy.params, create_graph=True)
    expected = torch.autograd.grad(out, policy.params[:4], retain_graph=True)
    close(g[:-2], torch.cat([e.reshape(-1) for e in expected]))
    close(g[-2:], torch.zeros(2, dtype=F64))  # unused parameter
    assert g.requires_grad  # create_graph: differentiable again
    with pytest.raises(ConfigError, match="flat"):
        set_flat_params(policy.params, torch.zeros(3, dtype=F64))
    with pytest.raises(ConfigError, match="output"):
        flat_grad(torch.zeros(2, dtype=F64), policy.params)


# =========================================================================================================
# conjugate gradient


def random_spd(n: int, seed: int) -> torch.Tensor:
    m = randn(n, n, seed=seed)
    return m @ m.T / n + 0.5 * torch.eye(n, dtype=F64)


@pytest.mark.parametrize("n", [5, 20])
def test_conjugate_gradient_exact_after_n_iterations(n):
    for seed in range(3):
        a = random_spd(n, seed)
        b = randn(n, seed=50 + seed)
        x = conjugate_gradient(lambda v, a=a: a @ v, b, iterations=n, tolerance=0.0)
        expected = torch.linalg.solve(a, b)
        torch.testing.assert_close(x, expected, rtol=1e-8, atol=1e-8)
        # and fewer iterations are not exact (the test can tell)
        x_short = conjugate_gradient(lambda v, a=a: a @ v, b, iterations=2, tolerance=0.0)
        assert (x_short - expected).abs().max() > 1e-6


def test_conjugate_gradient_stops_on_tolerance():
    calls = []

    def counted(a):
        def mv(v):
            calls.append(1)
            return a @ v

        return mv

    a, b = random_spd(20, 1), randn(20, seed=2)
    x = conjugate_gradient(counted(a), b, iterations=100, tolerance=1e-6)
    assert len(calls) < 20
    assert ((a @ x - b).square().sum()) < 1e-5  # recursive residual ≈ true residual
    calls.clear()
    x = conjugate_gradient(counted(torch.eye(4, dtype=F64) * 3), torch.ones(4, dtype=F64), iterations=10)
    assert len(calls) == 1  # identity-like: exact after one step, then ‖r‖² = 0 stops it
    close(x, torch.ones(4, dtype=F64) / 3)
    calls.clear()
    x = conjugate_gradient(counted(a), torch.zeros(20, dtype=F64), iterations=10)
    assert len(calls) == 0 and (x == 0).all()


def test_conjugate_gradient_guards_non_positive_curvature():
    x = conjugate_gradient(lambda v: -v, torch.ones(3, dtype=F64), iterations=5)
    assert (x == 0).all()
    x = conjugate_gradient(lambda v: v * float("nan"), torch.ones(3, dtype=F64), iterations=5)
    assert torch.isfinite(x).all()
    with pytest.raises(ConfigError, match="iterations"):
        conjugate_gradient(lambda v: v, torch.ones(3, dtype=F64), iterations=-1)


# =========================================================================================================
# natural gradient step


def test_natural_gradient_step_hits_kl_and_direction():
    fisher = random_spd(8, 3)
    grad = randn(8, seed=4)
    max_kl = 0.01
    step, info = natural_gradient_step(grad, lambda v: fisher @ v, max_kl, cg_iterations=8)
    close(0.5 * step @ fisher @ step, torch.tensor(max_kl, dtype=F64), tol=1e-9)
    direction = torch.linalg.solve(fisher, grad)
    cos = step @ direction / (step.norm() * direction.norm())
    assert cos.item() == pytest.approx(1.0, abs=1e-10)  # parallel AND the same sign
    expected_beta = math.sqrt(2 * max_kl / float(direction @ fisher @ direction))
    assert info["step_size"] == pytest.approx(expected_beta, rel=1e-8)
    assert info["xFx"] == pytest.approx(float(direction @ fisher @ direction), rel=1e-8)
    assert info["cg_residual"] < 1e-8
    assert info["expected_improvement"] == pytest.approx(float(grad @ step), rel=1e-10)
    assert info["natural_step_failed"] == 0.0


def test_natural_gradient_step_on_policy_matches_true_kl():
    """With the real FVP of a softmax policy the true KL after the step is ≈ max_kl (quadratic model)."""
    policy = LinearSoftmax()
    adv = randn(5, 4, seed=8)
    logits0 = (policy.x @ policy.w).detach()
    surrogate = (torch.softmax(policy.x @ policy.w, -1) * adv).sum(-1).mean()
    grad = flat_grad(surrogate, policy.params)
    fvp = make_fisher_vector_product(linear_kl_fn(policy), policy.params)
    max_kl = 1e-4
    step, info = natural_gradient_step(grad, fvp, max_kl, cg_iterations=12)
    assert info["natural_step_failed"] == 0.0 and info["cg_residual"] < 1e-8
    new_logits = policy.logits(flat_params(policy.params) + step)
    true_kl = kl_divergence(Categorical(logits=logits0), Categorical(logits=new_logits)).mean()
    assert true_kl.item() == pytest.approx(max_kl, rel=0.05)
    assert float(grad @ step) > 0


@pytest.mark.parametrize(
    "fvp, grad",
    [
        (lambda v: -v, torch.ones(4, dtype=F64)),  # negative definite
        (lambda v: v * float("nan"), torch.ones(4, dtype=F64)),
        (lambda v: v, torch.zeros(4, dtype=F64)),  # zero gradient
        (lambda v: 0 * v, torch.ones(4, dtype=F64)),  # zero curvature
    ],
)
def test_natural_gradient_step_failure_gives_zero_step(fvp, grad):
    step, info = natural_gradient_step(grad, fvp, 0.01)
    assert (step == 0).all() and torch.isfinite(step).all()
    assert info["natural_step_failed"] == 1.0 and info["step_size"] == 0.0


# =========================================================================================================
# line search


def quadratic_problem(kl_scale: float = 1.0):
    target = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    x0 = torch.zeros(3, dtype=F64)
    evaluated = []

    def f(x):
        evaluated.append(x.clone())
        return 0.5 * float((x - target).square().sum()), kl_scale * 0.5 * float((x - x0).square().sum())

    d = target - x0
    expected = float(d @ d)  # −∇L(x0)ᵀ d
    return f, x0, d, expected, evaluated


def test_line_search_accepts_full_step():
    f, x0, d, expected, evaluated = quadratic_problem()
    x, info = backtracking_line_search(f, x0, d, expected, max_kl=10.0)
    close(x, x0 + d)
    assert info == {"accepted": 1.0, "backtracks": 0.0, "step_fraction": 1.0, "improvement": 0.5 * expected,
                    "kl": 0.5 * expected}  # fmt: skip
    assert len(evaluated) == 2


def test_line_search_backtracks_on_kl():
    f, x0, d, expected, _ = quadratic_problem()
    kl_full = 0.5 * expected
    # kl(k) = kl_full · 0.25^k: k = 0, 1 exceed, k = 2 fits
    x, info = backtracking_line_search(f, x0, d, expected, max_kl=kl_full * 0.25**2 * 1.01)
    close(x, x0 + 0.25 * d)
    assert info["accepted"] == 1.0 and info["backtracks"] == 2.0 and info["step_fraction"] == 0.25
    assert info["kl"] == pytest.approx(kl_full / 16)
    assert info["improvement"] == pytest.approx(0.5 * expected * (1 - 0.75**2))


def test_line_search_improvement_ratio_uses_shrunk_expectation():
    f, x0, d, expected, _ = quadratic_problem()
    # full step 3d overshoots (loss rises); 1.5d improves by 0.375‖d‖², ratio 0.375/1.5 = 0.25;
    # 0.75d improves by 0.46875‖d‖², ratio 0.625
    x, info = backtracking_line_search(f, x0, 3 * d, 3 * expected, max_kl=100.0, accept_ratio=0.1)
    close(x, x0 + 1.5 * d)
    assert info["backtracks"] == 1.0
    x, info = backtracking_line_search(f, x0, 3 * d, 3 * expected, max_kl=100.0, accept_ratio=0.3)
    close(x, x0 + 0.75 * d)
    assert info["backtracks"] == 2.0


def test_line_search_rejects_when_nothing_improves():
    f, x0, d, expected, evaluated = quadratic_problem()
    x, info = backtracking_line_search(f, x0, -d, expected, max_kl=100.0, max_backtracks=6)
    close(x, x0)
    assert info["accepted"] == 0.0 and info["backtracks"] == 6.0 and info["improvement"] == 0.0
    assert len(evaluated) == 7
    # KL never small enough
    x, info = backtracking_line_search(f, x0, d, expected, max_kl=1e-12, max_backtracks=5)
    close(x, x0)
    assert info["accepted"] == 0.0
    # no first-order decrease: nothing is tried
    evaluated.clear()
    x, info = backtracking_line_search(f, x0, d, 0.0, max_kl=1.0)
    assert info["accepted"] == 0.0 and not evaluated
    with pytest.raises(ConfigError, match="shrink"):
        backtracking_line_search(f, x0, d, expected, max_kl=1.0, shrink=1.0)
