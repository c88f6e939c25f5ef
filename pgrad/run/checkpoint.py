"""Checkpoints as safetensors + JSON, written atomically; nothing is ever unpickled.

A checkpoint is a folder `checkpoints/step_<global step>/` holding `state.safetensors` (every tensor) and
`state.json` (everything else, plus the SHA-256 of the tensor file). It is written under a temporary name,
flushed to disk and renamed into place; only then is `checkpoints/latest.json` replaced (again by an atomic
rename) to point at it. A crash at any moment therefore leaves the previous checkpoint loadable.

Arbitrary nested state (module and optimiser `state_dict`s, RNG states, counters) is split by `flatten` into
a flat `{path: tensor}` map and a JSON tree in which each tensor is replaced by `{"__tensor__": path}`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pgrad.errors import CheckpointError

FORMAT = "pgrad-checkpoint/1"
TENSOR_FILE = "state.safetensors"
META_FILE = "state.json"
LATEST = "latest.json"


def flatten(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested structure into (JSON-serialisable tree, {path: tensor})."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous().clone()
            return {"__tensor__": path}
        if isinstance(node, dict):
            if all(isinstance(k, str) for k in node):
                return {k: walk(v, f"{path}/{k}") for k, v in node.items()}
            # Optimiser state is keyed by parameter index: keep the int keys.
            return {"__items__": [[k, walk(v, f"{path}/{k}")] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {"__tuple__": [walk(v, f"{path}/{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, bool | int | str):
            return node
        if isinstance(node, float):
            return node if math.isfinite(node) else {"__float__": repr(node)}
        raise CheckpointError(f"cannot store {type(node).__name__} at '{path or '/'}' in a checkpoint")

    return walk(tree, prefix), tensors


def unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten`."""
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__items__" in tree:
            return {k: unflatten(v, tensors) for k, v in tree["__items__"]}
        if "__tuple__" in tree:
            return tuple(unflatten(v, tensors) for v in tree["__tuple__"])
        if "__float__" in tree:
            return float(tree["__float__"])
        return {k: unflatten(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unflatten(v, tensors) for v in tree]
    return tree


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def save_checkpoint(root: str | Path, step: int, state: Any, keep: int = 3) -> Path:
    """Write `state` as checkpoint `root/step_<step>` atomically and point `root/latest.json` at it.

    Keeps the newest `keep` checkpoints (at least one). Returns the checkpoint folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:012d}"
    tmp = root / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta, tensors = flatten(state)
    save_file(tensors, tmp / TENSOR_FILE)
    _fsync(tmp / TENSOR_FILE)
    with open(tmp / META_FILE, "w") as f:
        json.dump({"format": FORMAT, "step": step, "sha256": _sha256(tmp / TENSOR_FILE), "state": meta}, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync(tmp)
    final = root / name
    if final.exists():  # the same step saved again (e.g. right after a resume): swap it out
        old = root / f".{name}.{os.getpid()}.old"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync(root)
    _write_json_atomic(root / LATEST, {"format": FORMAT, "step": step, "checkpoint": name})
    for stale in sorted(p for p in root.glob("step_*") if p.is_dir())[: -max(keep, 1)]:
        if stale.name != name:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def read_json(path: Path) -> Any:
    """Parse a JSON file; a one-line CheckpointError naming the file when it is missing or corrupted."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted JSON ({exc})") from None


def latest_checkpoint(root: str | Path) -> Path:
    """The folder `root/latest.json` points at."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.exists():
        raise CheckpointError(f"{pointer}: no checkpoint has been written in {root}")
    data = read_json(pointer)
    if not isinstance(data, dict) or data.get("format") != FORMAT or "checkpoint" not in data:
        raise CheckpointError(f"{pointer}: not a pgrad checkpoint pointer")
    return root / str(data["checkpoint"])


def load_checkpoint(folder: str | Path) -> tuple[Any, int]:
    """Read a checkpoint folder; returns (state, step). Refuses truncated or corrupted files, naming them."""
    folder = Path(folder)
    meta_path, tensor_path = folder / META_FILE, folder / TENSOR_FILE
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "state" not in meta:
        raise CheckpointError(f"{meta_path}: not a pgrad checkpoint (format {FORMAT!r} expected)")
    if not tensor_path.exists():
        raise CheckpointError(f"{tensor_path}: file not found")
    if _sha256(tensor_path) != meta.get("sha256"):
        raise CheckpointError(f"{tensor_path}: contents do not match the SHA-256 in {META_FILE} (truncated?)")
    try:
        tensors = load_file(tensor_path)  # safetensors parses a header and raw buffers: never unpickles
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{tensor_path}: not a readable safetensors file ({exc})") from None
    try:
        return unflatten(meta["state"], tensors), int(meta["step"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: inconsistent with {TENSOR_FILE} ({exc!r})") from None
