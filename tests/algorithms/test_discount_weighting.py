"""--discount-weighting in REINFORCE, VPG and A2C: step t's score-function term gets γᵗ, t counted from the
start of its episode (across the rollouts of VPG and A2C, whose episodes run on from one update into the
next); the update changes with it when γ < 1 and is bit for bit the same when γ = 1."""

import gymnasium as gym
import pytest
import torch

from pgrad.algorithms import get_algorithm
from pgrad.algorithms.score_function import a2c as a2c_module
from pgrad.algorithms.score_function import reinforce as reinforce_module
from pgrad.algorithms.score_function import vpg as vpg_module
from pgrad.envs.gym import GymVecEnv
from pgrad.run.rollout import collect_episodes
from pgrad.run.seeding import seed_everything

MODULES = {"reinforce": reinforce_module, "vpg": vpg_module, "a2c": a2c_module}
SIZES = {
    "reinforce": {"episodes_per_update": 6, "baseline": "mean"},
    "reinforce-optimal": {"episodes_per_update": 6, "baseline": "optimal"},
    "vpg": {"steps_per_epoch": 30, "value_iters": 0, "normalize_advantages": True},
    "a2c": {"num_steps": 5, "max_grad_norm": 0.0},  # 5 steps: episodes span many rollouts
}


def build(case, **options):
    seed_everything(0)
    # A short time limit so episodes end by termination and by truncation within a few rollouts.
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=12), num_envs=3)
    cls = get_algorithm(case.split("-")[0])
    config = cls.Config(num_envs=3, hidden_sizes=(8,), optimizer="sgd", lr=1.0, **{**SIZES[case], **options})
    return cls(config, envs, seed=0, device=torch.device("cpu"), total_steps=10_000)


def fixed_rollout(case):
    """A rollout from a fresh instance; for VPG and A2C the third one, whose rows 0 continue episodes."""
    algo = build(case, discount_weighting=True)  # its collector counts the steps of continued episodes
    if case.startswith("reinforce"):
        return collect_episodes(algo.envs, algo.policy, 2, seed=123)
    steps = algo.config.num_steps if case == "a2c" else algo.num_steps
    for _ in range(3):
        rollout = algo.collector.collect(algo.policy, steps)
    assert (rollout.start_step > 0).any()  # some episode began in an earlier rollout
    return rollout


def plain_time(rollout):
    """Each step's index in its episode, counted in a loop from the rollout's start_step."""
    T, N = rollout.rewards.shape
    start = [0] * N if rollout.start_step is None else rollout.start_step.tolist()
    time = torch.zeros(T, N, dtype=torch.long)
    for n in range(N):
        t = start[n]
        for k in range(T):
            time[k, n] = t
            t = 0 if rollout.terminated[k, n] or rollout.truncated[k, n] else t + 1
    return time


def one_update(case, rollout, monkeypatch, **options):
    """(change of the policy parameters, advantages given to score_function_loss) of one iteration."""
    algo = build(case, **options)
    module = MODULES[case.split("-")[0]]
    if case.startswith("reinforce"):
        monkeypatch.setattr(module, "collect_episodes", lambda *a, **k: rollout)
    else:
        monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)
    seen = []
    real = module.score_function_loss if hasattr(module, "score_function_loss") else None

    def spy(log_prob, advantages, *args, **kwargs):
        seen.append(advantages.detach().clone())
        return real(log_prob, advantages, *args, **kwargs)

    if real is not None:
        monkeypatch.setattr(module, "score_function_loss", spy)
    before = torch.cat([p.detach().flatten() for p in algo.policy.parameters()])
    algo.iteration(0)
    after = torch.cat([p.detach().flatten() for p in algo.policy.parameters()])
    return after - before, (seen[0] if seen else None)


@pytest.mark.parametrize("case", sorted(SIZES))
def test_gamma_t_weights_each_step_by_its_time_in_the_episode(case, monkeypatch):
    rollout = fixed_rollout(case)
    gamma = 0.9
    plain, adv = one_update(case, rollout, monkeypatch, gamma=gamma)
    weighted, adv_weighted = one_update(case, rollout, monkeypatch, gamma=gamma, discount_weighting=True)
    assert not torch.allclose(weighted, plain, rtol=1e-3, atol=1e-6)  # a different gradient
    if adv is not None:  # Ψ_t becomes γᵗ Ψ_t, t counted across rollouts
        mask = rollout.mask
        expected = adv * (gamma ** plain_time(rollout).double())[mask].flatten().to(adv.dtype)
        torch.testing.assert_close(adv_weighted, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", sorted(SIZES))
def test_with_gamma_one_the_weighting_changes_nothing(case, monkeypatch):
    rollout = fixed_rollout(case)
    plain, _ = one_update(case, rollout, monkeypatch, gamma=1.0)
    weighted, _ = one_update(case, rollout, monkeypatch, gamma=1.0, discount_weighting=True)
    assert torch.equal(weighted, plain)
