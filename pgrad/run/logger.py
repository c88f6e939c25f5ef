"""Metrics: one JSON line per training iteration (metrics.jsonl) and the same scalars in TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null marks "not defined at this step"
    return value


class MetricsLogger:
    """Appends records to `run_dir/metrics.jsonl` and optionally TensorBoard scalars to `run_dir/tb`."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the run, closed in close())
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

            self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))

    def log(self, record: dict[str, Any]) -> None:
        """Write one record; it must hold `global_step`."""
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()
        if self._writer is not None:
            step = int(record["global_step"])
            for key, value in record.items():
                if key != "global_step" and isinstance(value, int | float) and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


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
