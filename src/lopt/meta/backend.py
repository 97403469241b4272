"""Where the outer loop's meta-gradient estimates come from: this process, or Ray workers.

The outer loop (``lopt.meta.outer``) owns θ, the outer optimizer state and every task's
estimator state; a *backend* turns them into estimates. Each estimate has a number ``n``: its
PRNG key is ``estimate_key(base_key, n)`` and, when estimates are taken in order, it trains
task ``n mod task_bank``. The in-process backend computes estimate ``n`` at outer step ``n``;
``lopt.distributed.RayBackend`` computes them on Ray actors, synchronously (the same numbers)
or with bounded staleness.

A backend is any object with ``start(cfg, estimators, base_key, first, bank) -> EstimateSource``
(``first``: the number of the first estimate to start; ``bank``: which of the run's banks the
estimators are, see ``bank_refresh``) and ``close()``. The source's
``next(step, theta, states) -> Estimate`` returns the estimate to apply at outer step
``step`` (``states``: the current estimator state of every task).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax

from lopt.meta.config import MetaTrainConfig
from lopt.meta.estimators import Estimator


class Estimate(NamedTuple):
    """One meta-gradient estimate, ready to apply.

    Attributes:
        number: the estimate's number (its PRNG key; see ``estimate_key``).
        task: index of the task (in the task bank) it trained.
        grad: the meta-gradient, θ-shaped.
        state: that task's estimator state after the estimate.
        metrics: ``meta_loss`` (mean over particles), ``diverged`` (count).
        info: what the backend adds to the step's line in ``metrics.jsonl`` (e.g. staleness).
    """

    number: int
    task: int
    grad: Any
    state: Any
    metrics: dict
    info: dict


class EstimateSource(Protocol):
    def next(self, step: int, theta: Any, states: list) -> Estimate: ...

    def close(self) -> None: ...


class Backend(Protocol):
    def start(
        self,
        cfg: MetaTrainConfig,
        estimators: list[Estimator],
        base_key: jax.Array,
        first: int,
        bank: int,
    ) -> EstimateSource: ...

    def close(self) -> None: ...


def estimate_key(base_key: jax.Array, number: int) -> jax.Array:
    """The PRNG key of estimate ``number`` of a run seeded with ``base_key``."""
    return jax.random.fold_in(base_key, 1000 + number)


class InProcessSource:
    """Estimate ``step`` of outer step ``step``, computed here (vmap/shard_map over particles)."""

    def __init__(self, estimators: list[Estimator], base_key: jax.Array, outer_steps: int):
        self.estimators, self.base_key, self.outer_steps = estimators, base_key, outer_steps

    def next(self, step: int, theta: Any, states: list) -> Estimate:
        task = step % len(self.estimators)
        grad, state, metrics = self.estimators[task].estimate(
            theta, states[task], estimate_key(self.base_key, step), step / self.outer_steps
        )
        return Estimate(step, task, grad, state, metrics, {})

    def close(self) -> None:
        pass


class InProcess:
    """The default backend: every estimate in this process, in order."""

    def start(
        self,
        cfg: MetaTrainConfig,
        estimators: list[Estimator],
        base_key: jax.Array,
        first: int,
        bank: int,
    ) -> InProcessSource:
        del first, bank  # in order: estimate number = outer step; the estimators are the bank
        return InProcessSource(estimators, base_key, cfg.outer_steps)

    def close(self) -> None:
        pass
