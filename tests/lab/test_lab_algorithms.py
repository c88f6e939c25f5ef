"""Every algorithm's own first update points along the exact gradient of the objective it estimates (the
score-function family on a tabular MDP; the learned-critic and differentiable-simulator families on an LQR
with an exact critic where they need one), and broken variants of them, injected by monkeypatching the shared
function or method an algorithm calls, fail the same direction test.

One run per test on `lab_problem(3)`: its natural and plain gradients are far apart (cosine 0.62), so an
NPG/TRPO without its Fisher matrix points visibly elsewhere. Each run is deterministic (seeded, one thread);
the full table over 10 seeds per algorithm is the slow test at the end (`pgrad lab algorithms`).
"""

import dataclasses

import pytest
import torch

import pgrad.algorithms.critic.crossq as crossq_module
import pgrad.algorithms.critic.sac as sac_module
import pgrad.algorithms.differentiable.ahac as ahac_module
import pgrad.algorithms.differentiable.shac as shac_module
import pgrad.algorithms.score_function.a2c as a2c_module
import pgrad.algorithms.score_function.grpo as grpo_module
import pgrad.algorithms.score_function.is_pg as is_pg_module
import pgrad.algorithms.score_function.npg as npg_module
import pgrad.algorithms.score_function.ppo as ppo_module
import pgrad.algorithms.score_function.reinforce as reinforce_module
import pgrad.algorithms.score_function.rloo as rloo_module
import pgrad.algorithms.score_function.vpg as vpg_module
from pgrad.cli import main
from pgrad.envs.diff import DiffVecEnv
from pgrad.lab.algorithms import (
    CASES,
    build_algorithm,
    cosine,
    direction_stats,
    episodic_mdp,
    exact_direction,
    exact_natural_gradient,
    exact_policy_gradient,
    first_direction,
    lab_problem,
    record_steps,
    rollout_state_weights,
    run_algorithms,
    weighted_policy_gradient,
)
from pgrad.lab.exact import policy_evaluation
from pgrad.policies.distributions import Deterministic, TanhGaussian

PROBLEM = lab_problem(3)
CASE = {case.label: case for case in CASES}
THRESHOLD = 0.9  # the direction test: cosine of one large-batch first update with the exact direction

# One case per algorithm in `pgrad list`, in its meaningful configuration: GRPO with --dr-grpo (default
# GRPO's direction is biased by design, see test_grpo_default_objective_is_not_along_the_gradient), the
# learned-critic algorithms and the windowed differentiable ones with an exact critic (with a fresh critic
# their directions are reported in the table, not asserted: an untrained critic's ∇ₐQ or V(x_h) is noise).
SCORE_FUNCTION = ["reinforce", "vpg", "a2c", "ppo", "npg", "trpo", "grpo (dr_grpo)", "rloo", "is_pg"]
LEARNED_CRITIC = [
    "ddpg (exact critic)",
    "td3 (exact critic)",
    "sac (exact critic)",
    "crossq (exact critic)",
    "sac_discrete (exact critic)",
]
DIFFERENTIABLE = ["apg", "shac (exact critic)", "ahac (exact critic)", "sapo (exact critic)"]
COVERED = [*SCORE_FUNCTION, *LEARNED_CRITIC, *DIFFERENTIABLE]


def first_cosine(label: str, seed: int = 0, problem=PROBLEM) -> float:
    """Cosine of the case's first-update direction (run seed `seed`) with its exact direction."""
    case = CASE[label]
    algo = build_algorithm(case, problem, 0)
    algo.envs.close()
    exact, projector = exact_direction(case, problem, algo)
    direction, _ = first_direction(case, problem, seed)
    return cosine(direction if projector is None else projector @ direction, exact)


def test_every_algorithm_is_covered():
    from pgrad.algorithms import list_algorithms

    # a3c pushes A2C's gradient from Ray actors; tests/algorithms/test_a3c.py holds it to A2C's loss gradient
    every = {row["name"] for row in list_algorithms()} - {"a3c"}
    assert every == {CASE[label].algorithm for label in COVERED} == {case.algorithm for case in CASES}


@pytest.mark.parametrize("label", COVERED)
def test_first_update_points_along_the_exact_gradient(label):
    cos = first_cosine(label)
    print(f"{label}: cos {cos:.3f}")
    assert cos >= THRESHOLD


def test_grpo_default_objective_is_not_along_the_gradient():
    """A finding, not a bug of pgrad: GRPO's std division and 1/|o_i| reweight groups and episodes, so its
    mean direction is off ∇J, by how much depends on the problem: on lab_problem(0), the table's, by ~35°
    (cosine 0.8); on lab_problem(3) its cosine is 0.94. Three runs find the bias at the 1% level."""
    problem = lab_problem(0)
    case = CASE["grpo"]
    algo = build_algorithm(case, problem, 0)
    algo.envs.close()
    exact, _ = exact_direction(case, problem, algo)
    stats = direction_stats(
        torch.stack([first_direction(case, problem, seed)[0] for seed in range(3)]), exact
    )
    print(stats)
    assert stats.mean_cosine < THRESHOLD and stats.bias_low > 0


# -- broken variants ----------------------------------------------------------------------------------------


def _negated(function):
    return lambda *args, **kwargs: -function(*args, **kwargs)


def _negated_advantages(function):
    def gae_batch(*args, **kwargs):
        values, advantages, returns = function(*args, **kwargs)
        return values, -advantages, returns

    return gae_batch


def _negated_weights(function):
    return lambda log_prob, weights, **kwargs: function(log_prob, -weights, **kwargs)


SIGN_FLIPS = [
    ("reinforce", reinforce_module, "reward_to_go", _negated),
    ("vpg", vpg_module, "gae_batch", _negated_advantages),
    ("a2c", a2c_module, "score_function_loss", _negated_weights),
    ("ppo", ppo_module, "gae_batch", _negated_advantages),
    ("npg", npg_module, "gae_batch", _negated_advantages),
    ("trpo", npg_module, "gae_batch", _negated_advantages),  # TRPO runs NPG's iteration
    ("grpo (dr_grpo)", grpo_module, "group_relative_advantages", _negated),
    ("rloo", rloo_module, "leave_one_out_advantages", _negated),
    ("is_pg", is_pg_module, "importance_weighted_advantages", _negated),
]


@pytest.mark.parametrize(
    "label, module, name, wrap", SIGN_FLIPS, ids=[f"{row[0]}-{row[2]}" for row in SIGN_FLIPS]
)
def test_a_sign_flip_in_the_advantage_is_caught(monkeypatch, label, module, name, wrap):
    monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    cos = first_cosine(label)
    print(f"{label} with -{name}: cos {cos:.3f}")
    assert cos < 0 < THRESHOLD


def test_a_missing_importance_ratio_is_caught(monkeypatch):
    """IS-PG on π_b's batch without its per-decision weights estimates the gradient at θ_b, not at θ₀."""
    monkeypatch.setattr(
        is_pg_module,
        "per_decision_weights",
        lambda log_ratio, terminated, truncated: torch.ones_like(log_ratio),
    )
    cos = first_cosine("is_pg")
    print(f"is_pg without ρ: cos {cos:.3f}")
    assert cos < THRESHOLD


def _exact_q() -> torch.Tensor:
    return policy_evaluation(PROBLEM.mdp, torch.softmax(PROBLEM.theta, -1)).Q


def _action_baseline(function):
    """GAE's λ-return minus Q(s_t, a_t) (the exact Q of θ₀) instead of minus V(s_t): a baseline that uses
    the action, so E[Â | s, a] is 0 instead of the advantage."""
    Q = _exact_q()

    def gae_batch(value, rollout, *args, **kwargs):
        values, advantages, returns = function(value, rollout, *args, **kwargs)
        q = Q[rollout.obs.argmax(-1), rollout.actions].to(advantages.dtype)
        return values, advantages + values - q, returns

    return gae_batch


def _immediate_reward_baseline(function):
    """Reward-to-go minus the step's own reward r(s_t, a_t): an action-dependent baseline."""
    return lambda rewards, *args, **kwargs: function(rewards, *args, **kwargs) - rewards


ACTION_BASELINES = [
    ("reinforce", reinforce_module, "reward_to_go", _immediate_reward_baseline),
    ("vpg", vpg_module, "gae_batch", _action_baseline),
    ("ppo", ppo_module, "gae_batch", _action_baseline),
    ("npg", npg_module, "gae_batch", _action_baseline),
]


@pytest.mark.parametrize(
    "label, module, name, wrap", ACTION_BASELINES, ids=[row[0] for row in ACTION_BASELINES]
)
def test_a_baseline_that_uses_the_action_is_caught(monkeypatch, label, module, name, wrap):
    monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    cos = first_cosine(label)
    print(f"{label} with an action-dependent baseline: cos {cos:.3f}")
    assert cos < THRESHOLD


@pytest.mark.parametrize("label", ["npg", "trpo"])
def test_a_wrong_fisher_matrix_is_caught(monkeypatch, label):
    """F = I makes the step the plain gradient, which on this problem is far from F⁺∇J."""
    monkeypatch.setattr(
        npg_module,
        "make_fisher_vector_product",
        lambda kl_fn, params, damping=0.0: lambda v: v.detach().clone(),
    )
    cos = first_cosine(label)
    print(f"{label} with F = I: cos {cos:.3f}")
    assert cos < THRESHOLD


# -- broken learned-critic and differentiable-simulator updates ---------------------------------------------


def _detached_sample(rsample):
    """A sample with no path back to θ: the critic's action input (or the reward's action) is a constant."""
    return lambda self, *args, **kwargs: rsample(self, *args, **kwargs).detach()


@pytest.mark.parametrize("label", LEARNED_CRITIC[:4])
def test_a_detached_critic_action_input_is_caught(monkeypatch, label):
    """DDPG and TD3 then have no actor gradient at all (autograd raises); SAC and CrossQ keep only the
    α ∇log π of the detached sample (cos −0.66 and 0.15)."""
    monkeypatch.setattr(Deterministic, "rsample", _detached_sample(Deterministic.rsample))
    monkeypatch.setattr(TanhGaussian, "rsample", _detached_sample(TanhGaussian.rsample))
    try:
        cos = first_cosine(label)
    except RuntimeError as error:  # "... appears to not have been used in the graph": no gradient
        assert "not have been used in the graph" in str(error)
        return
    print(f"{label} with a detached action: cos {cos:.3f}")
    assert cos < THRESHOLD


def _negated_loss(function):
    def loss(*args, **kwargs):
        value, info = function(*args, **kwargs)
        return -value, info

    return loss


@pytest.mark.parametrize(
    "module, label", [(sac_module, "sac (exact critic)"), (crossq_module, "crossq (exact critic)")]
)
def test_a_sign_flip_of_the_soft_actor_loss_is_caught(monkeypatch, module, label):
    monkeypatch.setattr(
        module, "reparameterised_actor_loss", _negated_loss(module.reparameterised_actor_loss)
    )
    cos = first_cosine(label)
    print(f"{label} with a negated actor loss: cos {cos:.3f}")
    assert cos < 0 < THRESHOLD


def test_a_sign_flip_of_the_entropy_term_is_not_seen_in_the_direction(monkeypatch):
    """A limit of the direction test, not a bug: the entropy term moves only the log-std parameters, and on
    this LQR its share of SAC's actor gradient is well under 1%, so flipping its sign leaves the direction
    (cos 0.994). The table's bias test does not resolve it either."""
    loss = sac_module.reparameterised_actor_loss
    monkeypatch.setattr(
        sac_module, "reparameterised_actor_loss", lambda q, log_prob, alpha: loss(q, -log_prob, alpha)
    )
    assert first_cosine("sac (exact critic)") >= THRESHOLD


def _bootstrap_from_the_reset(rollout):
    """The window's final observation at a time-limit end replaced by the next episode's first one (what a
    rollout that read the state after the autoreset would bootstrap from)."""

    def window(envs, act, steps, seed, contact_threshold=None):
        w = rollout(envs, act, steps, seed, contact_threshold)
        after = envs.diff_env.observe(envs.state).to(w.obs.dtype)  # the start states the env reset to
        resets = torch.cat([w.obs[1:], after[None]]).to(w.final_obs.dtype)
        w.final_obs = torch.where(w.truncated[..., None], resets, w.final_obs)
        return w

    return window


@pytest.mark.parametrize(
    "module, label",
    [
        (shac_module, "shac (exact critic)"),
        (ahac_module, "ahac (exact critic)"),
        (shac_module, "sapo (exact critic)"),
    ],
)
def test_a_bootstrap_from_the_reset_observation_is_caught(monkeypatch, module, label):
    """V(reset state) has no gradient path to θ, so the update becomes the myopic 2-step BPTT gradient,
    which on this LQR points away from the window objective with its bootstrap."""
    monkeypatch.setattr(module, "rollout", _bootstrap_from_the_reset(module.rollout))
    cos = first_cosine(label)
    print(f"{label} bootstrapping from the reset observation: cos {cos:.3f}")
    assert cos < THRESHOLD


def test_a_missing_discount_on_the_bootstrap_is_not_seen_in_the_direction(monkeypatch):
    """A limit of the direction test: γ^h V(x_h) and V(x_h) (γ² = 0.98) move the policy the same way."""
    loss = shac_module.bptt_loss

    def undiscounted(rewards, gamma, terminated, bootstrap_values=None, truncated=None, normalizer=None):
        power = gamma ** torch.arange(1, len(rewards) + 1, dtype=bootstrap_values.dtype)
        return loss(rewards, gamma, terminated, bootstrap_values / power[:, None], truncated, normalizer)

    monkeypatch.setattr(shac_module, "bptt_loss", undiscounted)
    assert first_cosine("shac (exact critic)") >= THRESHOLD


def _cut_between_steps(advance):
    def step(self, state, actions):
        next_state, reward, terminated, truncated, true_next, stats = advance(self, state, actions)
        return next_state.detach(), reward, terminated, truncated, true_next.detach(), stats

    return step


@pytest.mark.parametrize("label", ["apg", "shac (exact critic)"])
def test_a_cut_dynamics_jacobian_is_caught(monkeypatch, label):
    """With the state detached between steps only each action's own cost −uᵀRu reaches θ: the update pulls
    the gain towards 0, against ∇J."""
    monkeypatch.setattr(DiffVecEnv, "advance", _cut_between_steps(DiffVecEnv.advance))
    cos = first_cosine(label)
    print(f"{label} without the dynamics Jacobian: cos {cos:.3f}")
    assert cos < 0 < THRESHOLD


# -- the pieces ---------------------------------------------------------------------------------------------


def test_episodic_mdp_ends_every_episode_and_never_starts_in_the_terminal_state():
    mdp = episodic_mdp(4, 2, seed=5)
    assert mdp.terminal.tolist() == [False] * 4 + [True] and mdp.rho[-1] == 0
    ends = mdp.P[:4, :, 4]
    assert ((ends >= 0.15) & (ends <= 0.35)).all()
    values = policy_evaluation(mdp, torch.full((5, 2), 0.5, dtype=torch.float64))  # γ = 1 is well defined
    assert torch.isfinite(values.V).all() and values.d[:4].sum() <= 1 / 0.15


def test_exact_directions_agree_with_their_closed_forms():
    algo = build_algorithm(CASE["npg"], PROBLEM, 0)
    algo.envs.close()
    probs = torch.softmax(PROBLEM.theta, -1)
    V, Q, d = policy_evaluation(PROBLEM.mdp, probs)
    grad = exact_policy_gradient(PROBLEM.mdp, algo.policy)
    torch.testing.assert_close(weighted_policy_gradient(PROBLEM.mdp, algo.policy, d), grad)
    # Natural gradient of a tabular softmax: the logits move by the per-state centred advantage times one
    # constant Σd for every state (Kakade 2001), whatever the over-parametrisation θ[s, a] = W[a, s] + b[a].
    natural, projector, fisher = exact_natural_gradient(PROBLEM.mdp, algo.policy)
    S, A = PROBLEM.theta.shape
    W, b = natural[: S * A].reshape(A, S), natural[S * A :]
    logits = (W.T + b)[:-1]
    advantage = (Q - V[:, None])[:-1]
    centred = logits - logits.mean(1, keepdim=True)
    expected = advantage - advantage.mean(1, keepdim=True)
    ratio = (centred * expected).sum() / expected.square().sum()
    torch.testing.assert_close(centred, ratio * expected, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(projector @ natural, natural)
    torch.testing.assert_close(fisher @ natural, projector.T @ grad, atol=1e-10, rtol=1e-8)


def test_rollout_state_weights_tend_to_the_visits_per_episode():
    probs = torch.softmax(PROBLEM.theta, -1)
    d = policy_evaluation(PROBLEM.mdp, probs).d * PROBLEM.mdp.live
    w = rollout_state_weights(PROBLEM.mdp, probs, 3000)
    torch.testing.assert_close(w / w.sum(), d / d.sum(), atol=1e-3, rtol=0)
    first = rollout_state_weights(PROBLEM.mdp, probs, 1)
    torch.testing.assert_close(first, PROBLEM.mdp.rho)


def test_record_steps_reads_the_gradient_the_optimiser_applies():
    """With plain SGD the parameter change is lr × the recorded ascent direction."""
    case = dataclasses.replace(
        CASE["reinforce"], options={"num_envs": 4, "episodes_per_update": 16, "optimizer": "sgd", "lr": 0.5}
    )
    algo = build_algorithm(case, PROBLEM, 0)
    params = list(algo.policy.parameters())
    before = torch.cat([p.detach().reshape(-1) for p in params]).double()
    with record_steps(algo.policy) as steps:
        algo.iteration(0)
    after = torch.cat([p.detach().reshape(-1) for p in params]).double()
    algo.envs.close()
    assert len(steps) == 1
    theta, direction = steps[0]
    torch.testing.assert_close(theta, before)
    torch.testing.assert_close(after - before, 0.5 * direction, atol=1e-6, rtol=1e-5)


def test_cli_writes_the_table(tmp_path, capsys):
    args = [
        "lab",
        "algorithms",
        "--only",
        "reinforce",
        "--seeds",
        "2",
        "--updates",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    page = (tmp_path / "algorithms.md").read_text()
    assert "| reinforce |" in page and "rel. bias of the direction" in page
    assert "| reinforce |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [(["--only", "dqn"], "unknown algorithm(s) dqn"), (["--seeds", "1"], "--seeds must be >= 2")],
)
def test_cli_errors_are_one_line(capsys, args, message):
    assert main(["lab", "algorithms", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.slow
def test_the_table_over_ten_seeds():
    """What docs/lab/algorithms.md reports (~4 min), on lab_problem(0): every algorithm's first update is
    aligned with its exact direction except default GRPO's (its objective) and A2C's with a fresh critic
    (5-step returns bootstrapped through a wrong V); A2C's first update with the exact V is unbiased for the
    state weighting of its first rollout. With exact critics the windowed methods are unbiased for their
    window objective and the off-policy ones for the gradient under their replay's states, over the first k
    updates too; fresh critics leave the learned-critic and windowed directions unaligned."""
    results = {r.case.label: r for r in run_algorithms(estimates=10, updates=5)}
    replay = ["ddpg (exact critic)", "td3 (exact critic)"]  # k updates: see the replay reference below
    for label in [*COVERED, "vpg (exact V)", "a2c (exact V)", "ppo (exact V)", "npg (exact V)"]:
        first = results[label].first
        if label != "a2c":
            assert min(first.cosine, first.mean_cosine) >= THRESHOLD, label
        if label not in replay:
            assert min(results[label].update_cosines) >= 0.8, label
    for label in ("grpo", "a2c"):
        assert results[label].first.mean_cosine < THRESHOLD and results[label].first.bias_low > 0, label
    assert "[0.000," in results["a2c (exact V)"].notes[0]
    for label in ["apg", "shac (exact critic)", "ahac (exact critic)", "sapo (exact critic)"]:
        assert results[label].first.bias_low == 0, label
    for label in ["ddpg (exact critic)", "td3 (exact critic)", "sac (exact critic)", "crossq (exact critic)"]:
        also = results[label].also
        assert also.mean_cosine >= 0.99 and also.bias_low == 0, label
        assert min(results[label].also_cosines) >= 0.85, label
    for label in ["shac", "ahac", "sapo", "ddpg", "td3", "sac", "crossq", "sac_discrete"]:
        assert results[label].first.mean_cosine < THRESHOLD, label
