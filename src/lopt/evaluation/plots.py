"""PNG figures for evaluation runs (matplotlib's Agg canvas; no pyplot, no display needed)."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lopt.evaluation.report import SUMMARY_COLUMNS


def curve_filename(task_name: str) -> str:
    """A safe file name for a task's learning-curve figure."""
    return "curves-" + re.sub(r"[^A-Za-z0-9._-]+", "_", task_name).strip("_") + ".png"


LINESTYLES = ("-", "-.", ":", (0, (5, 1)))  # optimizers whose curves coincide stay visible


def _style(label: str, order: Sequence[str]) -> dict:
    """The same colour and line style for an optimizer in every figure of a run."""
    from matplotlib import colormaps

    index = list(order).index(label) if label in order else len(order)
    return {"color": colormaps["tab10"](index % 10), "ls": LINESTYLES[index % len(LINESTYLES)]}


def _save(fig: Figure, path: str | pathlib.Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_curves(
    task_name: str,
    steps: np.ndarray,
    curves: dict[str, np.ndarray],
    best_loss: float | None,
    path: str | pathlib.Path,
    order: Sequence[str] = (),
) -> None:
    """Test loss vs step, one line per optimizer (log-y when every finite value is positive).

    Args:
        steps: ``(E,)``. curves: label -> ``(E,)`` seed-mean test loss.
        best_loss: ``L*`` drawn as a dashed line (None: not drawn).
    """
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    values = np.concatenate([np.asarray(c, np.float64).ravel() for c in curves.values()])
    values = values[np.isfinite(values)]
    for label, curve in curves.items():
        ax.plot(steps, curve, label=label, lw=1.8, **_style(label, order))
    if best_loss is not None and np.isfinite(best_loss):
        ax.axhline(best_loss, color="0.5", ls="--", lw=1, label="best reference")
        values = np.append(values, best_loss)
    if values.size and values.min() > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="test loss", title=task_name)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_summary(summary: dict[str, dict], path: str | pathlib.Path) -> None:
    """Bar chart of mean/median normalized loss (curve and final) per optimizer."""
    labels = list(summary)
    fig = Figure(figsize=(max(5.0, 1.4 * len(labels) + 2), 4))
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    width = 0.8 / len(SUMMARY_COLUMNS)
    for j, col in enumerate(SUMMARY_COLUMNS):
        heights = [summary[k][col] for k in labels]
        ax.bar(
            x + (j - (len(SUMMARY_COLUMNS) - 1) / 2) * width,
            heights,
            width,
            label=col.replace("_", " "),
        )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set(ylabel="normalized test loss (lower is better)", title="Summary over tasks")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
