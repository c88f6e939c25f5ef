"""Statistics of a gradient estimator against the exact gradient: bias, variance, SNR, cosine, cost.

Given M independent estimates ĝ₁ … ĝ_M ∈ R^P of ∇J (each from a budget of B samples) and the exact g = ∇J:

    mean ḡ = 1/M Σ ĝₘ,  S = sample covariance of the ĝₘ (P×P; only tr S and tr S² are needed)
    relative bias   ‖ḡ − g‖ / ‖g‖
    noise-corrected √max(0, ‖ḡ − g‖² − tr S / M) / ‖g‖   (‖ḡ − g‖² overstates ‖E ĝ − g‖² by tr S / M)
    total variance  tr S = E‖ĝ − ḡ‖²
    SNR             ‖ḡ‖² / tr S                     (Roberts & Tedrake 2009's signal-to-noise of a gradient)
    cosine          mean over m of ĝₘ·g / (‖ĝₘ‖‖g‖)

The bias test (H0: E ĝ = g) is a scaled-χ² (approximate F) test, calibrated for few estimates and for
correlated coordinates. With Σ = Cov ĝ, ḡ − E ĝ ≈ N(0, Σ/M), so M‖ḡ − E ĝ‖² = Σ_i λ_i χ²₁ (λ_i the eigenvalues
of Σ), a weighted χ² whose mean is tr Σ and variance 2 tr Σ². Matching both moments (Satterthwaite) gives
a χ²_ν / ν · tr Σ with ν = (tr Σ)² / tr Σ² effective degrees of freedom, between 1 (one dominant direction)
and P (isotropic). (M − 1) tr S is the same weighted sum with M − 1 degrees of freedom per direction,
≈ χ²_{ν(M−1)} / ν · tr Σ, and is independent of ḡ, so

    F = M‖ḡ − g‖² / tr S  ~  F(ν, ν(M − 1))  under H0          (ν estimated from tr S, tr S², unbiasedly)

and p = P(F(ν, ν(M−1)) > F) is the p-value (`bias_p`); a biased estimator's F grows like M‖E ĝ − g‖²/tr Σ.
The old statistic (M‖ḡ − g‖² − tr S)/√(2 tr S²) read as N(0, 1) was not calibrated: for small ν its
reference distribution is a skewed χ², and with few estimates tr S² is biased upwards.

The same distribution gives a confidence ball for the mean: P(M‖ḡ − E ĝ‖² ≤ q tr S) = 1 − α with q the
1 − α quantile of F(ν, ν(M−1)), r = √(q tr S / M), hence by the triangle inequality the 99% interval

    max(0, ‖ḡ − g‖ − r) / ‖g‖  ≤  ‖E ĝ − g‖ / ‖g‖  ≤  (‖ḡ − g‖ + r) / ‖g‖           (`bias_low`, `bias_high`)

`bias_high` is the upper bound on the relative bias an "unbiased" verdict comes with; a positive `bias_low`
is a lower bound on a bias the test has found. The estimates must be independent draws (fresh randomness
for each).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

# One estimate from a budget of B samples: (gradient [P], cost in env steps or function evaluations). An
# estimator may also carry batch(B, M, generator) -> ([M, P], mean cost) drawing M estimates at once.
Estimator = Callable[[int, torch.Generator], tuple[torch.Tensor, float]]

ALPHA = 0.01  # level of the bias test and of the bias confidence interval (99%)


# -- the F distribution (no scipy): survival function from the regularised incomplete beta function --------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) (modified Lentz; converges fast for x < (a + 1) / (a + b + 2))."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0 and x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def f_survival(f: float, d1: float, d2: float) -> float:
    """P(X > f) for X ~ F(d1, d2) (real degrees of freedom d1, d2 > 0)."""
    if f <= 0.0:
        return 1.0
    if math.isinf(f):
        return 0.0
    return regularized_beta(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * f))


def f_quantile(p: float, d1: float, d2: float) -> float:
    """The p quantile of F(d1, d2), 0 < p < 1 (bisection on log f; relative accuracy 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    low, high = -30.0, 1.0
    while f_survival(math.exp(high), d1, d2) > 1.0 - p:
        high += 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if f_survival(math.exp(mid), d1, d2) > 1.0 - p:
            low = mid
        else:
            high = mid
        if high - low < 1e-10:
            break
    return math.exp(0.5 * (low + high))


# -- measurements -------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """What one estimator at one budget measured (see the module docstring)."""

    estimator: str
    budget: int
    estimates: int
    relative_bias: float
    corrected_bias: float
    bias_low: float
    bias_high: float
    bias_f: float
    bias_dof: float
    bias_p: float
    total_variance: float
    snr: float
    cosine: float
    cost: float
    seconds_per_estimate: float

    @property
    def unbiased(self) -> bool:
        """The bias is consistent with zero at the 99% level (the F test does not reject at α = 0.01)."""
        return self.bias_p >= ALPHA

    def row(self) -> dict[str, float | int | str]:
        """The fields as a dict (a table row)."""
        return asdict(self)


def effective_dof(tr_s: float, tr_s2: float, m: int, p: int) -> float:
    """ν = (tr Σ)² / tr Σ² from the sample covariance of m Gaussian vectors, with the unbiased estimators
    tr Σ² ≈ n²/((n−1)(n+2)) (tr S² − (tr S)²/n) and (tr Σ)² ≈ (tr S)² − 2 tr Σ²/n, n = m − 1; clipped to
    [1, p]."""
    n = m - 1
    if tr_s <= 0:
        return 1.0
    if n < 2:
        return min(max(tr_s * tr_s / tr_s2, 1.0), float(p))
    sq = n * n / ((n - 1) * (n + 2)) * (tr_s2 - tr_s * tr_s / n)
    if sq <= 0:
        return float(p)
    nu = (tr_s * tr_s - 2.0 * sq / n) / sq
    return min(max(nu, 1.0), float(p))


def bias_test(
    estimates: torch.Tensor, exact: torch.Tensor, alpha: float = ALPHA
) -> tuple[float, float, float, float, float]:
    """The scaled-χ² bias test of the module docstring on estimates [M, P] against exact [P].

    Returns (F statistic, ν, p-value, lower, upper) where [lower, upper] is the 1 − α confidence interval
    for ‖E ĝ − g‖ / ‖g‖."""
    if estimates.ndim != 2 or estimates.shape[1] != exact.numel() or estimates.shape[0] < 2:
        raise ValueError(f"estimates must be [M >= 2, {exact.numel()}], got {tuple(estimates.shape)}")
    g = exact.reshape(-1).double()
    x = estimates.double()
    m, p = x.shape
    mean = x.mean(0)
    centred = x - mean
    gram = centred @ centred.T / (m - 1)  # tr S and tr S² from the M×M Gram matrix: cheap when P is large
    tr_s = float(gram.trace())
    tr_s2 = float((gram * gram).sum())
    error = float((mean - g).norm())
    g_norm = float(g.norm())
    if tr_s <= 0:  # a deterministic estimator: its error is its bias
        f, nu, p_value, radius = (math.inf if error > 0 else 0.0), 1.0, (0.0 if error > 0 else 1.0), 0.0
    else:
        nu = effective_dof(tr_s, tr_s2, m, p)
        f = m * error * error / tr_s
        p_value = f_survival(f, nu, nu * (m - 1))
        radius = math.sqrt(f_quantile(1.0 - alpha, nu, nu * (m - 1)) * tr_s / m)
    return f, nu, p_value, max(0.0, error - radius) / g_norm, (error + radius) / g_norm


def gradient_statistics(estimates: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """Bias (with its test and 99% interval), variance, SNR and cosine of estimates [M, P] against the exact
    gradient [P], in float64."""
    f, nu, p_value, low, high = bias_test(estimates, exact)
    g = exact.reshape(-1).double()
    x = estimates.double()
    m = x.shape[0]
    mean = x.mean(0)
    tr_s = float((x - mean).square().sum() / (m - 1))
    g_norm = float(g.norm())
    bias_sq = float((mean - g).square().sum())
    cos = (x @ g) / (x.norm(dim=1) * g_norm).clamp_min(1e-300)
    return {
        "relative_bias": math.sqrt(bias_sq) / g_norm,
        "corrected_bias": math.sqrt(max(0.0, bias_sq - tr_s / m)) / g_norm,
        "bias_low": low,
        "bias_high": high,
        "bias_f": f,
        "bias_dof": nu,
        "bias_p": p_value,
        "total_variance": tr_s,
        "snr": float(mean.square().sum()) / tr_s if tr_s > 0 else math.inf,
        "cosine": float(cos.mean()),
    }


def draw_estimates(
    estimator: Estimator, budget: int, estimates: int, seed: int = 0
) -> tuple[torch.Tensor, float, float]:
    """`estimates` independent estimates [M, P] (float64) with `budget` samples each, drawn from one generator
    seeded with `seed`; also returns the mean cost and the seconds per estimate.

    An estimator with a `batch` attribute, batch(budget, estimates, gen) -> ([M, P], mean cost), draws all M
    at once (M disjoint batches of samples); otherwise it is called M times in turn."""
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    batch = getattr(estimator, "batch", None)
    if batch is not None:
        grads, cost = batch(budget, estimates, gen)
        grads = grads.detach().reshape(estimates, -1).double()
    else:
        rows, costs = [], []
        for _ in range(estimates):
            grad, one_cost = estimator(budget, gen)
            rows.append(grad.detach().reshape(-1).double())
            costs.append(one_cost)
        grads, cost = torch.stack(rows), sum(costs) / len(costs)
    seconds = (time.perf_counter() - start) / estimates
    return grads, float(cost), seconds


def measure(
    name: str, estimator: Estimator, exact: torch.Tensor, budget: int, estimates: int, seed: int = 0
) -> Measurement:
    """Draw `estimates` independent estimates with `budget` samples each and compare them with `exact`."""
    grads, cost, seconds = draw_estimates(estimator, budget, estimates, seed)
    return Measurement(
        estimator=name,
        budget=budget,
        estimates=estimates,
        cost=cost,
        seconds_per_estimate=seconds,
        **gradient_statistics(grads, exact),
    )


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x (e.g. −0.5 for a standard error shrinking like 1/√B)."""
    lx = torch.tensor(xs, dtype=torch.float64).log()
    ly = torch.tensor(ys, dtype=torch.float64).log()
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())
