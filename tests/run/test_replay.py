"""Replay buffer: terminal vs truncation, n-step against a per-episode reference, wrap-around, checkpoints.

Observations encode where they come from: the obs of sub-env e at step t is [e, t, 0]; its next_obs is
[e, t + 1, 1] where the episode ended at t (the true final observation) and [e, t + 1, 0] otherwise (equal to
the next step's obs, as same-step autoreset gives). A sampled obs therefore names its (step, sub-env), and a
next_obs says whether it is a final observation or the following one.
"""

import math

import numpy as np
import pytest
import torch

from pgrad.errors import CheckpointError, ConfigError, EnvError
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from pgrad.run.replay import ReplayBuffer

GAMMA = 0.9


def make_stream(num_steps, num_envs, p_end, seed):
    """A step ends a sub-env's episode with probability p_end (terminal, time limit or both)."""
    rng = np.random.default_rng(seed)
    steps = []
    for t in range(num_steps):
        end = rng.random(num_envs) < p_end
        kind = rng.random(num_envs)
        terminated, truncated = end & (kind < 0.6), end & (kind > 0.4)
        env = torch.arange(num_envs, dtype=torch.float32)
        obs = torch.stack([env, torch.full_like(env, t), torch.zeros_like(env)], dim=1)
        next_obs = torch.stack(
            [env, torch.full_like(env, t + 1), torch.as_tensor(end, dtype=torch.float32)], 1
        )
        steps.append(
            dict(
                obs=obs,
                actions=torch.stack([env, torch.full_like(env, -t)], dim=1),
                rewards=torch.as_tensor(rng.normal(size=num_envs), dtype=torch.float32),
                terminated=torch.as_tensor(terminated),
                truncated=torch.as_tensor(truncated),
                next_obs=next_obs,
            )
        )
    return steps


def reference(steps, n, gamma):
    """{(t, e): (n-step return, discount, terminated, next_obs)} computed plainly, one episode at a time."""
    expected = {}
    for e in range(len(steps[0]["rewards"])):
        episodes, current = [], []
        for t, s in enumerate(steps):
            current.append(t)
            if s["terminated"][e] or s["truncated"][e]:
                episodes.append((current, True, bool(s["terminated"][e])))
                current = []
        episodes.append((current, False, False))  # still running at the end of the stream
        for times, finished, terminal in episodes:
            for i, t in enumerate(times):
                window = times[i : i + n]
                reaches_end = finished and i + n >= len(times)
                if len(window) < n and not reaches_end:
                    continue  # rewards not collected yet: not sampleable
                ret = sum(gamma**j * float(steps[u]["rewards"][e]) for j, u in enumerate(window))
                last = window[-1]
                next_obs = [e, last + 1, 1.0 if reaches_end else 0.0]
                expected[(t, e)] = (ret, gamma ** len(window), reaches_end and terminal, next_obs)
    return expected


def decode(batch):
    return [(int(t), int(e)) for e, t in batch.obs[:, :2].tolist()]


def sample_many(buffer, total, generator):
    """`total` samples in batches no larger than the sampleable transitions (a larger batch is refused)."""
    batches = [buffer.sample(buffer.num_valid(), generator) for _ in range(-(-total // buffer.num_valid()))]
    return type(batches[0])(*(torch.cat(field) for field in zip(*batches, strict=True)))


def fill(buffer, steps):
    for s in steps:
        buffer.add(**s)


def test_truncation_bootstraps_from_final_obs_and_termination_does_not():
    steps = make_stream(3, 2, 0.0, seed=0)
    steps[0]["truncated"] = torch.tensor([True, False])
    steps[0]["terminated"] = torch.tensor([False, True])
    steps[0]["next_obs"][:, 2] = 1.0  # both ended: the true final observations
    buffer = ReplayBuffer(10, 3, (2,), 2, gamma=GAMMA)
    fill(buffer, steps)
    batch = sample_many(buffer, 200, torch.Generator().manual_seed(0))
    by_pair = {pair: i for i, pair in enumerate(decode(batch))}
    trunc, term = by_pair[(0, 0)], by_pair[(0, 1)]
    assert not batch.terminated[trunc] and batch.next_obs[trunc].tolist() == [0, 1, 1]  # final, not reset
    assert batch.terminated[term] and batch.next_obs[term].tolist() == [1, 1, 1]
    assert batch.discount[trunc] == pytest.approx(GAMMA)
    running = by_pair[(1, 0)]
    assert not batch.terminated[running] and batch.next_obs[running].tolist() == [0, 2, 0]


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("p_end", [0.2, 0.9])
def test_n_step_matches_per_episode_reference_through_wrap_around(n, p_end):
    num_envs, capacity = 4, 4 * 30 + 3  # 30 rows: the ring wraps several times; the 3 spare are dropped
    steps = make_stream(130, num_envs, p_end, seed=n)
    buffer = ReplayBuffer(capacity, 3, (2,), num_envs, n_step=n, gamma=GAMMA)
    generator = torch.Generator().manual_seed(1)
    added = 0
    for stop in (n + 1, 17, 30, 31, 59, 130):
        fill(buffer, steps[added:stop])
        added = stop
        expected = reference(steps[:stop], n, GAMMA)
        valid = {(t, e) for t in range(max(0, stop - 30), stop - n + 1) for e in range(num_envs)}
        assert buffer.num_valid() == len(valid) and valid <= expected.keys()
        batch = sample_many(buffer, 1500, generator)
        pairs = decode(batch)
        assert set(pairs) == valid  # every valid pair is drawn, nothing overwritten or not yet summed is
        ret, discount, terminated, next_obs = zip(*(expected[pair] for pair in pairs), strict=True)
        torch.testing.assert_close(batch.rewards, torch.tensor(ret), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batch.discount, torch.tensor(discount), rtol=1e-6, atol=0)
        assert batch.terminated.tolist() == list(terminated)
        assert batch.next_obs.tolist() == list(next_obs)
        assert batch.actions.tolist() == [[e, -t] for t, e in pairs]
    assert len(buffer.finals) <= 2 * 30 * num_envs  # final observations of overwritten rows are freed


def test_several_envs_and_wrap_around_overwrites_the_oldest():
    buffer = ReplayBuffer(6, 3, (2,), 2)  # 3 rows of 2 sub-envs
    fill(buffer, make_stream(5, 2, 0.3, seed=3))
    assert len(buffer) == 6 and buffer.obs[0, :, 1].tolist() == [3, 3]  # step 3 replaced step 0 in row 0
    pairs = decode(sample_many(buffer, 600, torch.Generator().manual_seed(0)))
    assert set(pairs) == {(t, e) for t in (2, 3, 4) for e in (0, 1)}
    counts = np.bincount([3 * e + t - 2 for t, e in pairs])
    assert counts.min() > 600 / 6 * 0.6  # uniform over (step, sub-env)


def assert_same_batches(a, b, gen_a, gen_b):
    for _ in range(3):
        for x, y in zip(a.sample(64, gen_a), b.sample(64, gen_b), strict=True):
            assert x.dtype == y.dtype and torch.equal(x, y)


@pytest.mark.parametrize("obs_dtype", [torch.float32, torch.float16])
def test_checkpoint_round_trip_samples_bitwise_and_continues(tmp_path, obs_dtype):
    steps = make_stream(150, 3, 0.3, seed=4)
    buffer = ReplayBuffer(200, 3, (2,), 3, n_step=3, gamma=GAMMA, obs_dtype=obs_dtype)  # 66 rows: wraps
    fill(buffer, steps[:100])
    generator = torch.Generator().manual_seed(5)
    buffer.sample(32, generator)
    save_checkpoint(tmp_path, 100, {"replay": buffer.state_dict(), "generator": generator.get_state()})
    state, _ = load_checkpoint(latest_checkpoint(tmp_path))
    resumed = ReplayBuffer(200, 3, (2,), 3, n_step=3, gamma=GAMMA, obs_dtype=obs_dtype)
    resumed.load_state_dict(state["replay"])
    resumed_generator = torch.Generator()
    resumed_generator.set_state(state["generator"])
    assert_same_batches(buffer, resumed, generator, resumed_generator)
    fill(buffer, steps[100:])
    fill(resumed, steps[100:])
    assert_same_batches(buffer, resumed, generator, resumed_generator)


def test_state_dict_holds_only_the_filled_part():
    buffer = ReplayBuffer(100_000, 3, (2,), 2)
    fill(buffer, make_stream(10, 2, 0.5, seed=6))
    state = buffer.state_dict()
    assert state["obs"].shape == (10, 2, 3) and state["rewards"].shape == (10, 2)
    assert len(state["finals"]) == int((buffer.terminated | buffer.truncated)[:10].sum())


def test_end_episodes_cuts_every_running_episode():
    steps = make_stream(10, 2, 0.0, seed=7)
    steps[3]["terminated"] = torch.tensor([False, True])  # sub-env 1 ends for real at step 3
    steps[3]["next_obs"][1, 2] = 1.0
    buffer = ReplayBuffer(40, 3, (2,), 2, n_step=3, gamma=GAMMA)
    fill(buffer, steps[:4])
    restart = steps[6]  # envs restarted: obs no longer continue the episodes
    with pytest.raises(ConfigError, match="obs of sub-env 0 is not the previous next_obs"):
        buffer.add(**restart)
    buffer.end_episodes()
    fill(buffer, steps[6:])
    batch = sample_many(buffer, 500, torch.Generator().manual_seed(0))
    for i, (t, e) in enumerate(decode(batch)):
        k = min(3, 4 - t) if t < 4 else 3  # sums stop at step 3 and bootstrap from its true next obs
        at_cut_terminal = t + k == 4 and e == 1
        assert bool(batch.terminated[i]) == at_cut_terminal
        assert batch.next_obs[i].tolist() == [e, t + k, float(at_cut_terminal)]
        assert batch.discount[i].item() == pytest.approx(GAMMA**k)
    assert {t for t, _ in decode(batch)} == {0, 1, 2, 3, 6, 7}  # 8, 9 wait for their sums


def test_memory_figure_matches_the_allocated_tensors():
    buffer = ReplayBuffer(10_000, 17, (6,), 1)
    assert buffer.bytes_per_transition == 17 * 4 + 6 * 4 + 4 + 1 + 1 + 8
    extra = buffer.finals.nbytes + buffer.pending.nbytes
    assert buffer.nbytes() == 10_000 * buffer.bytes_per_transition + extra
    half = ReplayBuffer(10_000, 17, (6,), 1, obs_dtype=torch.float16)
    assert buffer.bytes_per_transition - half.bytes_per_transition == 17 * 2


def good_step(num_envs=2):
    return make_stream(1, num_envs, 0.0, seed=8)[0]


def with_field(key, value):
    step = good_step()
    step[key] = value
    return step


def nan_at(key, env):
    step = good_step()
    step[key] = step[key].clone()
    step[key][env] = math.nan
    return step


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(capacity=0), ConfigError, "capacity must be at least 1"),
        (dict(n_step=0), ConfigError, "n_step must be at least 1"),
        (dict(capacity=5, n_step=3), ConfigError, "n_step 3 needs 3; use capacity >= 6"),
        (dict(gamma=1.5), ConfigError, "gamma must be in"),
    ],
)
def test_constructor_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        ReplayBuffer(**{"capacity": 10, "obs_dim": 3, "action_shape": (2,), "num_envs": 2, **kwargs})


@pytest.mark.parametrize(
    ("step", "error", "match"),
    [
        (with_field("obs", torch.zeros(2, 4)), ConfigError, r"obs has shape \(2, 4\), expected \(2, 3\)"),
        (with_field("actions", torch.zeros(2)), ConfigError, r"actions has shape \(2,\), expected \(2, 2\)"),
        (with_field("rewards", torch.zeros(3)), ConfigError, "rewards has shape"),
        (with_field("terminated", torch.zeros(2)), ConfigError, "terminated has dtype torch.float32"),
        (nan_at("rewards", 1), EnvError, "step 0, sub-env 1: rewards is not finite"),
        (nan_at("obs", 1), EnvError, "sub-env 1: obs is not finite"),
        (nan_at("next_obs", 0), EnvError, "sub-env 0: next_obs is not finite"),
    ],
)
def test_add_validation(step, error, match):
    with pytest.raises(error, match=match):
        ReplayBuffer(10, 3, (2,), 2).add(**step)


def test_sample_and_load_validation():
    buffer = ReplayBuffer(20, 3, (2,), 2, n_step=3)
    fill(buffer, make_stream(4, 2, 0.5, seed=9))
    with pytest.raises(ConfigError, match="batch_size 5 must be between 1 and the 4 transitions"):
        buffer.sample(5, torch.Generator())
    with pytest.raises(CheckpointError, match=r"does not match this one: obs_dim 3 \(here 4\)$"):
        ReplayBuffer(20, 4, (2,), 2).load_state_dict(buffer.state_dict())
    state = buffer.state_dict()
    state["rewards"] = state["rewards"][:2]
    with pytest.raises(CheckpointError, match=r"'rewards' in the checkpoint is \(2, 2\), expected \(4, 2\)"):
        ReplayBuffer(20, 3, (2,), 2).load_state_dict(state)


def test_float16_storage_refuses_observations_out_of_range():
    step = good_step()
    step["next_obs"] = step["next_obs"] + torch.tensor([[0.0, 0.0, 0.0], [0.0, 1e5, 0.0]])
    with pytest.raises(EnvError, match="sub-env 1: next_obs as float16 is not finite"):
        ReplayBuffer(10, 3, (2,), 2, obs_dtype=torch.float16).add(**step)


def test_discrete_actions_keep_their_dtype_and_shape():
    buffer = ReplayBuffer(20, 3, (), 2, action_dtype=torch.int64)
    for s in make_stream(4, 2, 0.3, seed=10):
        buffer.add(**{**s, "actions": s["obs"][:, 1].long() * 10 + s["obs"][:, 0].long()})
    batch = buffer.sample(8, torch.Generator().manual_seed(0))
    assert batch.actions.dtype == torch.int64 and batch.actions.shape == (8,)
    assert batch.actions.tolist() == [10 * t + e for t, e in decode(batch)]
