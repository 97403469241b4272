"""The Ray backend of ``lopt meta-train``: estimate workers as Ray actors, one learner.

The learner is the ordinary outer loop (``lopt.meta.outer``): it owns θ, the outer optimizer
state and every task's particles, and applies one estimate per outer step. ``RayBackend``
hands the work to ``workers`` actors (``lopt.distributed.worker``), in one of two modes:

- synchronous (``max_staleness=0``): each estimate is cut into one slice of particles per
  worker, all computed from the current θ; the learner joins the slices in particle order and
  averages them with the same ``combine`` as the in-process backend. With ``workers`` equal to
  the config's ``devices`` this gives the in-process θ bit for bit (workers play the devices).
- asynchronous (``max_staleness=K > 0``): every worker computes whole estimates on its own
  task, from the θ of the moment it started; the learner applies them as they arrive. An
  estimate made from a θ more than ``K`` outer steps old is dropped (its task's particles are
  not advanced) and counted in ``metrics.jsonl`` (``stale_dropped``).

A worker that dies (``ray.kill``, a crashed process, a lost node) is replaced by a new actor
and its unfinished calls are sent again; the learner keeps going, and since workers hold no
state the result is the same as without the failure.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import jax
import numpy as np

import lopt
from lopt.distributed.wire import concatenate, from_host, particle_slice, to_host
from lopt.distributed.worker import EstimateWorker, estimator_config
from lopt.errors import LoptError, check_range
from lopt.meta.backend import Estimate, estimate_key
from lopt.meta.config import MetaTrainConfig
from lopt.meta.estimators import Estimator, combine, particle_keys

REPLACEMENTS_PER_WORKER = 10  # more replacements than this times the workers stop the run


def import_ray():
    """The ``ray`` module, or a one-sentence error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise LoptError(
            "the Ray backend needs Ray: pip install 'lopt[ray]' (or pip install 'ray>=2.9')"
        ) from None
    return ray


@dataclasses.dataclass
class _Pending:
    """An estimate in flight: one call per particle slice."""

    number: int
    task: int
    version: int  # the outer step whose θ it uses
    calls: list[tuple]  # per slice: the call's arguments after the config
    slots: list[int]  # per slice: the worker slot computing it
    actors: list  # per slice: the actor the call went to
    refs: list  # per slice: the call's ObjectRef
    results: list  # per slice: (grads, state, metrics) once done


class RayBackend:
    """Meta-gradient estimates on Ray actors (see the module docstring).

    Args:
        workers: number of estimate workers (actors).
        address: a Ray cluster to join (``ray start --head`` prints it; ``auto`` finds one on
            this machine); ``None`` starts a local Ray unless this process already joined one.
        max_staleness: 0 for synchronous estimates; ``K > 0`` for asynchronous ones, dropping
            estimates from a θ more than ``K`` outer steps old.
        cpus_per_worker: CPUs Ray reserves for each worker (placement on the cluster).
        worker_class, worker_args: the actor class and its arguments; anything with
            ``EstimateWorker``'s ``ready`` and ``particles`` methods (benchmarks and tests
            simulate workers this way: ``lopt.distributed.simulated``).

    Use it as a context manager (or call ``close``) to end the workers; one backend can serve
    several runs in a row.
    """

    def __init__(
        self,
        workers: int = 2,
        address: str | None = None,
        max_staleness: int = 0,
        cpus_per_worker: float = 1.0,
        worker_class: type = EstimateWorker,
        worker_args: tuple = (),
    ):
        check_range("workers", workers, 1)
        check_range("max_staleness", max_staleness, 0)
        check_range("cpus_per_worker", cpus_per_worker, 0.0)
        self.ray = import_ray()
        self.num_workers, self.address = workers, address
        self.max_staleness, self.cpus_per_worker = max_staleness, cpus_per_worker
        self.worker_class, self.worker_args = worker_class, worker_args
        self.workers: list = []  # actor handles, by slot
        self.replaced = 0

    def connect(self) -> None:
        """Join (or start) Ray and start the workers; runs call it, and it is idempotent."""
        ray = self.ray
        if not ray.is_initialized():
            local = self.address is None
            # Ship this process's lopt to the workers, so they run exactly the learner's code.
            package = str(pathlib.Path(lopt.__file__).parent)
            ray.init(
                address=self.address,
                num_cpus=max(self.num_workers, os.cpu_count() or 1) if local else None,
                include_dashboard=False if local else None,
                runtime_env={"py_modules": [package], "excludes": ["__pycache__"]},
                log_to_driver=False,
                logging_level="warning",
            )
        if not self.workers:
            self.workers = [self._new_worker() for _ in range(self.num_workers)]
            try:
                ray.get([w.ready.remote() for w in self.workers])  # all start together
            except ray.exceptions.RayActorError as e:
                raise LoptError(
                    f"Ray workers could not start ({str(e).splitlines()[0]}); every node needs "
                    "lopt's dependencies (pip install 'lopt[ray]')"
                ) from None

    def _new_worker(self):
        actor = self.ray.remote(self.worker_class).options(
            num_cpus=self.cpus_per_worker, max_restarts=0
        )
        return actor.remote(*self.worker_args)

    def replace(self, slot: int, dead) -> None:
        """Replace the worker ``dead`` at ``slot`` (once, however many of its calls failed)."""
        if self.workers[slot] is not dead:
            return
        self.replaced += 1
        if self.replaced > REPLACEMENTS_PER_WORKER * self.num_workers:
            raise LoptError(
                f"Ray workers died {self.replaced} times; see the Ray logs "
                "(/tmp/ray/session_latest/logs) for the cause"
            )
        self.workers[slot] = self._new_worker()

    def run_calls(self, method: str, config: dict, calls: list[tuple]) -> list:
        """Run ``calls[k]`` on worker ``k`` (``method``) and wait for all, in order; a worker
        that dies is replaced and its call sent again (workers hold no state)."""
        self.connect()
        actors = self.workers[: len(calls)]
        refs = [getattr(a, method).remote(config, *c) for a, c in zip(actors, calls, strict=True)]
        results = []
        for k, call in enumerate(calls):
            while True:
                try:
                    results.append(self.ray.get(refs[k]))
                    break
                except self.ray.exceptions.RayActorError:
                    self.replace(k, actors[k])
                    actors[k] = self.workers[k]
                    refs[k] = getattr(actors[k], method).remote(config, *call)
        return results

    def start(
        self,
        cfg: MetaTrainConfig,
        estimators: list[Estimator],
        base_key: jax.Array,
        first: int,
        bank: int,
    ) -> RaySource:
        if self.max_staleness > 0 and self.num_workers > len(estimators):
            raise LoptError(
                f"asynchronous Ray training with {self.num_workers} workers needs a task bank of "
                f"at least {self.num_workers} tasks (each in-flight estimate advances its own "
                f"task), got task_bank={len(estimators)}"
            )
        self.connect()
        return RaySource(self, cfg, estimators, base_key, first, bank)

    def close(self) -> None:
        """End the workers (Ray itself stays up for the rest of this process)."""
        for actor in self.workers:
            self.ray.kill(actor)
        self.workers = []

    def __enter__(self) -> RayBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RaySource:
    """The estimates of one run, computed by a ``RayBackend``'s workers."""

    def __init__(
        self,
        backend: RayBackend,
        cfg: MetaTrainConfig,
        estimators: list[Estimator],
        base_key: jax.Array,
        first: int,
        bank: int,
    ):
        self.backend, self.ray = backend, backend.ray
        self.estimators, self.base_key, self.outer_steps = estimators, base_key, cfg.outer_steps
        self.config = estimator_config(cfg, bank)
        self.next_number = first
        num_particles = estimators[0].num_particles
        synchronous = backend.max_staleness == 0
        slices = min(backend.num_workers, num_particles) if synchronous else 1
        bounds = np.linspace(0, num_particles, slices + 1).round().astype(int)
        self.slices = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
        self.window = 1 if synchronous else backend.num_workers
        self.pending: list[_Pending] = []
        self.theta_version, self.theta_ref = -1, None
        self.replaced_seen = backend.replaced

    def next(self, step: int, theta: Any, states: list) -> Estimate:
        dropped = 0
        while True:
            self._dispatch(step, theta, states)
            done = self._wait_for_estimate()
            staleness = step - done.version
            if staleness <= self.backend.max_staleness:
                break
            dropped += 1
        grads, state, metrics = (concatenate([r[k] for r in done.results]) for k in range(3))
        grad, metrics = combine(grads, metrics)
        replaced = self.backend.replaced - self.replaced_seen
        self.replaced_seen = self.backend.replaced
        info = {"staleness": staleness, "stale_dropped": dropped, "workers_replaced": replaced}
        state = from_host(state, states[done.task])
        return Estimate(done.number, done.task, grad, state, metrics, info)

    def close(self) -> None:
        for pending in self.pending:
            for ref in pending.refs:
                self.ray.cancel(ref)
        self.pending = []

    def _dispatch(self, step: int, theta: Any, states: list) -> None:
        """Start estimates from the current θ while the window and free workers allow."""
        busy_slots = {s for p in self.pending for s in p.slots}
        free = [s for s in range(self.backend.num_workers) if s not in busy_slots]
        while len(self.pending) < self.window and len(free) >= len(self.slices):
            if self.theta_version != step:
                self.theta_version, self.theta_ref = step, self.ray.put(to_host(theta))
            busy_tasks = {p.task for p in self.pending}
            number = self.next_number
            while number % len(self.estimators) in busy_tasks:
                number += 1
            self.next_number = number + 1
            task = number % len(self.estimators)
            keys = to_host(particle_keys(estimate_key(self.base_key, number), self._particles))
            state = to_host(states[task])
            progress = step / self.outer_steps
            calls = [
                (task, self.theta_ref, particle_slice(state, a, b), keys[a:b], progress)
                for a, b in self.slices
            ]
            slots, free = free[: len(calls)], free[len(calls) :]
            actors = [self.backend.workers[slot] for slot in slots]
            refs = [self._call(a, call) for a, call in zip(actors, calls, strict=True)]
            none = [None] * len(calls)
            self.pending.append(_Pending(number, task, step, calls, slots, actors, refs, none))

    @property
    def _particles(self) -> int:
        return self.estimators[0].num_particles

    def _call(self, actor, call: tuple):
        return actor.particles.remote(self.config, *call)

    def _wait_for_estimate(self) -> _Pending:
        """Block until one in-flight estimate has all its slices; replace dead workers."""
        while True:
            waiting = [
                ref
                for p in self.pending
                for ref, result in zip(p.refs, p.results, strict=True)
                if result is None
            ]
            ready, _ = self.ray.wait(waiting, num_returns=1)
            for p in self.pending:
                for k, ref in enumerate(p.refs):
                    if ref in ready:
                        self._collect(p, k)
            for p in self.pending:
                if all(r is not None for r in p.results):
                    self.pending.remove(p)
                    return p

    def _collect(self, pending: _Pending, k: int) -> None:
        try:
            pending.results[k] = self.ray.get(pending.refs[k])
        except self.ray.exceptions.RayActorError:
            slot = pending.slots[k]
            self.backend.replace(slot, pending.actors[k])
            pending.actors[k] = self.backend.workers[slot]
            pending.refs[k] = self._call(pending.actors[k], pending.calls[k])
