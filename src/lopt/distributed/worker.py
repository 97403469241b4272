"""A Ray actor that runs slices of meta-gradient estimates for the learner.

A worker keeps no training state. Each call brings θ, the particles to advance (a slice of one
task's estimator state, cut along the particle axis), their PRNG keys and the run's config,
and returns the per-particle results (``Estimator.particles``). The learner owns all state,
so a worker may die at any moment: the same call on a replacement gives the same numbers.
The worker builds the task bank's estimators when it first sees a config and reuses them
(the config holds only what defines the estimators, so a resumed or repeated run reuses them).
A config naming another bank (a run with ``bank_refresh``) replaces them, and the programs
compiled for the old bank are released first, as the learner releases its own.
"""

from __future__ import annotations

from typing import Any

import jax

import lopt
from lopt.distributed.wire import from_host, to_host
from lopt.meta.config import MetaTrainConfig
from lopt.meta.outer import bank_estimators
from lopt.runtime.compilation_cache import enable_compilation_cache
from lopt.runtime.mappings import release_compiled_programs

ESTIMATOR_FIELDS = (
    "architecture",
    "estimator",
    "num_particles",
    "sigma",
    "truncation",
    "families",
    "task_bank",
    "seed",
)


def estimator_config(cfg: MetaTrainConfig, bank: int) -> dict:
    """What defines the estimators of bank ``bank`` of a run (all a worker needs): the part of
    its config that samples and trains the tasks, and the bank's number."""
    return {**{k: v for k, v in cfg.to_dict().items() if k in ESTIMATOR_FIELDS}, "bank": bank}


class EstimateWorker:
    """Computes ``Estimator.particles`` for any task of a run's task bank (one device)."""

    def __init__(self) -> None:
        enable_compilation_cache()
        self.config: dict | None = None
        self.estimators: list = []
        self.templates: list = []

    def ready(self) -> str:
        """Where this worker imported lopt from (answers once the actor is up)."""
        return lopt.__file__

    def particles(
        self, config: dict, task: int, theta: Any, state: Any, keys: Any, progress: float
    ) -> tuple:
        """Advance ``state``'s particles of task ``task`` (host pytrees, see ``wire``).

        Args:
            config: ``estimator_config`` of the run's config and bank.
            theta: θ (numpy leaves).
            state: ``n`` particles of the task's estimator state (leading axis ``n``).
            keys: ``(n, *key_data_shape)`` raw PRNG key data, one per particle.
            progress: outer step ÷ outer steps.

        Returns:
            ``(grads, state, metrics)`` as numpy, each with leading axis ``n``.
        """
        if config != self.config:
            if self.estimators:  # another bank or run: let the old programs go first
                self.estimators, self.templates = [], []
                release_compiled_programs()
            fields = {k: v for k, v in config.items() if k != "bank"}
            run = MetaTrainConfig.from_dict(fields)
            self.estimators = bank_estimators(run, devices=1, generation=config["bank"])
            self.templates = [jax.eval_shape(e.init, jax.random.key(0)) for e in self.estimators]
            self.config = config
        state = from_host(state, self.templates[task])
        out = self.estimators[task].particles(
            theta, state, jax.random.wrap_key_data(keys), progress
        )
        return to_host(out)
