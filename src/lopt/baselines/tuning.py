"""Honest baseline tuning (Metz et al. 2020): per-task Adam over 14 log-spaced learning rates,
the single global-best learning rate, and a short NAdamW trial list.

All trials of one task run as a single vmapped program (trials × seeds). Selection uses the
inner-validation curve (by default its mean over evaluation points, the same criterion as the
primary metric); test numbers are reported for the selected trial only.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.baselines.optimizers import make
from lopt.errors import check_choice
from lopt.inner import Curves, train
from lopt.tasks.base import Task

# 14 log-spaced Adam learning rates, 1e-4 … 1 (ratio ≈ 2.03 between neighbours).
ADAM_LRS = tuple(float(x) for x in np.geomspace(1e-4, 1.0, 14))


class NAdamWTrial(NamedTuple):
    """One NAdamW hyperparameter setting (warmup then cosine decay to 0)."""

    lr: float
    b1: float
    b2: float
    weight_decay: float
    warmup_fraction: float


# A short trial list in the spirit of Metz et al.'s NAdamW "opt_list" (ordered by usefulness).
NADAMW_TRIALS = (
    NAdamWTrial(3e-3, 0.9, 0.999, 1e-4, 0.05),
    NAdamWTrial(1e-3, 0.9, 0.999, 1e-4, 0.05),
    NAdamWTrial(1e-2, 0.9, 0.999, 1e-4, 0.05),
    NAdamWTrial(3e-4, 0.9, 0.999, 0.0, 0.0),
    NAdamWTrial(3e-3, 0.95, 0.99, 1e-3, 0.1),
    NAdamWTrial(1e-2, 0.8, 0.99, 0.0, 0.1),
    NAdamWTrial(3e-2, 0.9, 0.999, 1e-4, 0.1),
    NAdamWTrial(1e-4, 0.9, 0.999, 0.0, 0.0),
    NAdamWTrial(1e-3, 0.5, 0.99, 1e-2, 0.0),
    NAdamWTrial(3e-3, 0.9, 0.9999, 1e-4, 0.2),
)


def nadamw_trial(trial: NAdamWTrial, num_steps: int) -> optax.GradientTransformation:
    """NAdamW with warmup + cosine decay for one trial (fields may be traced scalars)."""
    warmup = jnp.maximum(1.0, jnp.round(trial.warmup_fraction * num_steps))

    def schedule(step):
        step = step.astype(jnp.float32)
        warm = jnp.minimum(1.0, (step + 1) / warmup)
        progress = jnp.clip((step - warmup) / jnp.maximum(1, num_steps - warmup), 0.0, 1.0)
        return trial.lr * warm * 0.5 * (1 + jnp.cos(jnp.pi * progress))

    return optax.nadamw(schedule, b1=trial.b1, b2=trial.b2, weight_decay=trial.weight_decay)


def run_trials(
    task: Task,
    build,
    hparams,
    key: jax.Array,
    num_steps: int,
    num_seeds: int = 1,
    eval_every: int | None = None,
) -> Curves:
    """Train ``task`` under every trial × seed in one vmapped program.

    Args:
        build: ``hparams_row -> optax transformation`` (traceable in its argument).
        hparams: pytree whose leaves have a leading trial axis ``(T, ...)``.
        key: base key; seed ``s`` uses ``fold_in(key, s)`` for every trial (common random
            numbers, so trials differ only in hyperparameters).

    Returns:
        Curves with leading axes ``(T, num_seeds, E)``.
    """
    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(num_seeds))

    def one(h, k):
        return train(task, build(h), k, num_steps, eval_every)[1]

    per_seed = jax.vmap(one, in_axes=(None, 0))
    return jax.jit(jax.vmap(per_seed, in_axes=(0, None)))(hparams, keys)


SELECTION_CRITERIA = ("curve", "final")


def selection_score(
    curves: Curves, split: str = "inner_valid", criterion: str = "curve"
) -> np.ndarray:
    """Score per trial for model selection (lower is better); ``(T, S, E)`` curves -> ``(T,)``.

    The ``split`` curve is first averaged over seeds, then reduced over evaluation points:

    - ``"curve"`` (default): the mean over all evaluation points — the same criterion as the
      primary metric of ``lopt.evaluation.harness`` (it rewards fast progress as well as a low
      final loss);
    - ``"final"``: the value at the last evaluation point.

    A trial with any non-finite value in the reduced points scores ``+inf``.
    """
    check_choice("criterion", criterion, SELECTION_CRITERIA)
    seed_mean = np.asarray(curves.eval[split], np.float64).mean(axis=1)  # (T, E)
    points = seed_mean if criterion == "curve" else seed_mean[:, -1:]
    score = points.mean(axis=-1)
    return np.where(np.isfinite(points).all(axis=-1), score, np.inf)


def tune_adam(
    task: Task, key: jax.Array, num_steps: int, num_seeds: int = 1, eval_every=None
) -> tuple[Curves, np.ndarray]:
    """Adam at every lr in ``ADAM_LRS``; returns all curves ``(14, S, E)`` and their scores."""
    lrs = jnp.asarray(ADAM_LRS, jnp.float32)
    curves = run_trials(
        task, lambda lr: make("adam", lr), lrs, key, num_steps, num_seeds, eval_every
    )
    return curves, selection_score(curves)


def tune_nadamw(
    task: Task, key: jax.Array, num_steps: int, num_seeds: int = 1, eval_every=None
) -> tuple[Curves, np.ndarray]:
    """NAdamW over ``NADAMW_TRIALS``; returns curves ``(10, S, E)`` and scores."""
    table = NAdamWTrial(
        *(jnp.asarray(col, jnp.float32) for col in zip(*NADAMW_TRIALS, strict=True))
    )
    curves = run_trials(
        task, lambda h: nadamw_trial(h, num_steps), table, key, num_steps, num_seeds, eval_every
    )
    return curves, selection_score(curves)


def global_best_index(scores_per_task: list[np.ndarray]) -> int:
    """The one trial index that is best across tasks (lowest mean of min-max scaled scores).

    Each task's scores are min-max scaled over finite trials (so tasks weigh equally) and
    non-finite trials count as 1 (as bad as the worst); the index with the lowest mean wins.
    """
    scaled = []
    for s in scores_per_task:
        finite = np.isfinite(s)
        lo, hi = (s[finite].min(), s[finite].max()) if finite.any() else (0.0, 1.0)
        scaled.append(np.where(finite, (s - lo) / max(hi - lo, 1e-12), 1.0))
    return int(np.argmin(np.mean(scaled, axis=0)))
