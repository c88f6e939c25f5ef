"""Importance-sampled PG: on-policy it is REINFORCE; off-policy its update equals the estimator computed
plainly, episode by episode; the estimator is exactly unbiased on an enumerable MDP (truncation is not)."""

import copy
import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms.score_function import is_pg as is_pg_module
from pgrad.algorithms.score_function import reinforce as reinforce_module
from pgrad.algorithms.score_function.is_pg import FIELDS, Config, ImportanceSampledPG
from pgrad.algorithms.score_function.reinforce import Config as ReinforceConfig
from pgrad.algorithms.score_function.reinforce import Reinforce
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import reward_to_go
from pgrad.estimators.importance import (
    clip_weights,
    effective_sample_size,
    importance_weighted_advantages,
    per_decision_weights,
    trajectory_weights,
)
from pgrad.run.checkpoint import load_checkpoint, save_checkpoint
from pgrad.run.rollout import collect_episodes
from pgrad.run.seeding import seed_everything

QUIET = {"progress": False, "tensorboard": False}
CPU = torch.device("cpu")


def short_cartpole(num_envs=3, limit=15):
    # A short time limit so both terminations and truncations (with a value bootstrap) occur.
    return GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=limit), num_envs=num_envs)


def flat_params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def perturbed(policy, scale, seed):
    other = copy.deepcopy(policy)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other


# ---------------------------------------------------------------------------------------------------------
# (a) on-policy: the update is REINFORCE's


@pytest.mark.parametrize(
    "baseline, weights, max_weight, self_normalize",
    [
        ("none", "per_decision", None, False),
        ("none", "trajectory", None, True),
        ("mean", "trajectory", 2.0, False),
        ("mean", "per_decision", None, True),
        ("value", "per_decision", 1.5, False),
        ("value", "trajectory", None, False),
    ],
)
def test_on_policy_update_equals_reinforce(monkeypatch, baseline, weights, max_weight, self_normalize):
    seed_everything(0)
    common = dict(num_envs=3, episodes_per_update=6, baseline=baseline, gamma=0.95, optimizer="sgd", lr=1.0)
    common.update(value_iters=0, hidden_sizes=(8,))
    reinforce = Reinforce(ReinforceConfig(**common), short_cartpole(), 0, CPU, 10_000)
    config = Config(
        **common,
        refresh_every=1,
        replay_batches=1,
        updates_per_batch=1,
        weights=weights,
        max_weight=max_weight,
        self_normalize=self_normalize,
    )
    algo = ImportanceSampledPG(config, short_cartpole(), 0, CPU, 10_000)
    algo.policy.load_state_dict(reinforce.policy.state_dict())
    if baseline == "value":  # a non-trivial value function, the same in both
        with torch.no_grad():
            for p in reinforce.value.parameters():
                p.add_(0.3 * torch.randn_like(p))
        algo.value.load_state_dict(reinforce.value.state_dict())
    rollout = collect_episodes(algo.envs, algo.policy, 2, seed=123)
    assert rollout.truncated.any() and rollout.terminated.any()
    monkeypatch.setattr(reinforce_module, "collect_episodes", lambda *args, **kw: rollout)
    monkeypatch.setattr(is_pg_module, "collect_episodes", lambda *args, **kw: rollout)
    before = flat_params(algo.policy)
    reinforce.iteration(0)
    metrics = algo.iteration(0).metrics
    # SGD with lr 1 moves θ by exactly the estimate ĝ: both moved the same way.
    torch.testing.assert_close(flat_params(algo.policy) - before, flat_params(reinforce.policy) - before)
    assert metrics["stats/ess_fraction"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["stats/weight_max"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["stats/approx_kl"] == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------
# off-policy: the update equals the estimator written out episode by episode


def split_episodes(batch):
    """Plain list of the batch's episodes (rows of each env column in order)."""
    episodes = []
    T, N = batch["rewards"].shape
    for n in range(N):
        start = 0
        for t in range(T):
            if not batch["mask"][t, n]:
                break
            if batch["terminated"][t, n] or batch["truncated"][t, n]:
                rows = slice(start, t + 1)
                episodes.append(
                    {
                        "obs": batch["obs"][rows, n],
                        "actions": batch["actions"][rows, n],
                        "behaviour_logp": batch["log_probs"][rows, n].tolist(),
                        "rewards": batch["rewards"][rows, n].tolist(),
                        "terminated": bool(batch["terminated"][t, n]),
                        "truncated": bool(batch["truncated"][t, n]),
                        "final_obs": batch["next_obs"][t, n],
                    }
                )
                start = t + 1
    return episodes


def reference_gradient(policy, value, episodes, config):
    """ĝ = 1/M Σ_i Σ_t ∇ log π(a_t|s_t) Ψ̃_t with products of ratios and sums written out, and the raw
    weights the diagnostics describe."""
    params = list(policy.parameters())
    gamma, c = config.gamma, config.max_weight
    grads, raw, used = [], [], []
    for ep in episodes:
        g_ep, rho = [], []
        for t in range(len(ep["rewards"])):
            logp = policy.distribution(ep["obs"][t : t + 1]).log_prob(ep["actions"][t : t + 1])[0]
            g_ep.append(torch.cat([g.flatten() for g in torch.autograd.grad(logp, params)]).double())
            rho.append(math.exp(logp.item() - ep["behaviour_logp"][t]))
        L = len(rho)
        if config.weights == "trajectory":
            w = [math.prod(rho)] * L
        else:
            w = [math.prod(rho[: t + 1]) for t in range(L)]
        grads.append(g_ep)
        raw.append(w)
        used.append([min(x, c) if c is not None else x for x in w])
    if config.self_normalize:  # Z_k: mean over episodes of the weight at step min(k, L − 1)
        Z = [sum(u[min(k, len(u) - 1)] for u in used) / len(used) for k in range(max(map(len, used)))]
        used = [[x / Z[k] for k, x in enumerate(u)] for u in used]
    rtg = [
        [
            sum(gamma ** (k - t) * ep["rewards"][k] for k in range(t, len(ep["rewards"])))
            for t in range(len(ep["rewards"]))
        ]
        for ep in episodes
    ]
    mean_G = float(np.mean([g for gs in rtg for g in gs]))
    total = torch.zeros_like(grads[0][0])
    for ep, g_ep, w in zip(episodes, grads, used, strict=True):
        r, L = ep["rewards"], len(ep["rewards"])
        tail = 0.0
        if config.baseline == "value" and ep["truncated"] and not ep["terminated"]:
            tail = value(ep["final_obs"][None])[0].item()
        for t in range(L):
            b = {"none": 0.0, "mean": mean_G}.get(config.baseline)
            if b is None:
                b = value(ep["obs"][t : t + 1])[0].item()
            psi = sum(gamma ** (k - t) * w[k] * r[k] for k in range(t, L)) + gamma ** (L - t) * w[-1] * tail
            total += g_ep[t] * (psi - w[t] * b)
    return total / len(episodes), raw


@pytest.mark.parametrize(
    "weights, baseline, max_weight, self_normalize",
    [
        ("per_decision", "none", None, False),
        ("trajectory", "none", None, False),
        ("per_decision", "value", None, False),
        ("trajectory", "value", 1.3, False),
        ("per_decision", "mean", 1.3, True),
        ("trajectory", "mean", None, True),
        ("per_decision", "value", 2.0, True),
    ],
)
def test_off_policy_update_equals_the_plain_estimator(
    monkeypatch, weights, baseline, max_weight, self_normalize
):
    seed_everything(1)
    config = Config(
        num_envs=3,
        episodes_per_update=6,
        gamma=0.97,
        refresh_every=10,
        replay_batches=2,
        updates_per_batch=1,
        weights=weights,
        max_weight=max_weight,
        self_normalize=self_normalize,
        baseline=baseline,
        optimizer="sgd",
        lr=1.0,
        value_iters=0,
        hidden_sizes=(8,),
    )
    algo = ImportanceSampledPG(config, short_cartpole(), 0, CPU, 10_000)
    if algo.value is not None:
        with torch.no_grad():
            for p in algo.value.parameters():
                p.add_(0.3 * torch.randn_like(p))
    # two batches from two other policies: the older one already in the replay, the newer one collected now
    old = collect_episodes(algo.envs, perturbed(algo.policy, 0.15, 1), 2, seed=7)
    new = collect_episodes(algo.envs, perturbed(algo.policy, 0.15, 2), 3, seed=8)
    algo.replay = [{key: getattr(old, key) for key in FIELDS}]
    monkeypatch.setattr(is_pg_module, "collect_episodes", lambda *args, **kw: new)
    episodes = split_episodes(algo.replay[0]) + split_episodes({key: getattr(new, key) for key in FIELDS})
    assert len(episodes) == 6 + 9
    expected, raw = reference_gradient(algo.policy, algo.value, episodes, config)
    before = flat_params(algo.policy)
    metrics = algo.iteration(1).metrics
    torch.testing.assert_close((flat_params(algo.policy) - before).double(), expected, rtol=1e-4, atol=1e-5)
    # the diagnostics describe the raw weights: one per episode, or one per step
    units = [w[0] for w in raw] if weights == "trajectory" else [x for w in raw for x in w]
    units = torch.tensor(units, dtype=torch.float64)
    assert max(units) > 1.5 and min(units) < 0.7  # really off-policy
    assert metrics["stats/ess"] == pytest.approx(effective_sample_size(units), rel=1e-4)
    assert metrics["stats/ess_fraction"] == pytest.approx(effective_sample_size(units) / len(units), rel=1e-4)
    assert metrics["stats/weight_max"] == pytest.approx(float(units.max()), rel=1e-4)
    assert metrics["stats/weight_mean"] == pytest.approx(float(units.mean()), rel=1e-4)
    clipped = float((units > max_weight).double().mean()) if max_weight else 0.0
    assert metrics["stats/clip_fraction"] == pytest.approx(clipped)
    assert metrics["stats/replay_episodes"] == 15


def test_several_updates_recompute_the_weights(monkeypatch):
    """updates_per_batch = 2 is two steps, the second with weights at the moved parameters."""
    seed_everything(2)
    config = Config(
        num_envs=2, episodes_per_update=4, refresh_every=5, replay_batches=1, updates_per_batch=2,
        baseline="none", optimizer="sgd", lr=0.05, hidden_sizes=(8,),
    )  # fmt: skip
    algo = ImportanceSampledPG(config, short_cartpole(2), 0, CPU, 10_000)
    rollout = collect_episodes(algo.envs, perturbed(algo.policy, 0.2, 3), 2, seed=9)
    monkeypatch.setattr(is_pg_module, "collect_episodes", lambda *args, **kw: rollout)
    episodes = split_episodes({key: getattr(rollout, key) for key in FIELDS})
    reference = copy.deepcopy(algo.policy)
    for _ in range(2):
        g, _ = reference_gradient(reference, None, episodes, config)
        offset = 0
        with torch.no_grad():
            for p in reference.parameters():
                p.add_(config.lr * g[offset : offset + p.numel()].view_as(p).float())
                offset += p.numel()
    algo.iteration(1)
    torch.testing.assert_close(flat_params(algo.policy), flat_params(reference), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# (b) exact unbiasedness on an MDP small enough to enumerate every trajectory

S, A, H = 3, 2, 3  # states, actions, time limit


def small_mdp():
    g = torch.Generator().manual_seed(0)
    P = torch.rand(S, A, S + 1, generator=g, dtype=torch.float64)  # last column: termination
    P /= P.sum(-1, keepdim=True)
    R = torch.randn(S, A, generator=g, dtype=torch.float64)
    mu = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    theta = torch.randn(S, A, generator=g, dtype=torch.float64)  # target policy logits
    beta = theta + 0.8 * torch.randn(S, A, generator=g, dtype=torch.float64)  # behaviour logits
    baseline = torch.randn(S, generator=g, dtype=torch.float64)  # any b(s)
    return P, R, mu, theta, beta, baseline


def all_trajectories(P):
    """Every (states, actions, terminated) of at most H steps, and its probability without the policy."""
    out = []
    for L in range(1, H + 1):
        for states in itertools.product(range(S), repeat=L):
            for actions in itertools.product(range(A), repeat=L):
                for terminated in (True, False) if L == H else (True,):
                    p = 1.0
                    for t in range(L - 1):
                        p *= float(P[states[t], actions[t], states[t + 1]])
                    if terminated:
                        p *= float(P[states[-1], actions[-1], S])
                    elif L < H:
                        continue
                    else:  # cut by the time limit: any continuation
                        p *= float(1 - P[states[-1], actions[-1], S])
                    out.append((states, actions, terminated, p))
    return out


def expected_estimate(kind, gamma, max_weight=None, naive=False):
    """Every trajectory as a column of one [H, N] batch (padding rows outside the mask), and

        estimate  = E_b[ĝ] = Σ_τ P_b(τ) Σ_t Ψ̃_t ∇ log π_θ(a_t|s_t)          (the library's weights and Ψ̃)
        on_policy = E_θ[Σ_t (G_t − b_t) ∇ log π_θ(a_t|s_t)]                (REINFORCE's expectation)
        exact     = ∇ Σ_τ P_θ(τ) Σ_t γ^t r_t                                 (autograd through P_θ)

    on_policy = exact for γ = 1; for γ < 1 REINFORCE (and so its importance-sampled form) drops the γ^t of the
    discounted objective's gradient, so there the IS estimate must match on_policy instead."""
    P, R, mu, theta, beta, b_table = small_mdp()
    trajs = all_trajectories(P)
    N = len(trajs)
    states = torch.zeros(H, N, dtype=torch.long)
    actions = torch.zeros(H, N, dtype=torch.long)
    mask = torch.zeros(H, N, dtype=torch.bool)
    term = torch.ones(H, N, dtype=torch.bool)  # padding rows: one-step episodes outside the mask
    trunc = torch.zeros(H, N, dtype=torch.bool)
    env_prob = torch.zeros(N, dtype=torch.float64)
    for n, (s, a, terminated, p) in enumerate(trajs):
        L = len(s)
        states[:L, n], actions[:L, n], mask[:L, n] = torch.tensor(s), torch.tensor(a), True
        term[: L - 1, n] = False
        term[L - 1, n], trunc[L - 1, n] = terminated, not terminated
        env_prob[n] = mu[s[0]] * p
    rewards = torch.where(mask, R[states, actions], 0.0)
    theta = theta.clone().requires_grad_(True)
    log_pi = torch.where(mask, torch.log_softmax(theta, -1)[states, actions], 0.0)
    log_b = torch.where(mask, torch.log_softmax(beta, -1)[states, actions], 0.0)
    behaviour_prob = env_prob * log_b.sum(0).exp()
    target_prob = (env_prob * log_pi.sum(0).exp()).detach()
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(behaviour_prob.sum(), one)
    torch.testing.assert_close(target_prob.sum(), one)
    baselines = torch.where(mask, b_table[states], 0.0)

    discount = gamma ** torch.arange(H, dtype=torch.float64)[:, None]
    J = (env_prob * log_pi.sum(0).exp() * (discount * rewards).sum(0)).sum()
    exact = torch.autograd.grad(J, theta, retain_graph=True)[0]
    G = reward_to_go(rewards, term, trunc, gamma)
    on_policy_surrogate = (target_prob * ((G - baselines) * log_pi).sum(0)).sum()
    on_policy = torch.autograd.grad(on_policy_surrogate, theta, retain_graph=True)[0]

    log_ratio = (log_pi - log_b).detach()
    make = trajectory_weights if kind == "trajectory" else per_decision_weights
    w = clip_weights(make(log_ratio, term, trunc), max_weight)
    if naive:  # w_t · (G_t − b_t): weights only the actions up to t
        psi = w * (G - baselines)
    else:
        psi = importance_weighted_advantages(w, rewards, term, trunc, gamma, baselines)
    surrogate = (behaviour_prob * (psi * log_pi).sum(0)).sum()
    estimate = torch.autograd.grad(surrogate, theta)[0]
    return estimate, on_policy, exact


@pytest.mark.parametrize("kind", ["trajectory", "per_decision"])
def test_expected_estimate_equals_the_exact_gradient(kind):
    estimate, on_policy, exact = expected_estimate(kind, 1.0)
    assert exact.abs().max() > 0.05
    torch.testing.assert_close(on_policy, exact, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(estimate, exact, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["trajectory", "per_decision"])
def test_expected_estimate_equals_reinforce_in_expectation_when_discounted(kind):
    estimate, on_policy, _ = expected_estimate(kind, 0.9)
    torch.testing.assert_close(estimate, on_policy, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["trajectory", "per_decision"])
def test_truncated_weights_are_biased(kind):
    estimate, _, exact = expected_estimate(kind, 1.0, max_weight=1.0)
    assert (estimate - exact).abs().max() > 1e-2
    # a truncation level above every weight changes nothing
    estimate, _, exact = expected_estimate(kind, 1.0, max_weight=1e6)
    torch.testing.assert_close(estimate, exact, rtol=1e-10, atol=1e-10)


def test_weighting_the_whole_return_by_the_weight_up_to_t_is_biased():
    estimate, _, exact = expected_estimate("per_decision", 1.0, naive=True)
    assert (estimate - exact).abs().max() > 1e-3  # 3% of the gradient here; 10⁷× the exact forms' error


# ---------------------------------------------------------------------------------------------------------
# (d) learning, (e) checkpoints, behaviour from a run, options


def test_learns_cartpole_with_a_lagged_behaviour(tmp_path):
    """Random policy: ~22. Measured at 20k steps, refresh_every 3, seeds 0-3: eval 417, 500, 494, 466."""
    summary = pgrad.train(
        "is_pg",
        "CartPole-v1",
        total_steps=20_000,
        seed=0,
        refresh_every=3,
        eval_episodes=10,
        eval_every=0,
        run_dir=str(tmp_path),
        **QUIET,
    )
    assert summary["eval"]["mean_return"] > 150, summary["eval"]


def tensors_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_state_dict_round_trip_with_behaviour_and_replay(tmp_path):
    config = Config(num_envs=2, episodes_per_update=2, refresh_every=3, replay_batches=2, hidden_sizes=(8,))
    torch.manual_seed(0)
    algo = ImportanceSampledPG(config, short_cartpole(2, 30), 5, CPU, 10_000)
    for i in range(4):  # refreshed at 0 and 3, then updated: the behaviour is now stale
        algo.iteration(i)
    assert len(algo.replay) == 2
    assert not torch.equal(flat_params(algo.behaviour), flat_params(algo.policy))
    save_checkpoint(tmp_path, 1, algo.state_dict())
    state, _ = load_checkpoint(tmp_path / "step_000000000001")
    torch.manual_seed(1)  # other initial weights
    restored = ImportanceSampledPG(config, short_cartpole(2, 30), 5, CPU, 10_000)
    restored.load_state_dict(state)
    tensors_equal(restored.behaviour.state_dict(), algo.behaviour.state_dict())
    tensors_equal(restored.policy.state_dict(), algo.policy.state_dict())
    assert len(restored.replay) == 2
    for mine, theirs in zip(restored.replay, algo.replay, strict=True):
        tensors_equal(mine, theirs)
    # the next iteration (no refresh at 4) continues identically
    torch.manual_seed(2)
    algo.iteration(4)
    torch.manual_seed(2)
    restored.iteration(4)
    tensors_equal(restored.policy.state_dict(), algo.policy.state_dict())
    tensors_equal(restored.value.state_dict(), algo.value.state_dict())


def test_resume_is_bitwise_identical(tmp_path):
    common = dict(
        seed=3, eval_every=0, eval_episodes=0, checkpoint_every=300, num_envs=2, episodes_per_update=2
    )
    common.update(refresh_every=3, replay_batches=3, weights="trajectory", max_weight=5.0, **QUIET)
    pgrad.train("is_pg", "CartPole-v1", total_steps=900, run_dir=str(tmp_path / "straight"), **common)
    first = pgrad.train("is_pg", "CartPole-v1", total_steps=400, run_dir=str(tmp_path / "split"), **common)
    assert first["iterations"] % 3 != 0  # resumed between two refreshes of the behaviour
    pgrad.resume(tmp_path / "split", total_steps=900, progress=False)
    a = pgrad.load(tmp_path / "straight").policy.state_dict()
    b = pgrad.load(tmp_path / "split").policy.state_dict()
    tensors_equal(a, b)


def test_fixed_behaviour_from_a_run_dir(tmp_path):
    run = tmp_path / "reinforce"
    pgrad.train("reinforce", "CartPole-v1", total_steps=1000, run_dir=str(run), eval_episodes=0, **QUIET)
    behaviour = pgrad.load(run).policy
    config = Config(num_envs=2, episodes_per_update=2, behaviour=f"run:{run}", refresh_every=1)
    algo = ImportanceSampledPG(config, short_cartpole(2, 50), 0, CPU, 10_000)
    start = flat_params(algo.policy)
    for i in range(3):
        metrics = algo.iteration(i).metrics
    assert torch.equal(flat_params(algo.behaviour), flat_params(behaviour))  # never refreshed
    assert not torch.equal(flat_params(algo.policy), start)
    assert metrics["stats/approx_kl"] > 0 and metrics["stats/ess_fraction"] < 1
    with pytest.raises(ConfigError, match="behaviour"):  # a policy for another env
        ImportanceSampledPG(config, GymVecEnv("Acrobot-v1", num_envs=2), 0, CPU, 10_000)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"behaviour": "stale"}, "behaviour"),
        ({"behaviour": "run:"}, "behaviour"),
        ({"refresh_every": 0}, "refresh_every"),
        ({"replay_batches": 0}, "replay_batches"),
        ({"updates_per_batch": 0}, "updates_per_batch"),
        ({"max_weight": 0.0}, "max_weight"),
        ({"weights": "per_step"}, "weights"),
        ({"baseline": "optimal"}, "baseline"),
        ({"episodes_per_update": 3}, "episodes_per_update"),
        ({"gamma": 1.5}, "gamma"),
    ],
)
def test_invalid_options_are_named(options, match):
    with pytest.raises(ConfigError, match=match):
        ImportanceSampledPG(Config(**options), short_cartpole(2), 0, CPU, 1000)


def test_continuous_actions_train_without_nan(tmp_path):
    summary = pgrad.train(
        "is_pg", "Pendulum-v1", total_steps=1600, run_dir=str(tmp_path), num_envs=2, episodes_per_update=2,
        eval_episodes=2, max_weight=10.0, self_normalize=True, **QUIET,
    )  # fmt: skip
    assert np.isfinite(summary["eval"]["mean_return"])
    for p in pgrad.load(tmp_path).policy.parameters():
        assert torch.isfinite(p).all()
