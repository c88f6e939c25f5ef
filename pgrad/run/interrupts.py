"""Stopping a run cleanly: the first SIGINT (Ctrl-C) or SIGTERM asks the loop to stop at the next iteration
boundary, where the trainer writes a checkpoint; a second one stops at once (the default handlers are back).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager that catches the first SIGINT/SIGTERM and records it in `signal`.

    Only the main thread can install signal handlers; elsewhere (e.g. a notebook worker thread) it does
    nothing and Ctrl-C behaves as usual.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum)
        self._restore()  # the next one stops at once
        print(
            f"\npgrad: {self.signal.name} received: stopping after this iteration to write a checkpoint "
            "(press Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # type: ignore[arg-type]
        self._previous.clear()

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process stopped by it."""
        return 128 + int(self.signal or 0)
