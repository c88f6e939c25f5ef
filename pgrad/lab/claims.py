"""The references' claims about policy-gradient estimators, each measured and given a verdict.

Every claim runs with fixed seeds, so its figures are reproducible to the last digit. Estimators that are
compared draw the same episodes (the same generator state per estimate), which makes variance comparisons
paired. "Unbiased" means the bias z-score of `pgrad.lab.measure` is below 2.576 (99%); "biased" means it is
above. `pgrad lab claims` prints the table; tests/lab/test_claims.py asserts every verdict.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pgrad.envs.diff import ContactToy
from pgrad.lab.measure import Z_99, Measurement, loglog_slope, measure
from pgrad.lab.pathwise import (
    bptt_estimator,
    contact_bptt,
    contact_expected_return,
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
    make_problem,
    off_policy_estimator,
    optimal_constant_baseline,
)


@dataclass
class Claim:
    number: int
    text: str
    figure: str
    holds: bool


def _m(problem, name: str, est, budget: int = 100, estimates: int = 300) -> Measurement:
    return measure(name, est, problem.exact, budget, estimates, seed=0)


def claim_1_unbiased() -> Claim:
    problem = make_problem("random", horizon=10)
    ms = [_m(problem, "total", estimator(problem, "total"), budget=b, estimates=200) for b in (10, 100, 1000)]
    slope = loglog_slope([m.budget for m in ms], [m.relative_bias for m in ms])
    holds = all(m.bias_z < Z_99 for m in ms) and -0.8 < slope < -0.2
    figure = (
        "rel. bias "
        + " → ".join(f"{m.relative_bias:.3f}" for m in ms)
        + f" at B = 10, 100, 1000 (slope {slope:.2f}); "
        f"bias z = " + ", ".join(f"{m.bias_z:.2f}" for m in ms)
    )
    return Claim(
        1, "The score-function estimator is unbiased: its mean converges to ∇J like 1/√B", figure, holds
    )


def claim_2_reward_to_go() -> Claim:
    problem = make_problem("random", horizon=10)
    total = _m(problem, "total", estimator(problem, "total"))
    rtg = _m(problem, "reward_to_go", estimator(problem, "reward_to_go"))
    holds = rtg.bias_z < Z_99 and rtg.total_variance < total.total_variance
    figure = (
        f"tr Cov: whole return {total.total_variance:.3f}, reward-to-go {rtg.total_variance:.3f}; "
        f"z = {rtg.bias_z:.2f}"
    )
    return Claim(2, "Reward-to-go keeps it unbiased and lowers the variance", figure, holds)


def claim_3_baselines() -> Claim:
    problem = make_problem("random", horizon=10)
    none = _m(problem, "none", estimator(problem, "reward_to_go"))
    mean = _m(problem, "mean", estimator(problem, "mean_baseline"))
    good_v = _m(problem, "V (error 0.1)", estimator(problem, "value_baseline", error=0.1))
    bad_v = _m(problem, "V (error 2.0)", estimator(problem, "value_baseline", error=2.0))
    holds = (
        all(m.bias_z < Z_99 for m in (mean, good_v, bad_v))
        and mean.total_variance < none.total_variance
        and good_v.total_variance < none.total_variance
    )
    figure = (
        f"tr Cov: none {none.total_variance:.3f}, mean {mean.total_variance:.3f}, "
        f"learned V {good_v.total_variance:.3f}; z (mean, V, badly wrong V) = "
        f"{mean.bias_z:.2f}, {good_v.bias_z:.2f}, {bad_v.bias_z:.2f}"
    )
    return Claim(
        3,
        "Any state-dependent baseline keeps it unbiased; mean and learned-V baselines lower the variance",
        figure,
        holds,
    )


def claim_4_optimal_baseline() -> Claim:
    problem = make_problem("random", horizon=10)
    best = optimal_constant_baseline(problem)
    optimal = _m(problem, "optimal", estimator(problem, "optimal_baseline", baseline=best))
    constants = [0.0, 1.0, 2.0, 3.0, 4.0, round(problem.J, 3), 5.0, 6.0]
    others = [_m(problem, f"b = {c}", estimator(problem, "total", constant=c)) for c in constants]
    lowest = min(others, key=lambda m: m.total_variance)
    holds = optimal.total_variance < lowest.total_variance
    figure = (
        f"tr Cov: optimal per-parameter b {optimal.total_variance:.4f} < best constant "
        f"({lowest.estimator}) {lowest.total_variance:.4f}; b = 0 gives {others[0].total_variance:.3f}"
    )
    return Claim(4, "The optimal baseline gives the lowest variance among constant baselines", figure, holds)


def claim_5_gae() -> Claim:
    problem = make_problem("random", horizon=10)
    lams = (0.0, 0.5, 0.9, 1.0)
    ms = [_m(problem, f"λ={lam}", estimator(problem, "gae", lam=lam, error=0.15)) for lam in lams]
    bias = [m.corrected_bias for m in ms]
    var = [m.total_variance for m in ms]
    holds = (
        ms[0].bias_z > Z_99
        and ms[-1].bias_z < Z_99
        and bias[0] > bias[1] >= bias[2]
        and all(a < b for a, b in itertools.pairwise(var))
    )
    figure = (
        "critic error 0.15; λ = 0, 0.5, 0.9, 1: noise-corrected rel. bias "
        + ", ".join(f"{b:.3f}" for b in bias)
        + " (z "
        + ", ".join(f"{m.bias_z:.1f}" for m in ms)
        + "); tr Cov "
        + ", ".join(f"{v:.4f}" for v in var)
    )
    return Claim(
        5,
        "With an imperfect V, GAE's λ trades bias for variance (bias grows, variance falls as λ → 0)",
        figure,
        holds,
    )


def claim_10_importance_sampling() -> Claim:
    ratios, zs = {}, []
    for horizon in (5, 10, 20):
        problem = make_problem("random", horizon=horizon)
        on = _m(problem, "on-policy", estimator(problem, "reward_to_go"))
        off = _m(problem, "IS", off_policy_estimator(problem, 0.25))
        ratios[f"H={horizon}"] = off.total_variance / on.total_variance
        zs.append(off.bias_z)
    problem = make_problem("random", horizon=10)
    on = _m(problem, "on-policy", estimator(problem, "reward_to_go"))
    for mismatch in (0.1, 0.5):
        off = _m(problem, "IS", off_policy_estimator(problem, mismatch))
        ratios[f"δ={mismatch}"] = off.total_variance / on.total_variance
        zs.append(off.bias_z)
    values = list(ratios.values())
    holds = (
        all(z < Z_99 for z in zs)
        and values[0] < values[1] < values[2]
        and values[3] < ratios["H=10"] < values[4]
    )
    figure = (
        "Var(IS)/Var(on-policy): "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
        + f" (δ = 0.25 unless given); max z = {max(zs):.2f}"
    )
    return Claim(
        10,
        "Importance-sampled off-policy estimates are unbiased; variance grows with horizon and mismatch",
        figure,
        holds,
    )


def claim_6_critic_bias() -> Claim:
    problem, K, exact = dpg_problem()
    errors = (0.0, 0.05, 0.1, 0.2)
    ms = [measure(f"error {e}", dpg_estimator(problem, K, e), exact, 20, 200, seed=0) for e in errors]
    bias = [m.corrected_bias for m in ms]
    # Fitted Q networks: less data, larger critic error, larger bias.
    fitted = [
        measure(
            f"fitted {n}", dpg_estimator(problem, K, critic=fitted_q_network(problem, K, n)), exact, 20, 100
        )
        for n in (200, 5000)
    ]
    holds = (
        ms[0].bias_z < Z_99
        and all(m.bias_z > Z_99 for m in ms[1:] + fitted)
        and bias[1] < bias[2] < bias[3]
        and fitted[0].corrected_bias > fitted[1].corrected_bias
    )
    figure = (
        "DPG on LQR, critic error 0, 0.05, 0.1, 0.2 (relative, in P): noise-corrected rel. bias "
        + ", ".join(f"{b:.3f}" for b in bias)
        + " (z "
        + ", ".join(f"{m.bias_z:.1f}" for m in ms)
        + f"); fitted Q network on 200 / 5000 samples: {fitted[0].corrected_bias:.2f} / "
        f"{fitted[1].corrected_bias:.2f}"
    )
    return Claim(
        6,
        "The pathwise estimate through a learned critic is biased, and the bias grows with its error",
        figure,
        holds,
    )


def claim_7_differentiable_env() -> Claim:
    env, K, sigma, exact = diff_lqr_problem()
    bptt = measure("bptt", bptt_estimator(env, K, sigma, "bptt"), exact, 10, 200, seed=0)
    score = measure("score", bptt_estimator(env, K, sigma, "score"), exact, 10, 200, seed=0)
    # Contact toy, Heaviside reward (no action cost): BPTT is exactly 0; the true gradient (central
    # differences of the expected return with common random numbers) is not.
    heavi = ContactToy(variant="heaviside", horizon=30, action_cost=0.0, dtype=torch.float64)
    theta = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    bptt_h = contact_bptt(heavi, theta, 0.5, 2000, gen)
    e0 = torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64)
    true_h = (
        contact_expected_return(heavi, theta + e0, 0.5, 20000, 1)
        - contact_expected_return(heavi, theta - e0, 0.5, 20000, 1)
    ) / 0.2
    # Smooth contact: the spread of BPTT estimates explodes with the horizon (repeated stiff contacts).
    spreads = []
    for horizon in (10, 40, 80):
        smooth = ContactToy(
            stiffness=3e4, dt=0.01, substeps=1, horizon=horizon, dtype=torch.float64, x_limit=None
        )
        push = torch.tensor([-5.0, 0.0, 0.0], dtype=torch.float64)
        grads = torch.stack(
            [contact_bptt(smooth, push, 0.1, 1, torch.Generator().manual_seed(i)) for i in range(64)]
        )
        spreads.append(float(grads[:, 0].std()))
    holds = (
        bptt.total_variance < 0.1 * score.total_variance
        and bptt.bias_z < Z_99
        and float(bptt_h.abs().max()) == 0.0
        and abs(float(true_h)) > 0.1
        and spreads[0] < spreads[1] < spreads[2]
        and spreads[2] > 100 * spreads[0]
    )
    figure = (
        f"LQR, 10 rollouts: tr Cov BPTT {bptt.total_variance:.3g} vs score function "
        f"{score.total_variance:.3g} (z {bptt.bias_z:.2f}); Heaviside contact: BPTT ∂/∂θ₀ = "
        f"{abs(float(bptt_h[0])):.1f}, true ≈ {float(true_h):.2f}; "
        f"stiff wall, std of BPTT ∂/∂θ₀ at H = 10, 40, 80: " + ", ".join(f"{v:.3g}" for v in spreads)
    )
    return Claim(
        7,
        "BPTT through a smooth differentiable env has far lower variance than the score function; on contact "
        "it is biased (Heaviside) or its variance explodes with stiffness and horizon",
        figure,
        holds,
    )


def claim_8_relaxations() -> Claim:
    logits, f, exact = relaxation_problem()
    st = measure("ST", relaxation_estimator(logits, f, "straight_through"), exact, 100, 400, seed=0)
    gs = measure("GS", relaxation_estimator(logits, f, "gumbel_softmax", 0.5), exact, 100, 400, seed=0)
    rm = measure("ReinMax", relaxation_estimator(logits, f, "reinmax"), exact, 100, 400, seed=0)
    holds = st.bias_z > Z_99 and gs.bias_z > Z_99 and rm.corrected_bias < st.corrected_bias
    figure = (
        f"quadratic f, K = 5: noise-corrected rel. bias straight-through {st.corrected_bias:.3f} "
        f"(z {st.bias_z:.0f}), "
        f"Gumbel-Softmax τ=0.5 {gs.corrected_bias:.3f} (z {gs.bias_z:.0f}), ReinMax {rm.corrected_bias:.3f} "
        f"(z {rm.bias_z:.1f})"
    )
    return Claim(
        8,
        "Straight-through and Gumbel-Softmax are biased for categorical actions; "
        "ReinMax's bias is lower than ST's",
        figure,
        holds,
    )


def claim_9_finite_differences() -> Claim:
    epsilons = (1e-1, 1e-3, 1e-5, 1e-8, 1e-11)
    errors, d, evaluations = finite_difference_errors(epsilons)
    best = min(range(len(errors)), key=errors.__getitem__)
    holds = (
        errors[0] > errors[1] > errors[2]
        and 0 < best < len(errors) - 1
        and errors[-1] > errors[best]
        and evaluations == 2 * d
    )
    figure = (
        "central differences of the exact LQR J: rel. error at ε = "
        + ", ".join(f"{e:g}: {err:.1e}" for e, err in zip(epsilons, errors, strict=True))
        + f"; {evaluations} evaluations for d = {d} parameters"
    )
    return Claim(
        9,
        "Finite differences converge as ε shrinks (until round-off) and need O(d) rollouts per estimate",
        figure,
        holds,
    )


CLAIMS: dict[int, Callable[[], Claim]] = {
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
}


def run_claims(numbers: list[int] | None = None) -> list[Claim]:
    return [CLAIMS[n]() for n in sorted(numbers or CLAIMS)]


def claims_table(claims: list[Claim]) -> str:
    lines = ["| # | claim | measured | verdict |", "| --- | --- | --- | --- |"]
    for c in claims:
        lines.append(f"| {c.number} | {c.text} | {c.figure} | {'holds' if c.holds else 'DOES NOT HOLD'} |")
    return "\n".join(lines)
