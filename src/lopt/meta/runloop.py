"""The run loop shared by the outer loops (``lopt meta-train``, ``lopt self-train``).

Both run outer steps from the last checkpoint to ``outer_steps`` in a run directory
(``lopt.meta.rundir``) and stop the same way: a checkpoint every ``checkpoint_every`` outer
steps and at the end; on SIGINT/SIGTERM or once ``max_minutes`` have passed, a checkpoint after
the current step, then a message saying how to resume (``lopt.runtime.stopping``); on a second
SIGINT, the last checkpoint is kept and ``KeyboardInterrupt`` propagates. What an outer step
does and what a checkpoint holds are the caller's::

    check_devices(cfg.devices)
    restored = resume(run_dir, template, console.log)
    ...
    with open_logs() as logs, stop_on_signals() as stop:
        reached = run_outer_steps(start, cfg, outer_step, checkpoint, stop, ...)
    ... write the final files ...
    stop.reraise()
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any, Protocol

import jax

from lopt.errors import LoptError
from lopt.meta.rundir import restore
from lopt.runtime.stopping import INTERRUPTED_MESSAGE, StopRequest, stopped_message


class LoopConfig(Protocol):
    outer_steps: int
    checkpoint_every: int


def check_devices(devices: int) -> None:
    """One clear error when a config asks for more local devices than this process sees."""
    if devices > len(jax.devices()):
        raise LoptError(
            f"invalid value for devices: {devices} (this process sees {len(jax.devices())}; "
            "set XLA_FLAGS=--xla_force_host_platform_device_count=N)"
        )


def resume(
    run_dir: pathlib.Path, template: Any | Callable[[dict], Any], log: Callable[[str], None]
) -> tuple[Any, dict] | None:
    """The run's newest verified checkpoint ``(tree, metadata)`` (``rundir.restore``), saying
    where the run resumes; ``None`` for a fresh run."""
    restored = restore(run_dir, template, log)
    if restored is not None:
        log(f"resuming {run_dir} at outer step {restored[1]['step']}")
    return restored


def run_outer_steps(
    start: int,
    cfg: LoopConfig,
    outer_step: Callable[[int], None],
    checkpoint: Callable[[int], None],
    stop: StopRequest,
    started: float,
    max_minutes: float | None,
    log: Callable[[str], None],
    flush: Callable[[], None],
) -> int:
    """Run ``outer_step(step)`` for ``step`` in ``range(start, cfg.outer_steps)``, saving
    ``checkpoint(done)`` (``done``: outer steps done) every ``cfg.checkpoint_every`` steps, at
    the last one, and when ``stop`` asks to stop or ``max_minutes`` (from ``started``,
    ``time.time()``) have passed, which ends the loop. On ``KeyboardInterrupt`` (a second
    SIGINT) the logs are flushed, the last checkpoint kept, and the interrupt propagates.

    Returns:
        The number of outer steps done when the loop ended (``start`` if there were none).
    """
    done = start
    try:
        for step in range(start, cfg.outer_steps):
            outer_step(step)
            done = step + 1
            reason = stop.reason(started, max_minutes)
            if done % cfg.checkpoint_every == 0 or done == cfg.outer_steps or reason:
                checkpoint(done)
            if reason:
                log(stopped_message(reason, done))
                break
    except KeyboardInterrupt:
        flush()
        log(INTERRUPTED_MESSAGE)
        raise
    return done
