"""Periodic validation during meta-training: the learned optimizer against per-task
learning-rate-tuned Adam on fixed meta-training-family tasks, scored on their ``outer_valid``
split (never the test split, never held-out tasks), used to keep the best checkpoint.

Score per task: the mean over the run of the normalized ``outer_valid`` loss (the primary metric
of ``lopt.evaluation.harness``), normalized by the initial loss and the best loss any of the 14 Adam
learning rates reached. The Adam line it is compared with is the best of the 14 learning rates
on this very split (an oracle, slightly stronger than selecting on inner_valid). Adam's
references are computed once per run and cached in the run dir.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from lopt.baselines.tuning import tune_adam
from lopt.evaluation.harness import normalized_loss
from lopt.inner import train
from lopt.learned.base import Architecture
from lopt.storage.files import read_json_or_none, to_json, write_atomically
from lopt.tasks.registry import get_task

SPLIT = "outer_valid"


class Validator:
    """Scores θ on ``task_names`` (``steps`` inner steps, ``seeds`` seeds) against tuned Adam."""

    def __init__(
        self, task_names, steps: int, seeds: int, cache: pathlib.Path | None, seed: int = 0
    ):
        self.task_names = tuple(task_names)
        self.steps, self.seeds = steps, seeds
        self.key = jax.random.key(seed + 12345)
        self.tasks = {n: get_task(n) for n in self.task_names}
        self.reference = self._reference(cache)
        self._runs = {}

    def _keys(self):
        return jax.random.split(self.key, self.seeds)

    def _reference(self, cache):
        ref = read_json_or_none(cache) if cache is not None else None  # unreadable: recomputed
        if (
            isinstance(ref, dict)
            and ref.get("tasks") == list(self.task_names)
            and ref.get("steps") == self.steps
        ):
            return ref["per_task"]
        per_task = {}
        for name, task in self.tasks.items():
            curves, _ = tune_adam(task, self.key, self.steps, self.seeds)
            seed_mean = np.asarray(curves.eval[SPLIT]).mean(axis=1)  # (14, E)
            finite = seed_mean[np.isfinite(seed_mean)]
            initial = float(seed_mean[0, 0])
            best = min(float(finite.min()), initial)
            scores = [normalized_loss(c, initial, best).mean() for c in seed_mean]
            per_task[name] = {"initial": initial, "best": best, "adam_tuned": float(np.min(scores))}
        if cache is not None:
            reference = {"tasks": list(self.task_names), "steps": self.steps, "per_task": per_task}
            write_atomically(cache, to_json(reference).encode())
        return per_task

    def _run_fn(self, arch: Architecture, name: str):
        if (arch, name) not in self._runs:
            task = self.tasks[name]

            def run(theta, keys):
                one = lambda k: train(task, arch.optimizer(theta), k, self.steps)[1].eval[SPLIT]
                return jax.vmap(one)(keys)

            self._runs[arch, name] = jax.jit(run)
        return self._runs[arch, name]

    def score(self, arch: Architecture, theta) -> dict:
        """``{"score": mean over tasks, "adam_tuned": its mean, "<task>": score, ...}``."""
        out = {}
        for name in self.task_names:
            curves = np.asarray(self._run_fn(arch, name)(theta, self._keys())).mean(axis=0)
            ref = self.reference[name]
            out[name] = float(normalized_loss(curves, ref["initial"], ref["best"]).mean())
        out["score"] = float(np.mean([out[n] for n in self.task_names]))
        out["adam_tuned"] = float(
            np.mean([self.reference[n]["adam_tuned"] for n in self.task_names])
        )
        return out
