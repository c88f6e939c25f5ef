"""SHAC's windowed gradient as the window length h grows: bias and variance against the exact gradient.

SHAC (Xu et al. 2022) differentiates h steps of a rollout and closes the window with a critic V̂:

    L_h(θ) = −1/Z Σ_n [ Σ_{t<h} γᵗ r(x_t, u_t) + γʰ V̂(x_h) ],    x_{t+1} = f(x_t, u_t),  u_t = πθ(x_t, ε_t)

which is `pgrad.estimators.bptt_loss(rewards, γ, terminated, bootstrap_values=V̂(x_h))`, the very call SHAC
makes (`pgrad.algorithms.differentiable.shac`): the gradient flows through x_h into V̂, not into V̂'s
parameters, and the state x₀ carried into the window is a constant. APG is the same loss without the
bootstrap (V̂ = 0, `bootstrap_values=None`).

LQR (`shac_window_estimator`, γ = 0.9, u = −Kx + σε, float64): window starts x₀ are drawn from the
discounted distribution of window-start states d_h(x) = (1 − γʰ) Σ_i γ^{hi} p_{hi}(x) (the states at times
0, h, 2h, … of an episode from x₀ ~ N(0, Σ₀), each weighted by its discount; `visitation_sampler` with
stride h) and the estimate is ĝ_h = −∇_K L_h / (1 − γʰ) with Z = B windows. With V̂ = V^K it is unbiased for
∇_K J at every h; with V̂ ≠ V^K its bias is

    E ĝ_h − ∇_K J = γʰ / (1 − γʰ) · E_{x₀∼d_h} ∇_K [(V̂ − V^K)(x_h(K))]          (through x_h only)

computed in closed form by `window_expected_gradient` (the mean of ĝ_h is a quadratic expectation).

Contact toy (`contact_window_gradients`): an episode of T = 64 steps from the env's start distribution is cut
into T/h windows as APG cuts it (V̂ = 0, carried state detached); the per-episode gradient is the sum of the
windows' `bptt_loss` gradients (h = T: full BPTT). No closed form: the reference is a central finite
difference of the mean return over many rollouts with common random numbers (`contact_reference`), with its
own standard error.

`window_study` runs both and `window_page` writes the docs page (docs/lab/windows.md, `pgrad lab windows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from pgrad.envs.diff import ContactToy, DiffLQR
from pgrad.errors import ConfigError
from pgrad.estimators import bptt_loss
from pgrad.lab.exact import LQRProblem, lqr_objective_gradient, lqr_solution
from pgrad.lab.measure import Estimator, Measurement, gradient_statistics, measure
from pgrad.lab.pathwise import contact_bptt_per_rollout, contact_returns, dpg_problem, visitation_sampler
from pgrad.lab.report import Line, Panel, format_table, plot_panels

WINDOWS = (1, 2, 4, 8, 16, 32, 64)
"""The window lengths h of the study."""
LQR_SIGMA = 0.3  # action noise σ of the LQR policy u = −Kx + σε
CRITIC_ERROR = 0.3  # the imperfect critic: V̂ = (1 + 0.3) V^K
CONTACT_STIFFNESS = (1e3, 1e4, 3e4)  # h_sub √(k/m) = 0.32, 1.0, 1.73 at h_sub = 0.01 (stable below 2)
CONTACT_THETA = (2.0, -4.0, -1.5)  # u = 4(0.5 − x) − 1.5v: a lightly damped PD to x = 0.5
CONTACT_SIGMA = 0.1  # action noise of the contact policy
CONTACT_HORIZON = 64  # T control steps of 0.05 s (3.2 s: one impact at ≈ 0.5 s, then settling)
FD_DELTA = 1e-2  # step of the central finite difference of the contact reference


# -- LQR: the window estimator and its closed-form mean -----------------------------------------------------


def window_lqr_problem(seed: int = 0, sigma: float = LQR_SIGMA) -> tuple[LQRProblem, Tensor, float, Tensor]:
    """`dpg_problem`'s 3-state, 2-input LQR (γ = 0.9) and gain K (half the optimal one), the action noise σ,
    and the exact ∇_K J [m·n] of the noisy policy u = −Kx + σε (`lqr_objective_gradient`)."""
    problem, K, _ = dpg_problem(seed)
    return problem, K, sigma, lqr_objective_gradient(problem, K, sigma).reshape(-1)


def _check_window(window: int, what: str) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"{what}: the window h must be an integer >= 1, got {window!r}")
    return window


def shac_window_estimator(
    problem: LQRProblem,
    K: Tensor,
    sigma: float,
    window: int,
    critic_scale: float = 1.0,
    chunk: int = 1 << 21,
) -> Estimator:
    """SHAC's windowed gradient on the LQR: a budget of B windows of h = `window` steps per estimate.

    Each window starts at x₀ ~ d_h (module docstring; a constant, as the state SHAC carries into a window),
    rolls u_t = −K x_t + σε_t through `DiffLQR.step` for h steps and is closed by the critic
    V̂(x) = −`critic_scale`·xᵀPx, P the cost matrix of K (`lqr_solution`): 1 is the exact V^K (its constant
    −c, the noise's cost, has no gradient), 1 + ε a critic off by ε, 0 no critic (APG, no bootstrap). The loss
    is `bptt_loss(rewards [h, B], γ, terminated, bootstrap_values=V̂(x_h), normalizer=B)` and the estimate
    ĝ = −∇_K loss / (1 − γʰ): unbiased for ∇_K J with the exact critic. M estimates are drawn as M·B windows
    at once, each batch of B with its own copy of K, in chunks of at most `chunk` window-steps; the cost is
    B·h env steps."""
    h = _check_window(window, "shac_window_estimator")
    gamma, n, m = problem.gamma, problem.n, problem.m
    env = DiffLQR(problem.A, problem.B, problem.Q, problem.R, horizon=h, dtype=torch.float64)
    starts = visitation_sampler(problem, K, sigma, stride=h)
    critic = critic_scale * lqr_solution(problem, K).P
    scale = 1.0 / (1.0 - gamma**h)  # d_h weights the windows by (1 − γʰ) γ^{hi}: undo the (1 − γʰ)

    def gradients(budget: int, estimates: int, gen: torch.Generator) -> Tensor:
        K_var = K.expand(estimates, m, n).clone().requires_grad_(True)  # [M, m, n]
        x = starts(estimates * budget, gen).reshape(estimates, budget, n)  # [M, B, n], no grad into K
        rewards = []
        for _ in range(h):
            eps = torch.randn(estimates, budget, m, generator=gen, dtype=torch.float64)
            u = -x @ K_var.transpose(1, 2) + sigma * eps
            x, r, _ = env.step(x.reshape(-1, n), u.reshape(-1, m))
            rewards.append(r)
            x = x.reshape(estimates, budget, n)
        final = x.reshape(-1, n)
        bootstrap = None if critic_scale == 0 else -((final @ critic) * final).sum(1)
        R = torch.stack(rewards)  # [h, M·B]
        loss, _ = bptt_loss(
            R, gamma, torch.zeros_like(R, dtype=torch.bool), bootstrap_values=bootstrap, normalizer=budget
        )
        (grad,) = torch.autograd.grad(loss, K_var)  # batch j's windows reach K_var[j] only
        return -scale * grad.reshape(estimates, -1)

    def draw(budget: int, estimates: int, gen: torch.Generator) -> tuple[Tensor, float]:
        per_chunk = max(1, chunk // (budget * h))
        sizes = [min(per_chunk, estimates - i) for i in range(0, estimates, per_chunk)]
        return torch.cat([gradients(budget, size, gen) for size in sizes]), float(budget * h)

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        grads, cost = draw(budget, 1, gen)
        return grads[0], cost

    estimate.batch = draw  # type: ignore[attr-defined]
    return estimate


def window_start_moment(
    problem: LQRProblem, K: Tensor, sigma: float, stride: int, tolerance: float = 1e-16
) -> Tensor:
    """E[x₀x₀ᵀ] [n, n] under d_s = (1 − γˢ) Σ_i γ^{si} p_{si}, the start distribution of `visitation_sampler`
    with stride s: (1 − γˢ) Σ_i γ^{si} C_{si}, C_{t+1} = A_K C_t A_Kᵀ + σ²BBᵀ, C₀ = Σ₀ (summed while
    γᵗ ≥ `tolerance`)."""
    gamma = problem.gamma
    A_K = problem.A - problem.B @ K
    noise = sigma**2 * problem.B @ problem.B.T
    C, total, t = problem.Sigma0.clone(), torch.zeros_like(problem.Sigma0), 0
    while gamma**t >= tolerance:
        if t % stride == 0:
            total = total + gamma**t * C
        C = A_K @ C @ A_K.T + noise
        t += 1
    return (1 - gamma**stride) * total


def window_expected_gradient(
    problem: LQRProblem,
    K: Tensor,
    sigma: float,
    window: int,
    critic_scale: float = 1.0,
    stride: int | None = None,
) -> Tensor:
    """The exact mean [m·n] of `shac_window_estimator`'s ĝ_h, in closed form:

        E ĝ_h = 1/(1 − γʰ) ∇_K [ −Σ_{t<h} γᵗ tr((Q + KᵀRK) C_t) − γʰ tr(P̂ C_h) ],
        C_{t+1} = A_K C_t A_Kᵀ + σ²BBᵀ,  C₀ = E[x₀x₀ᵀ] under the start distribution (held fixed),

    P̂ = `critic_scale`·P held fixed (the critic's weights get no gradient); the constant noise costs drop
    out. `stride` s draws the starts from d_s instead of d_h (default s = h): s = 1 is the one-step
    discounted state distribution d, which biases the window for h > 1 even with the exact critic."""
    h = _check_window(window, "window_expected_gradient")
    gamma = problem.gamma
    C = window_start_moment(problem, K, sigma, h if stride is None else _check_window(stride, "stride"))
    critic = critic_scale * lqr_solution(problem, K).P
    K_var = K.clone().requires_grad_(True)
    A_K = problem.A - problem.B @ K_var
    noise = sigma**2 * problem.B @ problem.B.T
    total = K_var.new_zeros(())
    for t in range(h):
        total = total - gamma**t * torch.trace((problem.Q + K_var.T @ problem.R @ K_var) @ C)
        C = A_K @ C @ A_K.T + noise
    total = total - gamma**h * torch.trace(critic @ C)
    (grad,) = torch.autograd.grad(total, K_var)
    return grad.reshape(-1) / (1 - gamma**h)


def measurement_from(
    name: str, grads: Tensor, exact: Tensor, budget: int, cost: float, seconds: float = math.nan
) -> Measurement:
    """The lab's `Measurement` of estimates [M, P] already drawn (e.g. by `draw_estimates`, to compare the
    same estimates with two references, or per-episode gradients as M estimates of budget 1)."""
    return Measurement(
        estimator=name,
        budget=budget,
        estimates=grads.shape[0],
        cost=cost,
        seconds_per_estimate=seconds,
        **gradient_statistics(grads.detach(), exact),
    )


# -- contact toy: truncated windows through a stiff wall ----------------------------------------------------


def contact_window_env(stiffness: float, horizon: int = CONTACT_HORIZON) -> ContactToy:
    """The smooth-reward contact toy at wall stiffness k: 0.05 s control steps of 5 substeps (h_sub = 0.01,
    stable while h_sub²k < 4, i.e. k < 40,000), `horizon` steps, float64."""
    return ContactToy(stiffness=stiffness, dt=0.05, substeps=5, horizon=horizon, dtype=torch.float64)


def contact_window_gradients(
    env: ContactToy, theta: Tensor, sigma: float, window: int, rollouts: int, gen: torch.Generator
) -> Tensor:
    """Per-rollout gradients [R, 3] of one episode cut into windows of h steps (APG's windows, V̂ = 0: the
    sum of the windows' `bptt_loss` gradients, carried state detached; `contact_bptt_per_rollout`)."""
    return contact_bptt_per_rollout(env, theta, sigma, rollouts, gen, window=_check_window(window, "contact"))


def contact_reference(
    env: ContactToy, theta: Tensor, sigma: float, samples: int, seed: int, delta: float = FD_DELTA
) -> tuple[Tensor, Tensor]:
    """The reference gradient of the contact toy's expected return and its standard error, both [3]: central
    differences (J(θ + δe_i) − J(θ − δe_i)) / 2δ of the mean return of `samples` rollouts, all evaluations on
    the same start states and action noise (common random numbers, `contact_returns`), so each coordinate is
    the mean of `samples` paired per-rollout differences and its standard error is their std / √samples. (Its
    bias, O(δ²) for a smooth expected return, is below that error at δ = 1e-2.)"""
    grads, errors = [], []
    for i in range(theta.numel()):
        step = torch.zeros_like(theta)
        step[i] = delta
        diffs = (
            contact_returns(env, theta + step, sigma, samples, seed)
            - contact_returns(env, theta - step, sigma, samples, seed)
        ) / (2 * delta)
        grads.append(diffs.mean())
        errors.append(diffs.std() / math.sqrt(samples))
    return torch.stack(grads), torch.stack(errors)


# -- the study ----------------------------------------------------------------------------------------------

ROW_KEYS = (
    "setting",  # "LQR" or "contact"
    "closure",  # the critic closing the LQR window, or the contact toy's stiffness
    "h",  # window length
    "samples",  # B: windows (LQR) or episodes (contact) per estimate
    "estimates",  # M: independent estimates
    "cosine",  # mean cos(ĝ, ∇J) of single estimates
    "relative_bias",  # ‖ḡ − ∇J‖ / ‖∇J‖
    "corrected_bias",  # noise-corrected relative bias (`pgrad.lab.measure`)
    "bias_low",  # 99% confidence interval for ‖E ĝ − ∇J‖ / ‖∇J‖
    "bias_high",
    "bias_p",  # p-value of the bias test H0: E ĝ = ∇J
    "predicted_bias",  # closed-form ‖E ĝ − ∇J‖ / ‖∇J‖ (LQR; NaN on the contact toy)
    "per_sample_variance",  # B · tr Cov ĝ: the variance of one window's (one episode's) estimate
    "per_step_variance",  # per_sample_variance × env steps per sample: the variance at equal simulation cost
)
"""The keys of `WindowRow.row()`."""


@dataclass
class WindowRow:
    """One (setting, closure, h) of the window study: the lab's measurement and what the study adds to it."""

    setting: str
    closure: str
    window: int
    measurement: Measurement
    samples: int
    steps_per_sample: int
    predicted_bias: float = math.nan

    @property
    def per_sample_variance(self) -> float:
        """tr Cov of a one-sample estimate (B · tr Cov of the B-sample estimate)."""
        return self.samples * self.measurement.total_variance

    @property
    def per_step_variance(self) -> float:
        """The per-sample variance times the env steps of a sample: the variance of an estimate at a budget
        of one env step, which compares windows of different lengths at equal simulation cost."""
        return self.per_sample_variance * self.steps_per_sample

    def row(self) -> dict[str, float | int | str]:
        """The row as a dict with the keys `ROW_KEYS`."""
        m = self.measurement
        return {
            "setting": self.setting,
            "closure": self.closure,
            "h": self.window,
            "samples": self.samples,
            "estimates": m.estimates,
            "cosine": m.cosine,
            "relative_bias": m.relative_bias,
            "corrected_bias": m.corrected_bias,
            "bias_low": m.bias_low,
            "bias_high": m.bias_high,
            "bias_p": m.bias_p,
            "predicted_bias": self.predicted_bias,
            "per_sample_variance": self.per_sample_variance,
            "per_step_variance": self.per_step_variance,
        }


@dataclass
class WindowStudy:
    """What `window_study` measured."""

    gamma: float
    sigma: float
    exact_norm: float
    lqr: list[WindowRow] = field(default_factory=list)
    contact: list[WindowRow] = field(default_factory=list)
    references: dict[float, tuple[Tensor, Tensor]] = field(default_factory=dict)
    """Stiffness → (finite-difference reference gradient [3], its standard error [3])."""
    start_ablation: dict[int, float] = field(default_factory=dict)
    """h → closed-form relative bias of the exact-critic window started from d (the one-step distribution)."""
    reference_samples: int = 0

    def rows(self) -> list[dict[str, float | int | str]]:
        """Every row (LQR, then contact) as a dict with the keys `ROW_KEYS`."""
        return [r.row() for r in [*self.lqr, *self.contact]]


def lqr_closures(critic_error: float = CRITIC_ERROR) -> dict[str, float]:
    """The critics closing the LQR window: name → critic_scale (V̂ = critic_scale · V^K)."""
    return {"exact V": 1.0, f"V = {1 + critic_error:g}·V^K": 1.0 + critic_error, "V = 0 (APG)": 0.0}


def _relative(vector: Tensor, exact: Tensor) -> float:
    return float((vector - exact).norm() / exact.norm())


def window_study(
    budget: int = 1000,
    estimates: int = 200,
    seed: int = 0,
    windows: tuple[int, ...] = WINDOWS,
    critic_error: float = CRITIC_ERROR,
    stiffnesses: tuple[float, ...] = CONTACT_STIFFNESS,
    rollouts: int | None = None,
    reference_samples: int | None = None,
) -> WindowStudy:
    """Measure SHAC's windowed gradient for each h in `windows`.

    LQR (`window_lqr_problem(seed)`): for each closure of `lqr_closures` and each h, M = `estimates`
    estimates of B = `budget` windows each (`measure`, seed `seed`), with the closed-form bias
    (`window_expected_gradient`); also the closed-form bias of the exact-critic window started from the
    one-step distribution d. Contact toy (`contact_window_env(k)` for k in `stiffnesses`, policy
    `CONTACT_THETA`): R = `rollouts` (default 10·M) per-episode gradients for each h (the same start states
    and noise for every h and k), compared with the finite-difference reference of `reference_samples`
    (default 500·M) rollouts."""
    if budget < 1 or estimates < 2:
        raise ConfigError(f"window_study: needs budget >= 1 and estimates >= 2, got {budget}, {estimates}")
    problem, K, sigma, exact = window_lqr_problem(seed)
    study = WindowStudy(problem.gamma, sigma, float(exact.norm()))
    for name, scale in lqr_closures(critic_error).items():
        for h in windows:
            est = shac_window_estimator(problem, K, sigma, h, scale)
            m = measure(f"{name}, h = {h}", est, exact, budget, estimates, seed=seed)
            predicted = _relative(window_expected_gradient(problem, K, sigma, h, scale), exact)
            study.lqr.append(WindowRow("LQR", name, h, m, budget, h, predicted))
    for h in windows:
        study.start_ablation[h] = _relative(window_expected_gradient(problem, K, sigma, h, stride=1), exact)

    rollouts = 10 * estimates if rollouts is None else rollouts
    reference_samples = 500 * estimates if reference_samples is None else reference_samples
    study.reference_samples = reference_samples
    theta = torch.tensor(CONTACT_THETA, dtype=torch.float64)
    for k in stiffnesses:
        env = contact_window_env(k)
        reference, error = contact_reference(env, theta, CONTACT_SIGMA, reference_samples, seed + 7)
        study.references[k] = (reference, error)
        for h in windows:
            gen = torch.Generator().manual_seed(seed + 1)  # the same episodes for every h and k: paired
            grads = contact_window_gradients(env, theta, CONTACT_SIGMA, h, rollouts, gen)
            m = measurement_from(f"contact k = {k:g}, h = {h}", grads, reference, 1, float(env.horizon))
            study.contact.append(WindowRow("contact", f"k = {k:g}", h, m, 1, env.horizon))
    return study


# -- the page -----------------------------------------------------------------------------------------------

MATH = """\
## The estimator, as SHAC computes it

SHAC rolls N envs for h steps from the states it carries (constants: the graph is cut between windows) and
minimises

    L_h(θ) = −1/Z Σ_n [ Σ_{t<h} γᵗ r(x_t, u_t) + γʰ V̂(x_h) ]

with `pgrad.estimators.bptt_loss(rewards [h, N], γ, terminated, bootstrap_values=V̂(x_h), normalizer=Z)`
(SHAC passes Z = hN). The gradient flows through the rewards and through x_h into the frozen critic V̂, not
into V̂'s weights. APG is the same call without `bootstrap_values` (V̂ = 0). This study calls exactly that
function; only the start states and a positive scale are the lab's.

**LQR.** x' = Ax + Bu, r = −(xᵀQx + uᵀRu), u = −Kx + σε (3 states, 2 inputs, γ = 0.9, σ = 0.3, K half the
optimal gain, float64; `pgrad.lab.windows.window_lqr_problem`). J(K) = E Σ_t γᵗ r_t from x₀ ~ N(0, I) and
∇_K J in closed form (`lqr_objective_gradient`). Each window starts at x₀ drawn from the discounted
distribution of window-start states

    d_h(x) = (1 − γʰ) Σ_i γ^{hi} p_{hi}(x)     (the states at t = 0, h, 2h, … of an episode, weighted γ^{hi})

(draw i ~ Geometric(1 − γʰ), then x ~ N(0, C_{hi}) with C_t the state covariance at time t:
`visitation_sampler(…, stride=h)`), and the estimate from B windows is ĝ_h = −∇_K L_h / (1 − γʰ) with Z = B.
The critics: the exact V^K(x) = −xᵀPx − c (P from the Lyapunov equation of K), a wrong one V̂ = (1 + ε)V^K,
and V̂ = 0.

**Why the critic closes the window.** Write f(x) = E_ε ∇_K Q^K(x, −Kx + σε) (Q held fixed) for one step's
pathwise gradient; the reparameterised policy-gradient theorem is ∇_K J = Σ_j γʲ E_{x∼p_j} f(x). If V̂ = V^K,
the window's return Σ_{t<h} γᵗ r_t + γʰ V^K(x_h) is h steps of K followed by K forever, and differentiating
it with V^K held fixed gives Σ_{t<h} γᵗ f(x_t) in expectation (each step's action moves its own reward and,
through the states, a tail whose value V^K already knows). Averaging over x₀ ~ d_h,

    E ĝ_h = Σ_i γ^{hi} Σ_{t<h} γᵗ E_{p_{hi+t}} f = Σ_j γʲ E_{p_j} f = ∇_K J        for every h.

The critic stands in for everything after the window; without it (V̂ = 0) the gradient cannot see past h.
With a wrong critic the window's mean is off by what the critic's error does to the last state:

    E ĝ_h − ∇_K J = γʰ / (1 − γʰ) · E_{x₀∼d_h} ∇_K [(V̂ − V^K)(x_h(K))],

so ‖bias‖ ≤ γʰ/(1 − γʰ) · E[‖∇_x(V̂ − V^K)(x_h)‖ ‖∂x_h/∂K‖]: the critic's *gradient* error at the window's
end, damped by γʰ. Here ∂x_h/∂K = −Σ_{t<h} A_K^{h−1−t} B (·) x_t stays bounded (A_K is stable), so the bias
falls like γʰ once h passes a few time constants; for V̂ = (1 + ε)V^K the bias is exactly |ε| times APG's
(V̂ = 0 is ε = −1). The mean of ĝ_h is a quadratic expectation, so the "closed form" column below is exact
(`window_expected_gradient`: E ĝ_h = ∇_K[−Σ_{t<h} γᵗ tr((Q + KᵀRK)C_t) − γʰ tr(P̂C_h)]/(1 − γʰ) with the start
covariance and P̂ held fixed).

**Where the windows start matters.** Starting every window from the one-step discounted distribution
d = (1 − γ) Σ_t γᵗ p_t (what a replay buffer or `visitation_sampler` without a stride gives) weights time j by
(1 − γ)γʲ min(j + 1, h) instead of γʲ: biased for every h > 1 even with the exact critic (closed form, last
table). SHAC itself starts its windows where its envs are, and restarts the discount at every window: the
weight of time j becomes γ^{j mod h}, a different objective again, for every critic.

**Variance.** ĝ_h sums h per-step terms, each a product of Jacobians ∂x_{t+1}/∂x_t back to the step that
moved it. Through a stable, smooth system (the LQR) these products shrink and the window's variance stays
bounded as h grows; at a fixed number of windows a long window even averages more of the trajectory, but it
costs h env steps, so at equal simulation cost (per-step column = per-window variance × h) longer windows are
noisier. Through a stiff contact the Jacobian of one control step is large and depends on where in a substep
the contact began, so the products through an impact scatter by orders of magnitude, and every window that
contains the impact and the steps after it carries that scatter.

**Contact toy.** `ContactToy` (smooth reward −(x − 0.5)² − 0.01u², 0.05 s control steps of 5 substeps,
T = 64 steps, float64; stiffness k = 10³, 10⁴, 3·10⁴: h_sub√(k/m) = 0.32, 1.0, 1.73, stable below 2) with the
PD-like policy u = θ·(1, x, v) + 0.1ε, θ = (2, −4, −1.5) (drive to x = 0.5, lightly damped: the mass thrown
at the wall overshoots into it in about a third of the episodes). One episode is cut into T/h windows as APG
cuts it (V̂ = 0, carried state detached) and its gradient is the sum of the windows' `bptt_loss` gradients
(`contact_window_gradients`; h = 64 is full BPTT, unbiased; shorter windows are myopic, as APG's on the
LQR). There is no closed form: the reference is the central difference (J(θ + δe_i) − J(θ − δe_i)) / 2δ,
δ = 10⁻², of the mean return over many rollouts, all on the same start states and noise (common random
numbers), whose standard error is the std of the paired per-rollout differences over √(rollouts). The bias
columns on the contact toy are against that reference.
"""


def _lqr_table(rows: list[WindowRow]) -> str:
    columns = (
        ("closure", "critic", "{}"),
        ("h", "h", "{}"),
        ("cosine", "cos(ĝ, ∇J)", "{:.3f}"),
        ("relative_bias", "rel. bias", "{:.4f}"),
        ("corrected_bias", "noise-corrected", "{:.4f}"),
        ("bias_low", "bias 99% low", "{:.4f}"),
        ("bias_high", "bias 99% high", "{:.4f}"),
        ("bias_p", "bias p", "{:.2g}"),
        ("predicted_bias", "closed form", "{:.4f}"),
        ("per_sample_variance", "variance per window", "{:.4g}"),
        ("per_step_variance", "variance × h (per env step)", "{:.4g}"),
    )
    return format_table([r.row() for r in rows], columns)


def _contact_table(rows: list[WindowRow]) -> str:
    columns = (
        ("closure", "stiffness", "{}"),
        ("h", "h", "{}"),
        ("cosine", "cos(ĝ, ∇J_ref)", "{:.3f}"),
        ("relative_bias", "rel. bias vs ref", "{:.4f}"),
        ("bias_low", "bias 99% low", "{:.4f}"),
        ("bias_high", "bias 99% high", "{:.4f}"),
        ("bias_p", "bias p", "{:.2g}"),
        ("per_sample_variance", "variance per episode", "{:.4g}"),
    )
    return format_table([r.row() for r in rows], columns)


def _by(rows: list[WindowRow], closure: str) -> dict[int, WindowRow]:
    return {r.window: r for r in rows if r.closure == closure}


def _ratio(rows: dict[int, WindowRow], attribute: str) -> tuple[float, float, float]:
    first, last = getattr(rows[min(rows)], attribute), getattr(rows[max(rows)], attribute)
    return first, last, last / first


def window_page(study: WindowStudy, budget: int, estimates: int) -> str:
    """The markdown body of the study's page: the math, the tables and what they show (every number filled
    in from `study`)."""
    closures = list(dict.fromkeys(r.closure for r in study.lqr))
    exact, wrong, none = (_by(study.lqr, c) for c in closures)
    hs = sorted(exact)
    first, last, shown = hs[0], hs[-1], hs[2::2] or hs
    level = 0.01 / len(hs)  # family-wise 1% over the windows
    worst = min(exact.values(), key=lambda r: r.measurement.bias_p)
    rejected = sum(r.measurement.bias_p < level for r in exact.values())
    worst_high = max(r.measurement.bias_high for r in exact.values())
    inside = sum(
        r.measurement.bias_low <= r.predicted_bias <= r.measurement.bias_high
        for rows in (wrong, none)
        for r in rows.values()
    )
    w0, w1, wr = _ratio(exact, "per_sample_variance")
    s0, s1, sr = _ratio(exact, "per_step_variance")
    n0, n1, _ = _ratio(none, "per_sample_variance")
    none_variances = [r.per_sample_variance for r in none.values()]
    spread = max(none_variances) / min(none_variances)
    ratios = [wrong[h].predicted_bias / none[h].predicted_bias for h in hs if none[h].predicted_bias > 1e-12]
    ratio_low, ratio_high = (min(ratios), max(ratios)) if ratios else (math.nan, math.nan)
    lines = [
        MATH,
        "## Measured",
        "",
        f"LQR: ‖∇_K J‖ = {study.exact_norm:.3f}; B = {budget} windows per estimate, M = {estimates} "
        "estimates for every critic and h; the three critics see the same start states and noise at each h. "
        '"closed form" is the exact ‖E ĝ_h − ∇J‖/‖∇J‖; the variance columns are per window (B · tr Cov) '
        "and per env step (× h).",
        "",
        _lqr_table(study.lqr),
        "",
        f"- **Exact critic: unbiased at every h.** {rejected} of {len(hs)} bias tests reject at the "
        f"family-wise 1% level (each at {level:.2g}; smallest p {worst.measurement.bias_p:.2g}, at h = "
        f"{worst.window}); the 99% upper bounds, at most {worst_high:.3f}, are what B·M = "
        f"{budget * estimates} windows resolve, and the closed form is 0 to round-off. Its variance *falls* "
        f"with h per window, {w0:.4g} → {w1:.4g} from h = {first} to {last} (×{wr:.2g}): the short "
        "window's gradient is mostly the critic's ∇V(x_h)·∂x_h/∂K scaled by 1/(1 − γʰ), and a long window "
        f"averages a whole trajectory through a stable system. Per env step it grows, {s0:.4g} → "
        f"{s1:.4g} (×{sr:.3g}): at equal simulation cost short windows are the better buy when the critic "
        "is right.",
        f"- **Wrong critic and no critic: the bias falls like γʰ.** Closed form for {closures[1]}: "
        + ", ".join(f"{wrong[h].predicted_bias:.4f} at h = {h}" for h in [first, *shown])
        + "; for V = 0: "
        + ", ".join(f"{none[h].predicted_bias:.4f} at h = {h}" for h in [first, *shown])
        + " (γʰ = "
        + ", ".join(f"{study.gamma**h:.3g}" for h in shown)
        + f"). The closed form lies inside the measured 99% interval in {inside} of {2 * len(hs)} rows, "
        f"and the wrong critic's bias is {ratio_low:.4f}–{ratio_high:.4f}× APG's over h (bias ∝ V̂ − V^K). "
        "Not monotone at the shortest windows: h = 1 without a critic sees only the action cost of one "
        "step (cos < 0), h = 2 adds one state cost without the tail. APG's variance per window stays "
        f"within a factor {spread:.2g} over h ({n0:.4g} at h = {first}, {n1:.4g} at h = {last}); at h ≥ 32 "
        "the three critics give nearly the same estimates (γʰ damps the bootstrap).",
        "",
        "Exact critic with the windows started from the one-step distribution d instead of d_h (closed "
        "form): relative bias " + ", ".join(f"{study.start_ablation[h]:.3f} at h = {h}" for h in hs) + ".",
        "",
        f"Contact toy: {study.contact[0].measurement.estimates if study.contact else 0} episodes per (k, h), "
        "the same episodes for every k and h (variance per episode = tr Cov of one episode's gradient); the "
        f"reference of each k from {study.reference_samples} rollouts per evaluation (±: standard error):",
        "",
    ]
    for k, (reference, error) in study.references.items():
        rel = float(error.norm() / reference.norm())
        lines.append(
            f"- k = {k:g}: ∇J_ref = ("
            + ", ".join(f"{float(g):.3f} ± {float(e):.3f}" for g, e in zip(reference, error, strict=True))
            + f"), relative standard error {rel:.3f}"
        )
    lines += ["", _contact_table(study.contact), ""]
    growth, full, cosines, myopic = [], [], [], []
    for closure in dict.fromkeys(r.closure for r in study.contact):
        rows = _by(study.contact, closure)
        v0, v1, ratio = _ratio(rows, "per_sample_variance")
        growth.append(f"{closure}: {v0:.3g} → {v1:.3g} (×{ratio:.3g})")
        full.append(f"p {rows[max(rows)].measurement.bias_p:.2g}")
        cosines.append(f"{rows[max(rows)].measurement.cosine:.2f}")
        myopic += [h for h, r in rows.items() if r.measurement.cosine < 0]
    lines += [
        f"- **Variance per episode from h = {first} to h = {last}**: " + "; ".join(growth) + ". Every "
        "window that holds the impact and the steps after it carries the scatter of the Jacobians through "
        "the contact, and the stiffer the wall the larger that scatter.",
        "- **Bias**: short windows are myopic, the gradient of the impact's consequences is cut off "
        + (f"(cos(ĝ, ∇J_ref) < 0 up to h = {max(myopic)}); " if myopic else "; ")
        + f"full BPTT (h = {last}) against the reference: bias test "
        + ", ".join(full)
        + " (the reference's own standard error is not in the test). The mean cosine of one episode's full "
        "BPTT gradient with the reference falls with the stiffness: " + ", ".join(cosines) + ".",
        "",
    ]
    return "\n".join(lines)


def plot_windows(study: WindowStudy, path: str | Path) -> Path:
    """Three panels against h: the LQR's relative bias (measured and closed form, with γʰ), its variance per
    window and per env step, and the contact toy's variance per episode for each stiffness."""
    colors = ("C0", "C1", "C2", "C3", "C4")
    bias, variance, contact = (
        Panel("LQR: relative bias", "window h", "‖ḡ − ∇J‖/‖∇J‖ (o), closed form ‖E ĝ − ∇J‖/‖∇J‖ (−)"),
        Panel("LQR: variance", "window h", "per window (−), × h: per env step (--)"),
        Panel("contact toy: variance per episode", "window h", "B · tr Cov"),
    )
    for color, closure in zip(colors, dict.fromkeys(r.closure for r in study.lqr), strict=False):
        rows = sorted((r for r in study.lqr if r.closure == closure), key=lambda r: r.window)
        hs = [r.window for r in rows]
        bias.lines.append(Line(closure, hs, [r.measurement.relative_bias for r in rows], "o", color))
        # A closed form of 0 (the exact critic: 1e-15, round-off) has no place on a log axis: its 99% upper
        # bound shows what the measurement resolves instead.
        predicted = [r.predicted_bias if r.predicted_bias > 1e-12 else 0.0 for r in rows]
        bias.lines.append(Line("", hs, predicted, "-", color))
        if not any(predicted):
            bounds = [r.measurement.bias_high for r in rows]
            bias.lines.append(Line(f"{closure}: 99% upper bound", hs, bounds, "--", color))
        variance.lines.append(Line(closure, hs, [r.per_sample_variance for r in rows], "o-", color))
        variance.lines.append(Line("", hs, [r.per_step_variance for r in rows], "--", color))
    if study.lqr:
        hs = sorted({r.window for r in study.lqr})
        bias.lines.append(Line("γʰ", hs, [study.gamma**h for h in hs], ":", "gray"))
    for color, closure in zip(colors, dict.fromkeys(r.closure for r in study.contact), strict=False):
        rows = sorted((r for r in study.contact if r.closure == closure), key=lambda r: r.window)
        contact.lines.append(Line(closure, [r.window for r in rows], [r.per_sample_variance for r in rows]))
        contact.lines[-1].color = color
    for panel in (bias, variance):  # unlabelled companion lines stay out of the legend
        for line in panel.lines:
            line.label = line.label or "_nolegend_"
    title = "SHAC's window length h: LQR (exact, wrong and no critic) and the contact toy (APG windows)"
    return plot_panels([bias, variance, contact], path, title)
