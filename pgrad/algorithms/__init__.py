"""Algorithms, grouped by how they estimate the policy gradient (see the package docs)."""

from __future__ import annotations

import importlib

from pgrad.algorithms.base import Algorithm, IterationResult
from pgrad.errors import ConfigError

# name -> "module:Class"; imported on first use so `pgrad list` and the CLI stay fast.
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
}


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class registered under `name`; a one-line ConfigError for an unknown name."""
    key = name.lower().replace("-", "_")
    if key not in REGISTRY:
        raise ConfigError(f"unknown algorithm '{name}' (known: {', '.join(sorted(REGISTRY))})")
    module, cls = REGISTRY[key].split(":")
    return getattr(importlib.import_module(module), cls)


def list_algorithms() -> list[dict[str, str]]:
    """Each algorithm with its estimator family and a one-line summary."""
    rows = []
    for name in REGISTRY:
        cls = get_algorithm(name)
        rows.append({"name": name, "family": cls.family, "summary": cls.summary})
    return rows


__all__ = ["REGISTRY", "Algorithm", "IterationResult", "get_algorithm", "list_algorithms"]
