"""Behaviour cloning: the loss against a plain reference, a fit to a tiny synthetic dataset, the
demonstrations file format, and `pgrad bc` producing a normal run folder that `pgrad.load` and
`--init-from` read."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.algorithms.imitation.bc import (
    Demonstrations,
    bc_loss,
    collect_demonstrations,
    fit_policy,
    load_demonstrations,
    save_demonstrations,
    split_episodes,
)
from pgrad.errors import ConfigError
from pgrad.policies.networks import Policy
from pgrad.workflow.bc import bc, main

QUIET = dict(progress=False, tensorboard=False)


def synthetic(episodes=20, length=25, seed=0, start=0):
    """Obs in R²; the demonstrator picks start + 1 when x₀ + x₁ > 0, else start."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(episodes * length, 2, generator=g)
    actions = (obs.sum(1) > 0).long() + start
    starts = torch.zeros(episodes * length, dtype=torch.bool)
    starts[::length] = True
    box = spaces.Box(-math.inf, math.inf, (2,))
    return Demonstrations(obs, actions, starts, "synthetic", box, spaces.Discrete(2, start=start))


# -- the loss ------------------------------------------------------------------------------------------------
def test_categorical_bc_loss_is_the_cross_entropy():
    torch.manual_seed(0)
    policy = Policy(3, spaces.Discrete(4), hidden_sizes=(8,))
    obs, actions = torch.randn(10, 3), torch.randint(0, 4, (10,))
    loss, info = bc_loss(policy, obs, actions)
    logits = policy.head.logits(policy.trunk(obs))
    reference = -sum(logits[i].log_softmax(-1)[actions[i]] for i in range(10)) / 10
    torch.testing.assert_close(loss, reference)
    accuracy = sum(int(logits[i].argmax()) == int(actions[i]) for i in range(10)) / 10
    assert float(info["accuracy"]) == pytest.approx(accuracy)


def test_gaussian_bc_loss_is_the_gaussian_negative_log_likelihood():
    torch.manual_seed(1)
    policy = Policy(3, spaces.Box(-1, 1, (2,)), hidden_sizes=(8,), init_std=0.7)
    obs, actions = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1
    loss, info = bc_loss(policy, obs, actions)
    dist = policy.distribution(obs)
    mu, std = dist.mean, dist.stddev
    per_dim = (actions - mu) ** 2 / (2 * std**2) + torch.log(std) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(loss, per_dim.sum(1).mean())
    torch.testing.assert_close(info["mse"], ((mu - actions) ** 2).mean())


# -- the fit -------------------------------------------------------------------------------------------------
def test_bc_fits_a_tiny_synthetic_dataset_and_holds_out_episodes():
    demos = synthetic(start=3)  # Discrete(2, start=3): env actions 3 and 4
    torch.manual_seed(0)
    policy = Policy(2, demos.action_space, hidden_sizes=(16,))
    result = fit_policy(policy, demos, epochs=25, lr=2e-2, batch_size=64, val_fraction=0.2)
    assert result["val_accuracy"] >= 0.95 and result["train_accuracy"] >= 0.95
    assert result["val_loss"] < 0.3
    assert (result["train_steps"], result["val_steps"]) == (400, 100)  # 4 of 20 episodes held out
    uneven = synthetic(episodes=1, length=60)
    uneven.episode_starts[[7, 20, 22, 41, 50]] = True  # six episodes of 7, 13, 2, 19, 9 and 10 steps
    for data in (demos, uneven):
        train, val = split_episodes(data, 0.3, seed=0)
        episode = data.episode_ids()
        assert len(val) and set(episode[train].tolist()).isdisjoint(episode[val].tolist())
    with torch.no_grad():
        greedy = policy.head.to_env_action(policy.distribution(demos.obs).mode)
    assert float((greedy == demos.actions).float().mean()) >= 0.95  # in the env's action numbering


def test_a_normaliser_gets_the_training_statistics():
    demos = synthetic()
    demos.obs = demos.obs * 10 + 5
    policy = Policy(2, demos.action_space, hidden_sizes=(16,), normalize_obs=True)
    fit_policy(policy, demos, epochs=1)
    train, _ = split_episodes(demos, 0.2, seed=0)
    torch.testing.assert_close(
        policy.normalizer.mean, demos.obs[train].mean(0).double(), rtol=1e-5, atol=1e-5
    )


# -- the file format -----------------------------------------------------------------------------------------
def test_a_demonstrations_file_round_trips_and_bad_files_are_named(tmp_path):
    demos = synthetic(episodes=3, length=4)
    path = save_demonstrations(demos, tmp_path / "demos")
    assert path.name == "demos.safetensors" and (tmp_path / "demos.json").exists()
    back = load_demonstrations(path)
    assert torch.equal(back.obs, demos.obs) and torch.equal(back.actions, demos.actions)
    assert torch.equal(back.episode_starts, demos.episode_starts) and back.episodes == 3
    assert back.action_space == demos.action_space and back.env == "synthetic"

    meta = json.loads((tmp_path / "demos.json").read_text())
    (tmp_path / "demos.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ConfigError, match=r"demos.json: format 'other'"):
        load_demonstrations(path)
    (tmp_path / "demos.json").unlink()
    with pytest.raises(ConfigError, match=r"sidecar .*demos.json is missing"):
        load_demonstrations(path)
    bad = synthetic(episodes=2, length=3)
    bad.actions = bad.actions[:-1]
    with pytest.raises(ConfigError, match="same length"):
        load_demonstrations(save_demonstrations(bad, tmp_path / "short.safetensors"))
    bad = synthetic(episodes=2, length=3)
    bad.actions = bad.actions + 5
    with pytest.raises(ConfigError, match=r"'actions' outside Discrete\(2\)"):
        load_demonstrations(save_demonstrations(bad, tmp_path / "range.safetensors"))


# -- from a trained run to a run folder ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher") / "run"
    pgrad.train(
        "reinforce",
        "CartPole-v1",
        total_steps=1000,
        num_envs=2,
        eval_episodes=0,
        run_dir=str(folder),
        **QUIET,
    )
    return folder


def test_collected_demonstrations_are_the_teachers_greedy_episodes(teacher, tmp_path):
    demos = collect_demonstrations(teacher, episodes=3, out=tmp_path / "d.safetensors", seed=1)
    agent = pgrad.load(teacher)
    assert demos.episodes == 3 and demos.env == "CartPole-v1"
    assert torch.equal(torch.as_tensor(agent.act(demos.obs.numpy())), demos.actions)  # greedy actions
    lengths = torch.bincount(demos.episode_ids())
    torch.testing.assert_close(lengths.float(), demos.episode_returns)  # CartPole: +1 a step
    env = gym.make("CartPole-v1")  # each episode starts from its own reset
    first = demos.obs[demos.episode_starts]
    assert (
        all(env.observation_space.contains(o.numpy()) for o in first)
        and len(set(map(tuple, first.tolist()))) == 3
    )
    assert torch.equal(load_demonstrations(tmp_path / "d.safetensors").obs, demos.obs)


def test_pgrad_bc_writes_a_normal_run_folder_that_init_from_reads(teacher, tmp_path, capsys):
    code = main(
        [
            "--from-run",
            str(teacher),
            "--episodes",
            "2",
            "--epochs",
            "3",
            "--eval-episodes",
            "2",
            "--run-dir",
            str(tmp_path / "bc"),
            "--algo",
            "ppo",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"val_loss", "val_accuracy", "train_loss", "eval_mean_return"} <= set(summary)
    assert json.loads((tmp_path / "bc" / "bc.json").read_text())["val_loss"] == summary["val_loss"]
    assert load_demonstrations(tmp_path / "bc" / "demos.safetensors").episodes == 2
    agent = pgrad.load(tmp_path / "bc")
    assert agent.info["algorithm"] == "ppo" and agent.info["global_step"] == 0
    assert pgrad.evaluate(tmp_path / "bc", episodes=1)["episodes"] == 1
    fitted = torch.cat([p.detach().flatten() for p in agent.policy.parameters()])
    run = pgrad.train(
        "ppo",
        "CartPole-v1",
        total_steps=256,
        init_from=str(tmp_path / "bc"),
        prior_kl=0.1,
        eval_episodes=0,
        run_dir=str(tmp_path / "rl"),
        checkpoint_every=0,
        **QUIET,
    )
    assert run["global_step"] == 256
    saved = json.loads((tmp_path / "rl" / "run.json").read_text())["config"]
    assert saved["init_from"] == str(tmp_path / "bc") and saved["prior_kl"] == 0.1
    from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint

    state, _ = load_checkpoint(latest_checkpoint(tmp_path / "rl" / "checkpoints"))
    prior = torch.cat([t.flatten() for t in state["algorithm"]["prior"]["weights"].values()])
    assert torch.equal(prior, fitted)


def test_pgrad_bc_refuses_bad_requests(teacher, tmp_path):
    with pytest.raises(ConfigError, match="exactly one source"):
        bc(run_dir=tmp_path / "x")
    with pytest.raises(ConfigError, match="exactly one source"):
        bc(demos="a.safetensors", from_run=teacher)
    with pytest.raises(ConfigError, match="sac is a learned critic algorithm"):
        bc(from_run=teacher, episodes=1, algo="sac", run_dir=tmp_path / "y")
    demos = save_demonstrations(synthetic(episodes=2, length=3), tmp_path / "syn.safetensors")
    with pytest.raises(ConfigError, match="obs_dim 2, the policy reads 4"):
        bc(demos=demos, env="CartPole-v1", run_dir=tmp_path / "z", eval_episodes=0)
    assert not (tmp_path / "z").exists()  # no half-made run folder left behind
