"""Details of the run harness that its main tests do not pin: option type errors for every kind of hint,
an agent of another dtype, and the replay buffer's checks and empty round trip."""

import itertools
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.errors import CheckpointError, ConfigError, EnvError
from pgrad.policies.networks import Policy
from pgrad.run.config import check_field_types
from pgrad.run.evaluate import Agent
from pgrad.run.replay import ReplayBuffer


@dataclass
class Options:
    flag: bool = True
    name: str = "x"
    count: int = 1
    rate: float = 0.5
    kind: Literal["a", "b"] = "a"
    limit: float | None = None
    sizes: tuple[int, ...] = (1,)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("flag", "yes", "demo option flag must be a bool, got 'yes' (str)"),
        ("name", 3, "demo option name must be a string, got 3 (int)"),
        ("count", 1.0, "demo option count must be an int, got 1.0 (float)"),
        ("rate", True, "demo option rate must be a number, got True (bool)"),
        ("kind", "c", "demo option kind must be one of 'a', 'b', got 'c' (str)"),
        ("limit", "high", "demo option limit must be a number or None, got 'high' (str)"),
        ("sizes", (1, "2"), "demo option sizes must be a tuple of an int, got (1, '2') (tuple)"),
    ],
)
def test_an_option_of_the_wrong_type_is_named_with_its_type(field, value, expected):
    options = Options(**{field: value})
    with pytest.raises(ConfigError) as info:
        check_field_types(options, "demo")
    assert str(info.value) == expected
    check_field_types(Options(limit=2, sizes=[3, 4]), "demo")  # an int is a number; a list is a tuple here


def test_an_agent_feeds_observations_in_the_policy_dtype():
    space = gym.spaces.Box(-1.0, 1.0, shape=(3,))
    policy = Policy(3, gym.spaces.Discrete(2), hidden_sizes=(4,)).double()
    agent = Agent(policy, space, gym.spaces.Discrete(2), {})
    action = agent.act(np.zeros(3, dtype=np.float32))
    assert action.shape == () and int(action) in (0, 1)


def buffer(**options):
    return ReplayBuffer(8, 2, (1,), 2, **options)


def step(buf, value, done=False):
    obs = torch.full((2, 2), float(value))
    flags = torch.full((2,), done)
    buf.add(obs, torch.zeros(2, 1), torch.ones(2), flags, torch.zeros(2, dtype=torch.bool), obs + 1)


def test_replay_buffer_checks_name_the_argument():
    with pytest.raises(ConfigError, match="replay buffer: num_envs must be at least 1, got 0"):
        ReplayBuffer(8, 2, (1,), 0)
    buf = buffer()
    with pytest.raises(ConfigError, match=r"replay buffer add: actions has shape \(2,\), expected \(2, 1\)"):
        buf.add(
            torch.zeros(2, 2),
            torch.zeros(2),
            torch.zeros(2),
            *[torch.zeros(2, dtype=torch.bool)] * 2,
            torch.zeros(2, 2),
        )
    bad = torch.zeros(2, 1)
    bad[1, 0] = float("nan")
    with pytest.raises(EnvError, match="replay buffer add, step 0, sub-env 1: actions is not finite"):
        buf.add(
            torch.zeros(2, 2), bad, torch.zeros(2), *[torch.zeros(2, dtype=torch.bool)] * 2, torch.zeros(2, 2)
        )


def test_an_empty_replay_buffer_round_trips_and_a_foreign_layout_is_named():
    empty = buffer().state_dict()
    assert empty["steps"] == 0 and empty["layout"]["action_shape"] == [1]
    restored = buffer()
    restored.load_state_dict(empty)
    assert len(restored) == 0
    other = ReplayBuffer(8, 2, (3,), 2)
    with pytest.raises(CheckpointError, match=r"does not match this one: action_shape \[1\] \(here \[3\]\)"):
        other.load_state_dict(empty)


def test_a_replay_buffer_keeps_its_finals_after_wrapping_around():
    buf = buffer()  # 4 rows of 2 sub-envs
    for t in range(7):
        step(buf, t, done=(t % 3 == 2))
    copy = buffer()
    copy.load_state_dict(buf.state_dict())
    for key, value in buf.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(copy.state_dict()[key], value), key
    batch = copy.sample(8, torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)  # the stored true next state, finals included


# -- gaps the mutation run showed (docs/testing.md) -----------------------------------------------------


def test_a_buffer_of_exactly_n_step_rows_is_accepted():
    ReplayBuffer(6, 2, (1,), 2, n_step=3)  # 3 rows of 2 sub-envs: just enough for 3-step returns
    with pytest.raises(ConfigError, match="use capacity >= 6"):
        ReplayBuffer(5, 2, (1,), 2, n_step=3)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    import pgrad

    run_dir = tmp_path_factory.mktemp("run") / "r"
    quiet = dict(progress=False, tensorboard=False)
    pgrad.train("reinforce", "CartPole-v1", total_steps=600, seed=3, run_dir=str(run_dir), eval_every=300,
                eval_episodes=2, num_envs=2, episodes_per_update=2, **quiet)  # fmt: skip
    return run_dir


def test_the_learning_curve_has_the_runs_title_and_both_series(small_run, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from pgrad.run.plots import plot_learning_curve

    closed = []
    monkeypatch.setattr(plt, "close", closed.append)  # keep the figure to look at it
    plot_learning_curve(small_run, tmp_path / "curve.png")
    (fig,) = closed
    ax = fig.axes[0]
    assert ax.get_title() == "reinforce on CartPole-v1 (seed 3)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["training episodes (mean per iteration)", "evaluation (deterministic, 2 episodes)"]
    assert tuple(fig.get_size_inches()) == (7.0, 4.0) and (tmp_path / "curve.png").stat().st_size > 0


def test_the_legend_says_when_evaluations_sampled_their_actions(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    import pgrad

    closed = []
    monkeypatch.setattr(plt, "close", closed.append)
    quiet = {"progress": False, "tensorboard": False}
    pgrad.train("reinforce", "CartPole-v1", total_steps=200, run_dir=str(tmp_path / "r"), eval_episodes=3,
                eval_deterministic=False, num_envs=2, episodes_per_update=2, **quiet)  # fmt: skip
    labels = [t.get_text() for t in closed[-1].axes[0].get_legend().get_texts()]
    assert labels[-1] == "evaluation (sampled actions, 3 episodes)"


def test_a_checkpoints_or_best_folder_given_directly_resolves_to_its_run_and_latest(small_run):
    from pgrad.run.checkpoint import latest_checkpoint
    from pgrad.run.evaluate import resolve_checkpoint

    for folder in (small_run / "checkpoints", small_run / "checkpoints" / "best"):
        assert resolve_checkpoint(folder) == (small_run, latest_checkpoint(folder))  # was: the run's parent


def test_asking_for_a_best_checkpoint_that_does_not_exist_names_its_folder(tmp_path):
    from pgrad.run.evaluate import resolve_checkpoint

    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint(tmp_path, "best")
    best = tmp_path / "checkpoints" / "best"
    assert str(info.value) == f"{best}: no best checkpoint (no evaluation has run yet)"


def test_the_trainers_records_and_summary(tmp_path):
    """What metrics.jsonl and the summary promise: keys, a growing training clock, steps per second that are
    steps over seconds, and a target that stops the run and is reported."""
    import pgrad
    from pgrad.run.logger import read_metrics

    quiet = dict(num_envs=2, episodes_per_update=2, progress=False, tensorboard=False)
    summary = pgrad.train("reinforce", "CartPole-v1", total_steps=20_000, seed=1, run_dir=str(tmp_path / "t"),
                          eval_every=500, eval_episodes=1, target_return=-1.0, **quiet)  # fmt: skip
    assert summary["target_reached"] is True and summary["global_step"] < 20_000  # stopped at the first eval
    run_dir = tmp_path / "r"
    summary = pgrad.train("reinforce", "CartPole-v1", total_steps=4000, seed=1, run_dir=str(run_dir),
                          eval_every=0, eval_episodes=0, log_every=500, **quiet)  # fmt: skip
    assert summary["target_reached"] is False and summary["wall_time"] > 0
    rows = [r for r in read_metrics(run_dir) if "charts/sps" in r]
    assert len(rows) >= 2
    times = [r["time"] for r in rows]
    assert all(isinstance(t, float) for t in times) and times == sorted(times) and times[-1] > 0
    for r in rows:
        assert r["charts/episodes"] >= 1 and np.isfinite(r["charts/episode_return"])
    for a, b in itertools.pairwise(rows):
        rate = (b["global_step"] - a["global_step"]) / max(b["time"] - a["time"], 1e-9)
        assert 0.2 < b["charts/sps"] / rate < 5  # steps over (about) the same seconds


def test_save_checkpoint_keeps_the_three_newest_by_default(tmp_path):
    from pgrad.run.checkpoint import save_checkpoint

    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"x": torch.zeros(1)})
    assert sorted(p.name for p in tmp_path.glob("step_*")) == [f"step_{s:012d}" for s in (3, 4, 5)]
