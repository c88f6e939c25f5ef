"""PPO: the first step is the score-function estimate with correctly bootstrapped GAE; options work."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms.score_function.ppo import PPO, Config
from pgrad.envs.gym import GymVecEnv
from pgrad.run.seeding import seed_everything

QUIET = {"progress": False, "tensorboard": False}


def make_algo(**options):
    seed_everything(0)
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=12), num_envs=3)
    config = Config(num_envs=3, num_steps=20, hidden_sizes=(8,), **options)
    return PPO(config, envs, seed=0, device=torch.device("cpu"), total_steps=10_000)


def plain_gae(rollout, value, gamma, lam):
    """GAE env by env, step by step, bootstrapping truncations from V(final observation)."""
    T, N = rollout.rewards.shape
    adv = torch.zeros(T, N)
    with torch.no_grad():
        for n in range(N):
            running = 0.0
            for t in reversed(range(T)):
                v = value(rollout.obs[t, n][None])[0].item()
                v_next = value(rollout.next_obs[t, n][None])[0].item()
                term, trunc = bool(rollout.terminated[t, n]), bool(rollout.truncated[t, n])
                if term:
                    delta, running = rollout.rewards[t, n].item() - v, 0.0
                elif trunc or t == T - 1:
                    delta, running = rollout.rewards[t, n].item() + gamma * v_next - v, 0.0
                else:
                    delta = rollout.rewards[t, n].item() + gamma * v_next - v
                running = delta + gamma * lam * running
                adv[t, n] = running
    return adv


def test_first_step_is_the_score_function_estimate_with_bootstrapped_gae(monkeypatch):
    algo = make_algo(
        update_epochs=1,
        num_minibatches=1,
        optimizer="sgd",
        lr=1.0,
        anneal_lr=False,
        max_grad_norm=0.0,
        vf_coef=0.0,
        normalize_advantages=False,
    )
    with torch.no_grad():  # a value function far from zero, so bootstrapping errors show
        for p in algo.value.parameters():
            p.add_(torch.randn_like(p))
    rollout = algo.collector.collect(algo.policy, 20)
    assert rollout.truncated.any() and rollout.terminated.any()
    monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)
    adv = plain_gae(rollout, algo.value, algo.config.gamma, algo.config.gae_lambda).flatten()
    params = list(algo.policy.parameters())
    log_prob = algo.policy.distribution(rollout.obs.flatten(0, 1)).log_prob(rollout.actions.flatten(0, 1))
    expected = torch.cat([g.flatten() for g in torch.autograd.grad((log_prob * adv).mean(), params)])
    before = torch.cat([p.detach().flatten() for p in params])
    algo.iteration(0)
    after = torch.cat([p.detach().flatten() for p in params])
    torch.testing.assert_close(after - before, expected, rtol=1e-4, atol=1e-6)


def test_truncation_is_not_a_terminal(monkeypatch):
    """The same rollout with a truncation relabelled as termination must change the advantages."""
    algo = make_algo()
    rollout = algo.collector.collect(algo.policy, 20)
    with torch.no_grad():
        for p in algo.value.parameters():
            p.add_(torch.randn_like(p))
    a = plain_gae(rollout, algo.value, 0.99, 0.95)
    rollout.terminated, rollout.truncated = (
        rollout.terminated | rollout.truncated,
        torch.zeros_like(rollout.truncated),
    )
    b = plain_gae(rollout, algo.value, 0.99, 0.95)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize(
    "options",
    [
        {"loss": "kl"},
        {"clip_vloss": True, "target_kl": 1e-12},
        {"optimizer": "muon"},
        {"optimizer": "laprop"},
        {"anneal_clip": True, "ent_coef": 0.01},
    ],
)
def test_options_run(options):
    algo = make_algo(**options)
    for i in range(2):
        metrics = algo.iteration(i).metrics
    assert all(np.isfinite(v) for k, v in metrics.items() if k != "stats/explained_variance")
    if options.get("target_kl"):
        assert metrics["stats/epochs"] == 1  # stopped after the first epoch
    if options.get("loss") == "kl":
        assert metrics["stats/kl_beta"] in (0.25, 0.5, 1.0, 2.0, 4.0)  # β halves or doubles per iteration


def test_continuous_with_normalisation(tmp_path):
    summary = pgrad.train(
        "ppo",
        "Pendulum-v1",
        total_steps=2048,
        run_dir=str(tmp_path),
        num_envs=2,
        num_steps=256,
        normalize_obs=True,
        normalize_reward=True,
        eval_episodes=2,
        preset=False,  # PPO's defaults: the Pendulum preset's 64 minibatches x 10 epochs take 10x longer
        **QUIET,
    )
    assert np.isfinite(summary["eval"]["mean_return"])
    agent = pgrad.load(tmp_path)
    assert agent.policy.normalizer is not None and agent.policy.normalizer.count > 0


def test_learns_cartpole_quickly(tmp_path):
    # pgrad's CartPole preset (rl-zoo's settings, lr 4e-3) solves in 5-10k steps on most seeds
    summary = pgrad.train(
        "ppo",
        "CartPole-v1",
        total_steps=10_000,
        seed=0,
        run_dir=str(tmp_path),
        eval_episodes=10,
        eval_every=0,
        **QUIET,
    )
    assert summary["eval"]["mean_return"] > 300, summary["eval"]


def test_compiled_loss_matches_eager_in_one_graph():
    # --compile: the same updates as eager (to float32 rounding) from one compiled graph for the whole run,
    # although the clip range anneals every iteration (a float would be compiled in as a constant: a
    # recompile per iteration).
    import torch._dynamo

    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    options = {"num_minibatches": 2, "update_epochs": 2, "anneal_clip": True, "clip_vloss": True}
    eager = make_algo(**options)
    eager_metrics = [eager.iteration(i).metrics for i in range(3)]
    compiled = make_algo(compile=True, **options)
    compiled_metrics = [compiled.iteration(i).metrics for i in range(3)]
    for a, b in zip(eager.model.parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for e, c in zip(eager_metrics, compiled_metrics, strict=True):
        assert e["stats/clip_coef"] == c["stats/clip_coef"]
        assert e["stats/clip_fraction"] == pytest.approx(float(c["stats/clip_fraction"]), abs=1e-6)
    assert eager_metrics[-1]["stats/clip_coef"] < eager_metrics[0]["stats/clip_coef"]
    assert counters["stats"]["unique_graphs"] == 1


def test_a_compiler_failure_is_one_clear_error(monkeypatch):
    def broken(fn):
        def call(*args, **kwargs):
            raise RuntimeError("InductorError: no C++ compiler found\nlong traceback text")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    algo = make_algo(compile=True)
    with pytest.raises(pgrad.errors.ConfigError, match=r"^--compile: torch.compile could not .*no C\+\+"):
        algo.iteration(0)
