"""`pgrad record`: a video of a run's policy acting in the run's env (MP4 or GIF).

    pgrad record RUN_DIR [--episodes K] [--out FILE.mp4|FILE.gif] [--checkpoint latest|best|N]
                 [--no-deterministic] [--seed S] [--fps F] [--max-steps N] [--every K] [--downscale K]
    pgrad record RUN_DIR --dataset FILE.safetensors [--episodes K]    (demonstrations for `pgrad bc`)

The env is made as the run made it (its Gymnasium id and `env_kwargs` from run.json) with
``render_mode="rgb_array"``; episodes play one after another in one file. Frames of an episode: the reset
frame (t = 0), then one after each step, so an episode of length L gives L + 1 frames; with ``--every K``
only the frames at t = 0, K, 2K, … ≤ L are kept (L // K + 1). MP4 goes through imageio's ffmpeg plugin, GIF
through Pillow (which stores a run of identical consecutive frames once, shown for their summed time).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pgrad.errors import ConfigError, EnvError, optional_import

FORMATS = (".mp4", ".gif")
DEFAULT_FPS = 30  # for an env whose metadata has no render_fps
DEFAULT_MAX_STEPS = 1_000  # episode cut for an env without a time limit of its own
FEATURE = "pgrad record"


@dataclasses.dataclass
class RecordArgs:
    """Record a video of a run's policy acting in the run's env; prints the file, frames and returns."""

    episodes: int = 1
    """Episodes to record, played one after another in one file."""
    out: str | None = None
    """Output file, .mp4 or .gif (default: RUN_DIR/videos/policy-step{N}.mp4)."""
    checkpoint: str = "latest"
    """Which checkpoint: latest, best (the best-evaluated) or a step number."""
    deterministic: bool = True
    """Act with the distribution's mode (--no-deterministic: sample)."""
    seed: int = 0
    """Seed of the env's first reset (later episodes continue its random stream) and of sampled actions."""
    fps: float | None = None
    """Frames per second of the video (default: real time, the env's render_fps (else 30) / --every)."""
    max_steps: int | None = None
    """Cut each episode after this many steps (default: the env's time limit; 1,000 without one)."""
    every: int = 1
    """Keep every K-th frame of an episode (t = 0, K, 2K, …): a shorter, smaller file."""
    downscale: int = 1
    """Shrink frames K× in each dimension (mean of K×K pixel blocks)."""
    threads: int = 1
    """torch CPU threads."""
    dataset: str | None = None
    """Instead of a video, write the episodes' (observation, action) pairs to this demonstrations file
    (safetensors + a JSON sidecar) for `pgrad bc --demos FILE`."""


def default_out(run_dir: str | Path, global_step: int) -> Path:
    """Where a recording goes when no --out is given: RUN_DIR/videos/policy-step{N}.mp4."""
    return Path(run_dir) / "videos" / f"policy-step{global_step}.mp4"


def record(
    run_dir: str | Path,
    out: str | Path | None = None,
    episodes: int = 1,
    checkpoint: str | int = "latest",
    deterministic: bool = True,
    seed: int = 0,
    fps: float | None = None,
    max_steps: int | None = None,
    every: int = 1,
    downscale: int = 1,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Record `episodes` episodes of a run's policy in the run's env into one MP4 or GIF file.

    `run_dir` is a run folder (with `checkpoint` "latest", "best" or a step) or a checkpoint folder. The env
    is re-made from run.json (its Gymnasium id and env_kwargs) with ``render_mode="rgb_array"``; a run trained
    on a Python callable, or an env that cannot render RGB frames, is refused with one line. The first
    episode starts from ``reset(seed=seed)``, later ones from ``reset()`` (the env's stream continues);
    sampled actions (``deterministic=False``) come from a torch generator seeded from `seed`, so the same
    arguments give the same video.

    Frames per episode of length L: ``L // every + 1`` (t = 0, every, 2·every, … ≤ L; the reset frame is
    t = 0). Returns ``{"path", "frames", "episodes", "returns", "lengths", "cut", "fps", "global_step"}``:
    `frames` counts the frames written, `cut` the episodes stopped by `max_steps` rather than by the env.
    """
    import torch

    from pgrad.api import load
    from pgrad.run.evaluate import resolve_checkpoint
    from pgrad.run.folder import read_run_file
    from pgrad.run.seeding import derive_seed

    _check_counts(episodes=episodes, every=every, downscale=downscale)
    if max_steps is not None:
        _check_counts(max_steps=max_steps)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be an integer >= 0, got {seed!r}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps must be > 0, got {fps}")
    if out is not None:
        _check_suffix(Path(out))
    root, _ = resolve_checkpoint(run_dir, checkpoint)
    saved = read_run_file(root)
    if not saved.get("env_is_id", True):
        raise ConfigError(
            f"{root} was trained on a Python callable env, which cannot be re-made from run.json; "
            "pgrad record needs a run trained on a Gymnasium env id"
        )
    agent = load(run_dir, checkpoint, threads=threads)
    step = int(agent.info["global_step"])
    path = Path(out) if out is not None else default_out(root, step)
    _check_video_modules(path)  # a missing extra: one line before any env is built
    env = _render_env(str(saved["env"]), dict(saved.get("env_kwargs") or {}))
    label = str(saved["env"])
    # real time by default: K-th frames of render_fps a second play at render_fps / K
    fps = float(fps if fps is not None else (env.metadata.get("render_fps") or DEFAULT_FPS) / every)
    time_limit = getattr(env.spec, "max_episode_steps", None)
    cap = max_steps if max_steps is not None else (None if time_limit else DEFAULT_MAX_STEPS)
    returns: list[float] = []
    lengths: list[int] = []
    cut = frames = 0
    writer: _VideoWriter | None = None

    def put(t: int) -> None:
        nonlocal frames
        if t % every == 0:
            writer.write(_shrink(_rgb(env.render(), label), downscale))
            frames += 1

    try:
        writer = _VideoWriter(path, fps)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "record"))
            for k in range(episodes):
                obs, _ = env.reset(seed=seed if k == 0 else None)
                put(0)
                total, t, done = 0.0, 0, False
                while not done:
                    action = _env_action(agent.act(obs, deterministic), env.action_space)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    t += 1
                    put(t)
                    done = bool(terminated or truncated)
                    if not done and cap is not None and t >= cap:
                        done, cut = True, cut + 1
                returns.append(total)
                lengths.append(t)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abandon()  # no half-written video left behind
        raise
    finally:
        env.close()
    return {
        "path": str(path),
        "frames": frames,
        "episodes": episodes,
        "returns": returns,
        "lengths": lengths,
        "cut": cut,
        "fps": fps,
        "global_step": step,
    }


def _check_counts(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(
            f"--out {path}: unknown video format '{path.suffix or '(no extension)'}' "
            f"(pgrad record writes {' or '.join(FORMATS)})"
        )


def _render_env(env_id: str, env_kwargs: dict[str, Any]):
    """The run's env with render_mode="rgb_array", or a one-line EnvError for an env that cannot render."""
    from pgrad.envs.gym import make_single_env

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        # rgb_array rendering needs no display; without one, SDL (pygame) prints an XDG_RUNTIME_DIR error
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env_kwargs.pop("render_mode", None)
    probe = make_single_env(env_id, env_kwargs)
    modes = list(probe.metadata.get("render_modes") or [])
    probe.close()
    if "rgb_array" not in modes:
        raise EnvError(
            f"env '{env_id}' cannot render RGB frames (its render modes: {', '.join(modes) or 'none'}); "
            "pgrad record needs an env with render_mode 'rgb_array'"
        )
    return make_single_env(env_id, {**env_kwargs, "render_mode": "rgb_array"})


def _rgb(frame: Any, env: str) -> np.ndarray:
    """A render() result as an RGB uint8 array [H, W, 3]; one line when it is not an image."""
    array = np.asarray(frame) if frame is not None else None
    if array is None or array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] not in (3, 4):
        got = "None" if array is None else f"an array of shape {array.shape} and dtype {array.dtype}"
        raise EnvError(f"env '{env}': render() returned {got}, not an RGB image [H, W, 3] of uint8")
    return array[..., :3]


def _shrink(frame: np.ndarray, k: int) -> np.ndarray:
    """`frame` shrunk k× in each dimension: the mean of each k×k block, rounded (edge rows/columns that do
    not fill a block are dropped)."""
    if k == 1:
        return frame
    h, w = frame.shape[0] // k * k, frame.shape[1] // k * k
    if h == 0 or w == 0:
        raise ConfigError(f"--downscale {k} is larger than the frame ({frame.shape[1]}×{frame.shape[0]})")
    # k² strided adds: an order of magnitude faster than a mean over a 5-D reshape
    total = np.zeros((h // k, w // k, frame.shape[2]), dtype=np.uint16 if k <= 16 else np.uint32)  # 255·k²
    for i in range(k):
        for j in range(k):
            total += frame[i:h:k, j:w:k]
    return ((total + k * k // 2) // (k * k)).astype(np.uint8)


def _env_action(action: Any, space) -> Any:
    """The agent's action as the env's space expects it (a Python int for Discrete)."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return int(action)
    return np.asarray(action, dtype=space.dtype)


class _VideoWriter:
    """Frames into an MP4 or GIF file; `abandon()` after an error removes whatever was written.

    MP4: imageio's ffmpeg plugin (H.264, yuv420p), streamed; frames are cropped to even sizes, which that
    pixel format needs, rather than resized. GIF: imageio's Pillow plugin, written at `close()` (Pillow
    writes a GIF in one go); frame delays in whole hundredths of a second (GIF's unit), at least 2 (50 fps,
    the fastest browsers honour)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.gif = path.suffix.lower() == ".gif"
        self.frames: list[np.ndarray] = []
        self.writer = None
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.gif:
            legacy = optional_import("imageio.v2", "video", FEATURE)
            self.writer = legacy.get_writer(
                path, format="FFMPEG", mode="I", fps=fps, macro_block_size=1, ffmpeg_log_level="error"
            )

    def write(self, frame: np.ndarray) -> None:
        if self.gif:
            self.frames.append(frame)
        else:
            h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
            self.writer.append_data(np.ascontiguousarray(frame[:h, :w]))

    def close(self) -> None:
        if self.gif:
            imageio = optional_import("imageio.v3", "video", FEATURE)
            imageio.imwrite(
                self.path, np.stack(self.frames), plugin="pillow", duration=gif_delay_ms(self.fps), loop=0
            )
            self.frames.clear()
        else:
            self.writer.close()

    def abandon(self) -> None:
        self.frames.clear()
        if self.writer is not None:
            self.writer.close()
        self.path.unlink(missing_ok=True)


def _check_video_modules(path: Path) -> None:
    """One line naming the extra to install when imageio (or, for MP4, its ffmpeg plugin) is missing."""
    optional_import("imageio", "video", FEATURE)
    if path.suffix.lower() == ".mp4":
        optional_import("imageio_ffmpeg", "video", f"{FEATURE} (MP4)")


def gif_delay_ms(fps: float) -> int:
    """A GIF frame's delay for `fps`: whole hundredths of a second, at least 2 (GIF cannot say 1/30 s)."""
    return 10 * max(2, round(100 / fps))


def main(argv: Sequence[str]) -> int:
    """`pgrad record RUN_DIR [options]`."""
    from pgrad.cli import _parse, _run_dir_and_rest

    run_dir, rest = _run_dir_and_rest(argv, "record")
    args = _parse(RecordArgs, rest, "pgrad record DIR")
    options = dataclasses.asdict(args)
    if options.pop("dataset") is not None:
        return _record_dataset(run_dir, args)
    result = record(run_dir, **options)
    returns = ", ".join(f"{r:.1f}" for r in result["returns"])
    lengths = ", ".join(str(n) for n in result["lengths"])
    episodes = result["episodes"]
    print(
        f"{result['path']}: {result['frames']} frames at {result['fps']:g} fps, "
        f"{episodes} episode{'s' * (episodes != 1)} of the policy at step {result['global_step']:,}"
    )
    cut = f" ({result['cut']} cut at --max-steps)" if result["cut"] else ""
    print(f"returns: {returns} (lengths {lengths}){cut}")
    return 0


def _record_dataset(run_dir: str, args: RecordArgs) -> int:
    """`pgrad record RUN --dataset FILE`: demonstrations of the run's policy for behaviour cloning."""
    from pgrad.algorithms.imitation import collect_demonstrations
    from pgrad.run.config import use_threads

    use_threads(args.threads)
    demos = collect_demonstrations(
        run_dir,
        args.episodes,
        out=args.dataset,
        seed=args.seed,
        checkpoint=args.checkpoint,
        deterministic=args.deterministic,
    )
    returns = demos.episode_returns.tolist() if demos.episode_returns is not None else []
    print(
        f"{args.dataset}: {len(demos.obs):,} (observation, action) pairs in {demos.episodes} episodes "
        f"(returns {', '.join(f'{r:.1f}' for r in returns)}); fit a policy to them: "
        f"`pgrad bc --demos {args.dataset}`"
    )
    return 0
