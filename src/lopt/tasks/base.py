"""Task protocols: a ``Task`` (one training problem), a ``TaskFamily`` (configs -> Tasks).

A Task is static Python configuration plus pure functions; its parameters are a pytree of arrays
(an Equinox module whose non-array fields are static), so optax and learned optimizers can train
it and ``jax.vmap`` can batch it over seeds. Every task has four splits (Metz et al. 2020):
``train`` (inner training), ``inner_valid`` (features for the optimizer, hyperparameter
selection), ``outer_valid`` (meta-training objective and checkpoint selection) and ``test``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lopt.errors import LoptError, check_choice, check_range
from lopt.tasks.datasets import SPLITS, load

Params = Any
Batch = Any


class LossNormalizer(NamedTuple):
    """Maps a task's raw loss to a scale where 1 is "initial loss" and 0 is "solved".

    ``normalize(loss) = (loss - floor) / (initial - floor)``. ``floor`` is a known lower bound
    (0 for cross-entropy and squared error, the noise level for noisy regression) and
    ``initial`` the loss at a typical initialization.
    """

    floor: float
    initial: float

    def normalize(self, loss: jax.Array) -> jax.Array:
        return (loss - self.floor) / max(self.initial - self.floor, 1e-12)


def split_index(split: str) -> int:
    """Integer id of a split name, for folding into PRNG keys."""
    check_choice("split", split, SPLITS)
    return SPLITS.index(split)


class Task(abc.ABC):
    """One training problem.

    Subclasses set ``name`` and implement ``init``, ``loss``, ``batch`` and ``eval_batch``.
    ``batch`` and ``loss`` must be jittable and vmappable over keys / params.
    """

    name: str = "task"

    @abc.abstractmethod
    def init(self, key: jax.Array) -> Params:
        """Initial parameters drawn from ``key``."""

    @abc.abstractmethod
    def loss(self, params: Params, batch: Batch) -> jax.Array:
        """Mean loss of ``params`` on ``batch`` (a scalar)."""

    @abc.abstractmethod
    def batch(self, key: jax.Array, split: str) -> Batch:
        """A random minibatch of ``split`` drawn from ``key`` (fixed shapes, jittable)."""

    @abc.abstractmethod
    def eval_batch(self, split: str) -> Batch:
        """A fixed, deterministic evaluation batch of ``split`` (the whole split up to a cap)."""

    def floor(self) -> float:
        """A known lower bound on the loss (0 unless a task knows better)."""
        return 0.0

    @functools.cached_property
    def normalizer(self) -> LossNormalizer:
        """Normalizer from the floor and the mean train loss over 4 initializations."""
        keys = jax.random.split(jax.random.key(0), 4)
        batch = self.eval_batch("train")
        losses = jax.jit(jax.vmap(lambda k: self.loss(self.init(k), batch)))(keys)
        initial = float(np.mean(np.asarray(losses)))
        floor = self.floor()
        if not np.isfinite(initial) or initial <= floor:
            raise LoptError(f"task {self.name}: initial loss {initial} is not above its floor")
        return LossNormalizer(floor, initial)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


class WrappedTask(Task):
    """A task built on another (``inner``): its minibatches, evaluation batches, floor and
    loss are the inner task's unless a subclass changes them; subclasses set ``name`` and
    ``init``."""

    def __init__(self, inner: Task):
        self.inner = inner

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        return self.inner.loss(params, batch)

    def batch(self, key: jax.Array, split: str) -> Batch:
        return self.inner.batch(key, split)

    def eval_batch(self, split: str) -> Batch:
        return self.inner.eval_batch(split)

    def floor(self) -> float:
        return self.inner.floor()


class TaskFamily(abc.ABC):
    """A distribution over Tasks: ``sample(key)`` draws a config and builds its Task.

    Configs decide shapes, so they are drawn with NumPy from the key's bits (same key, same
    task, bit for bit). Families draw from discrete choices so that a finite number of shapes
    (and compiled programs) covers the family.
    """

    name: str = "family"

    @abc.abstractmethod
    def sample_config(self, rng: np.random.Generator) -> Any:
        """Draw a config (a frozen dataclass) with ``rng``."""

    @abc.abstractmethod
    def task(self, config: Any) -> Task:
        """Build the Task for ``config`` (validating every field)."""

    def sample(self, key: jax.Array | int) -> Task:
        """Sample a task; ``key`` is a JAX PRNG key or an integer seed."""
        if isinstance(key, int):
            seed = key
        else:
            seed = int(np.asarray(jax.random.key_data(key)).astype(np.uint64).sum())
        return self.task(self.sample_config(np.random.default_rng(seed)))


def config_name(prefix: str, config: Any) -> str:
    """A readable task name from a config dataclass: ``prefix[field=value,...]``."""
    fields = ",".join(f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config))
    return f"{prefix}[{fields}]"


class DataTask(Task):
    """A supervised task on one of the offline datasets; subclasses supply model and loss.

    ``train_rows``: train on the first ``train_rows`` rows of the training split only (a
    small-data task: it overfits unless its optimizer holds back); the other splits are kept
    whole, so validation and test losses measure the same thing at every size.
    """

    eval_cap: int = 1024

    def __init__(
        self, name: str, dataset_name: str, batch_size: int, train_rows: int | None = None
    ):
        self.name = name
        self.data = load(dataset_name)
        self.batch_size = batch_size
        self._x = {s: jnp.asarray(self.data.x[s]) for s in SPLITS}
        self._y = {s: jnp.asarray(self.data.y[s]) for s in SPLITS}
        if train_rows is not None:
            check_range("train_rows", train_rows, 1, self.data.size("train"))
            self._x["train"] = self._x["train"][:train_rows]
            self._y["train"] = self._y["train"][:train_rows]

    def rows(self, split: str) -> int:
        """Rows of ``split`` this task uses (all but the training split's with ``train_rows``)."""
        split_index(split)
        return int(self._x[split].shape[0])

    def batch(self, key: jax.Array, split: str) -> Batch:
        idx = jax.random.randint(
            jax.random.fold_in(key, split_index(split)), (self.batch_size,), 0, self.rows(split)
        )
        return self._x[split][idx], self._y[split][idx]

    def eval_batch(self, split: str) -> Batch:
        n = min(self.rows(split), self.eval_cap)
        return self._x[split][:n], self._y[split][:n]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy; ``logits (..., C)``, integer ``labels (...)``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1))
