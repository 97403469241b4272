"""The main job on embedded defaults (``make demo`` / ``lopt demo``).

For now it compares the tuned baselines on the ``tiny`` task set and writes the report; it will
become: meta-train a small learned optimizer for a few minutes, then evaluate it against them.
"""

from __future__ import annotations

import pathlib

import jax

from lopt.errors import check_range
from lopt.evaluate import evaluate_into
from lopt.tasks import task_names

DEMO_TASKS = "tiny"
DEMO_OPTIMIZERS = ("adam-tuned", "adam-global", "nadamw-tuned")


def run_demo(
    out_dir: str | pathlib.Path,
    minutes: float | None = None,
    steps: int = 300,
    seeds: int = 2,
    progress: bool = True,
) -> tuple[dict, bool]:
    """Run the demo into ``out_dir``; returns ``(results_json, reused)`` (see ``evaluate_into``).

    ``minutes`` is the meta-training budget of the coming learned-optimizer demo; the current
    baseline-only demo takes about a minute and ignores it.
    """
    if minutes is not None:
        check_range("minutes", minutes, 0.0)
    return evaluate_into(
        out_dir,
        task_names(DEMO_TASKS),
        DEMO_OPTIMIZERS,
        steps,
        seeds,
        jax.random.key(0),
        progress=progress,
    )
