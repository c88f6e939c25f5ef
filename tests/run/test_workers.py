"""Distributed rollouts on Ray (`pgrad.run.workers`): one worker equals local sampling bitwise, K workers
start where a local run starts, resumes change K freely, a killed worker is replaced without losing or
double-counting steps, errors come back as one line, and `pgrad train` without --workers never imports Ray.

Every test here that starts actors requests the session's `local_ray` (2 CPUs)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.cli import main
from pgrad.envs.make import make_env
from pgrad.envs.toy import FaultyEnv
from pgrad.errors import ConfigError, EnvError
from pgrad.policies.networks import Policy
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.logger import read_metrics
from pgrad.run.ray_cluster import WorkerSetup
from pgrad.run.rollout import StepCollector, collect_episodes
from pgrad.run.workers import WorkerEnvs, sub_env_seeds

QUIET = {"progress": False, "tensorboard": False}
# Fields that depend on the wall clock (or on where the run was sampled), not on what was learned.
CLOCK = {"time", "charts/sps", "stats/worker_restarts"}


def tensors_of(tree, prefix=""):
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from tensors_of(v, f"{prefix}/{k}")
    elif isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            yield from tensors_of(v, f"{prefix}/{i}")


def assert_same_run(a: Path, b: Path) -> None:
    """Same final checkpoint (every tensor bitwise, trainer counters) and same metrics but for the clock.
    A local run's checkpoint also holds its envs' state (workers keep theirs): that part is not compared."""
    (state_a, step_a), (state_b, step_b) = (
        load_checkpoint(latest_checkpoint(d / "checkpoints")) for d in (a, b)
    )
    assert step_a == step_b
    state_a.pop("envs"), state_b.pop("envs")
    ta, tb = dict(tensors_of(state_a)), dict(tensors_of(state_b))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    ca, cb = dict(state_a["trainer"]), dict(state_b["trainer"])
    ca.pop("wall_time"), cb.pop("wall_time")
    assert ca == cb
    ma = [{k: v for k, v in r.items() if k not in CLOCK} for r in read_metrics(a)]
    mb = [{k: v for k, v in r.items() if k not in CLOCK} for r in read_metrics(b)]
    assert ma == mb and len(ma) >= 6


def setup_of(workers: int, num_envs: int, env: str = "CartPole-v1", seed: int = 0, **kw) -> WorkerSetup:
    return WorkerSetup(
        workers=workers,
        address=None,
        env=env,
        env_kwargs=kw.pop("env_kwargs", {}),
        num_envs=num_envs,
        backend=kw.pop("backend", "gymnasium"),
        algorithm="ppo",
        action_spaces=(spaces.Discrete, spaces.Box),
        seed=seed,
    )


# -- one worker is local sampling ---------------------------------------------------------------------------
def test_one_worker_equals_local_sampling_bitwise_ppo(tmp_path, local_ray):
    # PPO's CartPole preset (8 envs × 32 steps): 8 iterations, two evaluations, normalised observations.
    common = dict(total_steps=2048, eval_every=1024, eval_episodes=2, seed=3, normalize_obs=True, log_every=1)
    common.update(QUIET)
    pgrad.train("ppo", "CartPole-v1", run_dir=str(tmp_path / "local"), **common)
    summary = pgrad.train("ppo", "CartPole-v1", run_dir=str(tmp_path / "w1"), workers=1, **common)
    assert summary["global_step"] == 2048
    assert_same_run(tmp_path / "local", tmp_path / "w1")
    records = read_metrics(tmp_path / "w1")
    assert all(r["stats/worker_restarts"] == 0 for r in records if "iteration" in r)


def test_one_worker_equals_local_sampling_bitwise_grpo_groups(tmp_path, local_ray):
    # collect_episodes with per-sub-env seeds (2 groups of 2 sharing a start state), 1 episode per sub-env.
    common = dict(total_steps=1200, eval_every=600, eval_episodes=2, seed=1, num_groups=2, group_size=2)
    common.update(log_every=1, **QUIET)
    pgrad.train("grpo", "CartPole-v1", run_dir=str(tmp_path / "local"), **common)
    pgrad.train("grpo", "CartPole-v1", run_dir=str(tmp_path / "w1"), workers=1, **common)
    assert_same_run(tmp_path / "local", tmp_path / "w1")


# -- K workers ----------------------------------------------------------------------------------------------
def test_two_workers_start_from_the_local_start_states_and_concatenate_in_order(local_ray):
    envs = WorkerEnvs(setup_of(2, 4))
    local = make_env("CartPole-v1", 4)
    try:
        torch.manual_seed(0)
        policy = Policy(envs.obs_dim, envs.single_action_space)
        collector = StepCollector(envs, seed=123, count_steps=True)
        rollout = collector.collect(policy, 5)
        assert rollout.obs.shape == (5, 4, 4) and rollout.mask.all()
        assert torch.equal(rollout.obs[0], local.reset(seed=123))  # sub-envs 2, 3 on worker 1 included
        assert torch.equal(rollout.start_step, torch.zeros(4, dtype=torch.long))
        assert envs.global_step == 20
        # The learner keeps the concatenated last observations (the collector's state keeps its shapes) ...
        assert collector.obs.shape == (4, 4) and collector.episode_step.shape == (4,)
        assert torch.equal(collector.obs, rollout.next_obs[-1])  # no episode of CartPole ends in 5 steps
        assert torch.equal(collector.episode_step, torch.full((4,), 5))
        # ... and the next rollout continues the workers' episodes, not new ones.
        again = collector.collect(policy, 2)
        assert torch.equal(again.obs[0], rollout.next_obs[-1])
        assert torch.equal(again.start_step, torch.full((4,), 5))
        assert envs.global_step == 28

        # Whole episodes with group seeds: each worker resets its sub-envs with their own share of the seeds.
        seeds = [11, 11, 12, 12]
        batch = collect_episodes(envs, policy, 1, seeds)
        assert torch.equal(batch.obs[0], local.reset(seed=seeds))
        assert torch.equal(batch.obs[0, 0], batch.obs[0, 1]) and torch.equal(batch.obs[0, 2], batch.obs[0, 3])
        lengths = batch.episode_lengths
        assert len(lengths) == 4 and batch.mask.sum() == lengths.sum()
        # Each worker ran until its own two episodes ended; the shorter batch is padded (masked, terminated).
        per_worker = [int(lengths[:2].max()), int(lengths[2:].max())]
        assert batch.num_steps == max(per_worker)
        for k, T in enumerate(per_worker):
            cols = slice(2 * k, 2 * k + 2)
            assert batch.terminated[T:, cols].all() and not batch.mask[T:, cols].any()
        assert envs.global_step == 28 + 2 * sum(per_worker)  # the steps each worker took, padding not

        # Worker 1 samples from its own stream: sub-envs 0 and 2 start alike, their actions differ.
        batch = collect_episodes(envs, policy, 1, [5, 6, 5, 6])
        assert torch.equal(batch.obs[0, :2], batch.obs[0, 2:])
        T = int(batch.episode_lengths.min())
        assert not torch.equal(batch.actions[:T, 0], batch.actions[:T, 2])

        # Another policy (IS-PG acts with a lagged copy): its module crosses once, each collect its weights.
        other = Policy(envs.obs_dim, envs.single_action_space)
        for acting in (other, policy, other):
            with torch.no_grad():
                next(acting.parameters()).add_(0.5)  # new weights since the last collect
            part = collector.collect(acting, 3)
            with torch.no_grad():
                expected = acting.distribution(part.obs).log_prob(part.actions)
            torch.testing.assert_close(part.log_probs, expected, rtol=0, atol=1e-6)
    finally:
        envs.close()
        local.close()


def test_reset_seeds_are_the_local_runs(local_ray):
    # K = 1 passes the seed as a local run does (a native twin seeds one generator with it); K = 2 slices
    # the per-sub-env seeds a local Gymnasium run derives. No actor starts for this.
    one = WorkerEnvs(setup_of(1, 4, backend="native"))
    two = WorkerEnvs(setup_of(2, 4))
    local = sub_env_seeds(7, 4)
    assert local == [int(s) for s in np.random.SeedSequence(7).generate_state(4)]
    assert one._seed_shares(7) == [7] and one._seed_shares([1, 2, 3, 4]) == [[1, 2, 3, 4]]
    assert two._seed_shares(7) == [local[:2], local[2:]]
    assert two._seed_shares([1, 1, 2, 2]) == [[1, 1], [2, 2]]
    assert not one._actors and not two._actors

    # A worker's exception (Ray wraps it; `.cause` is the original) comes back as one line naming the worker.
    class Wrapped(Exception):
        def __init__(self, cause):
            self.cause = cause

    own = two._unwrap(1, Wrapped(ValueError("the physics exploded\ntraceback line")))
    assert type(own) is EnvError
    assert str(own) == "worker 1 of 2 (sub-envs 2-3), env 'CartPole-v1': ValueError: the physics exploded"
    ours = two._unwrap(0, Wrapped(ConfigError("bad option")))
    assert type(ours) is ConfigError and str(ours) == "worker 0 of 2 (sub-envs 0-1): bad option"


# -- resume -------------------------------------------------------------------------------------------------
def test_a_worker_run_resumes_with_another_k_and_without_workers(tmp_path, local_ray):
    run = tmp_path / "run"
    common = dict(eval_every=1024, eval_episodes=2, checkpoint_every=512, seed=2, **QUIET)
    first = pgrad.train("ppo", "CartPole-v1", run_dir=str(run), total_steps=768, workers=2, **common)
    assert first["global_step"] == 768
    assert pgrad.resume(run, total_steps=1536, workers=1, progress=False)["global_step"] == 1536
    # back on this machine through the command line's --workers 0
    assert main(["resume", str(run), "--total-steps", "2048", "--workers", "0", "--no-progress"]) == 0
    steps = [r["global_step"] for r in read_metrics(run) if "iteration" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 2048
    # The worker runs' checkpoints hold no env state (it stays in the actors): each resume restarted episodes.
    state, _ = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert state["trainer"]["iteration"] == 8


# -- worker death -------------------------------------------------------------------------------------------
def test_a_killed_worker_is_replaced_and_no_step_is_lost_or_counted_twice(tmp_path, local_ray, monkeypatch):
    made: list[WorkerEnvs] = []
    init = WorkerEnvs.__init__

    def recording(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(WorkerEnvs, "__init__", recording)
    killed = []
    seen = {}  # global step -> (generation, env steps) of each slot's actor

    def kill_worker_1(result):
        if killed:
            seen[result["global_step"]] = [
                local_ray.get(actor.__ray_call__.remote(lambda w: (w.generation, w.envs.global_step)))
                for actor in made[0]._actors
            ]
            return
        actor = made[0]._actors[1]
        local_ray.kill(actor)
        for _ in range(300):  # ray.kill is asynchronous: wait until the actor is gone (a call fails)
            try:
                local_ray.get(actor.__ray_ready__.remote(), timeout=30)
            except local_ray.exceptions.RayActorError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("actor 1 still alive 30 s after ray.kill")
        killed.append(result["global_step"])

    summary = pgrad.train(
        "ppo",
        "CartPole-v1",
        run_dir=str(tmp_path / "r"),
        total_steps=1536,
        eval_every=512,
        eval_episodes=1,
        workers=2,
        seed=0,
        on_evaluation=kill_worker_1,
        **QUIET,
    )
    assert killed == [512]
    assert summary["global_step"] == summary["iterations"] * 256 == 1536  # 8 envs × 32 steps each
    records = [r for r in read_metrics(tmp_path / "r") if "iteration" in r]
    assert {r["stats/worker_restarts"] for r in records if r["global_step"] <= 512} == {0}
    assert records[-1]["stats/worker_restarts"] == 1
    assert made[0].restarts == 1 and made[0]._generation == [0, 1]
    # The replacement collected slot 1's share from step 512 on (4 sub-envs × 32 steps an iteration).
    assert seen[1024] == [(0, 4 * 32 * 4), (1, 4 * 32 * 2)]
    assert seen[1536] == [(0, 4 * 32 * 6), (1, 4 * 32 * 4)]


# -- errors -------------------------------------------------------------------------------------------------
def test_workers_must_divide_num_envs():
    with pytest.raises(ConfigError, match=r"--workers 3 must divide num_envs 8"):
        WorkerEnvs(setup_of(3, 8))


def test_more_workers_than_cpus_is_refused_in_one_line(tmp_path, local_ray):
    with pytest.raises(ConfigError, match=r"--workers 4 needs 4 CPUs, the Ray cluster has 2"):
        pgrad.train("ppo", "CartPole-v1", run_dir=str(tmp_path / "r"), total_steps=512, workers=4, **QUIET)


def test_algorithms_that_do_not_sample_on_workers_refuse_them(tmp_path):
    with pytest.raises(ConfigError, match=r"sac does not run on Ray workers \(--workers 2\)"):
        pgrad.train("sac", "Pendulum-v1", run_dir=str(tmp_path / "r"), total_steps=512, workers=2, **QUIET)


@pytest.mark.filterwarnings("ignore::pgrad.errors.PgradWarning")  # FaultyEnv has no time limit
def test_an_env_error_in_a_worker_names_the_worker_and_the_sub_env(tmp_path, local_ray):
    with pytest.raises(EnvError) as info:
        pgrad.train(
            "ppo",
            FaultyEnv,  # a callable: Ray pickles it by reference for the workers
            env_kwargs={"at_step": 3},
            run_dir=str(tmp_path / "r"),
            total_steps=512,
            num_envs=2,
            num_steps=8,
            num_minibatches=1,
            workers=1,
            **QUIET,
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("worker 0 of 1 (sub-envs 0-1): env 'FaultyEnv', sub-env 0, global step 6: ")
    assert "reward is not finite" in message


def test_only_the_rollout_algorithms_declare_workers():
    from pgrad.algorithms import get_algorithm

    for name in ("reinforce", "vpg", "a2c", "npg", "trpo", "ppo", "grpo", "rloo", "is_pg"):
        assert get_algorithm(name).workers == "rollouts", name
    assert get_algorithm("sac").workers == "none"


@pytest.mark.slow  # ~10 s: the policy-key caching it relies on is checked in the default suite above
def test_is_pg_samples_on_workers(tmp_path, local_ray):
    summary = pgrad.train(
        "is_pg",
        "CartPole-v1",
        run_dir=str(tmp_path / "r"),
        total_steps=600,
        num_envs=2,
        episodes_per_update=4,
        workers=2,
        eval_episodes=1,
        **QUIET,
    )
    assert summary["global_step"] >= 600


def test_train_without_workers_never_imports_ray(tmp_path):
    run = str(tmp_path / "r")
    code = (
        "import sys, json\n"
        "from pgrad.cli import main\n"
        f"main(['train', 'ppo', '--env', 'CartPole-v1', '--total-steps', '256', '--run-dir', {run!r},"
        " '--eval-episodes', '1', '--no-progress', '--no-tensorboard'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# -- learning -----------------------------------------------------------------------------------------------
def test_two_workers_train_ppo_to_solve_cartpole(tmp_path, local_ray):
    summary = pgrad.train(
        "ppo",
        "CartPole-v1",
        run_dir=str(tmp_path / "r"),
        total_steps=150_000,
        workers=2,
        seed=0,
        eval_every=5_000,
        eval_episodes=10,
        target_return=475,
        **QUIET,
    )
    assert summary["target_reached"], summary["eval"]
    assert summary["eval"]["mean_return"] >= 475 and summary["global_step"] <= 150_000
    assert np.isfinite(summary["wall_time"])


def test_an_unreachable_ray_address_is_refused_in_one_line_at_once():
    """Ray itself retries a head nobody listens on for minutes; pgrad checks the port first (5 s at most)."""
    from pgrad.run.ray_cluster import _check_reachable

    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"no Ray cluster answers at --ray-address '127\.0\.0\.1:1'"):
        _check_reachable("127.0.0.1:1", "--workers")
    assert time.monotonic() - start < 10
    _check_reachable("auto", "--workers")  # left to Ray: the cluster this machine belongs to
