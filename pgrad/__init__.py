"""pgrad: policy-gradient reinforcement learning, organised by how each method estimates ∇θJ.

The public names load on first use (PEP 562), so `pgrad --help` and `pgrad list` start without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "CheckpointError": "pgrad.errors",
    "ConfigError": "pgrad.errors",
    "EnvError": "pgrad.errors",
    "PgradError": "pgrad.errors",
    "GymVecEnv": "pgrad.envs.gym",
    "VecEnv": "pgrad.envs.base",
    "evaluate": "pgrad.api",
    "load": "pgrad.api",
    "resume": "pgrad.api",
    "train": "pgrad.api",
    "get_algorithm": "pgrad.algorithms",
    "list_algorithms": "pgrad.algorithms",
    "make_env": "pgrad.envs.make",
    # the researcher's workflow (pgrad/workflow/): reached by name only, they sit above this facade
    "bc": "pgrad.workflow.bc",
    "compare": "pgrad.workflow.compare",
    "compare_algorithms": "pgrad.workflow.compare",
    "export": "pgrad.workflow.export",
    "record": "pgrad.workflow.record",
    "report": "pgrad.workflow.report",
    "sweep": "pgrad.workflow.sweep",
    "tune": "pgrad.workflow.tune",
    "train_sequences": "pgrad.algorithms.sequences",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "EnvError",
    "GymVecEnv",
    "PgradError",
    "VecEnv",
    "bc",
    "compare",
    "compare_algorithms",
    "evaluate",
    "export",
    "get_algorithm",
    "list_algorithms",
    "load",
    "make_env",
    "record",
    "report",
    "resume",
    "sweep",
    "train",
    "train_sequences",
    "tune",
]

if TYPE_CHECKING:
    from pgrad.algorithms import get_algorithm, list_algorithms
    from pgrad.algorithms.sequences import train_sequences
    from pgrad.api import evaluate, load, resume, train
    from pgrad.envs.base import VecEnv
    from pgrad.envs.gym import GymVecEnv
    from pgrad.envs.make import make_env
    from pgrad.errors import CheckpointError, ConfigError, EnvError, PgradError


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pgrad' has no attribute '{name}'")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
