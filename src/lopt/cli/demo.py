"""The main job on embedded defaults (``make demo`` / ``lopt demo``).

1. Meta-train a small learned optimizer with antithetic ES for a few minutes
   (``<out>/meta-train``: config, metrics, checkpoints, plots; resumable).
2. Evaluate it, and the shipped ``small`` optimizer, against learning-rate-tuned Adam (14 lrs
   per task), global-best-lr Adam and tuned NAdamW on held-out tasks
   (``<out>/eval``: results.md, results.json, learning-curve PNGs).
"""

from __future__ import annotations

import pathlib

import jax

from lopt.errors import check_range
from lopt.evaluation.harness import evaluate_into
from lopt.meta import MetaTrainConfig, meta_train

DEMO_TASKS = ("mlp-mnist1d-64", "mlp-wine-16", "autoencoder-digits", "quadratic-64-ill")
DEMO_BASELINES = ("adam-tuned", "adam-global", "nadamw-tuned")
DEMO_CONFIG = MetaTrainConfig(
    architecture={"kind": "mlp", "hidden": [8], "trust_ratio": 0.1},
    num_particles=8,
    truncation={"length": 50, "min_horizon": 100, "max_horizon": 500},
    families=("quadratic", "least_squares", "mlp-digits", "mlp-breast_cancer", "teacher_student"),
    task_bank=5,
    outer_steps=600,
    checkpoint_every=100,
    log_every=50,
    validate_every=0,
)


def run_demo(
    out_dir: str | pathlib.Path,
    minutes: float | None = 3.0,
    steps: int = 500,
    seeds: int = 2,
    progress: bool = True,
) -> tuple[dict, bool]:
    """Meta-train for at most ``minutes`` (resumable), then evaluate into ``out_dir/eval``.

    Returns ``(results_json, reused)`` as ``evaluate_into`` does. A re-run reuses the
    evaluation if the optimizer is unchanged and replaces it if meta-training went on.
    """
    if minutes is not None:
        check_range("minutes", minutes, 0.0)
    out_dir = pathlib.Path(out_dir)
    meta_dir = out_dir / "meta-train"
    config = None if (meta_dir / "config.json").exists() else DEMO_CONFIG
    meta_train(meta_dir, config, max_minutes=minutes)
    specs = [*DEMO_BASELINES, "small", str(meta_dir / "optimizer")]
    return evaluate_into(
        out_dir / "eval",
        DEMO_TASKS,
        specs,
        steps,
        seeds,
        jax.random.key(0),
        progress=progress,
        replace=True,
    )
