"""Checkpoints as safetensors + JSON, written atomically, checksummed and validated; nothing is unpickled.

A checkpoint is a folder `checkpoints/step_<global step>/` holding `state.safetensors` (every tensor) and
`state.json` (everything else). It is written under a temporary name, flushed to disk and renamed into
place; only then is `checkpoints/latest.json` replaced (again by an atomic rename) to point at it. A crash at
any moment therefore leaves the previous checkpoint loadable.

Arbitrary nested state (module and optimiser `state_dict`s, RNG states, counters) is split by `flatten` into
a flat `{path: tensor}` map and a JSON tree in which each tensor is replaced by `{"__tensor__": path}`.

Integrity (format `pgrad-checkpoint/2`). `state.json` holds the SHA-256 of `state.safetensors` (`sha256`)
and a `checksum`: the SHA-256 of the canonical JSON (sorted keys, no spaces) of all its other fields, so a
changed digit anywhere in the step, an optimiser's lr or an RNG counter is refused too. `latest.json` holds
the same kind of `checksum` over its `format`, `step` and `checkpoint`, and its `checkpoint` must be the name
`step_<step, 12 digits>` of a folder inside the checkpoints folder (no path, no `..`, no link leading out).
Every refusal is a `CheckpointError` of one line naming the damaged file (and the key, where there is one).

Old checkpoints (`pgrad-checkpoint/1`, no `checksum`) are still read: their tensor file is verified against
its SHA-256 as before, their JSON cannot be (it carries no checksum). Only format 2 is written.

Validation against a model: `validate_state(expected, loaded, file)` (or `load_checkpoint(folder,
expected=...)`) compares the loaded tree with the state of a freshly built model/algorithm; see its
docstring for the rules, in particular the one for optimiser state.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pgrad.errors import CheckpointError

FORMAT = "pgrad-checkpoint/2"
LEGACY_FORMATS = ("pgrad-checkpoint/1",)  # read (without the JSON checksum), never written
TENSOR_FILE = "state.safetensors"
META_FILE = "state.json"
LATEST = "latest.json"
STEP_NAME = re.compile(r"step_[0-9]+")


# -- flat tensors + JSON tree ------------------------------------------------------------------------------
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


def _tensor_refs(tree: Any) -> set[Any]:
    """The tensor paths a JSON tree refers to (`{"__tensor__": path}` nodes)."""
    refs: set[Any] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__tensor__" in node:
                refs.add(node["__tensor__"])
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return refs


# -- hashing and files -------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no whitespace, ASCII) of `payload` without `checksum`."""
    body = {k: v for k, v in payload.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


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


def _short(value: Any, limit: int = 60) -> str:
    """`repr(value)` on one line, cut to `limit` characters (values read from a damaged file can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


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
    payload = {"format": FORMAT, "step": step, "sha256": _sha256(tmp / TENSOR_FILE), "state": meta}
    payload["checksum"] = json_checksum(payload)
    with open(tmp / META_FILE, "w") as f:
        json.dump(payload, f)
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
    pointer = {"format": FORMAT, "step": step, "checkpoint": name}
    pointer["checksum"] = json_checksum(pointer)
    _write_json_atomic(root / LATEST, pointer)
    for stale in sorted(p for p in root.glob("step_*") if p.is_dir())[: -max(keep, 1)]:
        if stale.name != name:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def read_json(path: Path) -> Any:
    """Parse a JSON file; a one-line CheckpointError naming the file when it is missing or corrupted."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, too-long integers
        raise CheckpointError(f"{path}: corrupted JSON ({_one_line(str(exc))})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({_one_line(exc.strerror or str(exc))})") from None


def _check_envelope(path: Path, data: Any, fields: Sequence[str]) -> None:
    """The format and checksum of a parsed `state.json` or `latest.json`; one-line errors naming `path`."""
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, *LEGACY_FORMATS):
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path}: not a pgrad checkpoint file (format {_short(found)}, {FORMAT!r} expected)"
        )
    for key in fields:
        if key not in data:
            raise CheckpointError(f"{path}: key {key!r} is missing")
    if data["format"] == FORMAT:
        if "checksum" not in data:
            raise CheckpointError(f"{path}: key 'checksum' is missing")
        if data["checksum"] != json_checksum(data):
            raise CheckpointError(f"{path}: contents do not match their checksum (corrupted or edited)")
    step = data["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: key 'step' is {_short(step)}, not a step count")


def latest_checkpoint(root: str | Path) -> Path:
    """The folder `root/latest.json` points at (always a `step_<digits>` folder inside `root`)."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.exists():
        if any(STEP_NAME.fullmatch(p.name) for p in root.glob("step_*")):
            raise CheckpointError(f"{pointer}: file not found, although {root} holds checkpoint folders")
        raise CheckpointError(f"{pointer}: no checkpoint has been written in {root}")
    data = read_json(pointer)
    _check_envelope(pointer, data, ("step", "checkpoint"))
    name = data["checkpoint"]
    if not isinstance(name, str) or not STEP_NAME.fullmatch(name):
        raise CheckpointError(
            f"{pointer}: key 'checkpoint' is {_short(name)}, not the name of a step_<digits> folder in {root}"
        )
    if name != f"step_{data['step']:012d}":
        raise CheckpointError(
            f"{pointer}: key 'checkpoint' is {name!r} but key 'step' is {data['step']} (corrupted or edited)"
        )
    folder = root / name
    try:
        inside = folder.resolve().parent == root.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise CheckpointError(f"{pointer}: key 'checkpoint' {name!r} cannot be resolved ({exc})") from None
    if not inside:
        raise CheckpointError(
            f"{pointer}: key 'checkpoint' {name!r} leads outside {root} (to {folder.resolve()})"
        )
    if not folder.is_dir():
        raise CheckpointError(f"{pointer}: key 'checkpoint' names {name!r}, which is not a folder in {root}")
    return folder


def _check_inside(path: Path, folder: Path) -> None:
    """Refuse a checkpoint file that is a link to something outside its folder."""
    try:
        inside = path.resolve().parent == folder.resolve()
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot be resolved ({exc})") from None
    if not inside:
        raise CheckpointError(f"{path}: leads outside its checkpoint folder (to {path.resolve()})")


def load_checkpoint(
    folder: str | Path,
    expected: Any = None,
    *,
    optional: Iterable[str] = (),
    param_shapes: Mapping[str, Mapping[int, Sequence[int]]] | None = None,
    free: Iterable[str] = (),
) -> tuple[Any, int]:
    """Read a checkpoint folder; returns (state, step).

    Refuses missing, truncated, corrupted or edited files with a one-line CheckpointError naming the file.
    With `expected` (the state tree of a freshly built model/algorithm), the loaded tree is also checked by
    `validate_state(expected, state, folder, optional=..., param_shapes=..., free=...)` before it is
    returned.
    """
    folder = Path(folder)
    meta_path, tensor_path = folder / META_FILE, folder / TENSOR_FILE
    _check_inside(meta_path, folder)
    meta = read_json(meta_path)
    _check_envelope(meta_path, meta, ("step", "sha256", "state"))
    step = meta["step"]
    if STEP_NAME.fullmatch(folder.name) and int(folder.name[5:]) != step:
        raise CheckpointError(f"{meta_path}: key 'step' is {step}, but the folder is {folder.name}")
    _check_inside(tensor_path, folder)
    try:
        digest = _sha256(tensor_path)
    except FileNotFoundError:
        raise CheckpointError(f"{tensor_path}: file not found") from None
    except OSError as exc:
        raise CheckpointError(
            f"{tensor_path}: cannot be read ({_one_line(exc.strerror or str(exc))})"
        ) from None
    if digest != meta["sha256"]:
        raise CheckpointError(f"{tensor_path}: contents do not match the SHA-256 in {META_FILE} (truncated?)")
    try:
        tensors = load_file(tensor_path)  # safetensors parses a header and raw buffers: never unpickles
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{tensor_path}: not a readable safetensors file ({_one_line(str(exc))})"
        ) from None
    try:
        refs = _tensor_refs(meta["state"])
        if refs != set(tensors):
            missing = sorted(map(str, refs - set(tensors)))
            extra = sorted(set(tensors) - set(map(str, refs)))
            raise CheckpointError(
                f"{meta_path}: inconsistent with {TENSOR_FILE} (tensors missing there: {_short(missing)}, "
                f"not referred to: {_short(extra)})"
            )
        state = unflatten(meta["state"], tensors)
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{meta_path}: inconsistent with {TENSOR_FILE} ({_short(exc)})") from None
    if expected is not None:
        validate_state(expected, state, folder, optional=optional, param_shapes=param_shapes, free=free)
    return state, step


# -- validation against a freshly built model --------------------------------------------------------------
_ARTICLE = {
    "tensor": "a tensor",
    "dict": "a dict",
    "list": "a list",
    "None": "None",
    "bool": "a bool",
    "number": "a number",
    "str": "a string",
}
_SCALARS = ("bool", "number", "str")


def _kind(node: Any) -> str:
    """The kind of a state node: tensor, dict, list (or tuple), None, bool, number (int or float), str."""
    if isinstance(node, torch.Tensor):
        return "tensor"
    if isinstance(node, Mapping):
        return "dict"
    if isinstance(node, list | tuple):
        return "list"
    if node is None:
        return "None"
    if isinstance(node, bool):
        return "bool"
    if isinstance(node, int | float):
        return "number"
    if isinstance(node, str):
        return "str"
    return type(node).__name__


def _a(kind: str) -> str:
    return _ARTICLE.get(kind, f"a {kind}")


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _shape(shape: Iterable[int]) -> str:
    return repr(tuple(int(n) for n in shape))


def _is_optimizer_state(node: Any) -> bool:
    """Whether `node` looks like a `torch.optim.Optimizer.state_dict()` (`state` and `param_groups`)."""
    return (
        isinstance(node, Mapping)
        and set(node) == {"state", "param_groups"}
        and isinstance(node["state"], Mapping)
        and isinstance(node["param_groups"], list)
        and all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in node["param_groups"])
    )


class _Validator:
    """Walks an expected and a loaded state tree side by side, collecting problems as
    (is it about the tensor file?, message)."""

    def __init__(
        self,
        optional: Iterable[str],
        param_shapes: Mapping[str, Mapping[int, Sequence[int]]] | None,
        free: Iterable[str] = (),
    ):
        self.optional = tuple(optional)
        self.free = tuple(free)
        self.param_shapes = param_shapes or {}
        self.problems: list[tuple[bool, str]] = []

    def fail(self, message: str, tensor_file: bool = False) -> None:
        self.problems.append((tensor_file, message))

    def is_optional(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.optional)

    def check(self, expected: Any, loaded: Any, path: str) -> None:
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in self.free):
            return  # validated by its owner's load_state_dict (e.g. a replay buffer's filled part)
        want, got = _kind(expected), _kind(loaded)
        where = path or "/"
        if want == "tensor":
            if got != "tensor":
                self.fail(
                    f"{where} is {_a(got)}, the model expects a {_dtype(expected)} tensor of shape "
                    f"{_shape(expected.shape)}"
                )
            elif tuple(loaded.shape) != tuple(expected.shape):
                self.fail(
                    f"{where} has shape {_shape(loaded.shape)}, the model expects {_shape(expected.shape)}",
                    True,
                )
            elif loaded.dtype != expected.dtype:
                self.fail(f"{where} has dtype {_dtype(loaded)}, the model expects {_dtype(expected)}", True)
        elif want == "dict":
            if got != "dict":
                self.fail(f"{where} is {_a(got)}, the model expects a dict")
            elif _is_optimizer_state(expected):
                self.check_optimizer(expected, loaded, path)
            elif expected:  # an empty dict in the model is free-form (e.g. filled in as training goes)
                self.check_keys(expected, loaded, path)
        elif want == "list":
            if got != "list":
                self.fail(f"{where} is {_a(got)}, the model expects a list")
            elif expected and len(loaded) != len(expected):  # an empty list in the model is free-form
                self.fail(f"{where} has {len(loaded)} items, the model expects {len(expected)}")
            elif expected:
                for i, (e, g) in enumerate(zip(expected, loaded, strict=True)):
                    self.check(e, g, f"{path}/{i}")
        elif want != got and not (
            (want == "None" and got in _SCALARS) or (got == "None" and want in _SCALARS)
        ):
            self.fail(f"{where} is {_a(got)}, the model expects {_a(want)}")

    def check_keys(self, expected: Mapping[Any, Any], loaded: Mapping[Any, Any], path: str) -> None:
        for key, value in expected.items():
            sub = f"{path}/{key}"
            if key in loaded:
                self.check(value, loaded[key], sub)
            elif not self.is_optional(sub):
                self.fail(f"{sub} is missing from the checkpoint (the model has it)")
        for key in loaded:
            sub = f"{path}/{key}"
            if key not in expected and not self.is_optional(sub):
                self.fail(f"{sub} is in the checkpoint but not in the model")

    def check_optimizer(self, expected: Mapping[str, Any], loaded: Mapping[str, Any], path: str) -> None:
        self.check_keys({k: None for k in expected}, {k: None for k in loaded}, path)
        groups, state = loaded.get("param_groups"), loaded.get("state")
        want_groups = expected["param_groups"]
        if not isinstance(groups, list) or len(groups) != len(want_groups):
            got = f"{len(groups)} items" if isinstance(groups, list) else _a(_kind(groups))
            self.fail(f"{path}/param_groups has {got}, the model's optimiser has {len(want_groups)} groups")
            return
        indices: set[int] = set()
        for i, (want, got) in enumerate(zip(want_groups, groups, strict=True)):
            sub = f"{path}/param_groups/{i}"
            indices.update(p for p in want["params"] if isinstance(p, int))
            if not isinstance(got, Mapping):
                self.fail(f"{sub} is {_a(_kind(got))}, the model expects a dict")
                continue
            if got.get("params") != want["params"]:
                self.fail(
                    f"{sub}/params is {_short(got.get('params'))}, the model's optimiser has "
                    f"{_short(want['params'])}"
                )
            # Hyper-parameters present on one side only are tolerated: torch adds new ones across versions
            # (and fills their defaults on load), some optimisers add one (e.g. a 'step') once they step.
            for key in want.keys() & got.keys() - {"params"}:
                self.check(want[key], got[key], f"{sub}/{key}")
        if not isinstance(state, Mapping):
            self.fail(f"{path}/state is {_a(_kind(state))}, the model expects a dict")
            return
        shapes = self.param_shapes.get(path, {})
        for index, entry in state.items():
            self.check_param_state(index, entry, f"{path}/state/{index}", indices, shapes)

    def check_param_state(
        self, index: Any, entry: Any, path: str, indices: set[int], shapes: Mapping[int, Sequence[int]]
    ) -> None:
        if not isinstance(index, int) or isinstance(index, bool) or index not in indices:
            self.fail(
                f"{path} is state for parameter {_short(index)}, which the model's optimiser does not have "
                f"(it has {len(indices)} parameters)"
            )
            return
        if not isinstance(entry, Mapping):
            self.fail(f"{path} is {_a(_kind(entry))}, the model expects a dict of per-parameter state")
            return
        reference = (tuple(shapes[index]), f"parameter {index} of the model") if index in shapes else None
        for name, value in entry.items():
            sub = f"{path}/{name}"
            kind = _kind(value)
            if kind != "tensor":
                if kind not in (*_SCALARS, "None"):
                    self.fail(f"{sub} is {_a(kind)}; per-parameter optimiser state holds tensors and numbers")
                continue
            if value.ndim == 0:  # a step count or scalar statistic
                if value.dtype == torch.bool or value.is_complex():
                    self.fail(f"{sub} has dtype {_dtype(value)}, the model expects a real scalar", True)
                continue
            if not (value.is_floating_point() or value.is_complex()):
                self.fail(f"{sub} has dtype {_dtype(value)}, per-parameter optimiser state is floating", True)
            elif reference is None:
                reference = (tuple(value.shape), sub)
            elif tuple(value.shape) != reference[0]:
                self.fail(
                    f"{sub} has shape {_shape(value.shape)}, {reference[1]} has {_shape(reference[0])}", True
                )


def validate_state(
    expected: Any,
    loaded: Any,
    file: str | Path,
    *,
    prefix: str = "",
    optional: Iterable[str] = (),
    param_shapes: Mapping[str, Mapping[int, Sequence[int]]] | None = None,
    free: Iterable[str] = (),
) -> None:
    """Refuse a loaded state tree that does not fit the state tree of a freshly built model/algorithm.

    `expected` is what the model would save now (e.g. `{"algorithm": algo.state_dict(), ...}`), `loaded`
    what `load_checkpoint` returned. The rules, node by node (paths as in `flatten`, e.g.
    `/algorithm/policy/net.0.weight`, prefixed with `prefix` when `expected` is a subtree):

    * tensor: the loaded node is a tensor of the same shape and dtype (device is not compared);
    * dict: the same keys (missing and extra ones refused, except paths matching one of the `fnmatch`
      patterns in `optional`, e.g. `"/rng/tensors/rng/cuda*"`); an *empty* dict is free-form (not checked);
    * list or tuple (one kind): the same length, item by item; an *empty* list is free-form (e.g. recent
      returns, a replay of past batches);
    * other leaves: the same kind among None, bool, number (int and float are one kind) and string; None
      is accepted for and in place of a bool, number or string (optional settings such as `next_eval`);
    * optimiser state (a dict with exactly `state` and `param_groups`, each group with a `params` list):
      the same number of groups with the same `params` indices; hyper-parameters present in both are
      checked as above, those on one side only are tolerated (torch adds some across versions, some
      optimisers add a `step` once they have stepped). The per-parameter `state` is empty in a fresh
      optimiser, so it is checked by rule: every key is one of the groups' parameter indices, every entry
      a dict of tensors and numbers; a 0-d tensor (a step count) has a real dtype; any other tensor is
      floating point and has the shape of parameter `index` when `param_shapes[path][index]` is given
      (`path` of the optimiser state, e.g. `/algorithm/policy_optimizer`; see `optimizer_param_shapes`),
      and otherwise the same shape as the other per-parameter tensors of that index (Adam's `exp_avg` and
      `exp_avg_sq`).

    Subtrees at paths matching a pattern in `free` are not compared: their owner checks them when it loads
    them (a replay buffer saves only its filled part, so its shapes depend on the run).

    Values are not compared, and tensors are not checked for being finite (a diverged run still loads).

    `file` is named in the error: a checkpoint folder (then a tensor's shape or dtype names its
    `state.safetensors` and anything else its `state.json`) or a file (named as it is). The error is one
    CheckpointError line with the first problem and how many more there are.
    """
    validator = _Validator(optional, param_shapes, free)
    validator.check(expected, loaded, prefix)
    if validator.problems:
        tensor_file, message = validator.problems[0]
        more = len(validator.problems) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        path = Path(file)
        if path.suffix not in (".json", ".safetensors"):
            path = path / (TENSOR_FILE if tensor_file else META_FILE)
        raise CheckpointError(_one_line(f"{path}: {message}"))


def optimizer_param_shapes(optimizer: torch.optim.Optimizer) -> dict[int, tuple[int, ...]]:
    """{index in `optimizer.state_dict()`: shape} of a torch optimiser's parameters, for `validate_state`.

    torch numbers the parameters of `state_dict()` 0, 1, … across the param groups in order. For a
    `pgrad.optim.CombinedOptimizer` (whose state_dict is one optimiser state per part) call it per part.
    """
    params = (p for group in optimizer.param_groups for p in group["params"])
    return {i: tuple(p.shape) for i, p in enumerate(params)}
