"""AHAC: adaptive-horizon actor-critic (Georgiev et al. 2024, "Adaptive Horizon Actor-Critic for Policy
Learning in Contact-Rich Differentiable Simulation").

Estimator — SHAC's windowed BPTT, with the gradient stopped at stiff contact and the window length adapted:

    ∇θJ ≈ ∇θ 1/(HN) Σ_n Σ_segments [ Σ_{t∈seg} γ^{t−s} r(s_t(θ), aθ(s_t)) + γ^{e−s+1} V̄(s_{e+1}) ]

A segment ends at an episode end, at the window end, or after a step whose contact force exceeds
`contact_threshold` C: that step's next state is detached (`base.rollout`), so no gradient crosses a stiff
contact — where BPTT's gradient variance explodes (`pgrad lab bptt`) — and the segment is closed there by
the critic, as at a time-limit end (the bootstrap is a constant: the stiff step's consequences reach the
actor only through the value the critic learns).

The window length H is a primal variable of a constrained problem solved by dual ascent: maximise the window
length (a longer window leans less on the critic, whose error enters the gradient as γ^H ‖V − V^π‖) subject
to the fraction ρ of windows crossed by a stiff contact staying below ρ̄ (`max_cut_fraction`). With the
multiplier φ ≥ 0 and ∂(length)/∂H = ∂ρ/∂H taken as 1 per step, each window does

    φ ← max(0, φ + α_φ (ρ − ρ̄)),        H ← clip(H + α_H (1 − φ), H_min, H_max)

so H grows while contacts are rare, and shrinks once they cross more than ρ̄ of the windows for long enough
that φ exceeds 1. On a smooth env (no `contact_force`: ρ = 0) φ stays 0 and H grows to H_max by α_H steps per
window: AHAC is then SHAC with an H_max window, twin critics and no target critic.

Critics (as in the paper): two value networks regressed on the same TD(λ) targets, both the targets and the
actor's bootstrap using their minimum; no target critic.

Defaults: SHAC's (64 envs, ELU + LayerNorm 64×64, actor 5e-3, critic 1e-3, Adam betas (0.7, 0.95), clip 1,
γ 0.99, λ 0.95, 16 × 4 critic minibatches), H from 32 within [8, 64], C = 50 (a bounce on
pgrad/ContactToy-v0 at 2 m/s peaks near 63).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from pgrad.algorithms.common import TensorState, check_at_least, check_non_negative, check_unit_interval
from pgrad.algorithms.differentiable.base import TwinCritics, Window, frozen, rollout
from pgrad.algorithms.differentiable.shac import SHAC
from pgrad.algorithms.differentiable.shac import Config as SHACConfig
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.run.seeding import derive_seed


@dataclass
class Config(SHACConfig):
    """AHAC options (`pgrad train ahac --help`); `horizon` is the starting window length."""

    horizon_min: int = 8
    """Shortest window H_min."""
    horizon_max: int = 64
    """Longest window H_max."""
    horizon_lr: float = 1.0
    """α_H: steps the window grows per iteration while the constraint holds."""
    dual_lr: float = 0.5
    """α_φ: step of the multiplier φ per unit of constraint violation."""
    contact_threshold: float = 50.0
    """C: a step whose contact force exceeds this is stiff (the gradient stops there)."""
    max_cut_fraction: float = 0.5
    """ρ̄: the fraction of windows a stiff contact may cross before the window shrinks."""
    critics: int = 2
    """Value networks in the ensemble (targets and bootstrap use their minimum)."""


class AHAC(TwinCritics, SHAC):
    name = "ahac"
    family = "differentiable simulator"
    summary = "AHAC: SHAC with no gradient through stiff contact and a window adapted by dual ascent"
    Config = Config
    # `pgrad tune`'s search (pgrad.workflow.tune): SHAC's without the horizon (adapted here), its ceiling.
    search_space: ClassVar[dict[str, tuple]] = {
        "actor_lr": ("log", 1e-4, 1e-2),
        "critic_lr": ("log", 1e-4, 1e-2),
        "gamma": ("categorical", (0.98, 0.99, 0.995)),
        "lam": ("categorical", (0.9, 0.95, 0.99)),
        "horizon_max": ("categorical", (32, 64, 128)),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        check_at_least(config, 1, "horizon_min", "critics")
        check_non_negative(config, "horizon_lr", "dual_lr", "contact_threshold")
        check_unit_interval(config, "max_cut_fraction")
        if not config.horizon_min <= config.horizon <= config.horizon_max:
            raise ConfigError(
                f"need horizon_min <= horizon <= horizon_max, got {config.horizon_min}, {config.horizon}, "
                f"{config.horizon_max}"
            )
        super().__init__(config, envs, seed, device, total_steps)
        self.window_length = torch.tensor(float(config.horizon), dtype=torch.float64)  # H, a real number
        self.dual = torch.zeros((), dtype=torch.float64)  # φ

    def window(self) -> Window:
        steps = int(torch.round(self.window_length))
        return rollout(
            self.envs,
            self.act,
            steps,
            derive_seed(self.seed, "train", 0),
            contact_threshold=self.config.contact_threshold,
        )

    def bootstrap_values(self, obs: Tensor) -> Tensor:
        with frozen(self.critic):  # the actor's loss must not train the critics
            return self.critic(obs).min(dim=0).values

    def after_actor_step(self, window: Window) -> dict[str, Tensor]:
        """The dual step on φ and the primal step on H (module docstring)."""
        config = self.config
        steps = window.rewards.shape[0]
        # ρ: the fraction of this window's env rows a stiff contact crossed
        crossed = window.cut.any(dim=0).double().mean() if window.cut is not None else self.dual.new_zeros(())
        self.dual = torch.clamp(self.dual + config.dual_lr * (crossed - config.max_cut_fraction), min=0.0)
        self.window_length = torch.clamp(
            self.window_length + config.horizon_lr * (1.0 - self.dual),
            config.horizon_min,
            config.horizon_max,
        )
        peak = window.contact.max() if window.contact is not None else torch.zeros(())
        return {
            "stats/horizon": torch.tensor(float(steps)),
            "stats/dual": self.dual.float(),
            "stats/cut_fraction": crossed.float(),
            "stats/contact_peak": peak.float(),
        }

    def checkpointed(self) -> dict[str, Any]:
        return {**super().checkpointed(), "horizon": TensorState(self, "window_length", "dual")}
