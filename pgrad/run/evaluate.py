"""Evaluating a policy on fresh envs, and loading a run's policy as the `Agent` that `pgrad.load` returns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.base import EnvFactory
from pgrad.envs.gym import GymVecEnv
from pgrad.envs.spaces import obs_to_tensor, space_from_dict
from pgrad.errors import CheckpointError, ConfigError, EnvError
from pgrad.policies.networks import Policy
from pgrad.run.checkpoint import LATEST, META_FILE, latest_checkpoint, load_checkpoint, validate_state
from pgrad.run.seeding import derive_seed


class Agent:
    """A trained policy ready to act on raw Gymnasium observations.

    `act(obs)` takes one observation or a batch (numpy or torch, shaped as the env's observation space, or a
    batch of them) and returns env-ready actions of the same batch-ness: numpy in, numpy out.
    """

    def __init__(
        self, policy: Policy, observation_space: spaces.Space, action_space: spaces.Space, info: dict
    ):
        self.policy = policy.eval()
        self.observation_space = observation_space
        self.action_space = action_space
        self.info = info

    def act(self, obs: Any, deterministic: bool = True) -> Any:
        as_numpy = not isinstance(obs, torch.Tensor)
        array = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
        single = array.shape == self.observation_space.shape
        batch = array[None] if single else array
        param = next(self.policy.parameters())
        with torch.inference_mode():
            x = obs_to_tensor(self.observation_space, batch, param.device, param.dtype)
            dist = self.policy.distribution(x)
            sample = dist.mode if deterministic else dist.sample()
            action = self.policy.head.to_env_action(sample)
        action = action[0] if single else action
        return action.cpu().numpy() if as_numpy else action


def resolve_checkpoint(path: str | Path, checkpoint: str | int = "latest") -> tuple[Path, Path]:
    """(run folder, checkpoint folder) for a run folder and `checkpoint` ("latest", "best" or a step), or for
    a checkpoint folder given directly (``DIR/checkpoints/step_N`` or ``DIR/checkpoints/best``)."""
    path = Path(path)
    if (path / META_FILE).exists():  # a step folder itself
        root = path.parent.parent if path.parent.name == "best" else path.parent
        return root.parent, path
    if (path / LATEST).exists() and path.name in ("checkpoints", "best"):  # a checkpoints (or best) folder
        checkpoints = path if path.name == "checkpoints" else path.parent
        return checkpoints.parent, latest_checkpoint(path)
    checkpoints = path / "checkpoints"
    if checkpoint == "latest":
        return path, latest_checkpoint(checkpoints)
    if checkpoint == "best":
        if not (checkpoints / "best" / LATEST).exists():
            raise CheckpointError(f"{checkpoints / 'best'}: no best checkpoint (no evaluation has run yet)")
        return path, latest_checkpoint(checkpoints / "best")
    step = int(checkpoint) if str(checkpoint).isdigit() else None
    if step is None:
        raise ConfigError(f"checkpoint must be 'latest', 'best' or a step number, got {checkpoint!r}")
    folder = checkpoints / f"step_{step:012d}"
    if not folder.is_dir():
        kept = sorted(int(p.name[5:]) for p in checkpoints.glob("step_*") if p.name[5:].isdigit())
        raise CheckpointError(f"{folder}: no checkpoint at step {step:,} (kept: {', '.join(map(str, kept))})")
    return path, folder


def load_policy(run_dir: str | Path, checkpoint: str | int = "latest") -> Agent:
    """The policy of one of a run's checkpoints, as an `Agent` with `act(obs, deterministic=...)`.

    `run_dir` is a run folder (then `checkpoint` picks "latest", "best" or a step number) or a checkpoint
    folder (``DIR/checkpoints/step_N``). The one loader of a saved policy: `pgrad.load`, GRPO's reference
    and init policies and IS-PG's behaviour policy all use it. Building the network does not touch the
    global torch RNG (training stays reproducible).
    """
    root, folder = resolve_checkpoint(run_dir, checkpoint)
    state, step = load_checkpoint(folder)
    info = state.get("policy") if isinstance(state, dict) else None
    if not isinstance(info, dict):
        raise CheckpointError(
            f"{folder / META_FILE}: /policy is missing (not a checkpoint of a training run)"
        )
    if "spec" not in info:  # a token-sequence run (pgrad seq) saves a transformer, not a Gymnasium policy
        raise CheckpointError(
            f"{folder}: not a Gymnasium policy's checkpoint (a `pgrad seq` run? evaluate it with "
            "`pgrad.algorithms.sequences.load_token_policy` and `exact_match`)"
        )
    with torch.random.fork_rng(devices=[]):
        policy = Policy.from_spec(info["spec"])
    validate_state(policy.state_dict(), info["weights"], folder, prefix="/policy/weights")
    policy.load_state_dict(info["weights"])
    return Agent(
        policy,
        space_from_dict(info["observation_space"]),
        space_from_dict(info["action_space"]),
        {
            "algorithm": info["algorithm"],
            "env": info["env"],
            "global_step": step,
            "run_dir": str(root),
            "checkpoint": str(folder),
        },
    )


EVAL_ENVS = 32  # most sub-envs an evaluation steps together (classic control and MuJoCo envs are small)


def evaluate_policy(
    policy: Policy,
    env: str | EnvFactory,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 0,
    num_envs: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int = 10_000,
    on_episode: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run `episodes` whole episodes on new envs; returns mean/std/all returns and lengths.

    An env without a time limit of its own has its episodes cut after `max_episode_steps` steps (the
    return so far counts; `cut_episodes` says how many); an env with one is never cut. `on_episode(k)` is
    called as the k-th counted episode finishes (for a progress display). Sub-envs step in one batch: one
    per episode, up to `EVAL_ENVS` (32) unless `num_envs` says otherwise.

    Sub-env i runs exactly its share of the episodes (the first ones it finishes), so short episodes are not
    over-represented. Stochastic evaluation draws its actions from a forked torch RNG seeded from `seed`: the
    same seed gives the same episodes whatever ran before, and training randomness is untouched.
    """
    if episodes < 1:
        raise EnvError(f"evaluation needs at least one episode, got {episodes}")
    # One sub-env per episode up to EVAL_ENVS: a vector env steps every sub-env until the last finishes, so
    # 20 episodes on 16 sub-envs would step 16 × 2 episodes' worth (and call the policy twice as often).
    num_envs = min(episodes, EVAL_ENVS) if num_envs is None else min(num_envs, episodes)
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    param = next(policy.parameters())
    options = {"algorithm": "evaluate", "device": param.device, "dtype": param.dtype}
    envs = GymVecEnv(env, num_envs, env_kwargs=env_kwargs, **options)
    cap = None
    if envs.max_episode_steps is None:  # no time limit of its own: rebuild it with one
        envs.close()
        cap = max_episode_steps
        env, env_kwargs = _time_limited(env, dict(env_kwargs or {}), cap)
        envs = GymVecEnv(env, num_envs, env_kwargs=env_kwargs, **options)
    returns: list[list[float]] = [[] for _ in range(num_envs)]
    lengths: list[list[int]] = [[] for _ in range(num_envs)]
    was_training = policy.training
    policy.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "evaluate"))
            obs = envs.reset(seed=seed)
            while any(len(returns[i]) < quota[i] for i in range(num_envs)):
                with torch.inference_mode():
                    dist = policy.distribution(obs)
                    sample = dist.mode if deterministic else dist.sample()
                    step, finished = envs.step(policy.head.to_env_action(sample))
                for i, ret, length in zip(
                    finished.env_index, finished.returns, finished.lengths, strict=True
                ):
                    if len(returns[i]) < quota[i]:
                        returns[i].append(float(ret))
                        lengths[i].append(int(length))
                        if on_episode is not None:
                            on_episode(sum(len(r) for r in returns))
                obs = step.next_obs
    finally:
        envs.close()
        policy.train(was_training)
    flat = np.array([r for rs in returns for r in rs])
    flat_lengths = np.array([n for ns in lengths for n in ns])
    return {
        "mean_return": float(flat.mean()),
        "std_return": float(flat.std()),
        "episodes": len(flat),
        "mean_length": float(flat_lengths.mean()),
        "returns": flat.tolist(),
        "cut_episodes": int((flat_lengths >= cap).sum()) if cap is not None else 0,
    }


def _time_limited(env: str | EnvFactory, env_kwargs: dict[str, Any], cap: int):
    """(env, env_kwargs) that build `env` with a time limit of `cap` steps (Gymnasium's TimeLimit)."""
    if isinstance(env, str):
        return env, {**env_kwargs, "max_episode_steps": cap}

    def limited(**kwargs: Any) -> gym.Env:
        return gym.wrappers.TimeLimit(env(**kwargs), max_episode_steps=cap)

    limited.__qualname__ = getattr(env, "__qualname__", type(env).__name__)  # keeps the env's label
    return limited, env_kwargs
