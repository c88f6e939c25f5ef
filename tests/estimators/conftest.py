"""Rollout batches for the estimator tests: random ones with chosen edge cases, and real Gymnasium rollouts.

A batch is time-major [T, N], float64, with *consistent* values as a real rollout has them:
values[t] = V(s_t), next_values[t] = V(s_{t+1}) of the true next state, so next_values[t] == values[t+1]
wherever step t is not done and t < T-1. On an episode end next_values[t] is V(final observation), which is
deliberately unrelated to values[t+1] (the reset observation of the next episode), and on a terminated step it
is large garbage (never to be read): a bootstrap from the wrong place shows up as a big error.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch


@dataclass
class Batch:
    rewards: torch.Tensor  # [T, N] float64
    values: torch.Tensor  # [T, N] V(s_t)
    next_values: torch.Tensor  # [T, N] V(s_{t+1}), true next state
    terminated: torch.Tensor  # [T, N] bool
    truncated: torch.Tensor  # [T, N] bool

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.rewards.shape)


# The special case each seed forces (seed % len): the random per-column flags come on top.
SPECIAL_CASES = ("none", "no_flags", "both_at_last_row", "cut_at_row_0", "truncated_last_row", "all_done")


def make_random_batch(seed: int, T: int, N: int) -> Batch:
    """Random rewards/values and episode ends; each column has its own density of episode ends."""
    rng = random.Random(f"{seed}-{T}-{N}")
    special = SPECIAL_CASES[seed % len(SPECIAL_CASES)]
    terminated = [[False] * N for _ in range(T)]
    truncated = [[False] * N for _ in range(T)]
    if special != "no_flags":
        for n in range(N):
            p_end = rng.choice([0.0, 0.1, 0.3, 0.6])
            for t in range(T):
                if rng.random() < p_end:
                    kind = rng.choice(["term", "trunc", "both"])
                    terminated[t][n] = kind in ("term", "both")
                    truncated[t][n] = kind in ("trunc", "both")
    if special == "both_at_last_row":
        for n in range(N):
            terminated[T - 1][n] = truncated[T - 1][n] = True
    elif special == "cut_at_row_0":
        for n in range(N):
            if n % 2 == 0:
                truncated[0][n] = True
            else:
                terminated[0][n] = True
    elif special == "truncated_last_row":
        for n in range(N):
            truncated[T - 1][n] = True
    elif special == "all_done":
        for t in range(T):
            for n in range(N):
                terminated[t][n] = rng.random() < 0.5
                truncated[t][n] = not terminated[t][n] or rng.random() < 0.3

    rewards = [[rng.gauss(0.0, 1.0) + rng.choice([0.0, 1.0]) for _ in range(N)] for _ in range(T)]
    values = [[rng.gauss(0.0, 2.0) for _ in range(N)] for _ in range(T)]
    next_values = [[0.0] * N for _ in range(T)]
    for t in range(T):
        for n in range(N):
            if terminated[t][n]:
                next_values[t][n] = rng.choice([-1.0, 1.0]) * 1000.0  # must never be read
            elif truncated[t][n] or t == T - 1:
                next_values[t][n] = 10.0 + rng.gauss(0.0, 3.0)  # V(final observation) / V(s_T)
            else:
                next_values[t][n] = values[t + 1][n]
    f64 = torch.float64
    return Batch(
        rewards=torch.tensor(rewards, dtype=f64).reshape(T, N),
        values=torch.tensor(values, dtype=f64).reshape(T, N),
        next_values=torch.tensor(next_values, dtype=f64).reshape(T, N),
        terminated=torch.tensor(terminated, dtype=torch.bool).reshape(T, N),
        truncated=torch.tensor(truncated, dtype=torch.bool).reshape(T, N),
    )


# helpers for the plain-Python references


def episodes_of(batch, n: int) -> list[tuple[int, int, str]]:
    """(first row, last row, how it ends) of each episode of column n; end in {'term', 'trunc', 'open'}."""
    term = batch.terminated[:, n].tolist()
    trunc = batch.truncated[:, n].tolist()
    T = len(term)
    out, start = [], 0
    for t in range(T):
        if term[t] or trunc[t] or t == T - 1:
            out.append((start, t, "term" if term[t] else "trunc" if trunc[t] else "open"))
            start = t + 1
    return out


def column(x: torch.Tensor, n: int) -> list[float]:
    return [float(v) for v in x[:, n].tolist()]


# ---------------------------------------------------------------------------------------------------------
# Gymnasium rollouts

GYM_ENVS = {"CartPole-v1": 20, "MountainCar-v0": 15, "Acrobot-v1": 12}  # id -> max_episode_steps
GYM_T, GYM_N = 64, 4


def collect_gym_batch(env_id: str, max_episode_steps: int, T: int = GYM_T, N: int = GYM_N) -> Batch:
    """Random-action rollout in SAME_STEP autoreset mode, with V(obs) a fixed random linear function."""
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id, max_episode_steps=max_episode_steps) for _ in range(N)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    try:
        np_rng = np.random.default_rng(1234)
        weights = np_rng.normal(size=envs.single_observation_space.shape[0])

        def value_of(obs: np.ndarray) -> np.ndarray:
            return obs.astype(np.float64) @ weights + 0.5

        obs, _ = envs.reset(seed=7)
        envs.action_space.seed(7)
        rewards, values, next_values, terminated, truncated = [], [], [], [], []
        for _ in range(T):
            values.append(value_of(obs))
            obs, reward, term, trunc, info = envs.step(envs.action_space.sample())
            true_next = np.array(obs, dtype=np.float64)  # rows of ended sub-envs hold reset observations...
            if "_final_obs" in info:
                for n in np.flatnonzero(info["_final_obs"]):
                    true_next[n] = info["final_obs"][n]  # ...replaced by the true final observation
            next_values.append(value_of(true_next))
            rewards.append(np.asarray(reward, dtype=np.float64))
            terminated.append(np.asarray(term, dtype=bool))
            truncated.append(np.asarray(trunc, dtype=bool))
    finally:
        envs.close()
    return Batch(
        rewards=torch.from_numpy(np.stack(rewards)),
        values=torch.from_numpy(np.stack(values)),
        next_values=torch.from_numpy(np.stack(next_values)),
        terminated=torch.from_numpy(np.stack(terminated)),
        truncated=torch.from_numpy(np.stack(truncated)),
    )


@pytest.fixture(scope="session", params=sorted(GYM_ENVS))
def gym_batch(request) -> Batch:
    batch = collect_gym_batch(request.param, GYM_ENVS[request.param])
    done = batch.done
    # the rollout is like a real one: values consistent inside episodes...
    inside = ~done[:-1]
    torch.testing.assert_close(batch.next_values[:-1][inside], batch.values[1:][inside], rtol=0, atol=0)
    # ...and it has truncations before the last row whose V(final obs) differs from V(reset obs), so a
    # bootstrap from the reset observation would be caught
    cut = batch.truncated[:-1] & ~batch.terminated[:-1]
    assert (batch.next_values[:-1][cut] - batch.values[1:][cut]).abs().gt(1e-3).any()
    if request.param == "CartPole-v1":
        assert batch.terminated.any()
    return batch
