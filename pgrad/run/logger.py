"""Metrics: one JSON line per log interval (metrics.jsonl), the same scalars in TensorBoard and, with
`--wandb`, in a Weights & Biases run.

When a record is written, and which fields it holds, is documented in docs/harness.md ("Metrics"); a test
holds that list against what a run writes.
"""

from __future__ import annotations

import json
import math
import secrets
import string
from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError, optional_import

METRICS_FILE = "metrics.jsonl"
WANDB_ID_FILE = "wandb_id"
"""The run folder's W&B run id: written when W&B first logs the run, read again by every resume."""


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null marks "not defined at this step"
    return value


def _scalars(record: dict[str, Any]) -> dict[str, int | float]:
    """The numeric fields of a record (what TensorBoard and W&B get), global_step included."""
    return {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class WandbLogger:
    """The run's scalars in a Weights & Biases run (`--wandb`), beside metrics.jsonl and TensorBoard.

    The W&B run is named after the run folder, keeps its files in `run_dir/wandb/`, gets `config` (the run's
    run.json content) as its config and the run's `--tag` as its group and tag. Its id is stored in
    `run_dir/wandb_id`, so `pgrad resume` logs into the same W&B run. Records are logged with `global_step`
    as W&B's x-axis (`define_metric`), not as W&B's own step: a resume that rewinds to its checkpoint logs
    steps again that W&B has already seen, which W&B would drop if they were its own step.

    `mode` None leaves the choice to W&B (the WANDB_MODE environment variable, `wandb offline`, else online).
    """

    def __init__(
        self,
        run_dir: str | Path,
        config: dict[str, Any],
        project: str = "pgrad",
        mode: str | None = None,
        tag: str = "",
    ):
        wandb = optional_import("wandb", "wandb", "--wandb")
        run_dir = Path(run_dir).resolve()
        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.exists() else ""
        if not run_id:
            run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
            id_file.write_text(run_id + "\n")  # before the run starts: a crash later still resumes this id
        try:
            self.run = wandb.init(
                project=project,
                mode=mode,
                dir=str(run_dir),
                name=run_dir.name,
                id=run_id,
                resume="allow",  # the same id again (pgrad resume) continues that W&B run
                config=config,
                group=tag or None,
                tags=[tag] if tag else None,
                reinit="create_new",  # never log into a W&B run the caller has open
            )
        except Exception as exc:  # W&B raises its own errors, pydantic's and the network's
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(
                f"--wandb: W&B could not start run {run_id} of project {project!r} for {run_dir} "
                f"({type(exc).__name__}: {first}); log in with `wandb login`, or log locally with "
                "--wandb-mode offline"
            ) from None
        self.run.define_metric("global_step")
        self.run.define_metric("*", step_metric="global_step")

    def log(self, record: dict[str, Any]) -> None:
        """Log the record's numeric fields as one W&B history row."""
        self.run.log(_scalars(record))

    def close(self, failed: bool = False) -> None:
        """Finish the W&B run (marked failed when the training run stopped on an error or a signal)."""
        self.run.finish(exit_code=1 if failed else 0)


class MetricsLogger:
    """Appends records to `run_dir/metrics.jsonl`, and optionally TensorBoard scalars to `run_dir/tb` and a
    W&B run (`wandb`: the keyword arguments of `WandbLogger` but `run_dir`)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, wandb: dict[str, Any] | None = None):
        self.path = Path(run_dir) / METRICS_FILE
        self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the run, closed in close())
        self._writer = None
        self._wandb: WandbLogger | None = None
        try:
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

                self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
            if wandb is not None:
                self._wandb = WandbLogger(run_dir, **wandb)
        except BaseException:
            self.close(failed=True)
            raise

    def log(self, record: dict[str, Any]) -> None:
        """Write one record; it must hold `global_step`."""
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()
        if self._writer is not None:
            step = int(record["global_step"])
            for key, value in _scalars(record).items():
                if key != "global_step":
                    self._writer.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(record)

    def close(self, failed: bool = False) -> None:
        """Close every output (`failed`: the run stopped on an error or a signal, which W&B records)."""
        self._file.close()
        if self._writer is not None:
            self._writer.close()
        if self._wandb is not None:
            self._wandb.close(failed)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run, skipping a last line cut short by a crash."""
    records = []
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Drop records past `last_step` (written after the checkpoint a resumed run restarts from)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    kept = [r for r in read_metrics(run_dir) if r.get("global_step", 0) <= last_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(path)
