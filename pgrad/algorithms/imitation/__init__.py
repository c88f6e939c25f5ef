"""Imitation: behaviour cloning of demonstrations into a score-function algorithm's policy (`pgrad bc`).

The imitative prior that uses its result during RL (`--init-from`, `--prior-kl`) lives with the algorithms it
changes: `pgrad.algorithms.common.ImitativePrior`. See docs/imitation.md.
"""

from pgrad.algorithms.imitation.bc import (
    Demonstrations,
    bc_loss,
    collect_demonstrations,
    fit_policy,
    load_demonstrations,
    save_demonstrations,
)

__all__ = [
    "Demonstrations",
    "bc_loss",
    "collect_demonstrations",
    "fit_policy",
    "load_demonstrations",
    "save_demonstrations",
]
