"""The feedback-loop numbers of a self-training run, read back from its ``metrics.jsonl``.

Metz et al. 2021 report that self-training starts slow and then accelerates, as better
optimizers become better at training themselves. Measured here on the validation meta-loss of
the population's best member (and its median), ``L(s)`` at outer step ``s``, linearly
interpolated between validations, over a run of ``T`` steps:

- improvement: ``L(0) − L(T)`` (``L(0)`` is the best randomly initialized member);
- improvement rate over a third of the run: the drop of ``L`` over it divided by its length
  (per 1000 outer steps): first third ``[0, T/3]``, last third ``[2T/3, T]``;
- ``rate_ratio``: last-third rate ÷ first-third rate (undefined when the first third did not
  improve). A run that converges early has a flat last third, so this ratio cannot tell a slow
  start from a fast one; the measure below can.

The feedback loop is acceleration after a slow start (``loop_*``, ``acceleration``): on
``log L``, resampled on an even grid of the run, the improvement rate over a window is minus
the least-squares slope of ``log L`` across it (a smoothed rate: noise at single validations
averages out), for windows of ``LOOP_WINDOW`` of the run starting at every grid point. The loop
is shown when the fastest window is at least ``LOOP_FACTOR`` × the first window's rate (any positive
rate will do when the first window did not improve) and starts after ``LOOP_DELAY`` of the run.
A curve whose fastest drop is at its start, as a well-started run's or an exponential decay's
(a constant rate of ``log L``), does not show it.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from lopt.meta.rundir import read_jsonl

LOOP_WINDOW = 0.05  # the windows the rates are fitted over, as a fraction of the run
LOOP_DELAY = 0.10  # the fastest window must start after this fraction of the run
LOOP_FACTOR = 5.0  # ... and improve at least this many times faster than the first one
LOOP_GRID = 400  # grid intervals the curve is resampled on (a window is 20 of them)
LOG_FLOOR = 1e-12  # values below it are read as it before the log


def validation_curves(run_dir: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Validation records as arrays: ``step``, ``wall``, ``best``, ``median`` ``(V,)`` and
    ``scores`` ``(V, P)``."""
    records = [r for r in read_jsonl(pathlib.Path(run_dir) / "metrics.jsonl") if "validation" in r]
    return {
        "step": np.array([r["step"] for r in records], float),
        "wall": np.array([r["wall"] for r in records], float),
        "best": np.array([r["best"] for r in records], float),
        "median": np.array([r["median"] for r in records], float),
        "scores": np.array([r["validation"] for r in records], float),
    }


def third_rates(steps: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Improvement rates (per 1000 outer steps) over the first and the last third."""
    total = steps[-1] - steps[0]
    at = lambda s: float(np.interp(steps[0] + s * total, steps, values))
    per_k = 1000 / (total / 3)
    first = (at(0) - at(1 / 3)) * per_k
    last = (at(2 / 3) - at(1)) * per_k
    return {
        "rate_first_third": float(first),
        "rate_last_third": float(last),
        "rate_ratio": float(last / first) if first > 0 else float("nan"),
    }


def loop_rates(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The windowed improvement rates of a curve (see the module docstring).

    Args:
        steps: ``(V,)`` increasing outer steps.
        values: ``(V,)`` the meta-loss at those steps; non-finite entries are left out.

    Returns:
        ``(starts, rates)``: each window's first outer step and its rate, the drop of ``log L``
        per 1000 outer steps (``LOOP_GRID × (1 − LOOP_WINDOW) + 1`` windows).
    """
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    keep = np.isfinite(values)
    steps, values = steps[keep], values[keep]
    if len(steps) < 2 or steps[-1] <= steps[0]:
        raise ValueError("the loop measure needs finite values at two or more distinct steps")
    grid = np.linspace(steps[0], steps[-1], LOOP_GRID + 1)
    log_curve = np.interp(grid, steps, np.log(np.maximum(values, LOG_FLOOR)))
    rates = -_window_slopes(grid, log_curve, round(LOOP_WINDOW * LOOP_GRID)) * 1000
    return grid[: len(rates)], rates


def acceleration(steps: np.ndarray, values: np.ndarray) -> dict:
    """The feedback-loop measure of a curve (arguments as ``loop_rates``'s).

    Returns:
        ``loop_first_rate`` and ``loop_best_rate`` (drop of ``log L`` per 1000 outer steps over
        the first and the fastest window), ``loop_best_at`` (where the fastest window starts, as
        a fraction of the run), ``loop_ratio`` (fastest ÷ first; ``inf`` when only the first
        did not improve) and ``loop_shown`` (the two conditions hold).
    """
    starts, rates = loop_rates(steps, values)
    first, best_index = rates[0], int(np.argmax(rates))
    best = rates[best_index]
    unbounded = math.inf if best > 0 else math.nan  # the first window did not improve
    ratio = best / first if first > 0 else unbounded
    best_at = best_index / LOOP_GRID
    return {
        "loop_first_rate": float(first),
        "loop_best_rate": float(best),
        "loop_best_at": float(best_at),
        "loop_ratio": float(ratio),
        "loop_shown": bool(best > 0 and ratio >= LOOP_FACTOR and best_at >= LOOP_DELAY),
    }


def _window_slopes(x: np.ndarray, y: np.ndarray, width: int) -> np.ndarray:
    """Least-squares slope of ``y`` against evenly spaced ``x`` over ``x[i : i + width + 1]``,
    for every window that fits."""
    offsets = x[: width + 1] - x[: width + 1].mean()
    weights = offsets / (offsets**2).sum()
    return np.correlate(y, weights, mode="valid")


def feedback_summary(run_dir: str | pathlib.Path) -> dict:
    """The numbers above for the best member (and ``median_*`` for the median member)."""
    curves = validation_curves(run_dir)
    if len(curves["step"]) < 2:
        return {"validations": len(curves["step"])}
    best, median = curves["best"], curves["median"]
    summary = {
        "validations": len(best),
        "outer_steps": int(curves["step"][-1]),
        "wall_seconds": float(curves["wall"][-1]),
        "best_initial": float(best[0]),
        "best_final": float(best[-1]),
        "best_improvement": float(best[0] - best[-1]),
        "median_initial": float(median[0]),
        "median_final": float(median[-1]),
        **third_rates(curves["step"], best),
        **acceleration(curves["step"], best),
    }
    for measure in (third_rates, acceleration):
        summary.update({f"median_{k}": v for k, v in measure(curves["step"], median).items()})
    return summary
