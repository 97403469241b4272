"""Score every member on outer-validation tasks, with no hand-designed reference.

A member's validation meta-loss on a task is the mean, over a run from scratch (and over
seeds), of the task-normalized loss on the task's ``outer_valid`` evaluation batch:
``(loss − floor) / (initial − floor)`` — 1 is "no progress from initialization", 0 the task's
known floor — clipped to ``[0, max_normalized]`` (non-finite counts as ``max_normalized``).
Unlike ``lopt.meta.validation`` it is not normalized by tuned Adam: self-training must not run
a hand-designed optimizer, not even as a yardstick. The score is the mean over tasks.
"""

from __future__ import annotations

import jax
import numpy as np

from lopt.inner import train
from lopt.learned.base import Architecture
from lopt.population.vectorize import over_members
from lopt.tasks.registry import get_task

SPLIT = "outer_valid"


class MemberScorer:
    """``scorer(thetas) -> (scores (P,), {task: (P,)})`` for a stacked population ``thetas``.

    Args:
        arch: the members' architecture.
        task_names: outer-validation tasks (named tasks of the meta-training families).
        steps: inner steps of each validation run.
        seeds: runs per task and member (the same seeds for every member and every call).
        seed: base seed of the validation runs.
        devices: local devices to shard members over.
        max_normalized: the clip of the normalized loss.
    """

    def __init__(
        self,
        arch: Architecture,
        task_names,
        steps: int,
        seeds: int,
        seed: int,
        devices: int = 1,
        max_normalized: float = 2.0,
    ):
        self.max_normalized = max_normalized
        self.keys = jax.random.split(jax.random.key(seed + 54321), seeds)
        self.tasks = {name: get_task(name) for name in task_names}
        self.runs = {}
        for name, task in self.tasks.items():
            task.normalizer  # noqa: B018  (computed eagerly: it must not be traced)

            def curves(theta, keys, task=task):
                run = lambda k: train(task, arch.optimizer(theta), k, steps)[1].eval[SPLIT]
                return jax.vmap(run)(keys)  # (seeds, E)

            self.runs[name] = over_members(curves, 2, devices, shared=(1,))

    def __call__(self, thetas) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        per_task = {}
        for name, task in self.tasks.items():
            raw = np.asarray(self.runs[name](thetas, self.keys))  # (P, seeds, E)
            normalized = np.asarray(task.normalizer.normalize(raw))
            normalized = np.where(np.isfinite(normalized), normalized, self.max_normalized)
            per_task[name] = np.clip(normalized, 0.0, self.max_normalized).mean(axis=(1, 2))
        return np.mean(list(per_task.values()), axis=0), per_task
