"""`pgrad record` and the demo's GIF: the video holds exactly the frames of the episodes the policy played.

Frame rule under test: an episode of length L gives L + 1 frames (the reset frame, then one per step); with
`every=K`, the frames at t = 0, K, 2K, … ≤ L (L // K + 1).
"""

from __future__ import annotations

import json
import shutil
import sys

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

import pgrad
from pgrad.cli import main
from pgrad.errors import ConfigError, EnvError
from pgrad.workflow.record import gif_delay_ms, record


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> str:
    """A tiny PPO run on CartPole: a policy whose episodes last tens to hundreds of steps."""
    run_dir = tmp_path_factory.mktemp("record") / "ppo"
    pgrad.train(
        "ppo",
        "CartPole-v1",
        total_steps=2_000,
        num_envs=2,
        update_epochs=4,
        eval_episodes=0,
        progress=False,
        tensorboard=False,
        run_dir=str(run_dir),
        seed=0,
    )
    return str(run_dir)


def rollout(run_dir: str, episodes: int, seed: int, cap: int) -> tuple[list[float], list[int]]:
    """The policy's episodes played plainly, without rendering: reset(seed) first, then reset()."""
    agent = pgrad.load(run_dir)
    env = gym.make("CartPole-v1")
    returns, lengths = [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed if k == 0 else None)
        total, t, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(agent.act(obs)))
            total, t = total + float(reward), t + 1
            done = terminated or truncated or t >= cap
        returns.append(total)
        lengths.append(t)
    return returns, lengths


def edited_run(run: str, tmp_path, **changes) -> str:
    """A copy of the run whose run.json says something else."""
    copy = tmp_path / "edited"
    shutil.copytree(run, copy)
    data = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**data, **changes}))
    return str(copy)


def gif_delays(path) -> list[int]:
    """The delay of each frame Pillow stored in a GIF, in ms."""
    image = Image.open(path)
    delays = []
    for index in range(image.n_frames):
        image.seek(index)
        delays.append(image.info["duration"])
    return delays


def test_mp4_holds_one_frame_per_step_plus_the_reset_frame(run):
    result = record(run, episodes=2, max_steps=60, seed=3)
    path = f"{run}/videos/policy-step2048.mp4"  # the default out: RUN_DIR/videos/policy-step{N}.mp4
    assert result["path"] == path
    frames = list(iio.imiter(path))
    assert len(frames) == result["frames"] == sum(n + 1 for n in result["lengths"])
    assert frames[0].shape == (400, 600, 3)  # CartPole's 600×400, even: no crop
    assert result["fps"] == 50  # CartPole's render_fps
    # the episodes recorded are the policy's own, seeded as documented
    assert (result["returns"], result["lengths"]) == rollout(run, 2, seed=3, cap=60)
    assert result["cut"] == sum(n == 60 for n in result["lengths"])
    assert max(result["lengths"]) <= 60


def test_gif_keeps_every_kth_frame_shrunk_with_exact_playback_time(tmp_path, run):
    out = tmp_path / "clip.gif"
    result = record(run, out=out, episodes=2, every=3, downscale=2, fps=50, max_steps=50, seed=1)
    assert result["frames"] == sum(n // 3 + 1 for n in result["lengths"])
    assert Image.open(out).size == (300, 200)  # 600×400 shrunk 2×
    delays = gif_delays(out)
    # Pillow stores a run of identical frames once, for their summed time: the playback time is exact
    assert len(delays) <= result["frames"]
    assert sum(delays) == result["frames"] * 20
    assert iio.imread(out, index=0).shape[:2] == (200, 300)


def test_mp4_of_odd_sized_frames_is_cropped_to_even(tmp_path, run):
    out = tmp_path / "odd.mp4"
    result = record(run, out=out, downscale=3, max_steps=5)  # 600×400 / 3 = 200×133: H.264 needs even sizes
    frames = list(iio.imiter(out))
    assert len(frames) == result["frames"] == 6 and frames[0].shape == (132, 200, 3)


def test_shrink_averages_blocks_and_gif_delays_are_hundredths():
    from pgrad.workflow.record import _shrink

    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    small = _shrink(frame, 2)
    assert small.shape == (2, 3, 3)
    assert small[1, 2, 0] == 59  # (48 + 51 + 66 + 69) / 4 = 58.5, rounded half up
    assert _shrink(frame, 1) is frame
    assert [gif_delay_ms(f) for f in (50, 30, 25, 100)] == [20, 30, 40, 20]


def test_stochastic_recording_is_reproducible_and_samples(tmp_path, run):
    torch.manual_seed(1)  # whatever the global RNG holds, the seed decides the samples
    one = record(run, out=tmp_path / "a.gif", deterministic=False, seed=5, episodes=3, max_steps=40, every=10)
    torch.manual_seed(2)
    two = record(run, out=tmp_path / "b.gif", deterministic=False, seed=5, episodes=3, max_steps=40, every=10)
    assert one["lengths"] == two["lengths"]
    assert one["lengths"] != rollout(run, 3, seed=5, cap=40)[1]  # not the deterministic episodes


def test_env_is_made_with_the_runs_env_kwargs(tmp_path, run):
    copy = edited_run(run, tmp_path, env_kwargs={"max_episode_steps": 7})
    result = record(copy, out=tmp_path / "short.gif", episodes=2)
    assert result["lengths"] == [7, 7] and result["cut"] == 0  # truncated by the env's own limit


def test_cli_prints_file_frames_and_returns(tmp_path, run, capsys):
    out = tmp_path / "cli.gif"
    assert main(["record", run, "--out", str(out), "--max-steps", "8", "--episodes", "2"]) == 0
    text = capsys.readouterr().out
    assert f"{out}: 18 frames at 50 fps, 2 episodes" in text
    assert "returns: 8.0, 8.0 (lengths 8, 8) (2 cut at --max-steps)" in text


def test_refuses_unknown_extension_before_any_work(tmp_path, run, capsys):
    with pytest.raises(ConfigError, match=r"clip\.avi: unknown video format '\.avi'"):
        record(run, out=tmp_path / "clip.avi")
    assert main(["record", run, "--out", str(tmp_path / "clip")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pgrad: error: --out") and "(no extension)" in err and "\n" not in err
    assert not list(tmp_path.iterdir())


def test_refuses_a_run_trained_on_a_callable(tmp_path, run):
    with pytest.raises(ConfigError, match="trained on a Python callable env, which cannot be re-made"):
        record(edited_run(run, tmp_path, env_is_id=False, env="make_env"))


@pytest.mark.parametrize(
    "env",
    [
        "pgrad/ContextualBandit-v0",
        "pgrad/DiffPendulum-v0",
        "pgrad/CartPoleSwingUp-v0",
        "pgrad/DiffLQR-v0",
        "pgrad/ContactToy-v0",
    ],
)
def test_refuses_pgrad_envs_that_cannot_render(tmp_path, run, env):
    copy = edited_run(run, tmp_path, env=env)
    with pytest.raises(EnvError, match=f"env '{env}' cannot render RGB frames .its render modes: none."):
        record(copy, out=tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


def test_missing_imageio_is_one_line_and_the_demo_carries_on(tmp_path, run, monkeypatch, capsys):
    from pgrad import demo

    monkeypatch.setitem(sys.modules, "imageio", None)  # as if pgrad[video] were not installed
    with pytest.raises(ConfigError, match=r"pgrad record needs imageio: pip install 'pgrad\[video\]'"):
        record(run, out=tmp_path / "x.gif")
    assert demo.gif(run) is None
    assert (
        capsys.readouterr().out
        == f"no GIF of the policy: pip install 'pgrad[video]' to get {run}/cartpole.gif\n"
    )


def test_demo_gif_is_small(run, capsys):
    from pgrad import demo

    path = demo.gif(run)
    assert path is not None and path.stat().st_size < 2e6
    text = capsys.readouterr().out
    assert text.startswith(f"GIF of one deterministic episode: {path} (")
    frames = int(text.split("(")[1].split(" frames")[0])
    assert Image.open(path).size == (300, 200)
    assert sum(gif_delays(path)) == frames * 40  # every 2nd of 50 frames a second at 25 fps: real time


def test_dataset_mode_writes_demonstrations_for_behaviour_cloning(run, tmp_path, capsys):
    from pgrad.algorithms.imitation import load_demonstrations

    out = tmp_path / "demos.safetensors"
    assert main(["record", run, "--dataset", str(out), "--episodes", "2", "--seed", "3"]) == 0
    demos = load_demonstrations(out)
    assert demos.episodes == 2 and demos.env == "CartPole-v1" and len(demos.obs) == len(demos.actions)
    agent = pgrad.load(run)
    assert np.array_equal(agent.act(demos.obs.numpy()), demos.actions.numpy())  # greedy: the policy's own
    assert f"{out}: {len(demos.obs):,} (observation, action) pairs in 2 episodes" in capsys.readouterr().out
