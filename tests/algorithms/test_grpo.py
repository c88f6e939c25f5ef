"""GRPO / Dr. GRPO: group rollouts, advantages and the update held against plain per-episode references."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms import REGISTRY
from pgrad.algorithms.score_function.grpo import GRPO, Config
from pgrad.cli import main
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.seeding import seed_everything

QUIET = {"progress": False, "tensorboard": False}


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """Make `grpo` and `rloo` trainable by name whatever state the shared registry is in."""
    monkeypatch.setitem(REGISTRY, "grpo", "pgrad.algorithms.score_function.grpo:GRPO")
    monkeypatch.setitem(REGISTRY, "rloo", "pgrad.algorithms.score_function.rloo:RLOO")


BANDIT = "pgrad/ContextualBandit-v0"
CPU = torch.device("cpu")


def make_algo(config, env="CartPole-v1", cls=GRPO, seed=0, **env_kwargs):
    seed_everything(seed)
    envs = GymVecEnv(lambda: gym.make(env, **env_kwargs), num_envs=config.num_envs)
    return cls(config, envs, seed=seed, device=CPU, total_steps=10_000)


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# -- group rollouts ------------------------------------------------------------------------------------------
def test_groups_share_their_start_state_and_differ_from_each_other():
    config = Config(num_groups=3, group_size=4, hidden_sizes=(8,))
    algo = make_algo(config)
    rollout = algo.collect(0)
    first_obs = rollout.obs[0].view(3, 4, -1)
    for g in range(3):
        for i in range(4):
            torch.testing.assert_close(first_obs[g, i], first_obs[g, 0], rtol=0, atol=0)
    starts = first_obs[:, 0]
    assert not torch.equal(starts[0], starts[1]) and not torch.equal(starts[1], starts[2])
    # the episodes of a group then diverge (actions are sampled independently)
    assert len(set(rollout.mask.sum(0).tolist())) > 1
    # a new iteration draws new start states; the same iteration index the same ones
    assert not torch.equal(algo.collect(1).obs[0], rollout.obs[0])
    torch.testing.assert_close(algo.collect(0).obs[0], rollout.obs[0], rtol=0, atol=0)


def test_num_envs_is_derived_and_the_cli_just_works(tmp_path):
    assert Config(num_groups=4, group_size=16).num_envs == 64
    run = ["--total-steps", "256", "--run-dir", str(tmp_path / "cli"), "--no-progress", "--no-tensorboard"]
    code = main(["train", "grpo", "--env", BANDIT, "--num-groups", "4", "--group-size", "16", *run])
    assert code == 0
    with pytest.raises(ConfigError, match="unknown grpo option"):
        pgrad.train("grpo", BANDIT, num_envs=8, total_steps=16, run_dir=str(tmp_path / "x"), **QUIET)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"group_size": 1}, "group_size must be >= 2"),
        ({"reference": "somewhere"}, "reference must be 'initial' or 'run:DIR'"),
        ({"beta": -0.1}, "beta must be >= 0"),
        ({"gamma": 1.5}, "gamma must be in"),
        ({"num_minibatches": 0}, "num_minibatches must be >= 1"),
    ],
)
def test_bad_options_are_one_line_config_errors(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        pgrad.train("grpo", BANDIT, total_steps=16, run_dir=str(tmp_path), **options, **QUIET)


# -- advantages ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dr_grpo", [False, True])
def test_advantages_are_the_group_formula(dr_grpo):
    algo = make_algo(Config(num_groups=3, group_size=5, hidden_sizes=(4,), dr_grpo=dr_grpo), BANDIT)
    outcomes = torch.tensor(
        [[1.0, 0.0, 3.0, 2.0, 2.0], [4.0, 4.0, 4.0, 4.0, 4.0], [0.5, -1.0, 2.0, 0.0, 7.0]]
    )
    got = algo.advantages(outcomes)
    for g, row in enumerate(outcomes.tolist()):
        mean = sum(row) / len(row)
        std = (sum((r - mean) ** 2 for r in row) / (len(row) - 1)) ** 0.5
        for i, r in enumerate(row):
            expected = 0.0 if std == 0 else (r - mean if dr_grpo else (r - mean) / (std + 1e-8))
            assert got[g, i].item() == pytest.approx(expected, abs=1e-6)


# -- the update ----------------------------------------------------------------------------------------------
def reference_gradient(policy, rollout, num_groups, group_size, dr_grpo, length_constant, gamma):
    """1/M Σ_i w_i Â_i Σ_t ∇ log π(a_t|s_t), with loops, one autograd call per step (β = 0, ratios 1)."""
    params = list(policy.parameters())
    episodes = []
    for n in range(rollout.num_envs):
        length = int(rollout.mask[:, n].sum())
        rewards = rollout.rewards[:length, n].tolist()
        episodes.append((n, length, sum(gamma**t * r for t, r in enumerate(rewards))))
    advantages = {}
    for g in range(num_groups):
        group = episodes[g * group_size : (g + 1) * group_size]
        outcomes = [e[2] for e in group]
        mean = float(np.mean(outcomes))
        std = float(np.std(outcomes, ddof=1))
        for n, _, r in group:
            advantages[n] = 0.0 if std == 0 else (r - mean if dr_grpo else (r - mean) / (std + 1e-8))
    total = torch.zeros(sum(p.numel() for p in params))
    for n, length, _ in episodes:
        weight = 1.0 / (length_constant if dr_grpo else length)
        for t in range(length):
            logp = policy.distribution(rollout.obs[t : t + 1, n]).log_prob(rollout.actions[t : t + 1, n])[0]
            grad = torch.cat([g.flatten() for g in torch.autograd.grad(logp, params)])
            total += weight * advantages[n] * grad
    return total / len(episodes)


@pytest.mark.parametrize("dr_grpo, gamma", [(False, 1.0), (True, 1.0), (False, 0.9)])
def test_update_is_the_score_function_estimate(dr_grpo, gamma):
    """Ratios 1 and β = 0: one SGD step with lr 1 moves θ by exactly the documented estimate."""
    config = Config(
        num_groups=2,
        group_size=3,
        update_epochs=1,
        num_minibatches=1,
        beta=0.0,
        optimizer="sgd",
        lr=1.0,
        max_grad_norm=0.0,
        dr_grpo=dr_grpo,
        gamma=gamma,
        hidden_sizes=(8,),
    )
    # A short time limit: episodes end by termination and by truncation, with different lengths.
    algo = make_algo(config, max_episode_steps=25)
    assert algo.reference is None and algo.length_constant == 25
    for index in range(50):
        rollout = algo.collect(index)
        lengths = rollout.mask.sum(0)
        ends = rollout.mask & (rollout.terminated | rollout.truncated)
        if (
            rollout.truncated[ends].any()
            and rollout.terminated[ends].any()
            and len(set(lengths.tolist())) > 2
        ):
            break
    else:
        pytest.fail("no batch with both kinds of episode end")
    algo.collect = lambda index: rollout
    expected = reference_gradient(algo.policy, rollout, 2, 3, dr_grpo, 25, gamma)
    before = flat(algo.policy)
    metrics = algo.iteration(0)
    assert metrics.metrics["stats/clip_fraction"] == 0.0
    torch.testing.assert_close(flat(algo.policy) - before, expected, rtol=1e-4, atol=1e-6)


def test_dr_grpo_and_grpo_differ_on_the_same_batch():
    """Same rollout, same start: the two weightings give different steps (both checked exactly above)."""
    steps = []
    for dr in (False, True):
        config = Config(num_groups=2, group_size=3, beta=0.0, optimizer="sgd", num_minibatches=1, dr_grpo=dr)
        algo = make_algo(config, max_episode_steps=15)
        rollout = algo.collect(7)
        algo.collect = lambda index, r=rollout: r
        before = flat(algo.policy)
        algo.iteration(0)
        steps.append(flat(algo.policy) - before)
    assert not torch.allclose(steps[0], steps[1])


def test_k3_penalty_is_zero_at_the_reference_and_positive_elsewhere():
    config = Config(num_groups=2, group_size=3, beta=0.5, hidden_sizes=(8,), optimizer="sgd", lr=1.0)
    algo = make_algo(config, max_episode_steps=15)
    assert algo.reference is not None
    assert all(not p.requires_grad for p in algo.reference.parameters())
    rollout = algo.collect(0)
    mask = rollout.mask
    obs, actions = rollout.obs[mask], rollout.actions[mask]
    weights = torch.rand(len(obs)) + 0.5
    batch = {
        "obs": obs,
        "actions": actions,
        "log_probs": rollout.log_probs[mask],
        "advantages": torch.zeros(len(obs)),  # isolate the KL term
        "weights": weights,
    }
    with torch.no_grad():
        batch["ref_log_probs"] = algo.reference.distribution(obs).log_prob(actions)
    before = flat(algo.policy)
    info = algo._minibatch_step(batch)
    assert info["loss/kl_ref"] == 0.0 and info["stats/kl_ref"] == 0.0
    torch.testing.assert_close(flat(algo.policy), before, rtol=0, atol=0)  # zero gradient at π = π_ref

    with torch.no_grad():
        for p in algo.policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
        logp = algo.policy.distribution(obs).log_prob(actions)
        log_ratio = batch["ref_log_probs"] - logp
        plain = torch.stack([torch.exp(x) - x - 1 for x in log_ratio])  # π_ref/π − log(π_ref/π) − 1
    info = algo._minibatch_step(batch)
    assert info["stats/kl_ref"] > 0
    assert info["loss/kl_ref"] == pytest.approx(float((plain * weights).mean()), rel=1e-5)
    assert info["stats/kl_ref"] == pytest.approx(float(plain.mean()), rel=1e-5)


# -- learning, checkpoints, reference runs -------------------------------------------------------------------
def bandit_expected_reward(run_dir):
    env = gym.make(BANDIT).unwrapped
    policy = pgrad.load(run_dir).policy
    with torch.no_grad():
        probs = policy.distribution(torch.as_tensor(env.contexts)).probs
    uniform = env.expected_reward(np.full(env.reward_table.shape, 1 / env.num_actions))
    return env.expected_reward(probs), uniform, env.optimal_reward


@pytest.mark.parametrize("dr_grpo", [False, True])
def test_grpo_learns_the_bandit(tmp_path, dr_grpo):
    pgrad.train(
        "grpo",
        BANDIT,
        total_steps=4000,
        seed=0,
        run_dir=str(tmp_path),
        eval_every=0,
        dr_grpo=dr_grpo,
        **QUIET,
    )
    learned, uniform, optimal = bandit_expected_reward(tmp_path)
    assert learned > uniform + 0.5 * (optimal - uniform), (learned, uniform, optimal)


def test_checkpoint_holds_the_reference_and_resume_is_exact(tmp_path):
    common = dict(num_groups=2, group_size=4, checkpoint_every=300, eval_every=0, eval_episodes=2, seed=3)
    pgrad.train("grpo", "CartPole-v1", total_steps=1200, run_dir=str(tmp_path / "a"), **common, **QUIET)
    first = pgrad.train(
        "grpo", "CartPole-v1", total_steps=600, run_dir=str(tmp_path / "b"), **common, **QUIET
    )
    assert first["global_step"] < 1200
    pgrad.resume(tmp_path / "b", total_steps=1200, progress=False)
    (a, step_a), (b, step_b) = (
        load_checkpoint(latest_checkpoint(Path(tmp_path / d) / "checkpoints")) for d in ("a", "b")
    )
    assert step_a == step_b
    assert set(a["algorithm"]) == {"policy", "optimizer", "reference", "schedule"}
    for key in ("policy", "reference"):
        for name, tensor in a["algorithm"][key].items():
            torch.testing.assert_close(b["algorithm"][key][name], tensor, rtol=0, atol=0)
    # the reference stayed the initial policy while the policy moved
    algo = make_algo(Config(num_groups=2, group_size=4), seed=3)
    for name, tensor in algo.reference.state_dict().items():
        torch.testing.assert_close(a["algorithm"]["reference"][name], tensor, rtol=0, atol=0)
    assert any(not torch.equal(a["algorithm"]["policy"][k], v) for k, v in algo.policy.state_dict().items())


def test_load_state_dict_restores_the_reference():
    source = make_algo(Config(num_groups=2, group_size=2, hidden_sizes=(8,)), BANDIT, seed=1)
    target = make_algo(Config(num_groups=2, group_size=2, hidden_sizes=(8,)), BANDIT, seed=2)
    assert not torch.equal(flat(source.reference), flat(target.reference))
    target.load_state_dict(source.state_dict())
    torch.testing.assert_close(flat(target.reference), flat(source.reference), rtol=0, atol=0)
    assert all(not p.requires_grad for p in target.reference.parameters())
    no_ref = make_algo(Config(num_groups=2, group_size=2, beta=0.0), BANDIT)
    assert no_ref.reference is None and "reference" not in no_ref.state_dict()


def test_a_run_dir_is_a_reference_and_an_initialisation(tmp_path):
    prior_dir = tmp_path / "prior"
    pgrad.train("grpo", BANDIT, total_steps=512, run_dir=str(prior_dir), eval_episodes=2, **QUIET)
    prior = flat(pgrad.load(prior_dir).policy)
    algo = make_algo(Config(num_groups=2, group_size=2, reference=f"run:{prior_dir}"), BANDIT)
    torch.testing.assert_close(flat(algo.reference), prior, rtol=0, atol=0)
    assert all(not p.requires_grad for p in algo.reference.parameters())
    assert not torch.equal(flat(algo.policy), prior)
    started = make_algo(Config(num_groups=2, group_size=2, init_from=str(prior_dir)), BANDIT)
    torch.testing.assert_close(flat(started.policy), prior, rtol=0, atol=0)
    torch.testing.assert_close(flat(started.reference), prior, rtol=0, atol=0)  # "initial" = the prior
    assert all(p.requires_grad for p in started.policy.parameters())
    with pytest.raises(ConfigError, match="obs_dim"):
        make_algo(Config(num_groups=2, group_size=2, reference=f"run:{prior_dir}"))  # CartPole ≠ bandit
