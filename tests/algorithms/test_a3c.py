"""A3C (pgrad.algorithms.score_function.a3c): the pushed gradient, the server's version and staleness counts,
the step count, checkpoint and resume, a killed actor-learner's replacement, and learning CartPole (slow).

The actor classes are plain Python classes: the first tests drive them in this process, without Ray."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms.score_function import a2c
from pgrad.algorithms.score_function.a3c import A3C, Config, a2c_config
from pgrad.algorithms.score_function.a3c_actors import ActorLearner, ParameterServer, flat
from pgrad.errors import ConfigError
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.ray_cluster import WorkerSetup
from pgrad.run.seeding import derive_seed

ENV = "CartPole-v1"
QUIET = dict(progress=False, tensorboard=False, eval_episodes=0, log_every=1, checkpoint_every=0)


def worker_setup(workers: int = 2, num_envs: int = 2, seed: int = 0) -> WorkerSetup:
    return WorkerSetup(workers, None, ENV, {}, num_envs, "gymnasium", "a3c", A3C.action_spaces, seed, 1)


def records(run_dir: Path) -> list[dict]:
    """The training records of a run's metrics.jsonl (the final evaluation-only record left out)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "stats/pushes" in r]


# -- in this process ----------------------------------------------------------------------------------------


def reference_gradient(model: torch.nn.Module, rollout, config: Config) -> torch.Tensor:
    """∇ of A2C's loss with n-step targets, written plainly from A3C's options, each network's gradient
    clipped on its own."""
    policy, critic = model["policy"], model["critic"]
    T, N = rollout.rewards.shape
    values = critic(rollout.obs)  # [T, N]
    with torch.no_grad():
        next_values = critic(rollout.next_obs)
    targets = torch.zeros(T, N)
    for n in range(N):
        for t in reversed(range(T)):
            end = t == T - 1 or bool(rollout.terminated[t, n]) or bool(rollout.truncated[t, n])
            later = next_values[t, n] if end else targets[t + 1, n]
            targets[t, n] = (
                rollout.rewards[t, n] + config.gamma * (1.0 - float(rollout.terminated[t, n])) * later
            )
    dist = policy.distribution(rollout.obs)
    advantages = targets - values.detach()
    policy_loss = -(dist.log_prob(rollout.actions) * advantages).mean()
    critic_loss = 0.5 * ((values - targets) ** 2).mean()
    loss = policy_loss + config.vf_coef * critic_loss - config.ent_coef * dist.entropy().mean()
    grads = []
    for net in (policy, critic):
        g = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)
        norm = torch.sqrt(sum((x**2).sum() for x in g))
        scale = min(1.0, config.max_grad_norm / (float(norm) + 1e-6))
        grads += [x * scale for x in g]
    return torch.cat([x.flatten() for x in grads])


@pytest.mark.parametrize("max_grad_norm", [0.3, 100.0])  # the clip on and off
def test_pushed_gradient_is_a2cs_loss_gradient_on_the_same_rollout_and_weights(max_grad_norm):
    options = Config(num_envs=2, num_steps=7, max_grad_norm=max_grad_norm, gamma=0.9, ent_coef=0.05)
    config = a2c_config(options)
    learner = ActorLearner(worker_setup(), config, seed=3)
    learner.build()
    torch.manual_seed(11)  # weights other than the learner's own initial ones
    reference = a2c.make_networks(config, learner.learner.envs, torch.device("cpu"))
    collected = []
    collect = learner.learner.collector.collect
    learner.learner.collector.collect = lambda *a: collected.append(collect(*a)) or collected[-1]
    ends = 0
    for _ in range(4):  # episodes run on across pushes: later rollouts start mid-episode
        grad, version, report = learner.work(flat(list(reference.parameters())), 5)
        rollout = collected[-1]
        assert version == 5 and report["steps"] == 14 == rollout.rewards.numel()
        expected = reference_gradient(reference, rollout, options)
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)
        ends += int(rollout.terminated.sum())
    assert ends > 0  # the targets' cut at an episode's end was exercised


def test_server_applies_pushes_with_the_shared_optimiser_and_counts_versions_and_staleness():
    config = a2c_config(Config())
    envs = worker_setup().make_envs(1)
    torch.manual_seed(0)
    model = a2c.make_networks(config, envs, torch.device("cpu"))
    server = ParameterServer(config, copy.deepcopy(model))
    # the reference: one RMSprop per network over the same gradients, in the order they are applied
    optimizers = a2c.make_optimizers(config, a2c.network_groups(model))
    report = {
        "steps": 10,
        "episode_returns": np.array([9.0]),
        "episode_lengths": np.array([9]),
        "metrics": {"loss/policy": 2.0},
    }
    server.open(3)
    weights, version, admitted = server.pull()
    assert version == 0 and admitted
    grads = [torch.randn_like(weights) for _ in range(4)]
    # pushes computed on versions 0, 0, 1: applied at 0, 1, 2 -> staleness 0, 1, 1
    for g, computed_on, expect_open in zip(grads, (0, 0, 1), (True, True, False), strict=False):
        reply = server.push(g, computed_on, report)
        assert reply is not None and reply[2] == expect_open
        for p, value in zip(
            model.parameters(), g.split([p.numel() for p in model.parameters()]), strict=True
        ):
            p.grad = value.view_as(p)
        for opt in optimizers.values():
            opt.step()
    assert server.push(grads[3], 2, report) is None  # closed: refused and not counted
    out = server.drain()
    assert out["staleness"].tolist() == [0, 1, 1]
    assert out["version"] == 3 and out["pushes"] == 3 and out["steps"] == 30
    assert out["episode_returns"].tolist() == [9.0] * 3 and out["metrics"]["loss/policy"] == 2.0
    torch.testing.assert_close(out["weights"], flat(list(model.parameters())))
    assert server.drain()["pushes"] == 0  # drained


def test_a_refused_gradient_goes_first_when_the_server_opens_again():
    config = a2c_config(Config(num_envs=1, num_steps=3))
    learner = ActorLearner(worker_setup(), config, seed=0)
    learner.build()
    envs = worker_setup().make_envs(1)
    server = ParameterServer(config, a2c.make_networks(config, envs, torch.device("cpu")))
    server.open(1)
    weights, version, _ = server.pull()
    first = learner.work(weights, version)
    second = learner.work(weights, version)
    server.push(*first)
    assert server.push(*second) is None  # the other actor-learner's push, refused at the barrier
    assert server.drain()["steps"] == 3
    server.open(1)
    assert server.push(*second) is not None  # counted now, with its true staleness
    out = server.drain()
    assert out["steps"] == 3 and out["staleness"].tolist() == [1]


def test_actor_learner_seeds_derive_from_the_run_seed_slot_and_generation():
    setup = worker_setup(seed=7)
    envs = setup.make_envs(1)
    envs.setup = setup  # the WorkerEnvs contract: envs.setup is the WorkerSetup
    algo = A3C(Config(), envs, 7, torch.device("cpu"), 1000)
    assert [algo._learner_seed(k) for k in range(2)] == [derive_seed(7, "a3c", k) for k in range(2)]
    algo.generation[1] = 1  # a replacement: a new stream, not a replay of the dead one's
    assert algo._learner_seed(1) == derive_seed(7, "a3c", 1, 1)
    algo.load_state_dict(algo.state_dict())  # a resume: new streams again
    assert algo._learner_seed(0) == derive_seed(7, "a3c", 0, "resume", 0, 0)
    assert len({algo._learner_seed(0), derive_seed(7, "a3c", 0), algo._learner_seed(1)}) == 3


def test_a3c_without_ray_workers_is_refused_in_one_line():
    envs = worker_setup().make_envs(1)
    with pytest.raises(ConfigError, match="a3c runs its actor-learners on Ray"):
        A3C(Config(), envs, 0, torch.device("cpu"), 1000)


# -- on a local Ray: one run serves these tests (actors take seconds to start) -------------------------------


def test_num_envs_is_per_actor_learner_and_k_defaults_to_two(local_ray, tmp_path):
    """The paper's one env per actor-learner with the default K = 2: the run's envs are K · num_envs (a total
    of num_envs would not split over two workers); nothing starts before the first iteration, and the run's
    end stops its actors even while the caller still holds the trainer (Algorithm.close)."""
    from pgrad.run.config import RunConfig
    from pgrad.run.trainer import Trainer

    run = RunConfig(env="CartPole-v1", total_steps=10, run_dir=str(tmp_path / "r"), **QUIET)
    trainer = Trainer(A3C, Config(num_envs=1, pushes_per_iteration=2), run)
    assert trainer.envs.setup.workers == 2 and trainer.envs.setup.num_envs == 2
    assert trainer.envs.num_envs == 2 and trainer.algo.server is None
    trainer.run()
    mine = f"pgrad-a3c-{trainer.algo.run_id}-"
    for _ in range(50):  # ray.kill is asynchronous
        if not [n for n in local_ray.util.list_named_actors() if n.startswith(mine)]:
            break
        time.sleep(0.1)
    assert not [n for n in local_ray.util.list_named_actors() if n.startswith(mine)]


@pytest.fixture(scope="module")
def killed_and_resumed(local_ray, tmp_path_factory):
    """2 workers train 1,600 steps (10 per push, 20 pushes per iteration) and actor-learner 0 is killed during
    the iteration after the first evaluation; the run then resumes with 1 worker to 2,000 steps.
    Returns the checkpoint the resume started from, the records before and after it, and the killed actors'
    names."""
    ray = local_ray
    run = tmp_path_factory.mktemp("a3c") / "r"
    killed: list[str] = []

    def kill_learner_0(_: dict) -> None:
        def kill() -> None:
            name = next(n for n in ray.util.list_named_actors() if n.endswith("-learner0-g0"))
            ray.kill(ray.get_actor(name))
            killed.append(name)

        if not killed:  # during the next iteration, most likely mid-rollout
            threading.Timer(0.05, kill).start()

    options = dict(num_envs=2, num_steps=5, pushes_per_iteration=20, seed=0, run_dir=str(run), **QUIET)
    options.update(eval_every=400, eval_episodes=1)
    pgrad.train("a3c", ENV, total_steps=1600, workers=2, on_evaluation=kill_learner_0, **options)
    before = records(run)
    checkpoint = latest_checkpoint(run / "checkpoints")
    pgrad.resume(run, total_steps=2000, workers=1)
    return checkpoint, before, records(run)[len(before) :], killed


def test_two_workers_push_stale_gradients_at_times_one_worker_never(killed_and_resumed):
    _, before, after, _ = killed_and_resumed
    assert all(r["stats/staleness_max"] >= 0 for r in before)
    assert max(r["stats/staleness_max"] for r in before) >= 1  # two workers: some pushes were stale
    assert len(after) == 2 and all(r["stats/staleness_max"] == 0 for r in after)  # one worker: never


def test_global_step_is_the_steps_of_the_applied_pushes_through_a_kill_and_a_resume(killed_and_resumed):
    _, before, after, _ = killed_and_resumed
    assert all(r["stats/pushes"] == 20 for r in before + after)
    assert before[-1]["global_step"] == 1600 == sum(r["stats/pushes"] for r in before) * 2 * 5
    assert after[-1]["global_step"] == 2000 == 1600 + sum(r["stats/pushes"] for r in after) * 2 * 5
    assert [r["stats/version"] for r in before] == list(range(20, 161, 20))


def test_a_killed_actor_learner_is_replaced_and_every_actor_ends_with_the_run(killed_and_resumed, local_ray):
    ray = local_ray
    _, before, after, killed = killed_and_resumed
    assert len(killed) == 1
    assert before[-1]["stats/worker_restarts"] == 1 and after[-1]["stats/worker_restarts"] == 0  # per process
    for _ in range(50):  # ray.kill is asynchronous
        if not [n for n in ray.util.list_named_actors() if n.startswith("pgrad-a3c-")]:
            break
        time.sleep(0.1)
    assert not [n for n in ray.util.list_named_actors() if n.startswith("pgrad-a3c-")]


def test_a_checkpoint_holds_the_shared_state_and_a_resume_continues_from_it(killed_and_resumed):
    checkpoint, _, after, _ = killed_and_resumed
    state, step = load_checkpoint(checkpoint)
    assert step == 1600 and state["algorithm"]["version"] == 160
    optimiser = state["algorithm"]["optimizers"]["policy"]["state"]  # the shared RMSprop's running averages
    assert optimiser and all(float(s["square_avg"].abs().sum()) > 0 for s in optimiser.values())
    shared = {
        k[len("policy.") :]: v for k, v in state["algorithm"]["model"].items() if k.startswith("policy.")
    }
    assert shared.keys() == state["policy"]["weights"].keys()  # the evaluated policy is the shared one
    assert all(torch.equal(shared[k], state["policy"]["weights"][k]) for k in shared)
    assert [r["stats/version"] for r in after] == [180, 200]  # the server restarted at version 160


# -- learning (slow) ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_two_workers_reach_475_on_cartpole_within_500k_steps_on_4_of_5_seeds(tmp_path):
    rows = []
    for seed in range(5):
        start = time.perf_counter()
        result = pgrad.train(
            "a3c", ENV, total_steps=500_000, workers=2, seed=seed, run_dir=str(tmp_path / f"s{seed}"),
            eval_every=10_000, eval_episodes=20, target_return=475, checkpoint_every=0, checkpoint_minutes=0,
            progress=False, tensorboard=False,
        )  # fmt: skip
        rows.append((seed, result["global_step"], result["eval"]["mean_return"], time.perf_counter() - start))
        print(rows[-1])
    assert sum(ret >= 475 for _, _, ret, _ in rows) >= 4, rows
