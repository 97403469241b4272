"""Stop a long run cleanly on SIGINT or SIGTERM: finish the current step, checkpoint, exit.

The first signal only sets a flag that the training loop reads between steps (so the state it
checkpoints is whole); once saved, ``stop.reraise()`` does what the signal would have done:
``KeyboardInterrupt`` for SIGINT, ``SystemExit(143)`` for SIGTERM. A second SIGINT raises
``KeyboardInterrupt`` at once (the last checkpoint is kept) and a second SIGTERM terminates the
process as usual.

Example::

    with stop_on_signals() as stop:
        for step in range(n):
            ...
            if stop.reason(started, max_minutes) is not None:
                save_checkpoint(...)
                break
    stop.reraise()
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The first stop signal received (``None`` until one arrives)."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def reason(self, started: float, max_minutes: float | None) -> str | None:
        """Why a loop begun at ``started`` (``time.time()``) should stop after its current step:
        the signal's name, ``"time limit"`` once ``max_minutes`` have passed, else ``None``."""
        if self.signal is not None:
            return self.signal.name
        if max_minutes is not None and time.time() - started > 60 * max_minutes:
            return "time limit"
        return None

    def reraise(self) -> None:
        """Raise what the signal would have raised (nothing if none arrived)."""
        if self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal is not None:
            raise SystemExit(128 + int(self.signal))  # the shell's status for it: 143


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a ``StopRequest`` inside the block; restore handlers after.

    Outside the main thread (where Python cannot install handlers) the request never fires.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handle(signum, frame):
        request.signal = signal.Signals(signum)
        # A second signal acts at once: SIGINT raises KeyboardInterrupt, SIGTERM terminates.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stopped_message(reason: str, step: int) -> str:
    """What a run prints when it stops early (``reason`` from ``StopRequest.reason``)."""
    return f"{reason}: checkpoint saved at outer step {step}; re-run on this directory to resume"


INTERRUPTED_MESSAGE = "interrupted: the last checkpoint is kept; re-run on this directory to resume"
