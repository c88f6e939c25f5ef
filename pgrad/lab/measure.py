"""Statistics of a gradient estimator against the exact gradient: bias, variance, SNR, cosine, cost.

Given M independent estimates ĝ₁ … ĝ_M ∈ R^P of ∇J (each from a budget of B samples) and the exact g = ∇J:

    mean ḡ = 1/M Σ ĝₘ,  S = sample covariance of the ĝₘ (P×P, only its trace and tr S² are needed)
    relative bias   ‖ḡ − g‖ / ‖g‖                  with a 99% bootstrap interval over the M estimates
    noise-corrected √max(0, ‖ḡ − g‖² − tr S / M) / ‖g‖   (‖ḡ − g‖² overstates ‖E ĝ − g‖² by tr S / M)
    total variance  tr S = E‖ĝ − ḡ‖²
    SNR             ‖ḡ‖² / tr S                     (Roberts & Tedrake 2009's signal-to-noise of a gradient)
    cosine          mean over m of ĝₘ·g / (‖ĝₘ‖‖g‖)
    bias z-score    (M‖ḡ − g‖² − tr S) / √(2 tr S²)

If the estimator is unbiased, M‖ḡ − g‖² has mean tr S and variance 2 tr S² (ḡ − g ≈ N(0, S/M)), so the z-score
is ≈ N(0, 1) and z < 2.576 is the one-sided 99.5% test that the bias is zero; a biased estimator's z grows
like M‖bias‖². The estimates must be independent draws (fresh randomness for each).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

# One estimate: (gradient [P], cost in env steps or function evaluations).
Estimator = Callable[[int, torch.Generator], tuple[torch.Tensor, float]]

Z_99 = 2.5758  # one-sided 99.5% (two-sided 99%) normal quantile


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
    bias_z: float
    total_variance: float
    snr: float
    cosine: float
    cost: float
    seconds_per_estimate: float

    @property
    def unbiased(self) -> bool:
        """The bias is consistent with zero at the 99% level."""
        return self.bias_z < Z_99

    def row(self) -> dict[str, float | int | str]:
        return asdict(self)


def gradient_statistics(
    estimates: torch.Tensor, exact: torch.Tensor, bootstrap: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Bias, variance, SNR and cosine of estimates [M, P] against the exact gradient [P] (float64)."""
    if estimates.ndim != 2 or estimates.shape[1] != exact.numel() or estimates.shape[0] < 2:
        raise ValueError(f"estimates must be [M >= 2, {exact.numel()}], got {tuple(estimates.shape)}")
    g = exact.reshape(-1).double()
    x = estimates.double()
    m = x.shape[0]
    mean = x.mean(0)
    centred = x - mean
    # tr S and tr S² from the M×M Gram matrix: cheap when P is large.
    gram = centred @ centred.T / (m - 1)
    tr_s = float(gram.trace())
    tr_s2 = float((gram * gram).sum())
    g_norm = float(g.norm())
    bias_sq = float((mean - g).square().sum())
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, m, (bootstrap, m), generator=gen)
    boot = (x[rows].mean(1) - g).norm(dim=1) / g_norm
    low, high = torch.quantile(boot, torch.tensor([0.005, 0.995], dtype=torch.float64)).tolist()
    cos = (x @ g) / (x.norm(dim=1) * g_norm).clamp_min(1e-300)
    return {
        "relative_bias": math.sqrt(bias_sq) / g_norm,
        "corrected_bias": math.sqrt(max(0.0, bias_sq - tr_s / m)) / g_norm,
        "bias_low": low,
        "bias_high": high,
        "bias_z": (m * bias_sq - tr_s) / math.sqrt(2 * tr_s2)
        if tr_s2 > 0
        else (math.inf if bias_sq > 0 else 0.0),
        "total_variance": tr_s,
        "snr": float(mean.square().sum()) / tr_s if tr_s > 0 else math.inf,
        "cosine": float(cos.mean()),
    }


def measure(
    name: str, estimator: Estimator, exact: torch.Tensor, budget: int, estimates: int, seed: int = 0
) -> Measurement:
    """Draw `estimates` independent estimates with `budget` samples each and compare them with `exact`."""
    gen = torch.Generator().manual_seed(seed)
    grads, costs = [], []
    start = time.perf_counter()
    for _ in range(estimates):
        grad, cost = estimator(budget, gen)
        grads.append(grad.detach().reshape(-1).double())
        costs.append(cost)
    seconds = (time.perf_counter() - start) / estimates
    stats = gradient_statistics(torch.stack(grads), exact, seed=seed)
    return Measurement(
        estimator=name,
        budget=budget,
        estimates=estimates,
        cost=float(sum(costs) / len(costs)),
        seconds_per_estimate=seconds,
        **stats,
    )


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x (e.g. −0.5 for a standard error shrinking like 1/√B)."""
    lx = torch.tensor(xs, dtype=torch.float64).log()
    ly = torch.tensor(ys, dtype=torch.float64).log()
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())
