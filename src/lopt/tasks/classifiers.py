"""Classifier task families on the offline datasets: MLPs (logistic regression when there are no
hidden layers) on digits / MNIST-1D / breast_cancer / wine / iris, and small conv nets on digits
(8×8 images), MNIST-1D (length-40 signals) and breast_cancer (its 30 features as a length-30
signal); and residual MLP classifiers with LayerNorm (named tasks only, no family)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import numpy as np

from lopt.errors import LoptError, check_choice, check_range
from lopt.tasks.base import DataTask, TaskFamily, config_name, cross_entropy
from lopt.tasks.models import ACTIVATIONS, MLP, ConvNet, ResidualMLP, scale_init

CLASSIFICATION_SETS = ("digits", "mnist1d", "breast_cancer", "wine", "iris", "photo-patches")


@dataclass(frozen=True)
class MLPClassifierConfig:
    dataset: str = "digits"
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    batch_size: int = 64
    init_scale: float = 1.0
    train_rows: int | None = None  # the first rows of the training split only (DataTask)


class MLPClassifier(DataTask):
    def __init__(self, config: MLPClassifierConfig):
        check_choice("dataset", config.dataset, CLASSIFICATION_SETS)
        check_choice("activation", config.activation, ACTIVATIONS)
        check_range("batch_size", config.batch_size, 1, 4096)
        check_range("init_scale", config.init_scale, 1e-3, 100.0)
        for width in config.hidden:
            check_range("hidden width", width, 1, 4096)
        super().__init__(
            config_name("mlp", config), config.dataset, config.batch_size, config.train_rows
        )
        self.config = config
        in_dim = int(np.prod(self.data.x["train"].shape[1:]))
        self.sizes = (in_dim, *config.hidden, self.data.num_classes)

    def init(self, key):
        model = MLP(self.sizes, self.config.activation, key=key)
        return scale_init(model, self.config.init_scale)

    def loss(self, params, batch):
        x, y = batch
        return cross_entropy(jax.vmap(params)(x.reshape(x.shape[0], -1)), y)


@dataclass(frozen=True)
class ConvClassifierConfig:
    dataset: str = "digits"
    channels: tuple[int, ...] = (8, 16)
    kernel: int = 3
    activation: str = "relu"
    batch_size: int = 64


class ConvClassifier(DataTask):
    """2-D conv net on digits or photo patches (1×8×8); 1-D conv net on MNIST-1D (1×40) or on the
    30 features of breast_cancer read as a signal (1×30)."""

    _spatial = {"digits": (8, 8), "photo-patches": (8, 8), "mnist1d": (40,), "breast_cancer": (30,)}

    def __init__(self, config: ConvClassifierConfig):
        check_choice("dataset", config.dataset, self._spatial)
        check_choice("activation", config.activation, ACTIVATIONS)
        check_range("kernel", config.kernel, 1, 9)
        check_range("batch_size", config.batch_size, 1, 4096)
        if not config.channels:
            raise LoptError("invalid value for channels: () (allowed: one or more conv layers)")
        for c in config.channels:
            check_range("channels", c, 1, 512)
        super().__init__(config_name("conv", config), config.dataset, config.batch_size)
        self.config = config
        self.shape = (1, *self._spatial[config.dataset])

    def init(self, key):
        c = self.config
        return ConvNet(
            len(self.shape) - 1, c.channels, c.kernel, self.data.num_classes, c.activation, key=key
        )

    def loss(self, params, batch):
        x, y = batch
        return cross_entropy(jax.vmap(params)(x.reshape(x.shape[0], *self.shape)), y)


@dataclass(frozen=True)
class ResMLPClassifierConfig:
    dataset: str = "mnist1d"
    width: int = 128
    blocks: int = 2
    activation: str = "relu"
    batch_size: int = 64


class ResMLPClassifier(DataTask):
    """A residual MLP with LayerNorm (``ResidualMLP``) on a dataset's flattened inputs."""

    def __init__(self, config: ResMLPClassifierConfig):
        check_choice("dataset", config.dataset, CLASSIFICATION_SETS)
        check_choice("activation", config.activation, ACTIVATIONS)
        check_range("width", config.width, 1, 4096)
        check_range("blocks", config.blocks, 1, 64)
        check_range("batch_size", config.batch_size, 1, 4096)
        super().__init__(config_name("resmlp", config), config.dataset, config.batch_size)
        self.config = config
        self.in_dim = int(np.prod(self.data.x["train"].shape[1:]))

    def init(self, key):
        c = self.config
        return ResidualMLP(
            self.in_dim, c.width, c.blocks, self.data.num_classes, c.activation, key=key
        )

    def loss(self, params, batch):
        x, y = batch
        return cross_entropy(jax.vmap(params)(x.reshape(x.shape[0], -1)), y)


class MLPClassifierFamily(TaskFamily):
    """MLP classifiers on one dataset, width/depth/activation/batch/init scale sampled; with
    ``train_rows``, also the number of training rows (a small-data family, named ``-few``)."""

    def __init__(self, dataset: str, widths=(16, 32, 64), depths=(1, 2), train_rows=()):
        check_choice("dataset", dataset, CLASSIFICATION_SETS)
        self.dataset, self.widths, self.depths = dataset, widths, depths
        self.train_rows = tuple(train_rows)
        self.name = f"mlp-{dataset}" + ("-few" if self.train_rows else "")

    def sample_config(self, rng):
        depth = int(rng.choice(self.depths))
        config = MLPClassifierConfig(
            dataset=self.dataset,
            hidden=tuple(int(rng.choice(self.widths)) for _ in range(depth)),
            activation=str(rng.choice(["relu", "tanh", "gelu"])),
            batch_size=int(rng.choice([32, 128])),
            init_scale=float(rng.choice([0.5, 1.0, 2.0])),
        )
        if self.train_rows:  # drawn last: the families without it sample as they always did
            config = dataclasses.replace(config, train_rows=int(rng.choice(self.train_rows)))
        return config

    def task(self, config):
        return MLPClassifier(config)


class ConvClassifierFamily(TaskFamily):
    def __init__(self, dataset: str):
        check_choice("dataset", dataset, ConvClassifier._spatial)
        self.dataset = dataset
        self.name = f"conv-{dataset}"

    def sample_config(self, rng):
        c1 = int(rng.choice([4, 8]))
        return ConvClassifierConfig(
            dataset=self.dataset,
            channels=(c1, 2 * c1),
            kernel=int(rng.choice([3, 5])),
            activation=str(rng.choice(["relu", "tanh"])),
            batch_size=int(rng.choice([32, 64])),
        )

    def task(self, config):
        return ConvClassifier(config)
