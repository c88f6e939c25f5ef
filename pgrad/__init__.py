"""pgrad: policy-gradient reinforcement learning, organised by how each method estimates ∇θJ."""

from pgrad.algorithms import get_algorithm, list_algorithms
from pgrad.api import evaluate, load, resume, train
from pgrad.envs.base import VecEnv
from pgrad.envs.gym import GymVecEnv
from pgrad.envs.make import make_env
from pgrad.errors import CheckpointError, ConfigError, EnvError, PgradError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "EnvError",
    "GymVecEnv",
    "PgradError",
    "VecEnv",
    "evaluate",
    "get_algorithm",
    "list_algorithms",
    "load",
    "make_env",
    "resume",
    "train",
]
