"""What a training run shows while it runs: a live bar on a terminal, plain lines in a file or a CI log.

Progress goes to stderr (stdout keeps the run's one-line JSON summary). Where stderr is a terminal (a TTY
whose TERM is not `dumb`) or a Jupyter notebook, rich draws a live bar; anywhere else — a file, a pipe, a CI
log — a redrawn bar would leave escape codes and carriage returns, so a plain line is printed instead every
10% of the step budget or every 60 s, whichever comes first, and once at the end:

    ppo CartPole-v1 | 12,288/30,000 steps (41%) | train return 129.8 | eval return 500.0 | 784 steps/s |
    elapsed 0:00:15 | ETA 0:00:22

(one line). `--no-progress` silences both.

The ETA is (total − step) / r with r the env steps per second of wall time since this process started
training (evaluations and checkpoints included); the bar's own ETA is rich's, over the last 30 s.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

LINE_EVERY_FRACTION = 0.1
"""A plain line each time the run crosses another tenth of its step budget…"""
LINE_EVERY_SECONDS = 60.0
"""…or once this many seconds have passed since the last line, whichever comes first."""


def _clock(seconds: float) -> str:
    """H:MM:SS, as rich's time columns show it."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Silent display (`--no-progress`); the base of the two that show something.

    The trainer calls `update` after each metrics record, `evaluating` during an evaluation and `update`
    again with the evaluation's mean return; `with display:` wraps the run."""

    def __init__(self, total: int, label: str, start: int = 0):
        self.total = total
        self.label = label
        self.step = start
        self.train_return: float | None = None
        self.eval_return: float | None = None
        self.sps: float | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(
        self,
        step: int | None = None,
        train_return: float | None = None,
        sps: float | None = None,
        eval_return: float | None = None,
    ) -> None:
        """New figures (None: unchanged): env step, mean return of the last 100 training episodes, env steps
        per second of training over the last log interval, mean return of the last evaluation."""
        if step is not None:
            self.step = step  # may pass total: the run stops at the first iteration past it
        if train_return is not None:
            self.train_return = train_return
        if sps is not None:
            self.sps = sps
        if eval_return is not None:
            self.eval_return = eval_return
        self._show()

    def _show(self) -> None:
        """Show the figures `update` just took (nothing here; the displays below draw or print)."""

    def evaluating(self, done: int, episodes: int) -> None:
        """An evaluation is running: `done` of `episodes` episodes finished."""

    def evaluated(self) -> None:
        """The evaluation is over."""


class PlainLines(Progress):
    """One plain line (no escape codes, no carriage returns) every `LINE_EVERY_FRACTION` of the budget or
    every `LINE_EVERY_SECONDS`, whichever comes first, and a last one when the run ends normally."""

    def __init__(
        self,
        total: int,
        label: str,
        start: int = 0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(total, label, start)
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = start
        self.every = max(1, math.ceil(total * LINE_EVERY_FRACTION))
        self.next_mark = (start // self.every + 1) * self.every
        self.printed: tuple | None = None

    def __enter__(self) -> PlainLines:
        self.t0 = self.last_line = self.clock()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None and self.printed != self._state():
            self._print()

    def _state(self) -> tuple:
        return (self.step, self.eval_return)

    def _show(self) -> None:
        if self.step >= self.next_mark or self.clock() - self.last_line >= LINE_EVERY_SECONDS:
            self._print()

    def line(self) -> str:
        """The current state as one line."""
        elapsed = self.clock() - self.t0
        done = self.step - self.start
        percent = min(100.0, 100 * self.step / self.total) if self.total else 100.0
        parts = [self.label, f"{self.step:,}/{self.total:,} steps ({percent:.0f}%)"]
        parts.append("train return " + ("-" if self.train_return is None else f"{self.train_return:.1f}"))
        if self.eval_return is not None:
            parts.append(f"eval return {self.eval_return:.1f}")
        parts.append(("-" if self.sps is None else f"{self.sps:,.0f}") + " steps/s")
        parts.append(f"elapsed {_clock(elapsed)}")
        # the mean rate since this process started, evaluations and checkpoints included
        eta = "-" if done <= 0 or elapsed <= 0 else _clock(max(0, self.total - self.step) * elapsed / done)
        parts.append(f"ETA {eta}")
        return " | ".join(parts)

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.printed = self._state()
        self.last_line = self.clock()
        while self.next_mark <= self.step:
            self.next_mark += self.every


class LiveBar(Progress):
    """rich's progress bar: description, bar, steps, train and eval return, steps/s, elapsed, ETA."""

    def __init__(self, total: int, label: str, start: int = 0, stream: TextIO | None = None):
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        super().__init__(total, label, start)
        self.bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>9,.0f}/{task.total:,.0f} steps"),
            TextColumn("train return {task.fields[ret]}"),  # mean of the last 100 training episodes
            TextColumn("{task.fields[eval]}"),
            TextColumn("{task.fields[sps]} steps/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream if stream is not None else sys.stderr),
        )
        # started at `start` (a resumed run): a jump from 0 would count as speed in rich's ETA
        self.task = self.bar.add_task(label, total=total, completed=start, ret="-", sps="-", eval="")

    def __enter__(self) -> LiveBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def _show(self) -> None:
        self.bar.update(
            self.task,
            completed=min(self.step, self.total),
            ret="-" if self.train_return is None else f"{self.train_return:.1f}",
            sps="-" if self.sps is None else f"{self.sps:,.0f}",
            eval="" if self.eval_return is None else f"eval return {self.eval_return:.1f}",
        )

    def evaluating(self, done: int, episodes: int) -> None:
        self.bar.update(self.task, description=f"{self.label} · evaluating {done}/{episodes}")

    def evaluated(self) -> None:
        self.bar.update(self.task, description=self.label)


def is_live_terminal(stream: TextIO) -> bool:
    """Whether a redrawn bar shows as intended on `stream`: a TTY whose TERM is not dumb, or Jupyter."""
    from rich.console import Console

    if Console(file=stream).is_jupyter:
        return True
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return tty and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


def progress_display(
    enabled: bool, total: int, label: str, start: int = 0, stream: TextIO | None = None
) -> Progress:
    """The display for a run of `total` env steps starting at `start`: silent unless `enabled`, else a live
    bar on a terminal and plain lines elsewhere (see the module docstring). `stream` defaults to stderr."""
    if not enabled:
        return Progress(total, label, start)
    stream = stream if stream is not None else sys.stderr
    if is_live_terminal(stream):
        return LiveBar(total, label, start, stream)
    return PlainLines(total, label, start, stream)
