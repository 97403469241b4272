"""Self-training on Ray (``lopt self-train --backend ray``): members' estimates on Ray actors.

The learner (``lopt.population.selftrain``) keeps the whole population — every member's θ,
learned outer-optimizer state and particles, PBT and checkpoints. Each outer step it cuts the
members into one slice per worker; a worker runs the estimates of its slice (the in-process
code, vmapped over the slice's members) and the learner joins the slices in member order
before the learned outer updates. Workers hold no state: a dead worker is replaced and its
slice computed again, with the same result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import lopt
from lopt.distributed.backend import RayBackend
from lopt.distributed.wire import concatenate, from_host, particle_slice, to_host
from lopt.population.config import PopulationConfig
from lopt.population.selftrain import population_estimators
from lopt.population.vectorize import over_members
from lopt.runtime.compilation_cache import enable_compilation_cache


class MemberWorker:
    """Runs the estimates of a slice of the population for any task of a run's bank."""

    def __init__(self) -> None:
        enable_compilation_cache()
        self.config: dict | None = None

    def ready(self) -> str:
        """Where this worker imported lopt from (answers once the actor is up)."""
        return lopt.__file__

    def estimates(
        self, config: dict, task: int, thetas: Any, state: Any, keys: Any, progress: float
    ) -> tuple:
        """The estimates of ``m`` members (host pytrees, leading axis ``m``; keys as raw data).

        Returns:
            ``(grads, state, metrics)`` as numpy, each with leading axis ``m``.
        """
        if config != self.config:
            _, estimators = population_estimators(PopulationConfig.from_dict(config))
            self.runs = [over_members(e.estimate, 4, 1, shared=(3,)) for e in estimators]
            one = jax.random.split(jax.random.key(0), 1)
            self.templates = [jax.eval_shape(jax.vmap(e.init), one) for e in estimators]
            self.config = config
        state = from_host(state, self.templates[task])
        out = self.runs[task](thetas, state, jax.random.wrap_key_data(keys), progress)
        return to_host(out)


class RayMembers:
    """Population members' estimates on Ray workers: ``self_train(..., members=RayMembers())``.

    Args:
        workers, address, cpus_per_worker: as for ``RayBackend``; at most one worker per member
            is used.
    """

    def __init__(self, workers: int = 2, address: str | None = None, cpus_per_worker=1.0):
        self.backend = RayBackend(
            workers, address, cpus_per_worker=cpus_per_worker, worker_class=MemberWorker
        )

    def estimates(self, cfg: PopulationConfig, num_tasks: int) -> list[Callable]:
        """One function per task with the in-process signature ``(thetas, state, keys,
        progress) -> (grads, state, metrics)`` (member axis first)."""
        slices = min(self.backend.num_workers, cfg.population)
        bounds = np.linspace(0, cfg.population, slices + 1).round().astype(int).tolist()
        ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
        config = cfg.to_dict()
        return [functools.partial(self._estimate, config, ranges, t) for t in range(num_tasks)]

    def _estimate(self, config, ranges, task, thetas, state, keys, progress):
        thetas_h, state_h, keys_h = to_host(thetas), to_host(state), to_host(keys)
        calls = [
            (task, particle_slice(thetas_h, a, b), particle_slice(state_h, a, b), keys_h[a:b])
            + (float(progress),)
            for a, b in ranges
        ]
        results = self.backend.run_calls("estimates", config, calls)
        grads, new_state, metrics = (concatenate([r[k] for r in results]) for k in range(3))
        return from_host(grads, thetas), from_host(new_state, state), from_host(metrics, metrics)

    def close(self) -> None:
        self.backend.close()
