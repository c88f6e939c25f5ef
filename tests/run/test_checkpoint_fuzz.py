"""Fuzzing the checkpoint loader: damaged files are refused with one line naming them, never a traceback.

A real checkpoint (REINFORCE on CartPole, a few hundred steps) is damaged file by file: truncated at a random
byte, a random bit flipped, deleted, replaced by garbage, garbage appended. Each time
`load_checkpoint(latest_checkpoint(root))` must either raise a `CheckpointError` whose message is one line
naming the damaged file, or return exactly the original state (a change that means nothing, such as an
exponent's `e` flipped to `E` in state.json). Any other exception fails the test. Seeds are fixed.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import pgrad
from pgrad.errors import CheckpointError
from pgrad.run.checkpoint import LATEST, META_FILE, TENSOR_FILE, latest_checkpoint, load_checkpoint

MUTATIONS_PER_FILE = 400


def assert_same(a: Any, b: Any) -> None:
    """Exact equality of two state trees (tensors: dtype, shape and values; tuples stay tuples)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, int]:
    """(checkpoints folder, state, step) of a short real training run."""
    run_dir = tmp_path_factory.mktemp("fuzz") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pgrad.train(
            "reinforce",
            "CartPole-v1",
            total_steps=300,
            seed=3,
            run_dir=str(run_dir),
            eval_episodes=0,
            progress=False,
            tensorboard=False,
        )
    root = run_dir / "checkpoints"
    state, step = load_checkpoint(latest_checkpoint(root))
    # The checkpoint is realistic: module and optimiser state, RNG state, counters, strings, None.
    assert state["algorithm"]["policy_optimizer"]["state"] and state["rng"]["meta"]["python"]
    return root, state, step


def _truncate(rng: random.Random, data: bytes) -> bytes | None:
    return data[: rng.randrange(len(data))]


def _flip(rng: random.Random, data: bytes) -> bytes | None:
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


def _delete(rng: random.Random, data: bytes) -> bytes | None:
    return None


def _garbage(rng: random.Random, data: bytes) -> bytes | None:
    return rng.randbytes(rng.choice([0, 1, 7, 64, len(data), 2 * len(data)]))


def _append(rng: random.Random, data: bytes) -> bytes | None:
    return data + rng.randbytes(rng.randint(1, 64))


def _swap_bytes(rng: random.Random, data: bytes) -> bytes | None:
    i, j = sorted(rng.sample(range(len(data)), 2))
    return data[:i] + data[j : j + 1] + data[i + 1 : j] + data[i : i + 1] + data[j + 1 :]


Mutation = Callable[[random.Random, bytes], "bytes | None"]
# Weighted towards the subtle ones: one flipped bit or a cut anywhere.
MUTATIONS: list[Mutation] = [_flip] * 4 + [_truncate] * 3 + [_garbage, _append, _swap_bytes, _delete]


def _load_damaged(root: Path, damaged: list[Path], state: Any, step: int) -> str:
    """Load after damage; 'refused' or 'same', anything else fails."""
    try:
        loaded, loaded_step = load_checkpoint(latest_checkpoint(root))
    except CheckpointError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert any(str(path) in message for path in damaged), (damaged, message)
        return "refused"
    assert loaded_step == step
    assert_same(loaded, state)
    return "same"


@pytest.mark.parametrize("target", [LATEST, META_FILE, TENSOR_FILE])
def test_a_damaged_file_is_refused_naming_it_or_loads_unchanged(run, target):
    root, state, step = run
    path = root / LATEST if target == LATEST else latest_checkpoint(root) / target
    original = path.read_bytes()
    rng = random.Random(f"fuzz-{target}")
    outcomes = {"refused": 0, "same": 0}
    try:
        for _ in range(MUTATIONS_PER_FILE):
            damaged = rng.choice(MUTATIONS)(rng, original)
            if damaged == original:
                continue
            if damaged is None:
                path.unlink()
            else:
                path.write_bytes(damaged)
            outcomes[_load_damaged(root, [path], state, step)] += 1
            path.write_bytes(original)
    finally:
        path.write_bytes(original)
    assert outcomes["refused"] >= MUTATIONS_PER_FILE * 0.95, outcomes
    if target == TENSOR_FILE:  # every byte of it is under its SHA-256
        assert outcomes["same"] == 0, outcomes
    assert_same(load_checkpoint(latest_checkpoint(root))[0], state)  # the files were restored


def test_both_files_damaged_at_once_is_refused_naming_one(run):
    root, state, step = run
    folder = latest_checkpoint(root)
    paths = [folder / META_FILE, folder / TENSOR_FILE]
    originals = [p.read_bytes() for p in paths]
    rng = random.Random("fuzz-both")
    try:
        for _ in range(150):
            for path, original in zip(paths, originals, strict=True):
                damaged = rng.choice(MUTATIONS)(rng, original)
                if damaged is None:
                    path.unlink()
                else:
                    path.write_bytes(damaged)
            _load_damaged(root, paths, state, step)
            for path, original in zip(paths, originals, strict=True):
                path.write_bytes(original)
    finally:
        for path, original in zip(paths, originals, strict=True):
            path.write_bytes(original)
