"""The run folder: which folders a run may write into, one writer at a time, and the run file.

A run lives in one folder (see `pgrad.run.trainer`). `pgrad train` writes only into a folder that does not
exist yet or is empty; `pgrad resume` only into a folder that holds a run with a checkpoint. Either way one
process at a time: `RunLock` holds an OS file lock (the `filelock` package: released by the OS even when the
holder is killed) and records the holder's PID beside it, so a second writer fails at once with a line that
names the folder and that PID.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pgrad.errors import ConfigError
from pgrad.run.checkpoint import LATEST, read_json

RUN_FILE = "run.json"
LOCK_FILE = ".pgrad.lock"
PID_FILE = ".pgrad.pid"
BOOKKEEPING = {LOCK_FILE, PID_FILE}  # the lock's own files, not a run's content


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_run_dir(path: Path, resume: bool, locked_by_us: bool = False) -> None:
    """One-line errors, before anything is built or written, for a folder a run cannot use.

    train: the folder must not exist or be an empty, writable folder. resume: it must hold a run (run.json)
    with at least one checkpoint. Either way, a folder another process holds is refused first.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--run-dir {path} is a file, not a folder")
    existing = _nearest_existing(path)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--run-dir {path}: {existing} is not a writable folder")
    if not locked_by_us and (path / LOCK_FILE).exists():  # another process writing here: say that first
        probe = RunLock(path)
        probe.acquire(write_pid=False)
        probe.release()
    if resume:
        if not (path / RUN_FILE).exists():
            raise ConfigError(f"{path} holds no pgrad run ({RUN_FILE} not found)")
        if not (path / "checkpoints" / LATEST).exists():
            raise ConfigError(
                f"{path} holds a run that crashed before its first checkpoint: nothing to resume; "
                "remove the folder and train again"
            )
        return
    content = sorted(p.name for p in path.iterdir() if p.name not in BOOKKEEPING) if path.exists() else []
    if (path / "checkpoints" / LATEST).exists():
        raise ConfigError(
            f"{path} already holds a run; continue it with `pgrad resume {path}` or choose another --run-dir"
        )
    if content:
        shown = ", ".join(content[:4]) + (", …" if len(content) > 4 else "")
        raise ConfigError(
            f"{path} is not empty ({shown}); a new run needs an empty or new folder: choose another --run-dir"
        )


class RunLock:
    """Exclusive writer lock on a run folder (create the folder first). `acquire` fails at once, naming the
    holder's PID, when another process holds it; `release` is idempotent."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = FileLock(str(path / LOCK_FILE), timeout=0)

    def acquire(self, write_pid: bool = True) -> None:
        try:
            self._lock.acquire()
        except Timeout:
            try:
                holder = (self.path / PID_FILE).read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise ConfigError(
                f"{self.path} is in use by another pgrad process (PID {holder}); wait for it to finish or "
                "choose another --run-dir"
            ) from None
        self._owner = write_pid
        if write_pid:
            (self.path / PID_FILE).write_text(f"{os.getpid()}\n")

    def release(self) -> None:
        if self._lock.is_locked:
            if self._owner:
                (self.path / PID_FILE).unlink(missing_ok=True)
            self._lock.release()


def write_run_file(path: Path, payload: dict[str, Any]) -> None:
    """Write run.json atomically; a one-line error when an option cannot be stored as JSON."""
    try:
        text = json.dumps(payload, indent=1)
    except TypeError as exc:
        raise ConfigError(f"run options must be JSON-serialisable to be saved in {RUN_FILE}: {exc}") from None
    tmp = path / f".{RUN_FILE}.tmp"
    tmp.write_text(text)
    tmp.replace(path / RUN_FILE)


def read_run_file(run_dir: str | Path) -> dict[str, Any]:
    """The run.json of a run folder, with a one-line error when it is missing or corrupted."""
    path = Path(run_dir) / RUN_FILE
    data = read_json(path)
    if not isinstance(data, dict) or "algorithm" not in data:
        raise ConfigError(f"{path}: not a pgrad run file")
    return data
