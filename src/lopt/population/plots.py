"""PNG plots of a self-training run, read back from its ``metrics.jsonl``.

- ``meta_loss.png``: every member's training meta-loss (moving average) and the population's
  best and median, against outer step and against wall-clock time.
- ``feedback_loop.png``: the validation meta-loss of every member, the best and the median
  (top), and the rate at which the best improves over time (bottom) — the feedback loop.

``plot_comparison`` overlays several runs (self-training against the Adam-outer run).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lopt.meta.rundir import read_jsonl  # noqa: E402
from lopt.population.feedback import feedback_summary, validation_curves  # noqa: E402


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
    # Improvement rate of the best member: drop per 1000 steps between validations, smoothed.
    drop = -np.diff(best) / np.diff(steps) * 1000
    window = max(1, len(drop) // 8)
    bottom.plot(steps[1:], drop, ".", color="gray", alpha=0.5, ms=3, label="between validations")
    bottom.plot(steps[1:], _moving_average(drop, window), lw=1.8, label=f"mean of {window}")
    third = steps[-1] / 3
    for lo, rate in ((0, summary["rate_first_third"]), (2 * third, summary["rate_last_third"])):
        bottom.hlines(rate, lo, lo + third, colors="k", linestyles="--", lw=1.2)
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set(
        xlabel="outer step",
        ylabel="improvement rate of the best\n(meta-loss drop per 1000 steps)",
        title=f"last third ÷ first third = {summary['rate_ratio']:.2f} (dashed: thirds)",
    )
    bottom.legend()
    fig.tight_layout()
    path = run_dir / "feedback_loop.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_comparison(run_dirs: dict[str, str | pathlib.Path], path: str | pathlib.Path):
    """Best and median validation meta-loss of several runs against outer step, in one PNG.

    Args:
        run_dirs: legend label -> run directory.
        path: the PNG to write.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, run_dir) in enumerate(run_dirs.items()):
        curves = validation_curves(run_dir)
        color = f"C{i}"
        ax.plot(curves["step"], curves["best"], "-", color=color, lw=1.8, label=f"{label}: best")
        ax.plot(curves["step"], curves["median"], ":", color=color, lw=1.2, label="median")
    ax.set(xlabel="outer step", ylabel="validation meta-loss", yscale="log")
    ax.legend(fontsize=8)
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
