"""Regression task families: teacher–student MLPs (infinite synthetic data, or a few noisy
training rows), MLP regressors on sklearn's diabetes data, and MLP autoencoders on digits, the
breast-cancer features and MNIST-1D."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lopt.errors import check_choice, check_range
from lopt.tasks.base import DataTask, Task, TaskFamily, config_name, split_index
from lopt.tasks.models import ACTIVATIONS, MLP


@dataclass(frozen=True)
class TeacherStudentConfig:
    """A student MLP regresses a fixed random teacher MLP's output plus noise on x ~ N(0, I).

    ``train_rows``: train on that many rows drawn once (a small-data task: with noise, a
    student at least as wide as its teacher overfits them unless its optimizer holds back);
    the other splits stay fresh samples, so validation and test measure generalization.
    ``None``: every training batch is fresh.
    """

    input_dim: int = 16
    teacher_hidden: int = 32
    student_hidden: int = 32
    activation: str = "tanh"
    noise: float = 0.1
    batch_size: int = 64
    seed: int = 0
    train_rows: int | None = None


class TeacherStudent(Task):
    eval_size = 512

    def __init__(self, config: TeacherStudentConfig):
        check_range("input_dim", config.input_dim, 1, 4096)
        check_range("teacher_hidden", config.teacher_hidden, 1, 4096)
        check_range("student_hidden", config.student_hidden, 1, 4096)
        check_choice("activation", config.activation, ACTIVATIONS)
        check_range("noise", config.noise, 0.0)
        check_range("batch_size", config.batch_size, 1, 4096)
        if config.train_rows is not None:
            check_range("train_rows", config.train_rows, 1, 1_000_000)
        self.config = config
        self.name = config_name("teacher_student", config)
        self.teacher = MLP(
            (config.input_dim, config.teacher_hidden, 1),
            config.activation,
            key=jax.random.key(config.seed),
        )

    def init(self, key):
        c = self.config
        return MLP((c.input_dim, c.student_hidden, 1), c.activation, key=key)

    def loss(self, params, batch):
        x, y = batch
        return 0.5 * jnp.mean((jax.vmap(params)(x)[:, 0] - y) ** 2)

    def _sample(self, key, n):
        kx, kn = jax.random.split(key)
        x = jax.random.normal(kx, (n, self.config.input_dim))
        y = jax.vmap(self.teacher)(x)[:, 0] + self.config.noise * jax.random.normal(kn, (n,))
        return x, y

    def batch(self, key, split):
        key = jax.random.fold_in(key, split_index(split))
        if split == "train" and self.config.train_rows is not None:
            x, y = self._train_rows()
            idx = jax.random.randint(key, (self.config.batch_size,), 0, self.config.train_rows)
            return x[idx], y[idx]
        return self._sample(key, self.config.batch_size)

    def eval_batch(self, split):
        if split == "train" and self.config.train_rows is not None:
            x, y = self._train_rows()
            return x[: self.eval_size], y[: self.eval_size]
        return self._sample(self._eval_key(split), self.eval_size)

    def _eval_key(self, split):
        return jax.random.fold_in(jax.random.key(10_000 + self.config.seed), split_index(split))

    def _train_rows(self):
        """The fixed training rows (with ``train_rows``): drawn as the training split's
        evaluation batch is."""
        return self._sample(self._eval_key("train"), self.config.train_rows)


@dataclass(frozen=True)
class MLPRegressorConfig:
    """An MLP (linear regression without hidden layers) predicts a dataset's standardized
    scalar target from its standardized features; loss ½ MSE."""

    dataset: str = "diabetes"
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    batch_size: int = 32


REGRESSION_SETS = ("diabetes", "flower-pixels")


class MLPRegressor(DataTask):
    def __init__(self, config: MLPRegressorConfig):
        check_choice("dataset", config.dataset, REGRESSION_SETS)
        check_choice("activation", config.activation, ACTIVATIONS)
        check_range("batch_size", config.batch_size, 1, 4096)
        for width in config.hidden:
            check_range("hidden width", width, 1, 4096)
        super().__init__(config_name("mlp-regression", config), config.dataset, config.batch_size)
        self.config = config
        self.sizes = (self._x["train"].shape[-1], *config.hidden, 1)

    def init(self, key):
        return MLP(self.sizes, self.config.activation, key=key)

    def loss(self, params, batch):
        x, y = batch
        return 0.5 * jnp.mean((jax.vmap(params)(x)[:, 0] - y) ** 2)


@dataclass(frozen=True)
class AutoencoderConfig:
    """MLP autoencoder d → hidden → bottleneck → hidden → d with a sigmoid output on a dataset's
    features in [0, 1] (digits, photo-patches: d = 64; breast_cancer: d = 30; mnist1d: d = 40);
    loss ½ MSE."""

    hidden: int = 32
    bottleneck: int = 8
    activation: str = "relu"
    batch_size: int = 64
    dataset: str = "digits"


# Datasets an autoencoder reconstructs. Digits pixels are already in [0, 1]; other datasets'
# features (standardized ones, or photo-patch pixels) are min-max scaled to [0, 1] over the
# whole dataset, as the standardization itself is, so a sigmoid output can reach every target.
AUTOENCODER_DATASETS = ("digits", "breast_cancer", "mnist1d", "photo-patches")


class Autoencoder(DataTask):
    def __init__(self, config: AutoencoderConfig):
        check_range("hidden", config.hidden, 1, 4096)
        check_range("bottleneck", config.bottleneck, 1, 4096)
        check_choice("activation", config.activation, ACTIVATIONS)
        check_range("batch_size", config.batch_size, 1, 4096)
        check_choice("dataset", config.dataset, AUTOENCODER_DATASETS)
        super().__init__(config_name("autoencoder", config), config.dataset, config.batch_size)
        self.config = config
        if config.dataset != "digits":
            pooled = jnp.concatenate(list(self._x.values()))
            low, high = pooled.min(axis=0), pooled.max(axis=0)
            self._x = {s: (x - low) / (high - low) for s, x in self._x.items()}

    def init(self, key):
        c = self.config
        d = self._x["train"].shape[-1]
        return MLP((d, c.hidden, c.bottleneck, c.hidden, d), c.activation, key=key)

    def loss(self, params, batch):
        x, _ = batch
        return 0.5 * jnp.mean((jax.nn.sigmoid(jax.vmap(params)(x)) - x) ** 2)


class TeacherStudentFamily(TaskFamily):
    """Teacher–student regressions; with ``train_rows``, the small-data family
    ``teacher_student-few``: that many noisy training rows, students wider than the teacher."""

    def __init__(self, train_rows=()):
        self.train_rows = tuple(train_rows)
        self.name = "teacher_student" + ("-few" if self.train_rows else "")

    def sample_config(self, rng):
        if self.train_rows:
            return TeacherStudentConfig(
                input_dim=int(rng.choice([8, 16])),
                teacher_hidden=int(rng.choice([8, 16])),
                student_hidden=int(rng.choice([32, 64])),
                activation=str(rng.choice(["tanh", "relu"])),
                noise=float(rng.choice([0.3, 0.5])),
                batch_size=int(rng.choice([16, 32])),
                seed=int(rng.integers(1000)),
                train_rows=int(rng.choice(self.train_rows)),
            )
        return TeacherStudentConfig(
            input_dim=int(rng.choice([8, 16, 32])),
            teacher_hidden=int(rng.choice([16, 32])),
            student_hidden=int(rng.choice([16, 32, 64])),
            activation=str(rng.choice(["tanh", "relu"])),
            noise=float(rng.choice([0.0, 0.1])),
            batch_size=int(rng.choice([32, 128])),
            seed=int(rng.integers(1000)),
        )

    def task(self, config):
        return TeacherStudent(config)


class MLPRegressorFamily(TaskFamily):
    def __init__(self, dataset: str = "diabetes"):
        check_choice("dataset", dataset, REGRESSION_SETS)
        self.dataset = dataset
        self.name = f"mlp-{dataset}"

    def sample_config(self, rng):
        depth = int(rng.choice([0, 1, 2]))
        return MLPRegressorConfig(
            dataset=self.dataset,
            hidden=tuple(int(rng.choice([16, 32, 64])) for _ in range(depth)),
            activation=str(rng.choice(["relu", "tanh", "gelu"])),
            batch_size=int(rng.choice([16, 32])),
        )

    def task(self, config):
        return MLPRegressor(config)


class AutoencoderFamily(TaskFamily):
    def __init__(self, dataset: str = "digits"):
        check_choice("dataset", dataset, AUTOENCODER_DATASETS)
        self.dataset = dataset
        self.name = f"autoencoder-{dataset}"

    def sample_config(self, rng):
        return AutoencoderConfig(
            hidden=int(rng.choice([32, 64])),
            bottleneck=int(rng.choice([4, 8, 16])),
            activation=str(rng.choice(["relu", "tanh"])),
            batch_size=int(rng.choice([32, 128])),
            dataset=self.dataset,
        )

    def task(self, config):
        return Autoencoder(config)
