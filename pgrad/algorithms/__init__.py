"""Algorithms, one folder per way of estimating the policy gradient ∇θJ (see DESIGN.md and the docs):

    score_function/   ∇θJ ≈ E[∇θ log πθ(a|s) · Â]     REINFORCE, VPG, A2C, A3C, NPG, TRPO, PPO, GRPO, RLOO,
                                                      IS-PG
    critic/           ∇θJ ≈ E[∇ₐQ(s,a) · ∇θ a]         the learned-critic family
    differentiable/   ∇θJ = ∇θ Σ γᵗ r(sₜ(θ), aₜ(θ))    the differentiable-simulator family

`get_algorithm(name)` resolves a name to its class for `pgrad.api` and the CLI; the run harness itself only
ever receives a class.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgrad.errors import ConfigError

if TYPE_CHECKING:
    from pgrad.run.algorithm import Algorithm

# How an algorithm estimates ∇θJ: the value of its `family`, in the order `pgrad list` shows them.
FAMILIES = ("score function", "learned critic", "differentiable simulator")

# name -> "module:Class", grouped by family; imported on first use so `pgrad list` and the CLI stay fast.
REGISTRY: dict[str, str] = {
    "reinforce": "pgrad.algorithms.score_function.reinforce:Reinforce",
    "vpg": "pgrad.algorithms.score_function.vpg:VPG",
    "a2c": "pgrad.algorithms.score_function.a2c:A2C",
    "a3c": "pgrad.algorithms.score_function.a3c:A3C",
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
    """Each algorithm with its estimator family and a one-line summary, grouped by family.

    Read from the algorithm files' class attributes without importing them (no torch: `pgrad list` starts
    fast), or from the class where its module is already loaded."""
    rows = []
    for name, target in REGISTRY.items():
        module, cls = target.split(":")
        attributes = _class_attributes(module, cls, ("family", "summary"))
        rows.append({"name": name, **attributes})
    order = {family: i for i, family in enumerate(FAMILIES)}
    return sorted(rows, key=lambda row: order.get(row["family"], len(order)))


def _class_attributes(module: str, cls: str, names: tuple[str, ...]) -> dict[str, str]:
    """Class attributes given as literals in a module's source, read with `ast`; imported when they are not
    literals there (or the module is loaded already)."""
    if module not in sys.modules:
        path = Path(__file__).parent.joinpath(*module.split(".")[2:]).with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == cls:
                found = {
                    target.id: stmt.value
                    for stmt in node.body
                    if isinstance(stmt, ast.Assign)
                    for target in stmt.targets
                    if isinstance(target, ast.Name) and target.id in names
                }
                try:
                    return {name: ast.literal_eval(found[name]) for name in names}
                except (KeyError, ValueError):
                    break  # inherited or computed: import the class
    loaded = getattr(importlib.import_module(module), cls)
    return {name: getattr(loaded, name) for name in names}


def __getattr__(name: str) -> Any:
    if name == "Algorithm":  # the base class, loaded on first use (it needs torch)
        from pgrad.run.algorithm import Algorithm

        return Algorithm
    raise AttributeError(f"module 'pgrad.algorithms' has no attribute '{name}'")


__all__ = ["FAMILIES", "REGISTRY", "Algorithm", "get_algorithm", "list_algorithms"]
