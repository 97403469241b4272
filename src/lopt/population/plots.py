"""PNG plots of a self-training run, read back from its ``metrics.jsonl``.

- ``meta_loss.png``: every member's training meta-loss (moving average) and the population's
  best and median, against outer step and against wall-clock time.
- ``feedback_loop.png``: the validation meta-loss of every member, the best and the median
  (top), and the rate at which the best and the median improve over the run (bottom, the
  windowed rates of ``lopt.population.feedback``) — the feedback loop.

``plot_comparison`` overlays several runs (self-training against the Adam-outer run), their
curves and their improvement rates.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lopt.meta.rundir import read_jsonl  # noqa: E402
from lopt.population.feedback import (  # noqa: E402
    LOOP_DELAY,
    LOOP_FACTOR,
    LOOP_WINDOW,
    feedback_summary,
    loop_rates,
    validation_curves,
)


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` rows (shorter at the start), same length as ``x``."""
    csum = np.cumsum(np.concatenate([np.zeros((1, *x.shape[1:])), x]), axis=0)
    lo = np.maximum(np.arange(1, len(x) + 1) - window, 0)
    counts = (np.arange(1, len(x) + 1) - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return (csum[1:] - csum[lo]) / counts


def _plot_meta_loss(run_dir: pathlib.Path, steps_records: list[dict]) -> pathlib.Path:
    steps = np.array([r["step"] for r in steps_records])
    wall = np.array([r["wall"] for r in steps_records]) / 60
    losses = np.array([r["meta_loss"] for r in steps_records])  # (T, P)
    window = max(1, len(steps) // 30)
    smooth = _moving_average(losses, window)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, x, label in ((axes[0], steps, "outer step"), (axes[1], wall, "wall-clock (min)")):
        ax.plot(x, smooth, color="gray", alpha=0.3, lw=0.6)
        ax.plot(x, smooth.min(axis=1), lw=1.6, label="best member")
        ax.plot(x, np.median(smooth, axis=1), lw=1.6, label="median member")
        ax.set(xlabel=label)
    axes[0].set(ylabel=f"training meta-loss (mean of {window} steps)")
    axes[0].legend()
    fig.suptitle("self-training: every member's meta-loss (gray) on the sampled tasks")
    fig.tight_layout()
    path = run_dir / "meta_loss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_feedback(run_dir: pathlib.Path) -> pathlib.Path:
    curves = validation_curves(run_dir)
    summary = feedback_summary(run_dir)
    steps, best = curves["step"], curves["best"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(steps, curves["scores"], ".", color="gray", alpha=0.4, ms=3)
    top.plot(steps, best, "-", lw=1.8, label="best member")
    top.plot(steps, curves["median"], "-", lw=1.4, label="median member")
    top.set(ylabel="validation meta-loss\n(normalized outer-valid loss)")
    top.legend()
    _plot_loop_rates(bottom, steps, best, "best member", "C0")
    _plot_loop_rates(bottom, steps, curves["median"], "median member", "C1")
    first = summary["loop_first_rate"]
    bottom.axhline(
        LOOP_FACTOR * max(first, 0.0),
        color="k",
        ls="--",
        lw=1,
        label=f"{LOOP_FACTOR:g}× the best's first window",
    )
    bottom.axvline(steps[0] + LOOP_DELAY * (steps[-1] - steps[0]), color="k", ls=":", lw=1)
    bottom.axhline(0, color="k", lw=0.5)
    shown = "shown" if summary["loop_shown"] else "not shown"
    bottom.set(
        xlabel="outer step (dotted: the first 10%)",
        ylabel=f"improvement rate: drop of log L\nper 1000 steps, windows of {LOOP_WINDOW:.0%}",
        title=(
            f"feedback loop {shown}: fastest window {summary['loop_ratio']:.1f}× the first, "
            f"at {summary['loop_best_at']:.0%} of the run"
        ),
    )
    bottom.legend(fontsize=8)
    fig.tight_layout()
    path = run_dir / "feedback_loop.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_loop_rates(ax, steps: np.ndarray, values: np.ndarray, label: str, color: str, **style):
    starts, rates = loop_rates(steps, values)
    ax.plot(starts, rates, color=color, label=label, **style)


def plot_comparison(run_dirs: dict[str, str | pathlib.Path], path: str | pathlib.Path):
    """Best and median validation meta-loss of several runs against outer step, in one PNG.

    Args:
        run_dirs: legend label -> run directory.
        path: the PNG to write.
    """
    fig, (ax, rates) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for i, (label, run_dir) in enumerate(run_dirs.items()):
        curves = validation_curves(run_dir)
        color = f"C{i}"
        ax.plot(curves["step"], curves["best"], "-", color=color, lw=1.8, label=f"{label}: best")
        ax.plot(curves["step"], curves["median"], ":", color=color, lw=1.2, label="median")
        _plot_loop_rates(rates, curves["step"], curves["best"], f"{label}: best", color)
    ax.set(ylabel="validation meta-loss", yscale="log")
    ax.legend(fontsize=8)
    rates.axhline(0, color="k", lw=0.5)
    rates.set(
        xlabel="outer step",
        ylabel=f"improvement rate: drop of log L\nper 1000 steps, windows of {LOOP_WINDOW:.0%}",
    )
    rates.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return pathlib.Path(path)


def plot_population(run_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Write ``meta_loss.png`` and ``feedback_loop.png``; returns the paths written."""
    run_dir = pathlib.Path(run_dir)
    records = read_jsonl(run_dir / "metrics.jsonl")
    steps_records = [r for r in records if "meta_loss" in r]
    written = []
    if steps_records:
        written.append(_plot_meta_loss(run_dir, steps_records))
    if sum("validation" in r for r in records) >= 2:
        written.append(_plot_feedback(run_dir))
    return written
