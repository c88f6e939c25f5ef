"""NPG and TRPO: the step is δ-scaled F⁻¹g; TRPO's accepted steps respect the KL bound."""

import gymnasium as gym
import pytest
import torch

import pgrad
from pgrad.algorithms.score_function import npg, trpo
from pgrad.envs.gym import GymVecEnv
from pgrad.run.seeding import seed_everything

QUIET = {"progress": False, "tensorboard": False}


def make(cls, config_cls, **options):
    seed_everything(0)
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=30), num_envs=2)
    config = config_cls(num_envs=2, num_steps=64, hidden_sizes=(4,), **options)
    return cls(config, envs, seed=0, device=torch.device("cpu"), total_steps=10_000)


def explicit_fisher(policy, params, obs, damping):
    """F = mean_s Σ_a π(a|s) ∇log π(a|s) ∇log π(a|s)ᵀ + damping·I, from per-(s, a) score vectors."""
    probs = policy.distribution(obs).probs.detach()
    F = 0.0
    for a in range(probs.shape[1]):
        log_prob = policy.distribution(obs).log_prob(torch.full((len(obs),), a))
        scores = torch.stack(
            [
                torch.cat([g.flatten() for g in torch.autograd.grad(log_prob[i], params, retain_graph=True)])
                for i in range(len(obs))
            ]
        ).double()
        F = F + (probs[:, a, None, None].double() * scores[:, :, None] * scores[:, None, :]).mean(0)
    return F + damping * torch.eye(F.shape[0], dtype=torch.float64)


def test_npg_step_is_the_natural_gradient_scaled_to_the_kl_radius(monkeypatch):
    damping, max_kl = 1e-2, 0.01
    algo = make(npg.NPG, npg.Config, cg_iterations=80, cg_damping=damping, max_kl=max_kl)
    rollout = algo.collector.collect(algo.policy, 64)
    monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)
    obs = rollout.obs.flatten(0, 1)
    F = explicit_fisher(algo.policy, algo.params, obs, damping)
    captured = {}
    original = algo._natural_direction

    def spy(*args):  # the surrogate's gradient at θ_old, computed independently of the algorithm
        surrogate = algo._surrogate(*args)
        captured["g"] = torch.cat([g.flatten() for g in torch.autograd.grad(surrogate, algo.params)]).double()
        return original(*args)

    monkeypatch.setattr(algo, "_natural_direction", spy)
    before = torch.cat([p.detach().flatten() for p in algo.params])
    metrics = algo.iteration(0).metrics
    step = (torch.cat([p.detach().flatten() for p in algo.params]) - before).double()
    x = torch.linalg.solve(F, captured["g"])
    assert float(x @ step / (x.norm() * step.norm())) > 0.999  # direction F⁻¹g
    assert 0.5 * float(step @ F @ step) == pytest.approx(max_kl, rel=0.05)  # quadratic KL model = δ
    assert metrics["stats/approx_kl"] == pytest.approx(max_kl, rel=0.5)  # the true KL is close to it


def test_trpo_never_exceeds_the_kl_bound_and_can_reject():
    algo = make(trpo.TRPO, trpo.Config, max_kl=0.005)
    for i in range(4):
        metrics = algo.iteration(i).metrics
        assert metrics["stats/approx_kl"] <= 0.005 + 1e-7
        if metrics["stats/line_search_accepted"] == 0:
            assert metrics["stats/approx_kl"] == 0.0


def test_trpo_learns_cartpole_quickly(tmp_path):
    summary = pgrad.train(
        "trpo",
        "CartPole-v1",
        total_steps=20_000,
        seed=0,
        run_dir=str(tmp_path),
        eval_episodes=10,
        eval_every=0,
        **QUIET,
    )
    assert summary["eval"]["mean_return"] > 150, summary["eval"]


def test_tanh_gaussian_is_refused_for_natural_gradients():
    with pytest.raises(pgrad.ConfigError):
        pgrad.train("npg", "Pendulum-v1", policy="tanh_gaussian", total_steps=10, **QUIET)
