r"""Behaviour cloning: fit a policy network to demonstrated (observation, action) pairs by maximum likelihood.

    L(θ) = −1/|D| Σ_{(s, a) ∈ D} log πθ(a|s)

for every policy head with a likelihood: categorical (cross-entropy), diagonal Gaussian (a Gaussian negative
log-likelihood, which also fits σ), tanh-Gaussian and discretised heads. Its gradient is the score function
averaged over the data, −1/|D| Σ ∇θ log πθ(a|s): the policy-gradient estimator with every advantage set to
1 on the demonstrated actions only. A held-out share of the *episodes* (not of the steps: consecutive steps
of one episode are near-duplicates) measures the fit.

Demonstration files (no pickle):

    FILE.safetensors   obs            float32 [M, obs_dim]  the observations as the policy reads them (a Box
                                                           observation flattened, a Discrete one one-hot)
                       actions        int64 [M] (Discrete: the env's action, `start` included) or
                                      float32 [M, action_dim] (Box: the env's action)
                       episode_starts bool [M]               True on the first step of each episode
                       episode_returns float32 [E]           optional: each episode's return
    FILE.json          {"format": "pgrad-demos/1", "env": id, "observation_space": {...},
                        "action_space": {...}, "episodes": E, "steps": M, "source": {...}}

(spaces as in `pgrad.envs.spaces.space_to_dict`). `collect_demonstrations` writes them from a trained run;
`load_demonstrations` reads and checks one, naming the file and the field of any problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from pgrad.envs.gym import GymVecEnv
from pgrad.envs.spaces import space_from_dict, space_to_dict
from pgrad.errors import ConfigError
from pgrad.policies.networks import Policy
from pgrad.run.evaluate import load_policy
from pgrad.run.folder import read_run_file
from pgrad.run.seeding import derive_seed

FORMAT = "pgrad-demos/1"


@dataclass
class Demonstrations:
    """(obs, action) pairs of whole episodes, with the spaces they live in."""

    obs: Tensor  # [M, obs_dim] float32
    actions: Tensor  # [M] int64 (Discrete) or [M, D] float32 (Box): env actions
    episode_starts: Tensor  # [M] bool
    env: str
    observation_space: spaces.Space
    action_space: spaces.Space
    episode_returns: Tensor | None = None  # [E]
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def episodes(self) -> int:
        return int(self.episode_starts.sum())

    def episode_ids(self) -> Tensor:
        """Index of the episode each step belongs to, [M]."""
        return torch.cumsum(self.episode_starts.long(), 0) - 1


def sidecar(path: str | Path) -> Path:
    """The JSON file next to a demonstrations file."""
    return Path(path).with_suffix(".json")


def save_demonstrations(demos: Demonstrations, path: str | Path) -> Path:
    """Write `demos` as `path` (safetensors; suffix .safetensors added if missing) and its JSON sidecar."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "obs": demos.obs.float().contiguous(),
        "actions": demos.actions.contiguous(),
        "episode_starts": demos.episode_starts.bool().contiguous(),
    }
    if demos.episode_returns is not None:
        tensors["episode_returns"] = demos.episode_returns.float().contiguous()
    save_file(tensors, path)
    meta = {
        "format": FORMAT,
        "env": demos.env,
        "observation_space": space_to_dict(demos.observation_space),
        "action_space": space_to_dict(demos.action_space),
        "episodes": demos.episodes,
        "steps": len(demos.obs),
        "source": demos.source,
    }
    sidecar(path).write_text(json.dumps(meta, indent=1))
    return path


def load_demonstrations(path: str | Path) -> Demonstrations:
    """Read a demonstrations file and its sidecar; one-line ConfigErrors naming the file and the field."""
    path = Path(path)
    meta_path = sidecar(path)
    if not path.is_file():
        raise ConfigError(f"demonstrations '{path}': no such file")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"demonstrations '{path}': its sidecar {meta_path} is missing") from None
    except ValueError as exc:
        raise ConfigError(f"demonstrations {meta_path}: not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ConfigError(f"demonstrations {meta_path}: format {found!r}, {FORMAT!r} expected")
    for key in ("env", "observation_space", "action_space"):
        if key not in meta:
            raise ConfigError(f"demonstrations {meta_path}: field '{key}' is missing")
    try:
        obs_space = space_from_dict(meta["observation_space"])
        action_space = space_from_dict(meta["action_space"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"demonstrations {meta_path}: a space cannot be read ({exc!r})") from None
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"demonstrations '{path}': not a safetensors file ({exc})") from None
    for key in ("obs", "actions", "episode_starts"):
        if key not in tensors:
            raise ConfigError(f"demonstrations '{path}': tensor '{key}' is missing")
    obs, actions, starts = tensors["obs"], tensors["actions"], tensors["episode_starts"]
    steps = len(obs)
    if obs.ndim != 2 or steps == 0 or not obs.is_floating_point():
        raise ConfigError(f"demonstrations '{path}': 'obs' must be a float [M, obs_dim] tensor, M >= 1")
    if len(actions) != steps or len(starts) != steps or starts.ndim != 1:
        raise ConfigError(
            f"demonstrations '{path}': 'obs', 'actions' and 'episode_starts' must have the same length M "
            f"(got {steps}, {len(actions)}, {len(starts)})"
        )
    if not bool(starts[0]):
        raise ConfigError(f"demonstrations '{path}': 'episode_starts'[0] must be True (a first episode)")
    if not torch.isfinite(obs).all():
        raise ConfigError(f"demonstrations '{path}': 'obs' holds NaN or inf")
    if isinstance(action_space, spaces.Discrete):
        if actions.ndim != 1 or actions.is_floating_point():
            raise ConfigError(f"demonstrations '{path}': 'actions' must be an int [M] tensor (Discrete)")
        low, high = action_space.start, action_space.start + action_space.n - 1
        if int(actions.min()) < low or int(actions.max()) > high:
            raise ConfigError(f"demonstrations '{path}': 'actions' outside {action_space}")
    else:
        dim = int(np.prod(action_space.shape))
        if actions.ndim != 2 or actions.shape[1] != dim or not actions.is_floating_point():
            raise ConfigError(f"demonstrations '{path}': 'actions' must be a float [M, {dim}] tensor (Box)")
        if not torch.isfinite(actions).all():
            raise ConfigError(f"demonstrations '{path}': 'actions' holds NaN or inf")
    returns = tensors.get("episode_returns")
    return Demonstrations(
        obs.float(),
        actions.long() if isinstance(action_space, spaces.Discrete) else actions.float(),
        starts.bool(),
        str(meta["env"]),
        obs_space,
        action_space,
        None if returns is None else returns.float(),
        dict(meta.get("source") or {}),
    )


def collect_demonstrations(
    run_dir: str | Path,
    episodes: int,
    out: str | Path | None = None,
    seed: int = 0,
    checkpoint: str | int = "latest",
    deterministic: bool = True,
) -> Demonstrations:
    """`episodes` whole episodes of a trained pgrad run's policy (greedy unless `deterministic` is False) on
    the env it trained on; written to `out` (with its JSON sidecar) when given. Episode k resets with a seed
    derived from (`seed`, k)."""
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    agent = load_policy(run_dir, checkpoint)
    saved = read_run_file(agent.info["run_dir"])
    if not saved.get("env_is_id", True):
        raise ConfigError(
            f"{run_dir} was trained on a Python callable env: collect its demonstrations in Python"
        )
    policy = agent.policy
    envs = GymVecEnv(saved["env"], 1, env_kwargs=saved.get("env_kwargs") or {}, algorithm="bc")
    obs_rows: list[Tensor] = []
    action_rows: list[Tensor] = []
    starts: list[bool] = []
    returns: list[float] = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "demos"))
            obs = envs.reset(seed=derive_seed(seed, "demos", 0))
            start = True
            while len(returns) < episodes:
                with torch.inference_mode():
                    dist = policy.distribution(obs)
                    action = policy.head.to_env_action(dist.mode if deterministic else dist.sample())
                obs_rows.append(obs[0].clone())
                action_rows.append(action[0].clone())
                starts.append(start)
                step, finished = envs.step(action)
                start = len(finished.returns) > 0
                if start:
                    returns.append(float(finished.returns[0]))
                    if len(returns) < episodes:  # each episode from its own seed
                        step = step._replace(
                            next_obs=envs.reset(seed=derive_seed(seed, "demos", len(returns)))
                        )
                obs = step.next_obs
    finally:
        envs.close()
    demos = Demonstrations(
        torch.stack(obs_rows).float(),
        torch.stack(action_rows),
        torch.tensor(starts),
        saved["env"],
        agent.observation_space,
        agent.action_space,
        torch.tensor(returns, dtype=torch.float32),
        {"run_dir": str(agent.info["run_dir"]), "checkpoint": str(agent.info["checkpoint"]), "seed": seed},
    )
    if out is not None:
        save_demonstrations(demos, out)
    return demos


# -- the fit -----------------------------------------------------------------------------------------------


def action_samples(policy: Policy, actions: Tensor) -> Tensor:
    """Env actions → the samples the policy's distribution scores (`to_env_action`'s inverse)."""
    head = policy.head
    kind = head.spec()["kind"]
    if kind == "categorical":
        return actions.long() - head.start
    if kind == "discretised":  # the nearest bin centre
        t = (actions - head.low) / (head.high - head.low)
        return torch.round(t.clamp(0, 1) * (head.bins - 1)).long()
    if kind == "deterministic":
        raise ConfigError(
            "behaviour cloning needs a policy with a likelihood; the deterministic head has none"
        )
    return actions.to(next(policy.parameters()).dtype)


def bc_loss(policy: Policy, obs: Tensor, samples: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """(−mean log πθ(a|s), info): info holds `accuracy` (discrete heads: greedy action = a, every dimension)
    or `mse` (continuous heads: mean squared error of the greedy action)."""
    dist = policy.distribution(obs)
    loss = -dist.log_prob(samples).mean()
    with torch.no_grad():
        mode = dist.mode
        if samples.dtype == torch.long:
            same = mode == samples
            info = {"accuracy": (same.all(-1) if same.ndim > 1 else same).float().mean()}
        else:
            info = {"mse": (mode - samples).pow(2).mean()}
    return loss, info


def split_episodes(demos: Demonstrations, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train rows, validation rows): a random `val_fraction` of the episodes (at least one when there are
    two or more) is held out; with one episode, its last `val_fraction` of steps."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    steps = len(demos.obs)
    rows = torch.arange(steps)
    if val_fraction == 0.0:
        return rows, rows[:0]
    count = demos.episodes
    if count >= 2:
        held = max(1, round(count * val_fraction))
        held = min(held, count - 1)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(derive_seed(seed, "split")))
        is_val = torch.isin(demos.episode_ids(), order[:held])
        return rows[~is_val], rows[is_val]
    cut = max(1, min(steps - 1, steps - math.ceil(steps * val_fraction)))
    return rows[:cut], rows[cut:]


def fit_policy(
    policy: Policy,
    demos: Demonstrations,
    epochs: int = 50,
    lr: float = 1e-3,
    batch_size: int = 256,
    val_fraction: float = 0.2,
    seed: int = 0,
    on_epoch: Any = None,
) -> dict[str, Any]:
    """Minimise −mean log πθ(a|s) over the training rows with Adam, `epochs` shuffled passes of minibatches;
    returns the final train and validation loss and accuracy (discrete) or greedy-action MSE (continuous).

    A policy with an observation normaliser gets the training observations' statistics once, before the
    fit (frozen during it). `on_epoch(epoch, record)` is called after each pass."""
    if policy.obs_dim != demos.obs.shape[1]:
        raise ConfigError(
            f"demonstrations of env '{demos.env}' have obs_dim {demos.obs.shape[1]}, the policy reads "
            f"{policy.obs_dim}"
        )
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    param = next(policy.parameters())
    obs = demos.obs.to(param.device, param.dtype)
    samples = action_samples(policy, demos.actions.to(param.device))
    train_rows, val_rows = split_episodes(demos, val_fraction, seed)
    if policy.normalizer is not None:
        policy.normalizer.update(obs[train_rows])
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(derive_seed(seed, "bc"))
    policy.train()
    record: dict[str, Any] = {}
    for epoch in range(epochs):
        order = train_rows[torch.randperm(len(train_rows), generator=generator)]
        total, count = 0.0, 0
        for rows in order.split(batch_size):
            loss, _ = bc_loss(policy, obs[rows], samples[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * len(rows), count + len(rows)
        record = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        record.update(evaluate_fit(policy, obs, samples, train_rows, "train", with_loss=False))
        if len(val_rows):
            record.update(evaluate_fit(policy, obs, samples, val_rows, "val"))
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
    record["train_steps"], record["val_steps"] = len(train_rows), len(val_rows)
    return record


@torch.no_grad()
def evaluate_fit(
    policy: Policy, obs: Tensor, samples: Tensor, rows: Tensor, prefix: str, with_loss: bool = True
) -> dict[str, float]:
    """`{prefix}_loss` (−mean log π) and `{prefix}_accuracy` or `{prefix}_mse` on `rows`."""
    loss, info = bc_loss(policy, obs[rows], samples[rows])
    out = {f"{prefix}_{k}": float(v) for k, v in info.items()}
    if with_loss:
        out[f"{prefix}_loss"] = float(loss)
    return out
