"""The rollout collectors themselves, on CountingEnv (obs = [episode number, step in episode], reward = step):
every number in a rollout says where it came from, so a final/reset observation mix-up, a shifted row, a
wrong mask or a lost episode shows as a wrong number."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.envs.gym import GymVecEnv
from pgrad.envs.toy import CountingEnv
from pgrad.errors import CheckpointError, EnvError
from pgrad.estimators import episode_time
from pgrad.policies.networks import Policy
from pgrad.run.rollout import StepCollector, _Buffer, act, collect_episodes, stack_rollouts


def counting_envs(num_envs, terminate_at=3, terminate_prob=1.0, limit=None):
    """Episodes terminate at step `terminate_at` (with probability `terminate_prob`, drawn per episode) and
    are truncated at step `limit`."""

    def make():
        env = CountingEnv(terminate_at, terminate_prob)
        return env if limit is None else gym.wrappers.TimeLimit(env, limit)

    return GymVecEnv(make, num_envs)


def make_policy(envs, seed=0):
    torch.manual_seed(seed)
    return Policy(envs.obs_dim, envs.single_action_space, hidden_sizes=(4,))


def check_transitions(rollout, terminate_at, limit, certain=True):
    """Row t of sub-env n is (s_t, a_t, r_t, s_{t+1}) with s_{t+1} the TRUE next state (the final observation
    at an episode end) and the next row starting where this one left off (the reset observation)."""
    obs, next_obs = rollout.obs, rollout.next_obs
    T, N = rollout.rewards.shape
    for t in range(T):
        for n in range(N):
            episode, k = obs[t, n].tolist()
            assert next_obs[t, n].tolist() == [episode, k + 1]  # never the reset observation
            assert rollout.rewards[t, n].item() == k + 1
            term, trunc = bool(rollout.terminated[t, n]), bool(rollout.truncated[t, n])
            assert (term == (k + 1 == terminate_at)) if certain else (not term or k + 1 == terminate_at)
            assert trunc == (limit is not None and k + 1 == limit)  # both set at once: termination wins
            if t + 1 < T:
                expected = [episode + 1, 0] if term or trunc else [episode, k + 1]
                assert obs[t + 1, n].tolist() == expected  # the next row starts where this one ended


# -- StepCollector ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("terminate_at", "limit"), [(3, None), (None, 4), (3, 3), (5, 4)])
def test_step_collector_keeps_final_and_reset_observations_apart(terminate_at, limit):
    envs = counting_envs(3, terminate_at=terminate_at, limit=limit)
    policy = make_policy(envs)
    collector = StepCollector(envs, seed=1)
    rollout = collector.collect(policy, 11)
    assert rollout.rewards.shape == (11, 3) and rollout.obs.shape == (11, 3, 2)
    assert rollout.obs[0, :, 1].tolist() == [0, 0, 0]  # the first collect resets
    check_transitions(rollout, terminate_at, limit)
    assert rollout.mask.dtype == torch.bool and bool(rollout.mask.all())  # every step is in the batch
    assert rollout.terminated.any() or rollout.truncated.any()
    assert envs.global_step == 33


def test_step_collector_continues_episodes_across_calls_and_restarts_on_request():
    envs = counting_envs(2, terminate_at=4)
    policy = make_policy(envs)
    collector = StepCollector(envs, seed=1)
    first = collector.collect(policy, 6)
    second = collector.collect(policy, 6)
    # the second batch starts where the first ended: after the end of episode 1 (steps 0..3, then 0..1)
    assert first.obs[-1].tolist() == [[1, 1], [1, 1]]
    assert second.obs[0].tolist() == [[1, 2], [1, 2]]
    check_transitions(second, 4, None)
    # finished episodes are reported in the batch they end in: steps 4 | 8 and 12
    assert first.episode_returns.tolist() == [10.0, 10.0] and first.episode_lengths.tolist() == [4, 4]
    assert second.episode_returns.tolist() == [10.0] * 4 and second.episode_lengths.tolist() == [4] * 4
    collector.restart(seed=2)
    third = collector.collect(policy, 2)
    assert third.obs[0].tolist() == [[4, 0], [4, 0]]  # a new episode by a reset, not episode 3 at step 0
    assert collector.seed == 2


def test_step_collector_numbers_the_steps_of_episodes_across_calls_and_restarts():
    """CountingEnv's observation holds the step in its episode: the rollouts' start_step must continue it."""
    envs = counting_envs(3, terminate_at=4, terminate_prob=0.5, limit=6)
    policy = make_policy(envs)
    assert StepCollector(envs, seed=1).collect(policy, 3).start_step is None  # not counted by default
    collector = StepCollector(envs, seed=1, count_steps=True)
    spans = 0
    for steps in (5, 3, 7, 1, 4):
        rollout = collector.collect(policy, steps)
        time, next_start = episode_time(rollout.terminated, rollout.truncated, rollout.start_step)
        assert time.tolist() == rollout.obs[..., 1].long().tolist()
        assert next_start.tolist() == collector.episode_step.tolist()
        spans += int((rollout.start_step > 0).sum())
    assert spans > 0  # some episodes ran on from one call into the next

    saved = collector.state_dict()
    copy = StepCollector(envs, seed=9, count_steps=True)
    copy.load_state_dict(saved)
    assert copy.episode_step.tolist() == collector.episode_step.tolist()
    rollout = copy.collect(policy, 3)
    assert rollout.start_step.tolist() == saved["episode_step"].tolist()
    assert episode_time(rollout.terminated, rollout.truncated, rollout.start_step)[0].tolist() == (
        rollout.obs[..., 1].long().tolist()
    )

    collector.restart(seed=2)  # fresh episodes: numbered from 0 again
    assert collector.state_dict()["episode_step"] is None
    assert collector.collect(policy, 2).start_step.tolist() == [0, 0, 0]


def test_step_collector_state_without_or_with_a_bad_episode_step():
    envs = counting_envs(2, terminate_at=3)
    collector = StepCollector(envs, seed=0, count_steps=True)
    collector.collect(make_policy(envs), 2)
    old = {k: v for k, v in collector.state_dict().items() if k != "episode_step"}  # an earlier checkpoint
    collector.load_state_dict(old)
    assert collector.episode_step.tolist() == [0, 0]
    for bad in (torch.zeros(3, dtype=torch.long), torch.zeros(2), "x"):
        with pytest.raises(CheckpointError, match=r"episode_step .* does not fit env"):
            collector.load_state_dict({**old, "episode_step": bad})


def test_step_collector_reports_no_episodes_as_empty_arrays():
    envs = counting_envs(2, terminate_at=None, limit=50)
    rollout = StepCollector(envs, seed=0).collect(make_policy(envs), 3)
    assert rollout.episode_returns.shape == (0,) and rollout.episode_lengths.dtype == np.int64


def test_step_collector_stores_what_the_policy_did():
    envs = counting_envs(2, terminate_at=3)
    policy = make_policy(envs)
    rollout = StepCollector(envs, seed=0).collect(policy, 8)
    with torch.no_grad():
        expected = policy.distribution(rollout.obs).log_prob(rollout.actions)
    torch.testing.assert_close(rollout.log_probs, expected)
    assert set(rollout.actions.unique().tolist()) <= {0, 1}
    assert rollout.actions.shape == (8, 2)


def test_same_seed_and_policy_rng_give_the_same_rollout():
    def run(seed):
        envs = counting_envs(2, terminate_at=3, terminate_prob=0.5, limit=5)
        policy = make_policy(envs)
        torch.manual_seed(7)
        return StepCollector(envs, seed=seed).collect(policy, 12)

    a, b, c = run(0), run(0), run(1)
    for field in ("obs", "actions", "rewards", "terminated", "truncated", "next_obs"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)
    # the env seed decides which episodes terminate
    assert not torch.equal(a.terminated, c.terminated) or not torch.equal(a.truncated, c.truncated)


def test_act_returns_the_sample_its_log_prob_and_the_env_action():
    box = gym.spaces.Box(-1.0, 1.0, shape=(2,))
    torch.manual_seed(0)
    policy = Policy(3, box, hidden_sizes=(4,), head="tanh_gaussian")
    obs = torch.randn(5, 3)
    sample, log_prob, env_action = act(policy, obs)
    assert not log_prob.requires_grad
    torch.testing.assert_close(log_prob, policy.distribution(obs).log_prob(sample))
    torch.testing.assert_close(env_action, policy.head.to_env_action(sample))


# -- collect_episodes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("episodes_per_env", [1, 2, 3])
def test_collect_episodes_keeps_exactly_the_first_k_whole_episodes_of_each_sub_env(episodes_per_env):
    # episodes end at step 2 (terminated, half of them) or 4 (truncated): sub-envs finish at different times
    envs = counting_envs(4, terminate_at=2, terminate_prob=0.5, limit=4)
    rollout = collect_episodes(envs, make_policy(envs), episodes_per_env, seed=3)
    check_transitions(rollout, 2, 4, certain=False)
    assert rollout.terminated.any() and (rollout.truncated & ~rollout.terminated).any()
    T, N = rollout.rewards.shape
    done = rollout.terminated | rollout.truncated
    lengths, returns = [], []
    for n in range(N):
        ends = torch.nonzero(done[:, n]).flatten().tolist()
        assert len(ends) >= episodes_per_env
        last = ends[episodes_per_env - 1]
        # mask: everything up to and including the k-th episode end, nothing after it
        assert rollout.mask[: last + 1, n].all() and not rollout.mask[last + 1 :, n].any()
        assert rollout.obs[0, n].tolist() == [0, 0]
        starts = [0] + [e + 1 for e in ends[: episodes_per_env - 1]]
        for s, e in zip(starts, ends[:episodes_per_env], strict=True):
            lengths.append(e - s + 1)
            returns.append(float(rollout.rewards[s : e + 1, n].sum()))
    # the loop stops at the first row where every sub-env has its k episodes
    assert done[T - 1].any()
    assert all(rollout.mask[T - 1, n] == done[T - 1, n] for n in range(N) if rollout.mask[T - 1, n])
    assert sorted(rollout.episode_lengths.tolist()) == sorted(lengths)
    assert sorted(rollout.episode_returns.tolist()) == sorted(returns)
    assert len(rollout.episode_returns) == N * episodes_per_env
    # steps taken after a sub-env's quota are env steps all the same
    assert envs.global_step == T * N
    assert int(rollout.mask.sum()) == sum(lengths) < T * N or episodes_per_env == 1


def test_collect_episodes_stops_as_soon_as_the_last_sub_env_finishes():
    envs = counting_envs(2, terminate_at=3)
    rollout = collect_episodes(envs, make_policy(envs), 2, seed=0)
    assert rollout.num_steps == 6 and bool(rollout.mask.all())
    assert rollout.terminated[:, 0].tolist() == [False, False, True, False, False, True]
    assert rollout.episode_returns.tolist() == [6.0, 6.0, 6.0, 6.0]


def test_collect_episodes_seeds_each_sub_env():
    envs = counting_envs(4, terminate_at=1, terminate_prob=0.5, limit=3)
    policy = make_policy(envs)
    same = collect_episodes(envs, policy, 1, seed=[5, 5, 5, 5])
    lengths = same.mask.sum(0).tolist()
    assert len(set(lengths)) == 1  # equal seeds: equal episodes (termination is drawn from the env RNG)
    runs = [collect_episodes(envs, policy, 3, seed=s).mask.sum(0).tolist() for s in (11, 11, 12)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_collect_episodes_grows_its_buffer_for_long_episodes():
    envs = counting_envs(2, terminate_at=300)
    rollout = collect_episodes(envs, make_policy(envs), 1, seed=0)
    assert rollout.num_steps == 300
    assert rollout.obs[:, 0, 1].tolist() == list(range(300))
    assert rollout.rewards[:, 1].tolist() == [float(k) for k in range(1, 301)]
    assert rollout.episode_lengths.tolist() == [300, 300]


def test_collect_episodes_refuses_episodes_that_never_end():
    envs = counting_envs(2, terminate_at=None)
    with pytest.raises(EnvError, match=r"has not ended after 7 steps.*max_episode_steps"):
        collect_episodes(envs, make_policy(envs), 1, seed=0, max_steps=7)
    assert envs.global_step == 14


def test_collect_episodes_ending_exactly_at_max_steps_is_fine():
    envs = counting_envs(1, terminate_at=7)
    rollout = collect_episodes(envs, make_policy(envs), 1, seed=0, max_steps=7)
    assert rollout.num_steps == 7


def test_buffer_doubles_and_keeps_what_it_had():
    buffer = _Buffer(capacity=2)
    for t in range(5):
        buffer.write(t, x=torch.tensor([t, -t]), y=torch.tensor(float(t)))
    assert buffer.capacity == 8
    view = buffer.view(5)
    assert view["x"].tolist() == [[t, -t] for t in range(5)]
    assert view["y"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert view["x"].dtype == torch.int64


# -- stack_rollouts ------------------------------------------------------------------------------------------
def test_stack_rollouts_pads_with_masked_terminated_steps():
    a = {
        "rewards": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
        "terminated": torch.tensor([[False, True], [True, False]]),
        "mask": torch.ones(2, 2, dtype=torch.bool),
        "obs": torch.ones(2, 2, 3),
    }
    b = {
        "rewards": torch.tensor([[5.0], [6.0], [7.0], [8.0]]),
        "terminated": torch.tensor([[False], [False], [False], [True]]),
        "mask": torch.ones(4, 1, dtype=torch.bool),
        "obs": 2 * torch.ones(4, 1, 3),
    }
    out = stack_rollouts([a, b])
    assert set(out) == set(a)
    assert out["rewards"].tolist() == [[1, 2, 5], [3, 4, 6], [0, 0, 7], [0, 0, 8]]
    assert out["terminated"].tolist() == [
        [False, True, False],
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    assert out["mask"].tolist() == [[True] * 3, [True] * 3, [False, False, True], [False, False, True]]
    assert out["obs"].shape == (4, 3, 3) and out["obs"][2:, :2].abs().sum() == 0
    assert out["obs"][:, 2].eq(2).all()
    assert out["terminated"].dtype == torch.bool and out["mask"].dtype == torch.bool
    # the longest batch first pads the other one just the same
    flipped = stack_rollouts([b, a])
    assert flipped["rewards"][:, 0].tolist() == [5, 6, 7, 8]
    assert flipped["mask"][:, 1:].sum() == 4
