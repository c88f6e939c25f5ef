"""What each score-function algorithm reports after an update: the documented metric names (the harness logs
them; dashboards and `pgrad` users read them by name) and values that are what they say."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.algorithms import get_algorithm
from pgrad.envs.gym import GymVecEnv
from pgrad.run.seeding import seed_everything

COMMON = {"loss/policy", "stats/entropy", "stats/grad_norm"}
VALUE = {"loss/value", "stats/explained_variance"}
GROUP = {"loss/kl_ref", "stats/kl_ref", "stats/approx_kl", "stats/clip_fraction", "stats/lr"}
GROUP |= {
    "stats/outcome_mean",
    "stats/outcome_group_std",
    "stats/degenerate_groups",
    "stats/advantage_abs_mean",
}
NATURAL = {"loss/policy", "loss/value", "stats/approx_kl", "stats/explained_variance", "stats/grad_norm"}
NATURAL |= {"stats/cg_residual", "stats/expected_improvement", "stats/natural_step_failed", "stats/step_size"}
NATURAL |= {"stats/xFx"}
PPO = COMMON | VALUE | {"stats/approx_kl", "stats/clip_coef", "stats/epochs", "stats/lr", "stats/ratio_max"}
PPO |= {"stats/ratio_mean"}
SEARCH = {f"stats/line_search_{k}" for k in ("accepted", "backtracks", "improvement", "kl", "step_fraction")}

CASES = {
    "reinforce": (
        {"num_envs": 2, "episodes_per_update": 4, "value_iters": 2},
        COMMON | VALUE | {"stats/advantage_mean", "stats/advantage_std", "stats/approx_kl"},
    ),
    "reinforce-optimal": (
        {"num_envs": 2, "episodes_per_update": 4, "baseline": "optimal"},
        {"stats/approx_kl", "stats/baseline_mean", "stats/entropy", "stats/grad_norm"},
    ),
    "vpg": ({"num_envs": 2, "steps_per_epoch": 24, "value_iters": 2}, COMMON | VALUE | {"stats/approx_kl"}),
    "a2c": (
        {"num_envs": 2, "num_steps": 5},
        COMMON | VALUE | {"stats/advantage_mean", "stats/value_grad_norm"},
    ),
    "a2c-shared": (
        {"num_envs": 2, "num_steps": 5, "architecture": "shared"},
        COMMON | VALUE | {"stats/advantage_mean"},
    ),
    "npg": ({"num_envs": 2, "num_steps": 16, "value_epochs": 1}, NATURAL),
    "trpo": ({"num_envs": 2, "num_steps": 16, "value_epochs": 1}, NATURAL | SEARCH),
    "ppo": (
        {"num_envs": 2, "num_steps": 16, "num_minibatches": 2, "update_epochs": 3},
        PPO | {"stats/clip_fraction"},
    ),
    "ppo-kl": (
        {"num_envs": 2, "num_steps": 16, "num_minibatches": 2, "update_epochs": 3, "loss": "kl"},
        PPO | {"stats/kl", "stats/kl_after_update", "stats/kl_beta"},
    ),
    "grpo": ({"num_groups": 2, "group_size": 3, "update_epochs": 2, "num_minibatches": 2}, COMMON | GROUP),
    "rloo": ({"num_groups": 2, "group_size": 3, "update_epochs": 2, "num_minibatches": 2}, COMMON | GROUP),
    "is_pg": (
        {"num_envs": 2, "episodes_per_update": 4, "value_iters": 2, "max_weight": 1.5},
        COMMON
        | VALUE
        | {"stats/approx_kl", "stats/clip_fraction", "stats/ess", "stats/ess_fraction"}
        | {"stats/replay_episodes", "stats/weight_max", "stats/weight_mean"},
    ),
}


def run_once(case, iterations=1):
    name = case.split("-")[0]
    cls = get_algorithm(name)
    options, _ = CASES[case]
    config = cls.Config(hidden_sizes=(8,), **options)
    seed_everything(0)
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=50), num_envs=config.num_envs)
    algo = cls(config, envs, seed=0, device=torch.device("cpu"), total_steps=4_000)
    for i in range(iterations):
        result = algo.iteration(i)
    return algo, {k: float(v) for k, v in result.metrics.items()}, result


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_update_reports_its_documented_metrics(case):
    _, metrics, result = run_once(case)
    assert set(metrics) == CASES[case][1]
    for key, value in metrics.items():
        assert math.isfinite(value) or key == "stats/explained_variance", key
    assert metrics["stats/grad_norm"] > 0
    if "stats/entropy" in metrics:  # two actions: 0 < H ≤ log 2
        assert 0 < metrics["stats/entropy"] <= math.log(2) + 1e-6
    for key in ("stats/approx_kl", "loss/value", "stats/kl_ref", "loss/kl_ref", "stats/advantage_abs_mean"):
        assert metrics.get(key, 0.0) >= 0, key
    for key in ("stats/clip_fraction", "stats/degenerate_groups", "stats/ess_fraction"):
        assert 0 <= metrics.get(key, 0.0) <= 1, key
    assert len(result.episode_returns) == len(result.episode_lengths)
    assert np.all(result.episode_returns == result.episode_lengths)  # CartPole: reward 1 per step


def test_ppo_reports_its_schedule_and_epochs():
    algo, metrics, _ = run_once("ppo")
    assert metrics["stats/epochs"] == 3
    assert metrics["stats/lr"] == pytest.approx(algo.config.lr)  # nothing spent yet when it starts
    assert metrics["stats/clip_coef"] == pytest.approx(0.2)
    assert metrics["stats/ratio_max"] >= metrics["stats/ratio_mean"] > 0


def test_group_metrics_describe_the_batch_of_outcomes(monkeypatch):
    from pgrad.algorithms.score_function.grpo import GRPO

    seen = []
    collect = GRPO.collect
    monkeypatch.setattr(GRPO, "collect", lambda self, i: seen.append(collect(self, i)) or seen[-1])
    algo, metrics, result = run_once("grpo")
    assert metrics["stats/outcome_mean"] == pytest.approx(float(np.mean(result.episode_returns)))
    groups = (seen[0].rewards * seen[0].mask).sum(0).view(2, 3).double().numpy()  # sub-envs g·G … g·G + G − 1
    assert metrics["stats/outcome_group_std"] == pytest.approx(
        float(groups.std(axis=1, ddof=1).mean()), rel=1e-5
    )
    degenerate = float(np.mean([len(set(g)) == 1 for g in groups]))
    assert metrics["stats/degenerate_groups"] == pytest.approx(degenerate)
    assert metrics["stats/lr"] == pytest.approx(algo.config.lr)


def test_importance_metrics_of_the_first_batch():
    _, metrics, _ = run_once("is_pg")
    assert metrics["stats/replay_episodes"] == 4
    assert metrics["stats/ess"] <= 4 * 50 and 0 < metrics["stats/ess_fraction"] <= 1
    assert metrics["stats/weight_max"] >= metrics["stats/weight_mean"] > 0
