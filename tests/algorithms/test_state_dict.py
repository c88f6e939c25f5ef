"""state_dict round trips for every score-function algorithm: save after an update, through the checkpoint
files (safetensors + JSON), load into a fresh instance built with another seed: the same next update."""

import gymnasium as gym
import pytest
import torch

from pgrad.algorithms import get_algorithm
from pgrad.envs.gym import GymVecEnv
from pgrad.run.checkpoint import load_checkpoint, save_checkpoint
from pgrad.run.seeding import seed_everything

SMALL = {"hidden_sizes": (8,)}
CASES = {
    "reinforce": {"num_envs": 2, "episodes_per_update": 2, "normalize_obs": True, "value_iters": 2},
    "reinforce-optimal": {"num_envs": 2, "episodes_per_update": 2, "baseline": "optimal"},
    "vpg": {"num_envs": 2, "steps_per_epoch": 24, "normalize_obs": True, "value_iters": 2},
    "a2c": {"num_envs": 2, "num_steps": 5, "normalize_obs": True},
    "a2c-discount": {"num_envs": 2, "num_steps": 5, "discount_weighting": True},
    "vpg-discount": {"num_envs": 2, "steps_per_epoch": 24, "discount_weighting": True},
    "reinforce-discount": {"num_envs": 2, "episodes_per_update": 2, "discount_weighting": True},
    "a2c-shared": {
        "num_envs": 2,
        "num_steps": 5,
        "architecture": "shared",
        "critic": "q",
        "q_baseline": True,
    },
    "npg": {"num_envs": 2, "num_steps": 16, "value_epochs": 1, "normalize_obs": True},
    "trpo": {"num_envs": 2, "num_steps": 16, "value_epochs": 1},
    "ppo": {
        "num_envs": 2,
        "num_steps": 16,
        "num_minibatches": 2,
        "update_epochs": 2,
        "normalize_reward": True,
    },
    "ppo-kl": {"num_envs": 2, "num_steps": 16, "num_minibatches": 2, "update_epochs": 2, "loss": "kl"},
    "grpo": {"num_groups": 2, "group_size": 2, "update_epochs": 2, "num_minibatches": 2},
    "rloo": {"num_groups": 2, "group_size": 2, "update_epochs": 1, "num_minibatches": 1},
    "is_pg": {"num_envs": 2, "episodes_per_update": 2, "value_iters": 2, "normalize_obs": True},
}


def build(case, seed):
    name = case.split("-")[0]
    cls = get_algorithm(name)
    config = cls.Config(**SMALL, **CASES[case])
    seed_everything(seed)
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=10), num_envs=config.num_envs)
    return cls(config, envs, seed=0, device=torch.device("cpu"), total_steps=2_000)


def tensors(tree, prefix=""):
    """Every tensor and number of a nested state dict, by path."""
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(tensors(v, f"{prefix}/{k}"))
        return out
    if isinstance(tree, list | tuple):
        out = {}
        for i, v in enumerate(tree):
            out.update(tensors(v, f"{prefix}/{i}"))
        return out
    return {prefix: tree}


def next_update(algo, seed=3):
    """One iteration from a fixed RNG state and freshly reset envs (a resume whose envs were not restored)."""
    algo.on_resume(1)
    torch.manual_seed(seed)
    metrics = algo.iteration(1).metrics
    return torch.cat([p.detach().flatten() for p in algo.policy.parameters()]), metrics


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_load_into_a_fresh_instance_gives_the_same_next_update(case, tmp_path):
    trained = build(case, seed=0)
    trained.iteration(0)
    folder = save_checkpoint(tmp_path, trained.envs.global_step, trained.state_dict())
    state, step = load_checkpoint(folder)
    assert step == trained.envs.global_step

    fresh = build(case, seed=1)  # other initial weights: everything must come from the state
    before = torch.cat([p.detach().flatten() for p in fresh.policy.parameters()])
    assert not torch.equal(before, torch.cat([p.detach().flatten() for p in trained.policy.parameters()]))
    fresh.load_state_dict(state)
    fresh.envs.global_step = step  # the harness restores the step count (schedules read it)
    saved, loaded = tensors(trained.state_dict()), tensors(fresh.state_dict())
    assert saved.keys() == loaded.keys()
    for key, value in saved.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
        else:
            assert loaded[key] == value, key

    params_a, metrics_a = next_update(trained)
    params_b, metrics_b = next_update(fresh)
    torch.testing.assert_close(params_b, params_a, rtol=0, atol=0)
    assert metrics_a.keys() == metrics_b.keys()
    for key in metrics_a:
        a, b = float(metrics_a[key]), float(metrics_b[key])
        assert a == b or (a != a and b != b), key  # equal, or both NaN
