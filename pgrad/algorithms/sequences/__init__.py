"""Sequence-level training of token policies on verifiable-reward tasks (`pgrad.envs.sequences`):

grpo.py   GRPO / Dr. GRPO / RLOO over groups of sampled completions (`train_sequences`)
bc.py     behaviour cloning on prompt/completion demonstrations (`train_bc`), an imitative prior
common.py the run folder, loading a token policy back, greedy exact-match evaluation
"""

from __future__ import annotations

from pgrad.algorithms.sequences.bc import train_bc
from pgrad.algorithms.sequences.common import exact_match, load_token_policy
from pgrad.algorithms.sequences.grpo import sequence_loss, train_sequences

__all__ = ["exact_match", "load_token_policy", "sequence_loss", "train_bc", "train_sequences"]
