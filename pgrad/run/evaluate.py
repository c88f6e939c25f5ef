"""Evaluating a policy on fresh envs, and loading a run's policy as the `Agent` that `pgrad.load` returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.base import EnvFactory
from pgrad.envs.gym import GymVecEnv
from pgrad.envs.spaces import obs_to_tensor, space_from_dict
from pgrad.errors import EnvError
from pgrad.policies.networks import Policy
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint


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


def load_policy(run_dir: str | Path) -> Agent:
    """The policy of a run's latest checkpoint, as an `Agent` with `act(obs, deterministic=...)`.

    The one loader of a saved policy: `pgrad.load`, GRPO's reference and init policies and IS-PG's behaviour
    policy all use it. Building the network does not touch the global torch RNG (training stays reproducible).
    """
    state, step = load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"))
    info = state["policy"]
    with torch.random.fork_rng(devices=[]):
        policy = Policy.from_spec(info["spec"])
    policy.load_state_dict(info["weights"])
    return Agent(
        policy,
        space_from_dict(info["observation_space"]),
        space_from_dict(info["action_space"]),
        {"algorithm": info["algorithm"], "env": info["env"], "global_step": step, "run_dir": str(run_dir)},
    )


def evaluate_policy(
    policy: Policy,
    env: str | EnvFactory,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 0,
    num_envs: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `episodes` whole episodes on new envs; returns mean/std/all returns and lengths.

    Sub-env i runs exactly its share of the episodes (the first ones it finishes), so short episodes are not
    over-represented. Stochastic evaluation draws from a forked torch RNG: training randomness is untouched.
    """
    if episodes < 1:
        raise EnvError(f"evaluation needs at least one episode, got {episodes}")
    num_envs = min(episodes, 16) if num_envs is None else min(num_envs, episodes)
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    param = next(policy.parameters())
    envs = GymVecEnv(
        env, num_envs, algorithm="evaluate", env_kwargs=env_kwargs, device=param.device, dtype=param.dtype
    )
    returns: list[list[float]] = [[] for _ in range(num_envs)]
    lengths: list[list[int]] = [[] for _ in range(num_envs)]
    was_training = policy.training
    policy.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            obs = envs.reset(seed=seed)
            steps = 0
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
                obs = step.next_obs
                steps += 1
                if steps > 1_000_000:
                    raise EnvError(
                        f"env '{envs.label}': evaluation episode longer than 1e6 steps; add a time limit"
                    )
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
    }
