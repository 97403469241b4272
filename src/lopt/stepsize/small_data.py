"""The small-data classification task of the neural train-by-train vs train-by-validation
experiment (Wang, Yuan, Wu & Ge 2021, §6): MNIST-1D (or digits) with exactly ``n_train``
training rows, an inner 100-20 ReLU MLP, and label noise on the splits the meta-learner sees.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lopt.errors import LoptError, check_choice, check_range
from lopt.tasks.base import Task, cross_entropy, split_index
from lopt.tasks.classifiers import CLASSIFICATION_SETS
from lopt.tasks.datasets import SPLITS, load
from lopt.tasks.models import MLP

NOISY_SPLITS = ("train", "inner_valid", "outer_valid")  # what the meta-learner sees; test is clean


@dataclasses.dataclass(frozen=True)
class SmallDataConfig:
    """A small-data classification task.

    Attributes:
        dataset: a classification set (``mnist1d`` has 4000 pooled rows besides its test set).
        n_train: rows of the training split (what the inner optimizer trains on).
        n_valid: rows of the ``outer_valid`` split (the train-by-validation meta-objective).
        n_inner_valid: rows of the ``inner_valid`` split (the optimizer's ``valid_loss`` input).
        hidden: hidden widths of the ReLU MLP.
        batch_size: training minibatch size.
        valid_batch_size: minibatch size of the other splits (one meta-loss evaluation).
        label_noise: fraction of rows in each of ``NOISY_SPLITS`` whose label is replaced by a
            uniformly random *different* class (exactly ``round(label_noise * n)`` rows).
        data_seed: seeds which rows go where and which labels are corrupted.
    """

    dataset: str = "mnist1d"
    n_train: int = 1000
    n_valid: int = 1000
    n_inner_valid: int = 200
    hidden: tuple[int, ...] = (100, 20)
    batch_size: int = 32
    valid_batch_size: int = 256
    label_noise: float = 0.0
    data_seed: int = 0


def corrupt_labels(
    labels: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Replace ``round(fraction * n)`` labels (rows drawn without replacement) by a uniformly
    random different class; returns ``(new_labels, corrupted_rows)``."""
    n = len(labels)
    rows = np.sort(rng.choice(n, int(round(fraction * n)), replace=False))
    out = labels.copy()
    out[rows] = (labels[rows] + rng.integers(1, num_classes, len(rows))) % num_classes
    return out, rows


class SmallDataClassifier(Task):
    """A ReLU MLP classifier whose training split has exactly ``n_train`` rows.

    The non-test rows of ``dataset`` are pooled, shuffled with ``data_seed`` and cut into
    ``train`` / ``outer_valid`` / ``inner_valid``; ``test`` is the dataset's own clean test split.
    """

    eval_cap = 4096

    def __init__(self, config: SmallDataConfig):
        check_choice("dataset", config.dataset, CLASSIFICATION_SETS)
        check_range("label_noise", config.label_noise, 0.0, 1.0)
        for field in ("n_train", "n_valid", "n_inner_valid", "batch_size", "valid_batch_size"):
            check_range(field, getattr(config, field), 1)
        for width in config.hidden:
            check_range("hidden width", width, 1, 4096)
        data = load(config.dataset)
        pool = [s for s in SPLITS if s != "test"]
        x = np.concatenate([data.x[s] for s in pool])
        y = np.concatenate([data.y[s] for s in pool])
        sizes = {
            "train": config.n_train,
            "outer_valid": config.n_valid,
            "inner_valid": config.n_inner_valid,
        }
        if sum(sizes.values()) > len(x):
            raise LoptError(
                f"invalid split sizes {sizes} for {config.dataset}: only {len(x)} non-test rows"
            )
        rng = np.random.default_rng([config.data_seed, 0])
        perm = rng.permutation(len(x))
        self.config = config
        self.num_classes = data.num_classes
        self.name = f"smalldata[{config.dataset},n={config.n_train},noise={config.label_noise:g}]"
        self.clean_y: dict[str, np.ndarray] = {"test": data.y["test"]}
        self.noisy_rows: dict[str, np.ndarray] = {"test": np.zeros((0,), np.int64)}
        xs, ys = {"test": data.x["test"]}, {"test": data.y["test"]}
        start = 0
        for split, n in sizes.items():
            rows = perm[start : start + n]
            start += n
            xs[split], self.clean_y[split] = x[rows], y[rows]
            noise_rng = np.random.default_rng([config.data_seed, 1 + split_index(split)])
            ys[split], self.noisy_rows[split] = corrupt_labels(
                y[rows], config.label_noise, self.num_classes, noise_rng
            )
        self.x = {s: xs[s].reshape(len(xs[s]), -1).astype(np.float32) for s in SPLITS}
        self.y = {s: ys[s].astype(np.int32) for s in SPLITS}
        self._x = {s: jnp.asarray(self.x[s]) for s in SPLITS}
        self._y = {s: jnp.asarray(self.y[s]) for s in SPLITS}
        self.sizes = (self.x["train"].shape[1], *config.hidden, self.num_classes)

    def size(self, split: str) -> int:
        return int(self.x[split].shape[0])

    def init(self, key):
        return MLP(self.sizes, "relu", key=key)

    def logits(self, params, x):
        return jax.vmap(params)(x)

    def loss(self, params, batch):
        x, y = batch
        return cross_entropy(self.logits(params, x), y)

    def accuracy(self, params, batch) -> jax.Array:
        x, y = batch
        return jnp.mean(jnp.argmax(self.logits(params, x), axis=-1) == y)

    def batch(self, key, split):
        size = self.config.batch_size if split == "train" else self.config.valid_batch_size
        idx = jax.random.randint(
            jax.random.fold_in(key, split_index(split)), (size,), 0, self.size(split)
        )
        return self._x[split][idx], self._y[split][idx]

    def eval_batch(self, split):
        split_index(split)
        n = min(self.size(split), self.eval_cap)
        return self._x[split][:n], self._y[split][:n]
