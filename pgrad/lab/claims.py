"""The references' claims about policy-gradient estimators, measured on several seeds, each with a verdict.

A claim is a function of a seed: the seed makes its problem (random MDP and policy, LQR system, logits of a
categorical, ...), its critics' errors and all its samples, so one seed is one random instance of the claim
and its figures are reproducible to the last digit. `run_claims` runs every claim on every seed (0 … 4 by
default) and a claim's verdict is "holds on k/n seeds". Within a claim, estimators that are compared draw
the same episodes (the same generator state per estimate), which makes variance comparisons paired.

"Unbiased" means that the calibrated bias test of `pgrad.lab.measure` (a scaled-χ² / F test of E ĝ = ∇J)
does not reject; "biased" that it rejects. The tests of one claim share a family-wise level of 1%
(Bonferroni: each of its k bias tests runs at α = 0.01 / k), so an unbiased estimator fails a claim on at
most 1% of the seeds by chance. Each unbiased verdict comes with its 99% upper bound on the relative bias
‖E ĝ − ∇J‖ / ‖∇J‖ (what the claim's number of estimates can resolve), each biased one with its 99% lower
bound. Every check of a claim can fail: tests/lab/test_claims.py substitutes a wrong input for each (a
biased estimator, a larger critic error, a finite-difference routine that evaluates more than it reports,
...) and shows the claim's verdict turns false. Costs are counted by a counter around the evaluated
function, never taken from the estimator's own report.

`pgrad lab claims` prints the table; tests/lab/test_claims.py asserts every verdict on seed 0.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from pgrad.envs.diff import ContactToy
from pgrad.estimators import (
    clipped_surrogate,
    conjugate_gradient,
    finite_difference_gradient,
    group_relative_advantages,
    leave_one_out_advantages,
    make_fisher_vector_product,
)
from pgrad.lab.groups import group_estimates, group_estimator_mean, group_problem
from pgrad.lab.measure import ALPHA, Measurement, draw_estimates, loglog_slope, measure
from pgrad.lab.pathwise import (
    bptt_estimator,
    contact_bptt,
    contact_bptt_per_rollout,
    contact_returns,
    diff_lqr_problem,
    dpg_estimator,
    dpg_problem,
    finite_difference_errors,
    fitted_q_network,
    relaxation_estimator,
    relaxation_problem,
)
from pgrad.lab.score_function import (
    estimator,
    gamma_free_mean,
    make_problem,
    off_policy_estimator,
    optimal_constant_baseline,
)
from pgrad.lab.surrogates import (
    cg_errors,
    mean_kl,
    natural_problem,
    ppo_epochs,
    row_space,
    sampled_fvp_estimator,
)
from pgrad.lab.windows import (
    CONTACT_SIGMA,
    CONTACT_THETA,
    contact_window_env,
    contact_window_gradients,
    measurement_from,
    shac_window_estimator,
    window_expected_gradient,
    window_lqr_problem,
)

DEFAULT_SEEDS = range(5)
Z_99 = 2.5758  # two-sided 99% normal quantile (for means of thousands of i.i.d. returns)


@dataclass
class Claim:
    """One claim measured on one seed: its figure and the named checks that make up its verdict."""

    number: int
    text: str
    figure: str
    checks: dict[str, bool]
    seed: int = 0
    unbiased_bound: float | None = None
    """Largest 99% upper bound on ‖E ĝ − ∇J‖ / ‖∇J‖ among the estimators the claim calls unbiased."""
    biased_bound: float | None = None
    """Smallest 99% lower bound on ‖E ĝ − ∇J‖ / ‖∇J‖ among the estimators the claim calls biased."""
    seconds: float = 0.0
    """Wall time of the run (set by `run_claims`)."""

    @property
    def holds(self) -> bool:
        """Every check passed."""
        return all(self.checks.values())

    @property
    def failed(self) -> list[str]:
        """The names of the checks that did not pass."""
        return [name for name, ok in self.checks.items() if not ok]


@dataclass
class ClaimVerdict:
    """One claim over several seeds."""

    number: int
    text: str
    runs: list[Claim] = field(default_factory=list)

    @property
    def holds_on(self) -> int:
        """On how many seeds every check passed."""
        return sum(run.holds for run in self.runs)

    @property
    def seeds(self) -> int:
        """On how many seeds the claim ran."""
        return len(self.runs)

    @property
    def seconds(self) -> float:
        """Total wall time over the seeds."""
        return sum(run.seconds for run in self.runs)

    @property
    def holds(self) -> bool:
        """The claim held on every seed."""
        return self.holds_on == self.seeds

    @property
    def verdict(self) -> str:
        """'holds on k/n', with the seeds and checks that failed."""
        text = f"holds on {self.holds_on}/{self.seeds}"
        failures = [f"seed {run.seed}: {', '.join(run.failed)}" for run in self.runs if not run.holds]
        return text + (f" (fails on {'; '.join(failures)})" if failures else "")

    @property
    def unbiased_bound(self) -> float | None:
        """The worst (largest) upper bound on the relative bias of an 'unbiased' estimator over the seeds."""
        bounds = [run.unbiased_bound for run in self.runs if run.unbiased_bound is not None]
        return max(bounds) if bounds else None

    @property
    def biased_bound(self) -> float | None:
        """The worst (smallest) lower bound on the relative bias of a 'biased' estimator over the seeds."""
        bounds = [run.biased_bound for run in self.runs if run.biased_bound is not None]
        return min(bounds) if bounds else None


# -- helpers ------------------------------------------------------------------------------------------------


def sample_seed(seed: int) -> int:
    """The seed of a claim's estimates (distinct from the problem seeds derived from the same claim seed)."""
    return 1000 + seed


def unbiased(m: Measurement, tests: int) -> bool:
    """The bias test does not reject at the claim's Bonferroni level α / tests."""
    return m.bias_p >= ALPHA / tests


def biased(m: Measurement, tests: int) -> bool:
    """The bias test rejects at the claim's Bonferroni level α / tests."""
    return m.bias_p < ALPHA / tests


def _p(m: Measurement) -> str:
    return f"p {m.bias_p:.2g}" if m.bias_p >= 1e-3 else "p < 0.001"


def _m(problem, name: str, est, seed: int, budget: int = 100, estimates: int = 300) -> Measurement:
    return measure(name, est, problem.exact, budget, estimates, seed=sample_seed(seed))


def _bounds(claim: Claim, unbiased_ms: Iterable[Measurement], biased_ms: Iterable[Measurement]) -> Claim:
    highs = [m.bias_high for m in unbiased_ms]
    lows = [m.bias_low for m in biased_ms]
    claim.unbiased_bound = max(highs) if highs else None
    claim.biased_bound = min(lows) if lows else None
    return claim


# -- the claims ---------------------------------------------------------------------------------------------


def claim_1_unbiased(seed: int = 0) -> Claim:
    """Naive (whole-return) score-function PG on a random MDP, B = 10, 100, 1000 episodes, 200 estimates."""
    problem = make_problem("random", horizon=10, seed=seed)
    ms = [
        _m(problem, "total", estimator(problem, "total"), seed, budget=b, estimates=200)
        for b in (10, 100, 1000)
    ]
    slope = loglog_slope([m.budget for m in ms], [m.relative_bias for m in ms])
    checks = {
        "unbiased at B = 10, 100, 1000": all(unbiased(m, 3) for m in ms),
        "‖ḡ − ∇J‖ ∝ B^s, −0.8 < s < −0.2": -0.8 < slope < -0.2,
    }
    figure = (
        "rel. error ‖ḡ − ∇J‖/‖∇J‖ "
        + " → ".join(f"{m.relative_bias:.3f}" for m in ms)
        + f" at B = 10, 100, 1000 (slope {slope:.2f}); bias test "
        + ", ".join(_p(m) for m in ms)
    )
    text = "The score-function estimator is unbiased: its mean converges to ∇J like 1/√B"
    # Its bias does not depend on B (an average of B i.i.d. terms): the bound is the one at B = 1000.
    return _bounds(Claim(1, text, figure, checks, seed), ms[-1:], [])


def claim_2_reward_to_go(seed: int = 0) -> Claim:
    """Whole return vs reward-to-go on the same episodes (300 estimates of 100 episodes)."""
    problem = make_problem("random", horizon=10, seed=seed)
    total = _m(problem, "total", estimator(problem, "total"), seed)
    rtg = _m(problem, "reward_to_go", estimator(problem, "reward_to_go"), seed)
    checks = {
        "reward-to-go unbiased": unbiased(rtg, 1),
        "tr Cov(reward-to-go) < tr Cov(whole return)": rtg.total_variance < total.total_variance,
    }
    figure = (
        f"tr Cov: whole return {total.total_variance:.3f}, reward-to-go {rtg.total_variance:.3f}; "
        f"bias test {_p(rtg)}"
    )
    text = "Reward-to-go keeps it unbiased and lowers the variance"
    return _bounds(Claim(2, text, figure, checks, seed), [rtg], [])


def claim_3_baselines(seed: int = 0) -> Claim:
    """Reward-to-go minus the batch mean, a V with error 0.1 and a V with error 2.0, vs no baseline."""
    problem = make_problem("random", horizon=10, seed=seed)
    none = _m(problem, "none", estimator(problem, "reward_to_go"), seed)
    mean = _m(problem, "mean", estimator(problem, "mean_baseline"), seed)
    good_v = _m(
        problem, "V (error 0.1)", estimator(problem, "value_baseline", error=0.1, error_seed=seed + 7), seed
    )
    bad_v = _m(
        problem, "V (error 2.0)", estimator(problem, "value_baseline", error=2.0, error_seed=seed + 7), seed
    )
    checks = {
        "mean, V and badly wrong V baselines unbiased": all(unbiased(m, 3) for m in (mean, good_v, bad_v)),
        "tr Cov(mean baseline) < tr Cov(none)": mean.total_variance < none.total_variance,
        "tr Cov(learned V) < tr Cov(none)": good_v.total_variance < none.total_variance,
    }
    figure = (
        f"tr Cov: none {none.total_variance:.3f}, mean {mean.total_variance:.3f}, "
        f"learned V {good_v.total_variance:.3f}; bias test (mean, V, badly wrong V) "
        f"{_p(mean)}, {_p(good_v)}, {_p(bad_v)}"
    )
    text = "Any state-dependent baseline keeps it unbiased; mean and learned-V baselines lower the variance"
    return _bounds(Claim(3, text, figure, checks, seed), [mean, good_v, bad_v], [])


def claim_4_optimal_baseline(seed: int = 0) -> Claim:
    """The per-parameter optimal constant baseline (from an independent batch) vs constants 0 … 6 and J."""
    problem = make_problem("random", horizon=10, seed=seed)
    best = optimal_constant_baseline(problem, seed=seed + 123)
    optimal = _m(problem, "optimal", estimator(problem, "optimal_baseline", baseline=best), seed)
    constants = [0.0, 1.0, 2.0, 3.0, 4.0, round(problem.J, 3), 5.0, 6.0]
    others = [_m(problem, f"b = {c}", estimator(problem, "total", constant=c), seed) for c in constants]
    lowest = min(others, key=lambda m: m.total_variance)
    checks = {"tr Cov(optimal b) < tr Cov(every constant b)": optimal.total_variance < lowest.total_variance}
    figure = (
        f"tr Cov: optimal per-parameter b {optimal.total_variance:.4f} vs best constant "
        f"({lowest.estimator}) {lowest.total_variance:.4f}; b = 0 gives {others[0].total_variance:.3f}"
    )
    text = "The optimal baseline gives the lowest variance among constant baselines"
    return Claim(4, text, figure, checks, seed)


def claim_5_gae(seed: int = 0) -> Claim:
    """GAE(λ) with a critic of error 0.15 at λ = 0, 0.5, 0.9, 1 on the same episodes."""
    problem = make_problem("random", horizon=10, seed=seed)
    lams = (0.0, 0.5, 0.9, 1.0)
    ms = [
        _m(problem, f"λ={lam}", estimator(problem, "gae", lam=lam, error=0.15, error_seed=seed + 7), seed)
        for lam in lams
    ]
    bias = [m.corrected_bias for m in ms]
    var = [m.total_variance for m in ms]
    checks = {
        "λ = 0 biased": biased(ms[0], 2),
        "λ = 1 unbiased": unbiased(ms[-1], 2),
        "bias falls as λ → 1": bias[0] > bias[1] >= bias[2],
        "variance grows as λ → 1 (λ = 0, 0.5 < 0.9 < 1)": max(var[0], var[1]) < var[2] < var[3],
    }
    figure = (
        "critic error 0.15; λ = 0, 0.5, 0.9, 1: noise-corrected rel. bias "
        + ", ".join(f"{b:.3f}" for b in bias)
        + " (bias test "
        + ", ".join(_p(m) for m in ms)
        + "); tr Cov "
        + ", ".join(f"{v:.4f}" for v in var)
    )
    text = (
        "With an imperfect V, GAE's λ trades bias for variance (bias grows, variance falls as λ → 0; "
        "below λ = 0.5 the variance is flat)"
    )
    return _bounds(Claim(5, text, figure, checks, seed), [ms[-1]], [ms[0]])


def claim_6_critic_bias(seed: int = 0) -> Claim:
    """DPG on a random LQR through critics with errors 0, 0.1, 0.2, 0.4 and a fitted Q network."""
    problem, K, exact = dpg_problem(seed)
    # Critic errors from 0.1 up: 200 estimates of 20 start states resolve a relative bias of ~0.1 (the
    # exact critic's 99% upper bound), so an error of 0.05 would be below the resolution on some seeds.
    errors = (0.0, 0.1, 0.2, 0.4)
    s = sample_seed(seed)
    ms = [
        measure(f"error {e}", dpg_estimator(problem, K, e, seed=seed + 3), exact, 20, 200, seed=s)
        for e in errors
    ]
    bias = [m.corrected_bias for m in ms]
    # A learned critic: a Q network regressed on 200 exact Q values around the policy.
    critic = fitted_q_network(problem, K, 200, seed=seed + 5)
    fitted = measure("fitted", dpg_estimator(problem, K, critic=critic), exact, 20, 100, seed=s)
    checks = {
        "exact critic unbiased": unbiased(ms[0], 5),
        "critic errors 0.1, 0.2, 0.4 biased": all(biased(m, 5) for m in ms[1:]),
        "bias grows with the critic error": bias[1] < bias[2] < bias[3],
        "fitted Q network biased": biased(fitted, 5),
    }
    figure = (
        "DPG on LQR, critic error 0, 0.1, 0.2, 0.4 (relative, in P): noise-corrected rel. bias "
        + ", ".join(f"{b:.3f}" for b in bias)
        + " (bias test "
        + ", ".join(_p(m) for m in ms)
        + f"); Q network fitted on 200 samples: {fitted.corrected_bias:.2f} ({_p(fitted)})"
    )
    text = "The pathwise estimate through a learned critic is biased, and the bias grows with its error"
    return _bounds(Claim(6, text, figure, checks, seed), [ms[0]], [*ms[1:], fitted])


def claim_7_differentiable_env(seed: int = 0) -> Claim:
    """BPTT vs the score function on a differentiable LQR; BPTT on Heaviside and stiff contact."""
    env, K, sigma, exact = diff_lqr_problem(seed=seed)
    s = sample_seed(seed)
    bptt = measure("bptt", bptt_estimator(env, K, sigma, "bptt"), exact, 10, 200, seed=s)
    score = measure("score", bptt_estimator(env, K, sigma, "score"), exact, 10, 200, seed=s)
    # Contact toy, Heaviside reward (no action cost): BPTT is exactly 0, yet J changes with θ₀: the central
    # difference (J(θ + 0.1e₀) − J(θ − 0.1e₀)) / 0.2 over rollouts with common random numbers, with its
    # standard error from the paired per-rollout differences, is significantly non-zero.
    heavi = ContactToy(variant="heaviside", horizon=30, action_cost=0.0, dtype=torch.float64)
    theta = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    bptt_h = contact_bptt(heavi, theta, 0.5, 2000, torch.Generator().manual_seed(s))
    e0 = torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64)
    diffs = (
        contact_returns(heavi, theta + e0, 0.5, 20000, seed + 1)
        - contact_returns(heavi, theta - e0, 0.5, 20000, seed + 1)
    ) / 0.2
    slope, slope_se = float(diffs.mean()), float(diffs.std() / math.sqrt(diffs.numel()))
    # Smooth contact: the spread of BPTT estimates explodes with the horizon (repeated stiff contacts).
    spreads = []
    for horizon in (10, 40, 80):
        smooth = ContactToy(
            stiffness=3e4, dt=0.01, substeps=1, horizon=horizon, dtype=torch.float64, x_limit=None
        )
        push = torch.tensor([-5.0, 0.0, 0.0], dtype=torch.float64)
        grads = contact_bptt_per_rollout(smooth, push, 0.1, 64, torch.Generator().manual_seed(s + horizon))
        spreads.append(float(grads[:, 0].std()))
    checks = {
        "LQR: BPTT unbiased": unbiased(bptt, 1),
        "LQR: tr Cov(BPTT) < tr Cov(score function) / 5": bptt.total_variance < score.total_variance / 5,
        "Heaviside: BPTT ∂/∂θ₀ = 0": float(bptt_h.abs().max()) == 0.0,
        "Heaviside: J changes with θ₀ (99%)": abs(slope) > Z_99 * slope_se,
        "stiff wall: std grows with H": spreads[0] < spreads[1] < spreads[2],
        "stiff wall: std(H = 80) > 100 std(H = 10)": spreads[2] > 100 * spreads[0],
    }
    figure = (
        f"LQR, 10 rollouts: tr Cov BPTT {bptt.total_variance:.3g} vs score function "
        f"{score.total_variance:.3g} ({score.total_variance / bptt.total_variance:.0f}×; BPTT bias test "
        f"{_p(bptt)}); Heaviside contact: BPTT ∂/∂θ₀ = "
        f"{abs(float(bptt_h[0])):.1f}, ΔJ/Δθ₀ = {slope:.2f} ± {slope_se:.2f}; "
        f"stiff wall, std of BPTT ∂/∂θ₀ at H = 10, 40, 80: " + ", ".join(f"{v:.3g}" for v in spreads)
    )
    text = (
        "BPTT through a smooth differentiable env has far lower variance (≥ 5×) than the score function; on "
        "contact it is biased (Heaviside) or its variance explodes with stiffness and horizon"
    )
    return _bounds(Claim(7, text, figure, checks, seed), [bptt], [])


def claim_8_relaxations(seed: int = 0) -> Claim:
    """Straight-through, Gumbel-Softmax (τ = 0.5) and ReinMax on a quadratic f of a 5-way categorical."""
    logits, f, exact = relaxation_problem(seed=seed)
    s = sample_seed(seed)
    st = measure("ST", relaxation_estimator(logits, f, "straight_through"), exact, 100, 400, seed=s)
    gs = measure("GS", relaxation_estimator(logits, f, "gumbel_softmax", 0.5), exact, 100, 400, seed=s)
    rm = measure("ReinMax", relaxation_estimator(logits, f, "reinmax"), exact, 100, 400, seed=s)
    checks = {
        "straight-through biased": biased(st, 2),
        "Gumbel-Softmax biased": biased(gs, 2),
        "ReinMax less biased than straight-through": rm.corrected_bias < st.corrected_bias,
    }
    figure = (
        f"quadratic f, K = 5: noise-corrected rel. bias straight-through {st.corrected_bias:.3f} "
        f"({_p(st)}), Gumbel-Softmax τ=0.5 {gs.corrected_bias:.3f} ({_p(gs)}), "
        f"ReinMax {rm.corrected_bias:.3f} ({_p(rm)})"
    )
    text = (
        "Straight-through and Gumbel-Softmax are biased for categorical actions; "
        "ReinMax's bias is lower than ST's"
    )
    return _bounds(Claim(8, text, figure, checks, seed), [], [st, gs])


def claim_9_finite_differences(seed: int = 0) -> Claim:
    """Central differences of an exact LQR J across ε, evaluations counted around J (d = 6, 12)."""
    epsilons = (1e-1, 1e-3, 1e-5, 1e-8, 1e-11)
    errors, d, evaluations = finite_difference_errors(
        epsilons, seed=seed, gradient=finite_difference_gradient
    )
    # A larger system (d = 12): the counted evaluations per estimate double with d.
    _, d_large, evaluations_large = finite_difference_errors(
        (1e-5,), seed=seed, n=4, m=3, gradient=finite_difference_gradient
    )
    best = min(range(len(errors)), key=errors.__getitem__)
    checks = {
        "error falls with ε": errors[0] > errors[1] > errors[2],
        "round-off: error rises again at tiny ε": 0 < best < len(errors) - 1 and errors[-1] > errors[best],
        "2d counted evaluations per estimate": all(e == 2 * d for e in evaluations)
        and all(e == 2 * d_large for e in evaluations_large),
    }
    figure = (
        "central differences of the exact LQR J: rel. error at ε = "
        + ", ".join(f"{e:g}: {err:.1e}" for e, err in zip(epsilons, errors, strict=True))
        + f"; counted evaluations of J per estimate: {max(evaluations)} for d = {d}, "
        f"{max(evaluations_large)} for d = {d_large}"
    )
    text = "Finite differences converge as ε shrinks (until round-off) and need O(d) rollouts per estimate"
    return Claim(9, text, figure, checks, seed)


def claim_10_importance_sampling(seed: int = 0) -> Claim:
    """Per-decision IS from π_b = softmax(θ + δξ) vs on-policy reward-to-go, across H and δ."""
    ratios, off_ms = {}, []
    settings = [(5, 0.5), (10, 0.5), (20, 0.5), (10, 0.1), (10, 0.25)]
    for horizon in (5, 10, 20):
        problem = make_problem("random", horizon=horizon, seed=seed)
        on = _m(problem, "on-policy", estimator(problem, "reward_to_go"), seed)
        for h, mismatch in settings:
            if h == horizon:
                off = _m(problem, "IS", off_policy_estimator(problem, mismatch, seed=seed + 11), seed)
                ratios[h, mismatch] = off.total_variance / on.total_variance
                off_ms.append(off)
    checks = {
        "IS unbiased at every H and δ": all(unbiased(m, len(off_ms)) for m in off_ms),
        "variance ratio grows with H (δ = 0.5)": ratios[5, 0.5] < ratios[10, 0.5] < ratios[20, 0.5],
        "variance ratio grows with δ (H = 10)": ratios[10, 0.1] < ratios[10, 0.25] < ratios[10, 0.5],
    }
    figure = (
        "Var(IS)/Var(on-policy): δ = 0.5 at H = 5, 10, 20: "
        + ", ".join(f"{ratios[h, 0.5]:.2f}" for h in (5, 10, 20))
        + "; H = 10 at δ = 0.1, 0.25, 0.5: "
        + ", ".join(f"{ratios[10, d]:.2f}" for d in (0.1, 0.25, 0.5))
        + f"; smallest bias-test p {min(m.bias_p for m in off_ms):.2g}"
    )
    text = "Importance-sampled off-policy estimates are unbiased; variance grows with horizon and mismatch"
    return _bounds(Claim(10, text, figure, checks, seed), off_ms, [])


def claim_11_windowed_exact_critic(seed: int = 0) -> Claim:
    """SHAC's window loss (`bptt_loss` closed by γʰ V(x_h)) with the exact V^K on an LQR, h = 1, 4, 32
    (`shac_window_estimator`: 200 estimates of 2000, 1000, 500 windows from the window-start distribution
    d_h; more windows where they are cheap and noisiest, so every h resolves a 10% bias)."""
    problem, K, sigma, exact = window_lqr_problem(seed)
    s = sample_seed(seed)
    budgets, tolerance = {1: 2000, 4: 1000, 32: 500}, 0.1
    ms = [
        measure(f"h = {h}", shac_window_estimator(problem, K, sigma, h, 1.0), exact, b, 200, seed=s)
        for h, b in budgets.items()
    ]
    checks = {
        "exact V: unbiased at h = 1, 4, 32": all(unbiased(m, len(ms)) for m in ms),
        # Unbiased *and* resolved: the test must have been able to see a 10% bias.
        "exact V: 99% bound on the relative bias < 0.1 at h = 1, 4, 32": all(
            m.bias_high < tolerance for m in ms
        ),
    }
    figure = (
        "LQR, exact critic, h = 1, 4, 32: rel. error ‖ḡ − ∇J‖/‖∇J‖ "
        + ", ".join(f"{m.relative_bias:.3f}" for m in ms)
        + " (99% upper bound "
        + ", ".join(f"{m.bias_high:.3f}" for m in ms)
        + "; bias test "
        + ", ".join(_p(m) for m in ms)
        + "); variance per window "
        + ", ".join(f"{m.budget * m.total_variance:.3g}" for m in ms)
    )
    text = (
        "With the exact critic, SHAC's windowed gradient (BPTT over h steps closed by γʰ V(s_h)) is unbiased "
        "for every window length h"
    )
    return _bounds(Claim(11, text, figure, checks, seed), ms, [])


def claim_12_windowed_no_critic(seed: int = 0) -> Claim:
    """APG's windows (`bptt_loss` without a bootstrap) on the LQR at h = 2, 8, 32, against ∇J and against the
    closed-form mean ∇J + γʰ/(1 − γʰ) ∇_K E[(0 − V^K)(x_h)] (`window_expected_gradient`), on the same 200
    estimates of 500 windows."""
    problem, K, sigma, exact = window_lqr_problem(seed)
    s = sample_seed(seed)
    windows = (2, 8, 32)
    ms, closed, predicted_bias = [], [], []
    for h in windows:
        grads, cost, seconds = draw_estimates(shac_window_estimator(problem, K, sigma, h, 0.0), 500, 200, s)
        predicted = window_expected_gradient(problem, K, sigma, h, 0.0)
        predicted_bias.append(float((predicted - exact).norm() / exact.norm()))
        ms.append(measurement_from(f"h = {h}", grads, exact, 500, cost, seconds))
        closed.append(measurement_from(f"h = {h} vs closed form", grads, predicted, 500, cost, seconds))
    tests = 2 + len(closed)
    bias = [m.corrected_bias for m in ms]
    checks = {
        "V = 0: biased at h = 2 and 8": biased(ms[0], tests) and biased(ms[1], tests),
        "bias falls as h grows (h = 2 > 8 > 32)": bias[0] > bias[1] > bias[2],
        "mean = closed form ∇J + γʰ/(1 − γʰ)·∇E[(V̂ − V)(x_h)] at h = 2, 8, 32": all(
            unbiased(m, tests) for m in closed
        ),
    }
    figure = (
        "LQR, V = 0, h = 2, 8, 32: noise-corrected rel. bias "
        + ", ".join(f"{b:.3f}" for b in bias)
        + " (closed form "
        + ", ".join(f"{b:.3f}" for b in predicted_bias)
        + "; γʰ = "
        + ", ".join(f"{problem.gamma**h:.3f}" for h in windows)
        + "); bias test vs ∇J "
        + ", ".join(_p(m) for m in ms)
        + "; vs the closed form "
        + ", ".join(_p(m) for m in closed)
    )
    text = "With V = 0 (APG's truncated BPTT), the window's bias shrinks as h grows, like γʰ"
    return _bounds(Claim(12, text, figure, checks, seed), [], ms[:2])


def claim_13_contact_windows(seed: int = 0) -> Claim:
    """Variance of one episode's windowed BPTT gradient (APG windows, `contact_window_gradients`) on the
    contact toy at h = 1 and 64, soft (k = 10³) and stiff (k = 3·10⁴) wall, 1000 episodes each (the same
    episodes for every k and h)."""
    theta = torch.tensor(CONTACT_THETA, dtype=torch.float64)
    s = sample_seed(seed)
    variance = {}
    for k in (1e3, 3e4):
        env = contact_window_env(k)
        for h in (1, 64):
            grads = contact_window_gradients(
                env, theta, CONTACT_SIGMA, h, 1000, torch.Generator().manual_seed(s)
            )
            variance[k, h] = float(grads.var(0).sum())
    soft, stiff = (variance[k, 64] / variance[k, 1] for k in (1e3, 3e4))
    checks = {
        "stiff wall: variance grows > 100× from h = 1 to h = 64": stiff > 100,
        "stiff wall's growth > 10× the soft wall's": stiff > 10 * soft,
    }
    figure = (
        "contact toy, tr Cov of one episode's gradient at h = 1 → 64: k = 3·10⁴ "
        f"{variance[3e4, 1]:.3g} → {variance[3e4, 64]:.3g} (×{stiff:.3g}); k = 10³ "
        f"{variance[1e3, 1]:.3g} → {variance[1e3, 64]:.3g} (×{soft:.3g})"
    )
    text = (
        "On a stiff contact the variance of the windowed BPTT gradient grows with the window h by orders of "
        "magnitude (> 100×), far more than at a soft wall"
    )
    return Claim(13, text, figure, checks, seed)


def claim_14_discount_weighting(seed: int = 0) -> Claim:
    """Reward-to-go minus the exact V_t, with and without γᵗ, on a random MDP with horizon 20 at γ = 0.5, 0.9,
    0.99 (300 estimates of 100 episodes; both estimators on the same episodes), against the exact gradient of
    J = E[Σ_{t<20} γᵗ r_t] and against the closed-form mean of the γᵗ-free one."""
    gammas = (0.5, 0.9, 0.99)
    tests = 3 * len(gammas)
    s = sample_seed(seed)
    weighted, free, closed, closed_bias, closed_cos = [], [], [], [], []
    for gamma in gammas:
        problem = make_problem("random", horizon=20, seed=seed, gamma=gamma)
        exact = problem.exact.reshape(-1)
        weighted.append(
            _m(
                problem,
                f"γᵗ, γ = {gamma}",
                estimator(problem, "value_baseline", discount_weighting=True),
                seed,
            )
        )
        grads, cost, seconds = draw_estimates(estimator(problem, "value_baseline"), 100, 300, s)
        mean = gamma_free_mean(problem)
        free.append(measurement_from(f"no γᵗ, γ = {gamma}", grads, exact, 100, cost, seconds))
        closed.append(measurement_from(f"no γᵗ vs its mean, γ = {gamma}", grads, mean, 100, cost, seconds))
        closed_bias.append(float((mean - exact).norm() / exact.norm()))
        closed_cos.append(float(mean @ exact / (mean.norm() * exact.norm())))
    bias = [m.corrected_bias for m in free]
    checks = {
        "with γᵗ: unbiased at γ = 0.5, 0.9, 0.99": all(unbiased(m, tests) for m in weighted),
        "without γᵗ: biased at γ = 0.5, 0.9, 0.99": all(biased(m, tests) for m in free),
        "without γᵗ: mean = Σ_t d_t π (Q_t − V_t), no γᵗ, at γ = 0.5, 0.9, 0.99": all(
            unbiased(m, tests) for m in closed
        ),
        "bias grows as γ falls (γ = 0.99 < 0.9 < 0.5)": bias[2] < bias[1] < bias[0],
    }
    figure = (
        "H = 20, γ = 0.5, 0.9, 0.99: without γᵗ noise-corrected rel. bias "
        + ", ".join(f"{b:.3f}" for b in bias)
        + " (closed form "
        + ", ".join(f"{b:.3f}" for b in closed_bias)
        + "; cosine of its mean with ∇J "
        + ", ".join(f"{c:.4f}" for c in closed_cos)
        + "); with γᵗ 99% upper bound "
        + ", ".join(f"{m.bias_high:.3f}" for m in weighted)
        + " (bias test "
        + ", ".join(_p(m) for m in weighted)
        + ")"
    )
    text = (
        "Dropping γᵗ (as nearly every implementation does) biases the gradient of the discounted return, the "
        "more the smaller γ; with γᵗ it is unbiased"
    )
    return _bounds(Claim(14, text, figure, checks, seed), weighted, free)


def claim_15_natural_gradient(seed: int = 0) -> Claim:
    """NPG/TRPO's conjugate gradient on exact Fisher-vector products (mean KL under the exact d̄, double
    backprop) against F⁺∇J on a 20-state, 4-action random MDP (γ = 0.9), 1 … 30 iterations; then the
    Fisher-vector product from N = 100, 1000, 10000 sampled states (NPG/TRPO's) or state-action pairs (the
    score outer product), 200 estimates each."""
    problem = natural_problem(seed)
    shape = problem.theta.shape
    kl, params = mean_kl(problem)
    fvp = make_fisher_vector_product(kl, params)
    probe = torch.randn(
        problem.gradient.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    fvp_error = max(
        float((fvp(v) - problem.fisher @ v).norm() / (problem.fisher @ v).norm())
        for v in (problem.gradient, probe)
    )
    advantage = row_space(problem.advantage.reshape(-1) / (1 - problem.mdp.gamma), shape)
    kakade = float((advantage - problem.natural).norm() / problem.natural.norm())
    iterations = list(range(1, 31))
    euclid, f_norm = cg_errors(problem, fvp, iterations, conjugate_gradient)
    first = next((k for k, e in zip(iterations, euclid, strict=True) if e < 1e-3), None)
    # NPG's defaults: 15 iterations on F + 0.1 I (damping); how far that turns the direction.
    damped = make_fisher_vector_product(kl, params, 0.1)
    x_damped = row_space(conjugate_gradient(damped, problem.gradient, iterations=15), shape)
    cos_damped = float(x_damped @ problem.natural / (x_damped.norm() * problem.natural.norm()))
    cos_plain = float(row_space(problem.gradient, shape) @ problem.natural) / float(
        row_space(problem.gradient, shape).norm() * problem.natural.norm()
    )
    target = problem.fisher @ problem.gradient
    budgets, sampled, slopes = (100, 1000, 10000), {}, {}
    for kind in ("states", "states_actions"):
        est = sampled_fvp_estimator(problem, problem.gradient, kind, make_fisher_vector_product)
        sampled[kind] = [measure(kind, est, target, n, 200, seed=sample_seed(seed)) for n in budgets]
        rms = [math.sqrt(m.total_variance) for m in sampled[kind]]
        slopes[kind] = loglog_slope(list(budgets), rms)
    all_sampled = [m for ms in sampled.values() for m in ms]
    checks = {
        "double-backprop FVP = F v (rel. error < 1e-10)": fvp_error < 1e-10,
        "F⁺∇J = A/(1 − γ) up to per-state shifts (rel. error < 1e-8)": kakade < 1e-8,
        "CG's error never grows (k = 1 … 30; F-norm and Euclidean)": all(
            b <= a for errors in (f_norm, euclid) for a, b in itertools.pairwise(errors)
        ),
        "CG's rel. error < 1e-3 within 25 iterations": first is not None and first <= 25,
        "sampled FVP unbiased at N = 100, 1000, 10000": all(
            unbiased(m, len(all_sampled)) for m in all_sampled
        ),
        "sampled FVP error ∝ N^s, −0.6 < s < −0.4": all(-0.6 < s < -0.4 for s in slopes.values()),
    }
    figure = (
        "S = 20, A = 4 (rank F = 60): CG rel. error after 1, 5, 10, 15, 30 iterations "
        + ", ".join(f"{euclid[k - 1]:.1e}" for k in (1, 5, 10, 15, 30))
        + f" (< 1e-3 after {first}); FVP by double backprop vs F v {fvp_error:.0e}; F⁺∇J vs A/(1 − γ) "
        f"{kakade:.0e}; NPG's damping 0.1: cos(x, F⁺∇J) {cos_damped:.3f} (plain gradient {cos_plain:.3f}); "
        "sampled FVP, N = 100 → 10⁴: rel. error of one estimate "
        + "; ".join(
            f"{kind} {math.sqrt(ms[0].total_variance) / float(target.norm()):.3f} → "
            f"{math.sqrt(ms[-1].total_variance) / float(target.norm()):.4f} (slope {slopes[kind]:.2f})"
            for kind, ms in sampled.items()
        )
        + f"; smallest bias-test p {min(m.bias_p for m in all_sampled):.2g}"
    )
    text = (
        "The natural-gradient direction of NPG/TRPO is F⁻¹∇J: conjugate gradient on Fisher-vector products "
        "converges to it, and sampled Fisher-vector products are unbiased with error ∝ 1/√N"
    )
    return _bounds(Claim(15, text, figure, checks, seed), all_sampled, [])


def claim_16_ppo_epochs(seed: int = 0) -> Claim:
    """PPO's clipped surrogate with the exact advantages of π_old on a random MDP (H = 10): 10 epochs of one
    full-batch ascent step (length 0.1 in θ) at ε = 0.1, 0.2, 0.3 and without the clip, 200 estimates of 50
    episodes (the same for every ε), each epoch's gradient against ∇J at the parameters it was taken at."""
    problem = make_problem("random", horizon=10, seed=seed)
    exact_old = problem.exact.reshape(-1)
    s = sample_seed(seed)
    clips = (0.1, 0.2, 0.3)
    bias: dict[float, list[float]] = {}
    fractions: dict[float, list[float]] = {}
    first: dict[float, Measurement] = {}
    last: dict[float, Measurement] = {}
    for eps in (*clips, math.inf):
        run = ppo_epochs(problem, min(eps, 1e9), 10, 50, 200, 0.1, s, clipped_surrogate)
        # ĝ_k − ∇J(θ_k) + ∇J(θ_old) against ∇J(θ_old): the bias at the current θ, relative to ‖∇J(θ_old)‖.
        ms = [
            measurement_from(f"ε = {eps}, epoch {k + 1}", g - e + exact_old, exact_old, 50, 0.0)
            for k, (g, e) in enumerate(zip(run.estimates, run.exact, strict=True))
        ]
        bias[eps] = [m.corrected_bias for m in ms]
        fractions[eps] = run.clip_fraction
        first[eps], last[eps] = ms[0], ms[-1]
    # At θ_old the ratio is 1 and every ε gives the same first-epoch gradient: one test.
    start = first[clips[0]]
    tests = 1 + len(clips)
    checks = {
        "epoch 1 (ratio 1): unbiased for ∇J(θ_old)": unbiased(start, tests),
        "epoch 10: biased against ∇J(θ₁₀) at ε = 0.1, 0.2, 0.3": all(biased(last[e], tests) for e in clips),
        "bias grows over the epochs (epoch 1 < 5 < 10) at ε = 0.1, 0.2, 0.3": all(
            bias[e][0] < bias[e][4] < bias[e][9] for e in clips
        ),
        "smaller ε drifts more (epoch 10: ε = 0.1 > 0.2 > 0.3 > no clip)": bias[0.1][9]
        > bias[0.2][9]
        > bias[0.3][9]
        > bias[math.inf][9],
    }
    figure = (
        f"epoch 1: bias test {_p(start)} (99% upper bound {start.bias_high:.3f}); noise-corrected rel. "
        "bias vs ∇J(θ_k) at epochs 2, 5, 10: "
        + "; ".join(
            f"{'no clip' if e == math.inf else f'ε = {e}'} "
            + ", ".join(f"{bias[e][k]:.3f}" for k in (1, 4, 9))
            + (f" (clip fraction {fractions[e][9]:.2f})" if e != math.inf else "")
            for e in (*clips, math.inf)
        )
    )
    text = (
        "PPO's clipped-surrogate gradient is the policy gradient at θ_old in the first epoch; over the "
        "epochs it drifts from ∇J at the current θ, the more the smaller ε (the clip zeroes clipped samples' "
        "gradient)"
    )
    return _bounds(Claim(16, text, figure, checks, seed), [start], [last[e] for e in clips])


def claim_17_group_baselines(seed: int = 0) -> Claim:
    """RLOO, Dr. GRPO and GRPO (÷ std, ÷ length, both) on an episodic MDP with a binary outcome (4 starts of
    different difficulty, episodes of 1 … 10 steps): 300 estimates of 16 groups of G = 8 episodes per start,
    all estimators on the same episodes, against ∇J and against each one's exact mean (binomial sum over the
    group's other outcomes × a length-weighted backward induction, `pgrad.lab.groups`)."""
    G = 8
    problem = group_problem(seed)
    exact = problem.exact
    dr_grpo = functools.partial(group_relative_advantages, scale=False)
    variants = {
        "RLOO": (leave_one_out_advantages, False),
        "Dr. GRPO": (dr_grpo, False),
        "÷ std": (group_relative_advantages, False),
        "÷ length": (dr_grpo, True),
        "GRPO (÷ std, ÷ length)": (group_relative_advantages, True),
    }
    grads, cost = group_estimates(problem, variants, G, 16, 300, sample_seed(seed))
    means = {
        name: group_estimator_mean(problem, fn, G, normalized) for name, (fn, normalized) in variants.items()
    }
    scaled = (G - 1) / G * exact

    def m(name: str, reference: torch.Tensor, label: str = "") -> Measurement:
        return measurement_from(name + label, grads[name], reference, 16, cost)

    def angle(x: torch.Tensor) -> float:
        return math.degrees(math.acos(min(1.0, float(x @ exact / (x.norm() * exact.norm())))))

    rloo = m("RLOO", exact)
    std, length = m("÷ std", scaled, " vs (G − 1)/G ∇J"), m("÷ length", scaled, " vs (G − 1)/G ∇J")
    closed = [
        m(name, means[name], " vs its mean") for name in ("÷ std", "÷ length", "GRPO (÷ std, ÷ length)")
    ]
    grpo = m("GRPO (÷ std, ÷ length)", exact)
    tests = 3 + len(closed)
    # R_i − mean_j R_j = (G − 1)/G (R_i − mean_{j≠i} R_j): Dr. GRPO is RLOO rescaled, sample by sample.
    dr_grads = grads["Dr. GRPO"]
    rescaled = float(((G - 1) / G * grads["RLOO"] - dr_grads).abs().max() / dr_grads.abs().max())
    exact_error = {
        "RLOO": float((means["RLOO"] - exact).norm() / exact.norm()),
        "Dr. GRPO": float((means["Dr. GRPO"] - scaled).norm() / scaled.norm()),
    }
    angles = {name: angle(mean) for name, mean in means.items()}
    scales = {name: float(mean @ exact / (exact @ exact)) for name, mean in means.items()}
    checks = {
        "RLOO unbiased (sampled; exact mean = ∇J)": unbiased(rloo, tests) and exact_error["RLOO"] < 1e-10,
        "Dr. GRPO = (G − 1)/G × RLOO, estimate by estimate (exact mean (G − 1)/G·∇J)": rescaled < 1e-10
        and exact_error["Dr. GRPO"] < 1e-10,
        "÷ std and ÷ length biased against (G − 1)/G·∇J": biased(std, tests) and biased(length, tests),
        "÷ std, ÷ length and GRPO's means = their closed forms": all(unbiased(c, tests) for c in closed),
        "÷ std and ÷ length turn the direction (exact mean: angle to ∇J > 0.1°; RLOO, Dr. GRPO < 1e-4°)": (
            angles["÷ std"] > 0.1
            and angles["÷ length"] > 0.1
            and max(angles["RLOO"], angles["Dr. GRPO"]) < 1e-4
        ),
    }
    figure = (
        "G = 8: exact mean = c·∇J turned by an angle: "
        + "; ".join(f"{name} c = {scales[name]:.3f}, {angles[name]:.2f}°" for name in variants)
        + f". Bias tests: RLOO vs ∇J {_p(rloo)} (99% upper bound {rloo.bias_high:.2f}); vs (G − 1)/G ∇J "
        f"÷ std {_p(std)}, ÷ length {_p(length)}; GRPO vs ∇J {_p(grpo)}; vs the closed forms "
        + ", ".join(_p(c) for c in closed)
    )
    text = (
        "GRPO's division by the group std and by the episode length bias the gradient (Dr. GRPO's argument); "
        "RLOO is unbiased and Dr. GRPO's mean-centred advantage gives exactly (G − 1)/G·∇J"
    )
    return _bounds(Claim(17, text, figure, checks, seed), [rloo, *closed], [std, length])


CLAIMS: dict[int, Callable[[int], Claim]] = {
    1: claim_1_unbiased,
    2: claim_2_reward_to_go,
    3: claim_3_baselines,
    4: claim_4_optimal_baseline,
    5: claim_5_gae,
    6: claim_6_critic_bias,
    7: claim_7_differentiable_env,
    8: claim_8_relaxations,
    9: claim_9_finite_differences,
    10: claim_10_importance_sampling,
    11: claim_11_windowed_exact_critic,
    12: claim_12_windowed_no_critic,
    13: claim_13_contact_windows,
    14: claim_14_discount_weighting,
    15: claim_15_natural_gradient,
    16: claim_16_ppo_epochs,
    17: claim_17_group_baselines,
}


def run_claims(
    numbers: Iterable[int] | None = None, seeds: Iterable[int] = DEFAULT_SEEDS
) -> list[ClaimVerdict]:
    """Run each claim (all when `numbers` is None) on each seed; one `ClaimVerdict` per claim."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("run_claims needs at least one seed")
    verdicts = []
    for number in sorted(numbers or CLAIMS):
        runs = []
        for seed in seeds:
            start = time.perf_counter()
            run = CLAIMS[number](seed)
            run.seconds = time.perf_counter() - start
            runs.append(run)
        verdicts.append(ClaimVerdict(number, runs[0].text, runs))
    return verdicts


def _bound_text(verdict: ClaimVerdict) -> str:
    parts = []
    if verdict.unbiased_bound is not None:
        parts.append(f"unbiased ones ≤ {verdict.unbiased_bound:.3f}")
    if verdict.biased_bound is not None:
        parts.append(f"biased ones ≥ {verdict.biased_bound:.3f}")
    return "; ".join(parts) or "—"


def claims_table(verdicts: list[ClaimVerdict]) -> str:
    """How the claims were run, then a markdown table: claim, figure on the first seed, the worst 99% bias
    bounds over the seeds, verdict "holds on k/n"."""
    if not verdicts:
        return "No claims run."
    seeds = [run.seed for run in verdicts[0].runs]
    if seeds == list(range(len(seeds))):
        how = f"`pgrad lab claims --seeds {len(seeds)}` (seeds 0–{len(seeds) - 1})"
    else:
        how = f"`run_claims(seeds={seeds})`"
    seconds = sum(v.seconds for v in verdicts)
    lines = [
        f"Each claim ran on {len(seeds)} seeds with {how}, in {seconds:.0f} s of wall time "
        f"({torch.get_num_threads()} torch thread(s)). "
        "A seed draws the claim's problem (random MDP and policy, LQR system, logits, critic errors) and all "
        "its samples. Bias tests are the calibrated scaled-χ² (F) test of `pgrad.lab.measure` at a "
        "family-wise 1% per claim; the bound column is the worst over the seeds of the 99% upper bound on "
        "‖E ĝ − ∇J‖/‖∇J‖ of the estimators the claim calls unbiased (what its estimates can resolve) and of "
        "the 99% lower bound of those it calls biased. See pgrad/lab/claims.py for every check.",
        "",
        f"| # | claim | measured (seed {seeds[0]}) | 99% bound on the relative bias, worst over seeds "
        "| verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        lines.append(f"| {v.number} | {v.text} | {v.runs[0].figure} | {_bound_text(v)} | {v.verdict} |")
    return "\n".join(lines)
