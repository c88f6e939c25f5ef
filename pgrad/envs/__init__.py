"""Environments; importing this package registers pgrad's own Gymnasium envs (pgrad/ContextualBandit-v0)."""

from pgrad.envs import bandit as _bandit  # noqa: F401  (registers pgrad/ContextualBandit-v0)
from pgrad.envs import diff as _diff  # noqa: F401  (registers pgrad/DiffPendulum-v0, ...)
