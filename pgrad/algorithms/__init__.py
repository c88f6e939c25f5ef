"""Algorithms, one folder per way of estimating the policy gradient ∇θJ (see DESIGN.md and the docs):

    score_function/   ∇θJ ≈ E[∇θ log πθ(a|s) · Â]     REINFORCE, VPG, A2C, NPG, TRPO, PPO, GRPO, RLOO, IS-PG
    critic/           ∇θJ ≈ E[∇ₐQ(s,a) · ∇θ a]         the learned-critic family
    differentiable/   ∇θJ = ∇θ Σ γᵗ r(sₜ(θ), aₜ(θ))    the differentiable-simulator family

`get_algorithm(name)` resolves a name to its class for `pgrad.api` and the CLI; the run harness itself only
ever receives a class.
"""

from __future__ import annotations

import importlib

from pgrad.errors import ConfigError
from pgrad.run.algorithm import FAMILIES, Algorithm

# name -> "module:Class", grouped by family; imported on first use so `pgrad list` and the CLI stay fast.
REGISTRY: dict[str, str] = {
    "reinforce": "pgrad.algorithms.score_function.reinforce:Reinforce",
    "vpg": "pgrad.algorithms.score_function.vpg:VPG",
    "a2c": "pgrad.algorithms.score_function.a2c:A2C",
    "npg": "pgrad.algorithms.score_function.npg:NPG",
    "trpo": "pgrad.algorithms.score_function.trpo:TRPO",
    "ppo": "pgrad.algorithms.score_function.ppo:PPO",
    "grpo": "pgrad.algorithms.score_function.grpo:GRPO",
    "rloo": "pgrad.algorithms.score_function.rloo:RLOO",
    "is_pg": "pgrad.algorithms.score_function.is_pg:ImportanceSampledPG",
    "ddpg": "pgrad.algorithms.critic.ddpg:DDPG",
    "td3": "pgrad.algorithms.critic.td3:TD3",
    "sac": "pgrad.algorithms.critic.sac:SAC",
    "sac_discrete": "pgrad.algorithms.critic.sac_discrete:DiscreteSAC",
    "crossq": "pgrad.algorithms.critic.crossq:CrossQ",
    "apg": "pgrad.algorithms.differentiable.apg:APG",
    "shac": "pgrad.algorithms.differentiable.shac:SHAC",
    "ahac": "pgrad.algorithms.differentiable.ahac:AHAC",
    "sapo": "pgrad.algorithms.differentiable.sapo:SAPO",
}


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class registered under `name`; a one-line ConfigError for an unknown name."""
    key = name.lower().replace("-", "_")
    if key not in REGISTRY:
        raise ConfigError(f"unknown algorithm '{name}' (known: {', '.join(sorted(REGISTRY))})")
    module, cls = REGISTRY[key].split(":")
    return getattr(importlib.import_module(module), cls)


def list_algorithms() -> list[dict[str, str]]:
    """Each algorithm with its estimator family and a one-line summary, grouped by family."""
    rows = []
    for name in REGISTRY:
        cls = get_algorithm(name)
        rows.append({"name": name, "family": cls.family, "summary": cls.summary})
    order = {family: i for i, family in enumerate(FAMILIES)}
    return sorted(rows, key=lambda row: order.get(row["family"], len(order)))


__all__ = ["REGISTRY", "Algorithm", "get_algorithm", "list_algorithms"]
