"""A3C's two Ray actor classes (`pgrad.algorithms.score_function.a3c`): the parameter server and the
actor-learners. They are plain classes, made Ray actors by `ray.remote` where A3C starts them (Ray is
imported only there); tests drive them directly too.

Parameters travel as one flat float32 vector in `model.parameters()` order (`flat`), as do gradients.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from pgrad.algorithms.score_function.a2c import A2C, make_optimizers, network_groups
from pgrad.algorithms.score_function.a2c import Config as A2CConfig
from pgrad.run.ray_cluster import WorkerSetup

# What a push carries besides the gradient: env steps, finished episodes and the loss diagnostics.
Report = dict[str, Any]


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One float32 CPU vector of `tensors`, concatenated in order."""
    return torch.cat([t.detach().reshape(-1).float().cpu() for t in tensors])


def unflat(vector: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """`vector` cut back into tensors shaped like `like` (on their devices and dtypes)."""
    out, offset = [], 0
    for t in like:
        out.append(vector[offset : offset + t.numel()].view_as(t).to(t.device, t.dtype))
        offset += t.numel()
    if offset != vector.numel():
        raise ValueError(f"a3c: a flat vector of {vector.numel()} values for {offset} parameters")
    return out


def load_flat(module: nn.Module, vector: torch.Tensor) -> None:
    """Copy the flat parameter vector into `module`'s parameters."""
    with torch.no_grad():
        for p, value in zip(module.parameters(), unflat(vector, list(module.parameters())), strict=True):
            p.copy_(value)


class ParameterServer:
    """The shared model θ and its optimiser state (the paper's shared RMSProp), with a version counter v.

    `open(n)` admits n more pushes; `push(g, v_g, report)` applies g (computed on version v_g) with one
    optimiser step, records its staleness v − v_g (pushes applied since g's weights were pulled), v += 1, and
    answers with the new weights; a push that finds the server closed is refused (None) and not counted.
    `drain()` hands the iteration's counts and diagnostics to the learner and resets them."""

    def __init__(self, config: A2CConfig, model: nn.Module, threads: int = 1):
        torch.set_num_threads(threads)
        self.model = model.cpu()
        self.groups = {name: list(m.parameters()) for name, m in network_groups(self.model).items()}
        self.optimizers = make_optimizers(config, network_groups(self.model))
        self.params = list(self.model.parameters())
        self.version = 0
        self.remaining = 0
        self._reset()

    def _reset(self) -> None:
        self.staleness: list[int] = []
        self.steps = 0
        self.returns: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.sums: dict[str, float] = {}

    def open(self, pushes: int, lr_fraction: float = 1.0) -> None:
        """Admit `pushes` more gradients, at lr = initial lr · `lr_fraction`."""
        self.remaining = int(pushes)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_fraction

    def pull(self) -> tuple[torch.Tensor, int, bool]:
        """(θ as a flat vector, its version v, whether pushes are admitted)."""
        return flat(self.params), self.version, self.remaining > 0

    def push(self, grad: torch.Tensor, version: int, report: Report) -> tuple[torch.Tensor, int, bool] | None:
        """Apply gradient `grad` computed on `version`; None (refused, not counted) when closed."""
        if self.remaining <= 0:
            return None
        for p, g in zip(self.params, unflat(grad, self.params), strict=True):
            p.grad = g
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.staleness.append(self.version - version)
        self.version += 1
        self.remaining -= 1
        self.steps += int(report["steps"])
        self.returns.append(report["episode_returns"])
        self.lengths.append(report["episode_lengths"])
        for k, v in report["metrics"].items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        return self.pull()

    def drain(self) -> dict[str, Any]:
        """The pushes applied since the last drain: their count, env steps, staleness, episodes, mean
        diagnostics, and the weights and version now."""
        pushes = len(self.staleness)
        out = {
            "pushes": pushes,
            "steps": self.steps,
            "staleness": np.asarray(self.staleness, dtype=np.int64),
            "episode_returns": np.concatenate(self.returns) if self.returns else np.zeros(0),
            "episode_lengths": np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64),
            "metrics": {k: v / max(pushes, 1) for k, v in self.sums.items()},
            "weights": flat(self.params),
            "version": self.version,
        }
        self._reset()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "version": self.version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.version = int(state["version"])


class ActorLearner:
    """Actor-learner k: its own `num_envs` sub-envs and an A2C learner on them (the same networks, collector
    and loss as A2C), never stepping: it pulls θ_v, collects `num_steps` steps, pushes ∇L (clipped to
    max_grad_norm) with v, and continues from the weights the push answers with, until the server closes.
    Its envs, initial episodes and action sampling derive from `seed`. The envs are built at the first
    `build` / `run`, not in the constructor: an exception raised there would lose its type."""

    def __init__(self, setup: WorkerSetup, config: A2CConfig, seed: int, server: Any = None):
        self.setup, self.config, self.seed, self.server = setup, config, seed, server
        self.learner: A2C | None = None
        self.pending: tuple[torch.Tensor, int, Report] | None = None  # refused by a closed server

    def build(self) -> None:
        """Build the envs and the A2C learner on them (once)."""
        if self.learner is not None:
            return
        torch.set_num_threads(self.setup.threads)
        torch.manual_seed(self.seed)  # the sampling stream
        envs = self.setup.make_envs(self.config.num_envs)
        self.learner = A2C(self.config, envs, self.seed, torch.device("cpu"), 0)
        self.params = list(self.learner.model.parameters())
        self.groups = self.learner.param_groups

    def gradient(self, rollout: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """(flat ∇θ L of A2C's loss on `rollout` at the current weights, clipped per group; diagnostics)."""
        loss, info = self.learner.loss(rollout)
        for p in self.params:
            p.grad = None
        loss.backward()
        limit = self.learner.config.max_grad_norm
        norms = {
            name: nn.utils.clip_grad_norm_(params, limit if limit > 0 else math.inf)
            for name, params in self.groups.items()
        }
        info["stats/grad_norm"] = norms.get("model", norms.get("policy"))
        if "critic" in norms:
            info["stats/value_grad_norm"] = norms["critic"]
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        return flat(grads), {k: float(v) for k, v in info.items()}

    def work(self, weights: torch.Tensor, version: int) -> tuple[torch.Tensor, int, Report]:
        """One rollout and its gradient at weights θ_version: what a push carries."""
        load_flat(self.learner.model, weights)
        rollout = self.learner.collector.collect(self.learner.policy, self.learner.config.num_steps)
        grad, metrics = self.gradient(rollout)
        report = {
            "steps": rollout.rewards.numel(),
            "episode_returns": rollout.episode_returns,
            "episode_lengths": rollout.episode_lengths,
            "metrics": metrics,
        }
        return grad, version, report

    def run(self) -> int:
        """Pull, work and push until the server closes; returns the pushes it had applied. A gradient the
        closed server refused waits here and goes first when the server opens again."""
        from pgrad.run.ray_cluster import ray_module

        ray = ray_module("a3c")
        self.build()
        applied = 0
        if self.pending is not None:
            reply = ray.get(self.server.push.remote(*self.pending))
            if reply is None:
                return applied
            self.pending, applied = None, 1
        else:
            reply = ray.get(self.server.pull.remote())
        while reply[2]:  # the server admits more pushes
            push = self.work(reply[0], reply[1])
            reply = ray.get(self.server.push.remote(*push))
            if reply is None:
                self.pending = push
                break
            applied += 1
        return applied
