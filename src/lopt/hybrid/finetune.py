"""Fine-tuning tasks: pretrain on a source task with optax Adam, then train on shifted data.

HUB (Dai et al. 2023, arXiv 2305.16823) is evaluated on four fine-tuning settings besides
training from scratch. A ``FineTuneTask`` is an ordinary ``Task`` whose ``init`` returns the
pretrained parameters (the same for every key: one pretrained checkpoint, seeds vary the
minibatches) and whose data is the target distribution. Pretraining is deterministic (fixed
seed, fixed number of Adam steps) and runs once, when the task is built.

The shifts: digit classes 0–4 → 5–9 (``label_subset``), MNIST-1D → the same signals circularly
shifted in time (``shifted_signals``), a character LM on Python source → English prose, and a
teacher–student regression whose teacher's weights are moved (``MovedTeacherStudent``).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.errors import check_range
from lopt.inner import train
from lopt.tasks.base import DataTask, Task, WrappedTask
from lopt.tasks.datasets import SPLITS, Dataset
from lopt.tasks.regression import TeacherStudent, TeacherStudentConfig


@dataclass(frozen=True)
class Pretraining:
    """How the source task is pretrained: ``steps`` of ``optax.adam(lr)`` from ``key(seed)``."""

    steps: int = 1000
    lr: float = 3e-3
    seed: int = 0


def pretrain(task: Task, pretraining: Pretraining):
    """Parameters of ``task`` after ``pretraining`` (deterministic: same inputs, same bits)."""
    check_range("pretraining steps", pretraining.steps, 10)
    check_range("pretraining lr", pretraining.lr, 1e-12)
    return _pretrain(task, pretraining)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _pretrain(task: Task, pretraining: Pretraining):
    key = jax.random.key(pretraining.seed)
    return train(task, optax.adam(pretraining.lr), key, pretraining.steps)[0]


class FineTuneTask(WrappedTask):
    """Train ``target`` starting from parameters pretrained on ``source`` (the target's
    minibatches, loss and floor: ``WrappedTask`` of ``target``).

    Attributes:
        source: the pretraining task. target: the fine-tuning task (same parameter shapes).
        pretrained_params: the parameters every run starts from.
    """

    finetune = True

    def __init__(self, name: str, source: Task, target: Task, pretraining: Pretraining):
        super().__init__(target)
        self.name = name
        self.source, self.target, self.pretraining = source, target, pretraining
        self.pretrained_params = pretrain(source, pretraining)

    def init(self, key):
        del key  # one pretrained checkpoint; seeds differ in their minibatches
        return self.pretrained_params


def _map_splits(data: Dataset, name: str, rows=None, x_fn=None) -> Dataset:
    rows = rows or {s: slice(None) for s in SPLITS}
    x = {s: data.x[s][rows[s]] for s in SPLITS}
    if x_fn is not None:
        x = {s: x_fn(v) for s, v in x.items()}
    y = {s: data.y[s][rows[s]] for s in SPLITS}
    index = {s: data.index[s][rows[s]] for s in SPLITS}
    return Dataset(name, x, y, data.num_classes, index)


def label_subset(data: Dataset, labels: Sequence[int]) -> Dataset:
    """The rows of every split whose label is in ``labels`` (classes keep their ids)."""
    rows = {s: np.isin(data.y[s], np.asarray(labels)) for s in SPLITS}
    return _map_splits(data, f"{data.name}[labels={','.join(map(str, labels))}]", rows)


def shifted_signals(data: Dataset, shift: int) -> Dataset:
    """Every input signal ``(n, length)`` circularly shifted by ``shift`` along time."""
    return _map_splits(
        data, f"{data.name}[shift={shift}]", x_fn=lambda x: np.roll(x, shift, axis=-1)
    )


def with_dataset(task: DataTask, data: Dataset, name: str) -> DataTask:
    """A copy of the supervised ``task`` (same model, loss, batch size) on ``data``."""
    out = copy.copy(task)
    out.__dict__.pop("normalizer", None)  # cached for the old data
    out.name, out.data = name, data
    out._x = {s: jnp.asarray(data.x[s]) for s in SPLITS}
    out._y = {s: jnp.asarray(data.y[s]) for s in SPLITS}
    return out


class MovedTeacherStudent(TeacherStudent):
    """Teacher–student regression whose teacher's weights are moved by ``move`` × their RMS
    (per tensor) in a random direction drawn from ``move_seed``."""

    def __init__(self, config: TeacherStudentConfig, move: float, move_seed: int = 1):
        check_range("move", move, 0.0)
        super().__init__(config)
        leaves, treedef = jax.tree.flatten(self.teacher)
        keys = jax.random.split(jax.random.key(move_seed), len(leaves))
        moved = [
            w + move * jnp.sqrt(jnp.mean(w**2)) * jax.random.normal(k, w.shape)
            for w, k in zip(leaves, keys, strict=True)
        ]
        self.teacher = jax.tree.unflatten(treedef, moved)
        self.name = f"{self.name}[move={move}]"
