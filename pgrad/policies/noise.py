"""Temporally correlated exploration noise for continuous actions.

White noise (independent per step) averages out over a few steps: on tasks that need long, consistent
pushes (MountainCarContinuous) it rarely explores far. Colored noise with power spectrum S(f) ∝ 1/f^β
correlates the noise over time; β = 1 ("pink") is a robust default across tasks (Eberhard et al. 2023, "Pink
Noise Is All You Need: Colored Noise Exploration in Deep Reinforcement Learning", ICLR). β = 0 is white
noise, β = 2 is red (Brownian) noise, which behaves like an Ornstein–Uhlenbeck process.

`ColoredNoise` hands out one standard-normal-marginal value per sub-env and action dimension at each step,
from sequences of `length` steps drawn with Timmer & König's method (a random spectrum of the wanted shape,
inverse FFT, each sequence scaled to unit variance); a sub-env whose episode ended starts a fresh
sequence. It draws from
its own generator and is checkpointable, so a resumed run continues the same noise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pgrad.errors import ConfigError


def colored_noise(beta: float, shape: tuple[int, ...], length: int, generator: torch.Generator) -> Tensor:
    """Sequences [*shape, length] with power spectrum ∝ 1/f^β, each of unit variance (Timmer & König 1995)."""
    freqs = torch.fft.rfftfreq(length, dtype=torch.float64)
    freqs[0] = freqs[1] if length > 1 else 1.0  # no infinite power at f = 0
    amplitude = freqs.pow(-beta / 2.0)
    real = torch.randn((*shape, len(freqs)), generator=generator, dtype=torch.float64) * amplitude
    imag = torch.randn((*shape, len(freqs)), generator=generator, dtype=torch.float64) * amplitude
    imag[..., 0] = 0.0  # the zero- and Nyquist-frequency terms are real
    if length % 2 == 0:
        imag[..., -1] = 0.0
        real[..., -1] *= math.sqrt(2.0)
    signal = torch.fft.irfft(torch.complex(real, imag), n=length)
    return (signal / signal.std(dim=-1, keepdim=True).clamp_min(1e-12)).float()  # unit variance per sequence


class ColoredNoise:
    """Per-sub-env, per-action-dimension colored noise (see the module docstring)."""

    def __init__(self, beta: float, num_envs: int, action_dim: int, length: int, seed: int):
        if beta < 0 or length < 2:
            raise ConfigError(
                f"colored noise needs beta >= 0 and a sequence length >= 2, got {beta}, {length}"
            )
        self.beta, self.length = float(beta), int(length)
        self.generator = torch.Generator().manual_seed(seed)
        self.sequences = colored_noise(self.beta, (num_envs, action_dim), self.length, self.generator)
        self.position = torch.zeros(num_envs, dtype=torch.long)

    def __call__(self, restart: Tensor | None = None) -> Tensor:
        """The next noise value [N, A]; sub-envs flagged in `restart` ([N] bool) start a new sequence."""
        stale = self.position >= self.length
        if restart is not None:
            stale = stale | restart.cpu()
        if bool(stale.any()):
            rows = stale.nonzero().squeeze(1)
            fresh = colored_noise(
                self.beta, (len(rows), self.sequences.shape[1]), self.length, self.generator
            )
            self.sequences[rows] = fresh
            self.position[rows] = 0
        rows = torch.arange(len(self.position))
        value = self.sequences[rows, :, self.position]
        self.position += 1
        return value

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "sequences": self.sequences.clone(),
            "position": self.position.clone(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if tuple(state["sequences"].shape) != tuple(self.sequences.shape):
            raise ConfigError(
                f"colored noise state of shape {tuple(state['sequences'].shape)} does not fit "
                f"{tuple(self.sequences.shape)}"
            )
        self.sequences, self.position = state["sequences"].clone(), state["position"].clone()
        self.generator.set_state(state["generator"])
