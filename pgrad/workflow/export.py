r"""`pgrad export`: a run's policy as a standalone file, ONNX or TorchScript, of its deterministic action.

    pgrad export RUN_DIR [--format onnx|torchscript] [--out FILE] [--checkpoint latest|best|N]

The file holds one function, raw env observations in, env-ready actions out, exactly what
``pgrad.load(RUN_DIR).act(obs, deterministic=True)`` computes:

.. math:: a = \operatorname{env}\big(\operatorname{mode}\,\pi_\theta(\cdot \mid \operatorname{norm}(x))\big)

where norm is the policy's observation normaliser when it has one (running mean and variance frozen at the
checkpoint, :math:`\operatorname{clip}((x - \mu)/\sqrt{\sigma^2 + \epsilon}, -c, c)`), mode the
distribution's deterministic action and env the head's map to the env's action space (`ACTION_RULES`).
Input ``obs`` is a batch ``[B, *observation shape]`` (float; int64 indices ``[B]`` for a Discrete
observation space), output ``action`` is ``[B]`` int64 for Discrete actions, ``[B, D]`` float for Box.
A JSON file beside it (its name plus ``.json``) says so for whoever uses it, and the export is checked by
running the written file (onnxruntime, or ``torch.jit.load``) against the policy before it is reported.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from pgrad.envs.spaces import space_to_dict
from pgrad.errors import ConfigError, PgradError, optional_import
from pgrad.policies.networks import Policy
from pgrad.run.evaluate import Agent

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT, OUTPUT = "obs", "action"
OPSET = 18  # ONNX opset of the exported graph (onnxruntime ≥ 1.14 runs it)
CHECK_OBSERVATIONS = 64  # observations the written file is checked on
CHECK_TOLERANCE = 1e-4  # |file − policy| allowed per float action entry, relative to 1 + |action|

# The deterministic action of each policy head, as the env receives it (pgrad.policies.distributions).
ACTION_RULES = {
    "categorical": "argmax of the logits, plus the Discrete space's start (int64)",
    "diag_gaussian": "the Gaussian mean μ, clipped to the Box's finite bounds",
    "tanh_gaussian": "the squashed mean c + s·tanh(μ), c and s the Box's centre and half-width",
    "deterministic": "the actor's output, c + s·tanh(·) inside finite bounds",
    "discretised": "each dimension's most likely bin i, as its centre low + (high − low)·i/(bins − 1)",
}


@dataclasses.dataclass
class ExportArgs:
    """Export a run's policy (its deterministic action, observation normalisation included) as one file."""

    format: Literal["onnx", "torchscript"] = "onnx"
    """onnx (runs in onnxruntime and other ONNX runtimes) or torchscript (torch.jit.load, also from C++)."""
    out: str | None = None
    """Output file (default: RUN_DIR/export/policy.onnx or .pt); a .json description goes beside it."""
    checkpoint: str = "latest"
    """Which checkpoint: latest, best (the best-evaluated) or a step number."""
    threads: int = 1
    """torch CPU threads."""


class DeterministicAction(nn.Module):
    """A loaded policy's deterministic action function: raw observations ``[B, *shape]`` (int64 ``[B]`` for a
    Discrete observation space) → env actions, as `pgrad.run.evaluate.Agent.act` computes them.

    Holds a frozen copy of the policy (normaliser statistics included, as buffers); nothing in it samples.
    """

    def __init__(self, policy: nn.Module, observation_space: spaces.Space):
        super().__init__()
        if not isinstance(policy, Policy):  # e.g. a token-sequence policy: no single-step action function
            raise ConfigError(
                f"a {type(policy).__name__} cannot be exported: pgrad export writes the action function of a "
                "feed-forward Policy (observation → MLP → head)"
            )
        kind = policy.head.kind
        if kind not in ACTION_RULES:
            raise ConfigError(
                f"a policy with head {kind!r} cannot be exported "
                f"(exportable heads: {', '.join(ACTION_RULES)})"
            )
        if not isinstance(observation_space, spaces.Box | spaces.Discrete):
            raise ConfigError(
                f"observation space {observation_space} cannot be exported (exportable: Box, Discrete)"
            )
        self.policy = copy.deepcopy(policy).requires_grad_(False)
        self.eval()
        self.discrete_obs = isinstance(observation_space, spaces.Discrete)
        self.n = int(observation_space.n) if self.discrete_obs else 0
        self.start = int(observation_space.start) if self.discrete_obs else 0
        self.dtype = next(self.policy.parameters()).dtype

    def forward(self, obs: Tensor) -> Tensor:
        if self.discrete_obs:  # one-hot, as pgrad.envs.spaces.obs_to_tensor
            x = nn.functional.one_hot(obs.long() - self.start, self.n).to(self.dtype)
        else:
            x = obs.flatten(1).to(self.dtype)
        dist = self.policy.distribution(x)
        return self.policy.head.to_env_action(dist.mode)


def export(
    run_dir: str | Path | Agent,
    format: str = "onnx",
    out: str | Path | None = None,
    checkpoint: str | int = "latest",
    threads: int | None = 1,
) -> Path:
    """Write a run's policy as a standalone ONNX (``format="onnx"``) or TorchScript (``"torchscript"``) file
    of its deterministic action (see the module docstring), with a JSON description beside it
    (`description_path`); returns the file's path.

    `run_dir` is a run folder (with `checkpoint` "latest", "best" or a step), a checkpoint folder, or an
    `Agent` from `pgrad.load` (then `out` is needed unless the agent came from a run folder). Default `out`:
    ``RUN_DIR/export/policy.onnx`` (or ``.pt``). ONNX has a dynamic batch dimension and opset 18, in one
    file (weights inside). The written file is run on `CHECK_OBSERVATIONS` observations sampled from the
    observation space (and on a batch of one) and must give the agent's own actions (within
    `CHECK_TOLERANCE` for float actions, exactly for indices), else it is removed and an error raised.
    """
    from pgrad.api import load
    from pgrad.run.folder import RUN_FILE, read_run_file

    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if out is not None:
        _check_suffix(Path(out), format)
    if format == "onnx":  # the missing extra, in one line, before any work
        for module in ("onnx", "onnxscript", "onnxruntime"):
            optional_import(module, "export", "pgrad export --format onnx")
    agent = run_dir if isinstance(run_dir, Agent) else load(run_dir, checkpoint, threads=threads)
    root = agent.info.get("run_dir")
    env_kwargs = read_run_file(root).get("env_kwargs") if root and (Path(root) / RUN_FILE).exists() else None
    if out is None and not root:
        raise ConfigError("export of an Agent that did not come from a run folder needs out=FILE")
    path = Path(out) if out is not None else Path(root) / "export" / f"policy{FORMATS[format]}"
    module = DeterministicAction(agent.policy, agent.observation_space)
    example = _observations(agent.observation_space, 2, seed=0, dtype=module.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        run = (
            _write_onnx(module, example, path)
            if format == "onnx"
            else _write_torchscript(module, example, path)
        )
        check = _check(run, agent, module.dtype, path)
    except BaseException:
        path.unlink(missing_ok=True)
        description_path(path).unlink(missing_ok=True)  # no description of a file that is not there
        raise
    normalised = agent.policy.normalizer is not None
    discrete_obs = isinstance(agent.observation_space, spaces.Discrete)
    discrete_act = isinstance(agent.action_space, spaces.Discrete)
    action_dim = None if discrete_act else int(agent.action_space.shape[0])
    description = {
        "format": format,
        "file": path.name,
        "input": {
            "name": INPUT,
            "shape": ["batch"] if discrete_obs else ["batch", *agent.observation_space.shape],
            "dtype": "int64" if discrete_obs else str(module.dtype).removeprefix("torch."),
            "what": "a batch of raw env observations"
            + (" (indices), one-hot encoded inside" if discrete_obs else ", flattened inside")
            + (" and normalised with the policy's frozen statistics" if normalised else ""),
        },
        "output": {
            "name": OUTPUT,
            "shape": ["batch"] if discrete_act else ["batch", action_dim],
            "dtype": "int64" if discrete_act else str(module.dtype).removeprefix("torch."),
            "what": "env-ready deterministic actions: " + ACTION_RULES[agent.policy.head.kind],
        },
        "observation_space": _json_safe(space_to_dict(agent.observation_space)),
        "action_space": _json_safe(space_to_dict(agent.action_space)),
        "observation_normalisation": normalised,
        "policy_head": agent.policy.head.kind,
        "algorithm": agent.info.get("algorithm"),
        "env": agent.info.get("env"),
        "env_kwargs": _json_safe(env_kwargs),
        "global_step": agent.info.get("global_step"),
        "checkpoint": agent.info.get("checkpoint"),
        "check": check,
        "torch": torch.__version__,
    }
    if format == "onnx":
        description["opset"] = OPSET
    text = json.dumps(description, indent=1, allow_nan=False, ensure_ascii=False)
    description_path(path).write_text(text + "\n", encoding="utf-8")
    return path


def _check_suffix(path: Path, format: str) -> None:
    if path.suffix != FORMATS[format]:
        raise ConfigError(f"--out {path}: --format {format} writes a {FORMATS[format]} file")


def description_path(path: str | Path) -> Path:
    """The JSON description beside an exported file: its name plus ``.json`` (policy.onnx.json)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _write_onnx(module: DeterministicAction, example: Tensor, path: Path):
    """torch.onnx.export (the torch.export-based exporter) with a dynamic batch; returns a runner."""
    ort = optional_import("onnxruntime", "export", "pgrad export --format onnx")
    batch = torch.export.Dim("batch")
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notes: nothing to do with a policy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                external_data=False,  # one file: a policy is far below ONNX's 2 GB limit
                dynamo=True,
                verbose=False,
            )
    except PgradError:
        raise
    except Exception as exc:
        raise ConfigError(f"the policy could not be exported to ONNX: {_first_line(exc)}") from exc
    finally:
        quiet.setLevel(level)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda obs: session.run([OUTPUT], {INPUT: obs})[0]


def _write_torchscript(module: DeterministicAction, example: Tensor, path: Path):
    """torch.jit.trace (deprecated in torch ≥ 2.10 but still loadable by torch.jit.load and libtorch);
    returns a runner of the file loaded back."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
            traced = torch.jit.trace(module, (example,), check_trace=False)
            torch.jit.save(traced, str(path))
            loaded = torch.jit.load(str(path))
    except PgradError:
        raise
    except Exception as exc:
        raise ConfigError(f"the policy could not be exported to TorchScript: {_first_line(exc)}") from exc

    def run(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return loaded(torch.as_tensor(obs)).numpy()

    return run


def _observations(space: spaces.Space, n: int, seed: int, dtype: torch.dtype) -> Tensor:
    """`n` observations sampled from `space` (Box samples clipped to ±10 so unbounded or huge bounds give
    finite inputs), in the exported function's input dtype."""
    space = copy.deepcopy(space)
    space.seed(seed)
    batch = np.stack([space.sample() for _ in range(n)])
    if isinstance(space, spaces.Discrete):
        return torch.as_tensor(batch, dtype=torch.long)
    return torch.as_tensor(np.clip(batch.astype(np.float64), -10.0, 10.0), dtype=dtype)


def _check(run, agent, dtype: torch.dtype, path: Path) -> dict[str, Any]:
    """Run the written file on sampled observations (and on a batch of one) against `agent.act`."""
    obs = _observations(agent.observation_space, CHECK_OBSERVATIONS, seed=1, dtype=dtype).numpy()
    got = np.concatenate([run(obs[:1]), run(obs[1:])])
    want = agent.act(obs, deterministic=True)
    if got.shape != want.shape:
        raise ConfigError(f"{path}: the exported file returns shape {got.shape}, the policy {want.shape}")
    if np.issubdtype(want.dtype, np.integer):
        wrong = int((got != want).sum())
        if wrong:
            raise ConfigError(
                f"{path}: the exported file's action differs from the policy's on {wrong} of "
                f"{len(obs)} observations"
            )
        return {"observations": len(obs), "max_abs_diff": 0.0}
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if not np.all(diff <= CHECK_TOLERANCE * (1.0 + np.abs(want))):
        raise ConfigError(
            f"{path}: the exported file's action differs from the policy's by up to {diff.max():.3g} "
            f"(tolerance {CHECK_TOLERANCE:g})"
        )
    return {"observations": len(obs), "max_abs_diff": float(diff.max())}


def _json_safe(value: Any) -> Any:
    """Standard JSON: infinite floats (unbounded Box bounds) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _signature(tensor: dict[str, Any]) -> str:
    """'obs [batch, 3] float32' for a tensor of the description."""
    return f"{tensor['name']} [{', '.join(map(str, tensor['shape']))}] {tensor['dtype']}"


def main(argv: Sequence[str]) -> int:
    """`pgrad export RUN_DIR [options]`."""
    from pgrad.cli import _parse, _run_dir_and_rest

    run_dir, rest = _run_dir_and_rest(argv, "export")
    args = _parse(ExportArgs, rest, "pgrad export DIR")
    path = export(run_dir, format=args.format, out=args.out, checkpoint=args.checkpoint, threads=args.threads)
    info = json.loads(description_path(path).read_text(encoding="utf-8"))
    print(
        f"{path}: {info['algorithm']} policy at step {info['global_step']:,} on {info['env']}, "
        f"{_signature(info['input'])} → {_signature(info['output'])} "
        f"(checked on {info['check']['observations']} observations: max |Δ| "
        f"{info['check']['max_abs_diff']:.2g})"
    )
    print(f"description: {description_path(path)}")
    return 0
