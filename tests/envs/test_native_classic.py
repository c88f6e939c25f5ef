"""The native twins of Acrobot-v1, Pendulum-v1, MountainCar-v0 and MountainCarContinuous-v0 against Gymnasium.

Lock-step: the Gymnasium env is put in the twin's state and both take the same actions for hundreds of steps
across episode ends (terminations, the time limit), with every clip exercised (Acrobot's velocity bounds,
out-of-range torques and forces, the speed limits, MountainCar's left wall). The lock-step re-syncs the state
before every step: Acrobot is chaotic, and torch's cos/sin differ from libm's by an ulp in about 0.1% of
calls, which Acrobot amplifies to 1e-5 within a few hundred steps. MountainCar-v0 and Pendulum-v1 (not
chaotic) also run free, synced only at episode starts. Then the VecEnv contract: same-step autoreset,
seeding, bad actions, checkpoints, dtype and device, training on a twin, evaluating on Gymnasium's env.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.acrobot import wrap as gym_wrap

import pgrad
from pgrad.envs.base import StepResult
from pgrad.envs.make import make_env
from pgrad.envs.native import (
    AcrobotVecEnv,
    MountainCarContinuousVecEnv,
    MountainCarVecEnv,
    NativeVecEnv,
    PendulumVecEnv,
)
from pgrad.envs.native.acrobot import MAX_VEL_1, MAX_VEL_2, wrap
from pgrad.errors import EnvError
from pgrad.run.checkpoint import load_checkpoint, save_checkpoint

F64 = torch.float64
TWINS: dict[str, type[NativeVecEnv]] = {
    "Acrobot-v1": AcrobotVecEnv,
    "Pendulum-v1": PendulumVecEnv,
    "MountainCar-v0": MountainCarVecEnv,
    "MountainCarContinuous-v0": MountainCarContinuousVecEnv,
}
IDS = list(TWINS)
# Gymnasium's start-state ranges (low, high) per state coordinate.
START_RANGES = {
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
    "Pendulum-v1": ([-math.pi, -1.0], [math.pi, 1.0]),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "MountainCarContinuous-v0": ([-0.6, 0.0], [-0.4, 0.0]),
}
# States from which an episode terminates within a step or two (Pendulum never terminates).
NEAR_GOAL = {
    "Acrobot-v1": [2.5, 0.0, 0.0, 0.0],
    "MountainCar-v0": [0.49, 0.02],
    "MountainCarContinuous-v0": [0.44, 0.02],
}
# The numpy dtype Gymnasium itself keeps `unwrapped.state` in (after reset, after a step): Acrobot draws its
# start in float32 and integrates in float64, MountainCarContinuous stores float32 after every step.
GYM_STATE_DTYPE = {
    "Acrobot-v1": (np.float32, np.float64),
    "MountainCarContinuous-v0": (np.float64, np.float32),
}
GYM_OBSERVATION = {  # Gymnasium's observation of its unwrapped env's current state
    "Acrobot-v1": lambda env: env._get_ob(),
    "Pendulum-v1": lambda env: env._get_obs(),
    "MountainCar-v0": lambda env: np.asarray(env.state, dtype=np.float32),
    "MountainCarContinuous-v0": lambda env: np.asarray(env.state, dtype=np.float32),
}


def random_actions(env: NativeVecEnv, rng: np.random.Generator, scale: float = 1.0) -> torch.Tensor:
    space = env.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        return torch.as_tensor(rng.integers(space.n, size=env.num_envs))
    return torch.as_tensor(rng.uniform(-scale, scale, (env.num_envs, 1)) * space.high, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------
# the task: spaces, time limits, start states, Acrobot's wrap


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_time_limit_and_registry_are_gymnasiums(env_id):
    env, ref = make_env(env_id, 3, backend="native"), gym.make(env_id)
    assert type(env) is TWINS[env_id] and env.spec_id == env_id and env_id in env.label
    assert env.max_episode_steps == ref.spec.max_episode_steps
    assert env.single_observation_space == ref.observation_space
    assert env.single_action_space == ref.action_space
    assert env.obs_dim == ref.observation_space.shape[0]


@pytest.mark.parametrize("env_id", IDS)
def test_start_states_follow_gymnasiums_distribution(env_id):
    env = TWINS[env_id](4000, dtype=F64)
    obs = env.reset(seed=0)
    low, high = (torch.tensor(b, dtype=F64) for b in START_RANGES[env_id])
    s = env.state
    assert torch.all((s >= low) & (s <= high))
    # Uniform over the whole range: means near the middle, extremes near the bounds.
    torch.testing.assert_close(s.mean(0), (low + high) / 2, rtol=0, atol=0.03 * float((high - low).max()))
    torch.testing.assert_close(s.amin(0), low, rtol=0, atol=0.01 * float((high - low).max()))
    torch.testing.assert_close(s.amax(0), high, rtol=0, atol=0.01 * float((high - low).max()))
    if env_id == "Acrobot-v1":  # Gymnasium stores the draw as float32
        assert torch.equal(s, s.float().double())
    # The reset observation is Gymnasium's observation of that state.
    ref = gym.make(env_id).unwrapped
    ref.reset(seed=0)
    for i in range(3):
        ref.state = s[i].numpy().astype(GYM_STATE_DTYPE.get(env_id, (np.float64,))[0])
        expected = GYM_OBSERVATION[env_id](ref)
        np.testing.assert_allclose(obs[i].numpy(), expected, rtol=1e-6, atol=1e-7)


def test_acrobot_wrap_is_gymnasiums():
    x = np.concatenate([np.linspace(-4 * np.pi, 4 * np.pi, 2001), [np.pi, -np.pi, np.nextafter(np.pi, 4)]])
    ours = wrap(torch.tensor(x), -np.pi, np.pi).numpy()
    np.testing.assert_allclose(ours, [gym_wrap(v, -np.pi, np.pi) for v in x], rtol=0, atol=1e-12)
    assert ours[-3] == np.pi and ours[-2] == -np.pi  # the bounds stay put, as in Gymnasium


# ---------------------------------------------------------------------------------------------------------
# lock-step with Gymnasium


@dataclass
class Scenario:
    """A lock-step run: `policy(state [N, d], rng)` gives numpy actions; rows in `starts` begin from the given
    states; every `events` predicate (name → [N] bool of one step) must hold somewhere in the run."""

    n: int
    steps: int
    policy: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    starts: dict[int, list[float]] = field(default_factory=dict)
    events: dict[str, Callable[[np.ndarray, StepResult], torch.Tensor]] = field(default_factory=dict)


def _acrobot(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = rng.integers(3, size=len(s))
    a[2:4] = np.where(s[2:4, 3] > 0, 2, 0)  # pumps energy: reaches the bar in ~80 steps
    return a


def _pendulum(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(-6, 6, size=(len(s), 1))  # mostly beyond ±2: clipped
    a[2:] = 2.5 * np.sign(s[2:, 1:])  # spins up to the speed limit
    return a.astype(np.float32)


def _mountain_car(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = rng.integers(3, size=len(s))
    a[1] = 2 if s[1, 1] >= 0 else 0  # pumps: reaches the flag in ~120 steps
    a[2] = 0  # left, from a start next to the wall
    return a


def _continuous_mountain_car(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(-3, 3, size=(len(s), 1))  # beyond ±1 two thirds of the time
    a[1] = 1.5 * np.sign(s[1, 1])  # pumps with a clipped force
    a[2] = -2.0  # into the left wall (from a start next to it)
    return a.astype(np.float32)


# −1.2 and 0.07, or their float32 roundings (MountainCarContinuous). From x = −0.9 gravity alone pushes
# v = 0.07 past the speed limit.
def _at_wall(a, r):
    return (r.final_obs[:, 0] + 1.2).abs() < 1e-7


def _at_max_speed(a, r):
    return (r.final_obs[:, 1] - 0.07).abs() < 1e-8


SCENARIOS = {
    "Acrobot-v1": Scenario(
        6,
        520,
        _acrobot,
        starts={4: [0.0, 0.0, 0.99 * MAX_VEL_1, 0.99 * MAX_VEL_2], 5: [3.0, -3.0, -MAX_VEL_1, -MAX_VEL_2]},
        events={
            "terminated": lambda a, r: r.terminated,
            "truncated": lambda a, r: r.truncated,
            "velocity bound": lambda a, r: (
                (r.final_obs[:, 4].abs() == MAX_VEL_1) | (r.final_obs[:, 5].abs() == MAX_VEL_2)
            ),
        },
    ),
    "Pendulum-v1": Scenario(
        4,
        210,
        _pendulum,
        starts={3: [0.0, 7.9]},
        events={
            "torque clipped": lambda a, r: torch.as_tensor(np.abs(a[:, 0]) > 2),
            "speed clipped": lambda a, r: r.final_obs[:, 2].abs() == 8.0,
            "truncated": lambda a, r: r.truncated,
        },
    ),
    "MountainCar-v0": Scenario(
        4,
        220,
        _mountain_car,
        starts={2: [-1.15, -0.06], 3: [-0.9, 0.07]},
        events={
            "terminated": lambda a, r: r.terminated,
            "truncated": lambda a, r: r.truncated,
            "left wall": _at_wall,
            "speed clipped": _at_max_speed,
        },
    ),
    "MountainCarContinuous-v0": Scenario(
        4,
        1010,
        _continuous_mountain_car,
        starts={2: [-1.15, -0.06], 3: [-0.9, 0.07]},
        events={
            "terminated": lambda a, r: r.terminated,
            "truncated": lambda a, r: r.truncated,
            "force clipped": lambda a, r: torch.as_tensor(np.abs(a[:, 0]) > 1),
            "left wall": _at_wall,
            "speed clipped": _at_max_speed,
        },
    ),
}


@pytest.mark.parametrize(
    "env_id, free_running",
    [pytest.param(env_id, False, id=f"{env_id}-resynced") for env_id in IDS]
    + [pytest.param(env_id, True, id=f"{env_id}-free") for env_id in ("MountainCar-v0", "Pendulum-v1")],
)
def test_lockstep_with_gymnasium(env_id, free_running):
    """Observation, reward, terminated and truncated agree within 1e-6 at every step, across episode ends.

    Re-synced runs hand Gymnasium the twin's state before every step, in the dtype Gymnasium keeps it in, and
    float32 actions (as pgrad's Gymnasium backend does). Free runs sync only at episode starts and hand
    Gymnasium float64 actions, so NumPy does none of Gymnasium's arithmetic in float32."""
    sc = SCENARIOS[env_id]
    twin = make_env(env_id, sc.n, backend="native", dtype=F64)
    twin.reset(seed=0)
    for row, start in sc.starts.items():
        twin.state[row] = torch.tensor(start, dtype=F64)
    refs = [gym.make(env_id) for _ in range(sc.n)]
    for i, ref in enumerate(refs):
        ref.reset(seed=i)
    at_reset, after_step = GYM_STATE_DTYPE.get(env_id, (np.float64, np.float64))
    discrete = isinstance(twin.single_action_space, gym.spaces.Discrete)
    rng = np.random.default_rng(0)
    seen = dict.fromkeys(sc.events, False)
    for t in range(sc.steps):
        state, fresh = twin.state.numpy().copy(), (twin._steps == 0).numpy()
        actions = sc.policy(state, rng)
        for i, ref in enumerate(refs):
            if fresh[i] or not free_running:
                ref.unwrapped.state = state[i].astype(at_reset if fresh[i] else after_step)
        result, _ = twin.step(torch.as_tensor(actions))
        for i, ref in enumerate(refs):
            a = int(actions[i]) if discrete else actions[i].astype(np.float64 if free_running else np.float32)
            obs, reward, terminated, truncated, _ = ref.step(a)
            where = f"{env_id}, step {t}, sub-env {i}"
            np.testing.assert_allclose(result.final_obs[i].numpy(), obs, rtol=1e-6, atol=1e-6, err_msg=where)
            assert result.reward[i].item() == pytest.approx(reward, rel=1e-6, abs=1e-6), where
            assert bool(result.terminated[i]) == terminated, where
            # Gymnasium's TimeLimit also flags a termination on the last step as truncated; pgrad keeps
            # terminated and truncated apart.
            assert bool(result.truncated[i]) == (truncated and not terminated), where
            if terminated or truncated:
                ref.reset()
            else:  # the whole state (Acrobot's wrapped angles too), stored as Gymnasium stores it
                mine, theirs = twin.state[i].numpy(), np.asarray(ref.unwrapped.state)
                np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6, err_msg=where)
                assert np.array_equal(mine.astype(theirs.dtype), mine), f"{where}: not {theirs.dtype}"
        for name, event in sc.events.items():
            seen[name] |= bool(event(actions, result).any())
    assert all(seen.values()), f"the run missed a case it is meant to test: {seen}"


# ---------------------------------------------------------------------------------------------------------
# the VecEnv contract


@pytest.mark.parametrize("env_id", IDS)
def test_same_step_autoreset_with_termination_and_truncation(env_id):
    """final_obs is the stepped state's observation, next_obs a fresh start where an episode ended, and the
    stats hold the ended episodes' returns and lengths."""
    env = TWINS[env_id](3, max_episode_steps=12, dtype=F64)
    obs = env.reset(seed=1)
    if env_id in NEAR_GOAL:
        env.state[0] = torch.tensor(NEAR_GOAL[env_id], dtype=F64)
        obs = env._obs(env.state)
    low, high = (torch.tensor(b, dtype=F64) for b in START_RANGES[env_id])
    rng = np.random.default_rng(0)
    returns, lengths = np.zeros(3), np.zeros(3, dtype=np.int64)
    saw_term = saw_trunc = 0
    for _ in range(40):
        actions = random_actions(env, rng, scale=2.0)
        expected_state, expected_reward, _ = env._dynamics(env.state.clone(), env._checked_actions(actions))
        step, stats = env.step(actions)
        done = step.terminated | step.truncated
        torch.testing.assert_close(step.final_obs, env._obs(expected_state), rtol=0, atol=0)
        torch.testing.assert_close(step.reward, expected_reward, rtol=0, atol=0)
        assert torch.equal(step.next_obs[~done], step.final_obs[~done])
        assert torch.equal(step.next_obs[done], env._obs(env.state[done]))
        assert torch.all((env.state[done] >= low) & (env.state[done] <= high))
        assert torch.all(env._steps[done] == 0)
        assert not torch.any(step.terminated & step.truncated)
        assert torch.all(step.truncated == (torch.as_tensor(lengths + 1) == 12) & ~step.terminated)
        returns += step.reward.numpy()
        lengths += 1
        np.testing.assert_array_equal(stats.env_index, done.nonzero().squeeze(1).numpy())
        np.testing.assert_allclose(stats.returns, returns[done.numpy()], rtol=1e-12)
        np.testing.assert_array_equal(stats.lengths, lengths[done.numpy()])
        returns[done.numpy()], lengths[done.numpy()] = 0.0, 0
        saw_term += int(step.terminated.sum())
        saw_trunc += int(step.truncated.sum())
        obs = step.next_obs
    assert saw_trunc >= 3 and (saw_term >= 1 or env_id == "Pendulum-v1"), (saw_term, saw_trunc)
    assert env.global_step == 120 and obs.shape == (3, env.obs_dim)


@pytest.mark.parametrize("env_id", IDS)
def test_reset_seed_reproducible_across_autoresets(env_id):
    def run(seed: int) -> list[torch.Tensor]:
        env, rng = TWINS[env_id](4, max_episode_steps=10), np.random.default_rng(0)
        out = [env.reset(seed=seed)]
        for _ in range(25):  # two autoresets per sub-env: the generator draws their start states too
            out.append(env.step(random_actions(env, rng))[0].next_obs)
        return out

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[-1], c[-1])


@pytest.mark.parametrize("env_id", IDS)
def test_bad_actions_and_step_before_reset_raise_one_line(env_id):
    env = TWINS[env_id](2)
    label = re.escape(f"env '{env_id} (native)'")
    with pytest.raises(EnvError, match=rf"^{label}: step\(\) called before reset\(\)$"):
        env.step(torch.zeros(2))
    env.reset(seed=0)
    env.step(
        torch.ones(2, dtype=torch.long) if env_id in ("Acrobot-v1", "MountainCar-v0") else torch.zeros(2, 1)
    )
    if isinstance(env.single_action_space, gym.spaces.Discrete):
        bad = [
            torch.tensor([1, 3]),
            torch.tensor([1, -1]),
            torch.tensor([1.0, 0.5]),
            torch.tensor([1.0, math.nan]),
        ]
        what = r"sub-env 1: actions must be integers in 0\.\.2"
    else:
        bad = [torch.tensor([[0.0], [math.nan]]), torch.tensor([[0.0], [math.inf]])]
        what = r"sub-env 1: actions must be finite"
    for actions in bad:
        with pytest.raises(EnvError, match=rf"^{label}, global step 2, {what}, got [^\n]*$"):
            env.step(actions)
    with pytest.raises(EnvError, match=rf"^{label}, global step 2: actions must be \[2"):
        env.step(torch.zeros(3))
    assert env.global_step == 2  # the refused steps did not count


@pytest.mark.parametrize("env_id", IDS)
def test_checkpoint_round_trip_continues_exactly(env_id, tmp_path):
    """state_dict → checkpoint files → a fresh env's load_state_dict: the same next steps, autoresets
    included (the generator's state travels too)."""
    env, rng = TWINS[env_id](3, max_episode_steps=15), np.random.default_rng(0)
    env.reset(seed=2)
    for _ in range(20):
        env.step(random_actions(env, rng))
    folder = save_checkpoint(tmp_path, env.global_step, {"envs": env.state_dict()})
    saved, _ = load_checkpoint(folder)
    fresh = TWINS[env_id](3, max_episode_steps=15)
    assert fresh.state_dict() is None  # not started: nothing to save
    fresh.load_state_dict(saved["envs"])
    for _ in range(20):
        actions = random_actions(env, rng)
        (a, stats_a), (b, stats_b) = env.step(actions), fresh.step(actions)
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
        np.testing.assert_array_equal(stats_a.returns, stats_b.returns)
        np.testing.assert_array_equal(stats_a.lengths, stats_b.lengths)
    assert torch.equal(env.state, fresh.state) and torch.equal(env._steps, fresh._steps)


@pytest.mark.parametrize("env_id", IDS)
def test_float64_observations_and_float32_agree(env_id):
    env32, env64 = TWINS[env_id](5), TWINS[env_id](5, dtype=F64)
    obs32, obs64 = env32.reset(seed=0), env64.reset(seed=0)
    assert obs32.dtype == torch.float32 and obs64.dtype == F64 and env32.state.dtype == F64
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = random_actions(env32, rng)
        r32, r64 = env32.step(actions)[0], env64.step(actions)[0]
        assert r64.next_obs.dtype == r64.reward.dtype == F64 and r32.reward.dtype == torch.float32
        assert torch.equal(r32.next_obs, r64.next_obs.float()) and torch.equal(r32.reward, r64.reward.float())
        assert r64.next_obs.data_ptr() != env64.state.data_ptr()  # callers never hold the env's own state
    if isinstance(env32.single_action_space, gym.spaces.Box):
        # Gymnasium gets float32 actions from pgrad's Gymnasium backend; the twin rounds float64 ones alike.
        a, b = TWINS[env_id](5, dtype=F64), TWINS[env_id](5, dtype=F64)
        a.reset(seed=0), b.reset(seed=0)
        actions = torch.tensor(rng.uniform(-1, 1, (5, 1)), dtype=F64)
        assert not torch.equal(actions, actions.float().double())
        ra, rb = a.step(actions)[0], b.step(actions.float())[0]
        assert all(torch.equal(x, y) for x, y in zip(ra, rb, strict=True)) and torch.equal(a.state, b.state)


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("env_id", IDS)
def test_device_argument_is_honoured(env_id, device):
    env = make_env(env_id, 3, backend="native", device=torch.device(device))
    dev = torch.device(device)
    obs = env.reset(seed=0)
    step, _ = env.step(random_actions(env, np.random.default_rng(0)).to(dev))
    tensors = [obs, *step, env.state, env._steps, env._returns]
    assert all(t.device.type == dev.type for t in tensors) and env._generator.device.type == dev.type


# ---------------------------------------------------------------------------------------------------------
# training on a twin, evaluating on Gymnasium's env


@pytest.mark.parametrize(
    "algorithm, env_id, options, better_than",
    [
        ("a2c", "Acrobot-v1", {"total_steps": 12_000, "num_envs": 16}, -400.0),  # random: about −500
        (
            "ppo",
            "Pendulum-v1",
            {
                "total_steps": 30_000,
                "num_envs": 16,
                "num_steps": 64,
                "gamma": 0.9,
                "lr": 1e-3,
                "normalize_reward": True,
            },
            -1000.0,  # no torque: about −1200
        ),
    ],
    ids=["discrete", "continuous"],
)
def test_training_on_a_twin_evaluates_on_gymnasium(tmp_path, algorithm, env_id, options, better_than):
    summary = pgrad.train(
        algorithm,
        env_id,
        backend="native",
        seed=0,
        run_dir=str(tmp_path),
        eval_every=0,
        eval_episodes=5,
        progress=False,
        tensorboard=False,
        preset=False,  # the options below, not a per-env preset (PPO's Pendulum preset takes 4x longer)
        **options,
    )
    assert summary["eval"]["mean_return"] > better_than  # measured on Gymnasium's env
    # The saved policy acts on Gymnasium's env directly.
    agent, ref = pgrad.load(str(tmp_path)), gym.make(env_id)
    obs, _ = ref.reset(seed=123)
    for _ in range(50):
        action = agent.act(obs)
        assert ref.action_space.contains(action)
        obs, _, terminated, truncated, _ = ref.step(action)
        if terminated or truncated:
            break
