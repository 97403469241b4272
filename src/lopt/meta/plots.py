"""PNG plots of a meta-training run, read back from its ``metrics.jsonl``."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lopt.meta.rundir import read_jsonl  # noqa: E402


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    if len(x) < window or window < 2:
        return x
    kernel = np.ones(window) / window
    return np.convolve(x, kernel, mode="valid")


def plot_run(run_dir: str | pathlib.Path) -> list[pathlib.Path]:
    """Write ``meta_loss.png`` (and ``validation.png`` when validated); returns the paths."""
    run_dir = pathlib.Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = read_jsonl(path)
    steps = np.array([r["step"] for r in lines if "meta_loss" in r])
    losses = np.array([r["meta_loss"] for r in lines if "meta_loss" in r])
    written = []
    if len(steps):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, losses, alpha=0.25, lw=0.6, label="per step")
        window = max(1, len(steps) // 50)
        ax.plot(steps[window - 1 :], _smooth(losses, window), lw=1.5, label=f"mean of {window}")
        ax.set(xlabel="outer step", ylabel="meta-loss", title="meta-training")
        ax.legend()
        fig.tight_layout()
        fig.savefig(run_dir / "meta_loss.png", dpi=110)
        plt.close(fig)
        written.append(run_dir / "meta_loss.png")
    val = [r for r in lines if "validation" in r]
    if val:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(
            [r["step"] + 1 for r in val],
            [r["validation"]["score"] for r in val],
            "o-",
            label="learned",
        )
        ax.axhline(
            val[-1]["validation"]["adam_tuned"], color="k", ls="--", label="Adam, best of 14 lrs"
        )
        ax.set(xlabel="outer step", ylabel="normalized outer-valid loss", title="validation")
        ax.legend()
        fig.tight_layout()
        fig.savefig(run_dir / "validation.png", dpi=110)
        plt.close(fig)
        written.append(run_dir / "validation.png")
    return written
