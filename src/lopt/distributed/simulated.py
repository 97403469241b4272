"""A simulated estimate worker, for measuring the learner alone (``benchmarks/``, tests).

``SimulatedWorker`` answers the learner's calls like ``EstimateWorker`` but computes nothing:
it waits a fixed time (the compute a real estimate would take) and returns zero
meta-gradients of θ's shape and the particles unchanged. It imports only numpy, so many of
them fit on one machine; N of them show how many workers one learner can serve before its
own work (receiving results, the outer update, dispatching) becomes the bottleneck.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def _zeros(tree: Any, n: int) -> Any:
    """Zeros shaped ``(n, *leaf.shape)`` for every leaf of a host pytree (dicts, lists)."""
    if isinstance(tree, dict):
        return {k: _zeros(v, n) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_zeros(v, n) for v in tree)
    leaf = np.asarray(tree)
    return np.zeros((n, *leaf.shape), leaf.dtype)


class SimulatedWorker:
    """Takes ``seconds`` per call and returns zero meta-gradients (see the module docstring)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def ready(self) -> str:
        return __file__

    def particles(
        self, config: dict, task: int, theta: Any, state: Any, keys: Any, progress: float
    ) -> tuple:
        time.sleep(self.seconds)
        n = len(keys)
        metrics = {"meta_loss": np.zeros(n, np.float32), "diverged": np.zeros(n, bool)}
        return _zeros(theta, n), state, metrics
