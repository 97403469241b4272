"""A simulated estimate worker, for measuring the learner alone (``benchmarks/``, tests).

``SimulatedWorker`` answers the learner's calls like ``EstimateWorker`` but computes nothing:
it waits a fixed time per task (the compute a real estimate would take; tasks of unequal cost
are what make asynchronous estimates stale) and returns zero meta-gradients of θ's shape and
the particles unchanged. N of them show how many workers one
learner can serve before its own work (receiving results, the outer update, dispatching)
becomes the bottleneck.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np


class SimulatedWorker:
    """Returns zero meta-gradients after ``seconds[task % len(seconds)]`` (module docstring)."""

    def __init__(self, seconds: tuple[float, ...]) -> None:
        self.seconds = seconds

    def ready(self) -> str:
        return __file__

    def particles(
        self, config: dict, task: int, theta: Any, state: Any, keys: Any, progress: float
    ) -> tuple:
        time.sleep(self.seconds[task % len(self.seconds)])
        n = len(keys)
        grads = jax.tree.map(lambda x: np.zeros((n, *np.shape(x)), np.asarray(x).dtype), theta)
        metrics = {"meta_loss": np.zeros(n, np.float32), "diverged": np.zeros(n, bool)}
        return grads, state, metrics
