"""One run seed derives every random number generator: python, numpy, torch and each env."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def derive_seed(root: int, *keys: int | str) -> int:
    """A 32-bit seed derived from `root` and a path of keys (e.g. `("train", iteration)`), via SeedSequence.

    Different key paths give statistically independent streams; the same path always gives the same seed.
    """
    spawn_key = tuple(k if isinstance(k, int) else int.from_bytes(k.encode(), "little") % 2**32 for k in keys)
    return int(np.random.SeedSequence(root, spawn_key=spawn_key).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy's global generator and torch (CPU and any accelerator)."""
    random.seed(seed)
    np.random.seed(derive_seed(seed, "numpy"))
    torch.manual_seed(derive_seed(seed, "torch"))


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The global RNG states as (JSON-serialisable dict, tensors) for a checkpoint."""
    py_version, py_state, py_gauss = random.getstate()
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    meta = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
    }
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = state
    return meta, tensors


def set_rng_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Restore what `rng_state` returned."""
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(tensors["rng/torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
