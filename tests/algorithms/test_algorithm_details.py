"""Details of the score-function algorithms that the update-vs-plain-estimator tests do not pin down: what
gradient NPG preconditions, the entropy bonus in REINFORCE, option checks, optimiser settings, schedules,
value targets, the diagnostics of a hand-made batch, and the episode returns each update reports."""

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.algorithms import get_algorithm
from pgrad.algorithms.common import check_unit_interval, head_options
from pgrad.algorithms.score_function import grpo, is_pg, npg
from pgrad.envs.gym import GymVecEnv
from pgrad.envs.toy import CountingEnv
from pgrad.errors import ConfigError
from pgrad.estimators import gae, normalize, reward_to_go
from pgrad.run.seeding import seed_everything
from pgrad.types import Rollout

CPU = torch.device("cpu")


def build(name, env=None, **options):
    cls = get_algorithm(name)
    config = cls.Config(hidden_sizes=(8,), **options)
    seed_everything(0)
    make = env or (lambda: gym.make("CartPole-v1", max_episode_steps=20))
    envs = GymVecEnv(make, num_envs=config.num_envs)
    return cls(config, envs, seed=0, device=CPU, total_steps=1_000)


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# -- NPG -------------------------------------------------------------------------------------------------
def test_npg_preconditions_the_gradient_of_the_plain_surrogate(monkeypatch):
    algo = build("npg", num_envs=2, num_steps=16, cg_iterations=3, value_epochs=1)
    rollout = algo.collector.collect(algo.policy, 16)
    monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)
    seen = {}
    original = npg.natural_gradient_step

    def spy(grad, fvp, max_kl, cg_iterations=10):
        seen.update(grad=grad.clone(), max_kl=max_kl, cg_iterations=cg_iterations)
        return original(grad, fvp, max_kl, cg_iterations)

    monkeypatch.setattr(npg, "natural_gradient_step", spy)
    with torch.no_grad():
        v, v_next = algo.value(rollout.obs), algo.value(rollout.next_obs)
    adv = gae(rollout.rewards, v, v_next, rollout.terminated, rollout.truncated, 0.99, 0.97)[0]
    adv = normalize(adv.flatten())
    logp = algo.policy.distribution(rollout.obs.flatten(0, 1)).log_prob(rollout.actions.flatten(0, 1))
    surrogate = (torch.exp(logp - rollout.log_probs.flatten()) * adv).mean()  # E[ρ Â]
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(surrogate, algo.params)])
    algo.iteration(0)
    torch.testing.assert_close(seen["grad"], expected, rtol=1e-5, atol=1e-7)
    assert seen["max_kl"] == 0.01 and seen["cg_iterations"] == 3


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("npg", {"max_kl": 0.0}, "max_kl must be > 0"),
        ("reinforce", {"num_envs": 1, "episodes_per_update": 0}, "episodes_per_update must be >= 1"),
        ("reinforce", {"num_envs": 1, "ent_coef": -0.1}, "ent_coef must be >= 0"),
        ("grpo", {"num_groups": 1, "group_size": 2, "max_grad_norm": -1.0}, "max_grad_norm must be >= 0"),
        ("a2c", {"num_envs": 1, "vf_coef": -1.0}, "vf_coef must be >= 0"),
        ("ppo", {"num_envs": 1, "max_grad_norm": -1.0}, "max_grad_norm must be >= 0"),
    ],
)
def test_more_bad_options(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build(name, **options)


# -- REINFORCE --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", ["none", "optimal"])
def test_reinforce_entropy_bonus_adds_its_gradient_to_the_step(monkeypatch, baseline):
    """Same data, SGD: the step with c_e > 0 is the step with c_e = 0 plus lr·c_e·∇ mean H."""
    from pgrad.algorithms.score_function import reinforce

    options = {"num_envs": 2, "episodes_per_update": 2, "baseline": baseline, "optimizer": "sgd", "lr": 0.1}
    collect, seen = reinforce.collect_episodes, []
    monkeypatch.setattr(
        reinforce, "collect_episodes", lambda *a, **k: seen.append(collect(*a, **k)) or seen[-1]
    )
    steps = []
    for ent_coef in (0.0, 0.5):
        algo = build("reinforce", **options, ent_coef=ent_coef)
        before = flat(algo.policy)
        algo.iteration(0)
        steps.append(flat(algo.policy) - before)
    torch.testing.assert_close(seen[0].obs, seen[1].obs)  # the same episodes both times
    fresh = build("reinforce", **options)
    entropy = fresh.policy.distribution(seen[0].obs[seen[0].mask]).entropy().mean()
    grads = torch.cat([g.flatten() for g in torch.autograd.grad(entropy, list(fresh.policy.parameters()))])
    torch.testing.assert_close(steps[1] - steps[0], 0.1 * 0.5 * grads, rtol=1e-4, atol=1e-6)


def test_reinforce_reports_the_spread_of_two_advantages():
    algo = build("reinforce", num_envs=2, episodes_per_update=2, baseline="none")
    obs, actions = torch.zeros(2, 4), torch.tensor([0, 1])
    metrics = algo._policy_step(obs, actions, torch.tensor([1.0, 3.0]), num_episodes=1)
    assert float(metrics["stats/advantage_std"]) == pytest.approx(2**0.5)
    assert float(metrics["stats/advantage_mean"]) == 2.0
    metrics = algo._policy_step(obs[:1], actions[:1], torch.tensor([1.0]), num_episodes=1)
    assert metrics["stats/advantage_std"] == 0.0  # one advantage: no spread (not NaN)


# -- A2C --------------------------------------------------------------------------------------------------
def test_a2c_optimisers_follow_the_options():
    algo = build("a2c", num_envs=2, num_steps=5, vf_coef=0.25, value_lr=3e-3)
    policy_group = algo.optimizers["policy"].param_groups[0]
    critic_group = algo.optimizers["critic"].param_groups[0]
    assert policy_group["lr"] == 7e-4 and critic_group["lr"] == 3e-3
    assert policy_group["alpha"] == 0.99 and policy_group["eps"] == 1e-5  # SB3's RMSprop settings
    adam = build("a2c", num_envs=2, num_steps=5, optimizer="adam")
    assert adam.optimizers["policy"].param_groups[0]["eps"] == 1e-8  # Adam keeps its own defaults


# -- PPO --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("anneal", "noted"), [({}, False), ({"anneal_lr": True}, True), ({"anneal_clip": True}, True)]
)
def test_ppo_says_what_an_extended_budget_does_to_its_schedules(anneal, noted):
    algo = build("ppo", num_envs=2, num_steps=8, **{"anneal_lr": False, **anneal})
    note = algo.extend_budget(500, 2_000)
    assert (note is not None) == noted
    if noted:
        assert "learning rate and clip range" in note and "0.5×" in note
    assert algo.schedule.fraction(500) == pytest.approx(0.5) and algo.schedule.fraction(2_000) == 0.0


# -- GRPO -------------------------------------------------------------------------------------------------
def test_grpo_anneals_its_learning_rate_and_says_so_when_extended():
    algo = build("grpo", num_groups=1, group_size=2, anneal_lr=True, lr=0.01)
    algo.envs.global_step = 250  # a quarter of the budget of 1 000 spent
    metrics = algo.iteration(0).metrics
    assert metrics["stats/lr"] == pytest.approx(0.0075)
    note = algo.extend_budget(500, 2_000)
    assert note is not None and "learning rate" in note
    assert build("grpo", num_groups=1, group_size=2).extend_budget(500, 2_000) is None


def test_grpo_diagnostics_of_a_hand_made_batch(monkeypatch):
    """Two groups of three one-step episodes: outcomes [1, 1, 1] (degenerate) and [0, 1, 2]."""
    algo = build("grpo", num_groups=2, group_size=3, beta=0.0)
    rewards = torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0, 2.0]])
    ones = torch.ones(1, 6, dtype=torch.bool)
    obs = torch.zeros(1, 6, 4)
    rollout = Rollout(
        obs=obs,
        actions=torch.zeros(1, 6, dtype=torch.long),
        log_probs=algo.policy.distribution(obs).log_prob(torch.zeros(1, 6, dtype=torch.long)).detach(),
        rewards=rewards,
        terminated=ones,
        truncated=~ones,
        next_obs=obs,
        mask=ones,
    )
    monkeypatch.setattr(algo, "collect", lambda index: rollout)
    metrics = algo.iteration(0).metrics
    assert metrics["stats/degenerate_groups"] == 0.5
    assert metrics["stats/outcome_mean"] == pytest.approx(1.0)
    assert metrics["stats/outcome_group_std"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert metrics["stats/advantage_abs_mean"] == pytest.approx(2 / 6)  # |±1| in the second group only


def test_grpo_outcomes_are_discounted_sums_of_the_masked_rewards():
    rewards = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    outcomes, lengths = grpo.episode_outcomes(rewards, mask, 0.5)
    assert outcomes.tolist() == [1 + 0.5 * 3 + 0.25 * 5, 2 + 0.5 * 4] and lengths.tolist() == [3, 2]


# -- IS-PG ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bootstrap", [True, False])
def test_is_pg_value_targets_bootstrap_time_limit_cuts_only_when_asked(monkeypatch, bootstrap):
    short = lambda: gym.make("CartPole-v1", max_episode_steps=6)  # noqa: E731  (cut before it falls)
    algo = build(
        "is_pg", env=short, num_envs=2, episodes_per_update=2, bootstrap_truncated=bootstrap, value_iters=1
    )
    seen = {}
    monkeypatch.setattr(
        is_pg, "fit_value", lambda value, opt, obs, targets, iters: seen.update(targets=targets) or 0.0
    )
    torch.manual_seed(0)
    collect = is_pg.collect_episodes
    monkeypatch.setattr(
        is_pg, "collect_episodes", lambda *a, **k: seen.setdefault("rollout", collect(*a, **k))
    )
    algo.iteration(0)
    rollout = seen["rollout"]
    assert (rollout.truncated & ~rollout.terminated & rollout.mask).any()
    with torch.no_grad():
        next_values = algo.value(rollout.next_obs) if bootstrap else None
    expected = reward_to_go(rollout.rewards, rollout.terminated, rollout.truncated, 0.99, next_values)
    torch.testing.assert_close(seen["targets"], expected[rollout.mask])


# -- every algorithm -----------------------------------------------------------------------------------------
CASES = {
    "reinforce": {"num_envs": 2, "episodes_per_update": 2, "value_iters": 1},
    "vpg": {"num_envs": 2, "steps_per_epoch": 16, "value_iters": 1},
    "a2c": {"num_envs": 2, "num_steps": 8},
    "npg": {"num_envs": 2, "num_steps": 8, "value_epochs": 1},
    "trpo": {"num_envs": 2, "num_steps": 8, "value_epochs": 1},
    "ppo": {"num_envs": 2, "num_steps": 8, "num_minibatches": 2, "update_epochs": 1},
    "grpo": {"num_groups": 1, "group_size": 2, "update_epochs": 1},
    "rloo": {"num_groups": 1, "group_size": 2, "update_epochs": 1},
    "is_pg": {"num_envs": 2, "episodes_per_update": 2, "value_iters": 1},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_update_reports_the_returns_and_lengths_of_its_finished_episodes(name):
    """CountingEnv pays 1, 2, 3 for the steps of its 3-step episodes: return 6, length 3."""
    algo = build(name, env=lambda: gym.wrappers.TimeLimit(CountingEnv(terminate_at=3), 10), **CASES[name])
    result = algo.iteration(0)
    assert len(result.episode_returns) >= 2
    assert np.all(result.episode_returns == 6.0) and np.all(result.episode_lengths == 3)


# -- shared plumbing ---------------------------------------------------------------------------------------
def test_unit_interval_options_accept_their_ends():
    for gamma, lam in ((0.0, 0.0), (1.0, 1.0)):
        assert build("ppo", num_envs=1, gamma=gamma, gae_lambda=lam).config.gae_lambda == lam
    with pytest.raises(ConfigError, match=r"gae_lambda must be in \[0, 1\], got 1.5"):
        build("ppo", num_envs=1, gae_lambda=1.5)


@pytest.mark.parametrize("outside", [-0.01, 1.01])
def test_unit_interval_checks_accept_zero_and_one_and_name_an_option_just_outside(outside):
    """γ and τ (the off-policy critics' Polyak step) may be 0 or 1; just outside is refused, naming it."""
    from pgrad.algorithms.critic.base import check_config
    from pgrad.algorithms.critic.ddpg import Config

    for end in (0.0, 1.0):
        check_config(Config(gamma=end, tau=end))
        check_unit_interval(SimpleNamespace(gamma=end, tau=end), "gamma", "tau")
    for name in ("gamma", "tau"):
        with pytest.raises(ConfigError) as info:
            check_config(Config(**{name: outside}))
        assert str(info.value) == f"{name} must be in [0, 1], got {outside}"


BOX, DISCRETE = gym.spaces.Box(-1.0, 1.0, shape=(2,)), gym.spaces.Discrete(3)


@pytest.mark.parametrize(
    ("space", "kind", "expected"),
    [
        (BOX, "auto", {"init_std": 0.3}),  # auto on Box actions is a diagonal Gaussian
        (BOX, "diag_gaussian", {"init_std": 0.3}),
        (BOX, "tanh_gaussian", {"init_std": 0.3}),
        (BOX, "discretised", {"bins": 7}),
        (BOX, "deterministic", {}),
        (DISCRETE, "auto", {}),  # auto on Discrete actions is categorical
        (DISCRETE, "categorical", {}),
    ],
)
def test_head_options_give_init_std_to_gaussian_heads_and_bins_to_discretised_ones(space, kind, expected):
    envs = SimpleNamespace(single_action_space=space)
    assert head_options(envs, SimpleNamespace(policy=kind, bins=7, init_std=0.3)) == expected
    no_std = {k: v for k, v in expected.items() if k != "init_std"}
    assert head_options(envs, SimpleNamespace(policy=kind, bins=7)) == no_std  # a config without init_std
    if kind == "auto":  # a config without a policy option means auto
        assert head_options(envs, SimpleNamespace(init_std=0.3)) == expected


@pytest.mark.parametrize("head", ["auto", "diag_gaussian"])
def test_init_std_reaches_a_gaussian_policy_on_box_actions(head):
    algo = build("ppo", env=lambda: gym.make("Pendulum-v1"), num_envs=1, policy=head, init_std=0.3)
    std = algo.policy.distribution(torch.zeros(2, 3)).stddev
    torch.testing.assert_close(std, torch.full_like(std, 0.3))


def test_a_linear_decay_over_a_budget_of_one_step_ends_at_zero():
    from pgrad.algorithms.common import LinearDecay

    assert LinearDecay(1).fraction(0) == 1.0 and LinearDecay(1).fraction(1) == 0.0
    assert LinearDecay(0).fraction(0) == 1.0  # no division by zero
    decay = LinearDecay(10)
    assert decay.fraction(4) == pytest.approx(0.6) and decay.fraction(20) == 0.0
