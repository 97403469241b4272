"""Synthetic task families: quadratics with a chosen spectrum, noisy least squares, 2-D functions.

They have known optima and cost microseconds per step, which makes them the smoke tests of
optimizer research (and of this library's tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from lopt.errors import check_choice, check_range
from lopt.tasks.base import Task, TaskFamily, config_name, split_index
from lopt.tasks.datasets import SPLITS


@dataclass(frozen=True)
class QuadraticConfig:
    """f(w) = ½ (w − ξ)ᵀ H (w − ξ), H = Q diag(λ) Qᵀ, λ log-spaced in [min_eig, max_eig].

    ``noise`` is the std of the random shift ξ drawn per minibatch (0: deterministic).
    """

    dim: int = 10
    min_eig: float = 0.01
    max_eig: float = 1.0
    noise: float = 0.0
    seed: int = 0


class Quadratic(Task):
    def __init__(self, config: QuadraticConfig):
        check_range("dim", config.dim, 1, 100_000)
        check_range("min_eig", config.min_eig, 1e-12)
        check_range("max_eig", config.max_eig, config.min_eig)
        check_range("noise", config.noise, 0.0)
        self.config = config
        self.name = config_name("quadratic", config)
        rng = np.random.default_rng(config.seed)
        self.eigenvalues = np.geomspace(config.min_eig, config.max_eig, config.dim)
        q, _ = np.linalg.qr(rng.normal(size=(config.dim, config.dim)))
        self.hessian = jnp.asarray((q * self.eigenvalues) @ q.T, jnp.float32)

    def init(self, key):
        w = jax.random.normal(key, (self.config.dim,))
        return w / jnp.linalg.norm(w)

    def loss(self, params, batch):
        r = params - batch
        return 0.5 * r @ self.hessian @ r

    def batch(self, key, split):
        key = jax.random.fold_in(key, split_index(split))
        return self.config.noise * jax.random.normal(key, (self.config.dim,))

    def eval_batch(self, split):
        return jnp.zeros(self.config.dim)  # the expected objective is the noiseless one + const


@dataclass(frozen=True)
class LeastSquaresConfig:
    """Linear regression y = ⟨w*, x⟩ + noise·ξ, x ~ N(0, I); loss ½ mean squared error."""

    dim: int = 20
    num_samples: int = 200
    noise: float = 0.5
    batch_size: int = 32
    seed: int = 0


class NoisyLeastSquares(Task):
    def __init__(self, config: LeastSquaresConfig):
        check_range("dim", config.dim, 1, 100_000)
        check_range("num_samples", config.num_samples, 1)
        check_range("noise", config.noise, 0.0)
        check_range("batch_size", config.batch_size, 1)
        self.config = config
        self.name = config_name("least_squares", config)
        rng = np.random.default_rng(config.seed)
        w_star = rng.normal(size=config.dim) / np.sqrt(config.dim)
        self.data = {}
        for split in SPLITS:
            x = rng.normal(size=(config.num_samples, config.dim)).astype(np.float32)
            y = x @ w_star + config.noise * rng.normal(size=config.num_samples)
            self.data[split] = (jnp.asarray(x), jnp.asarray(y, jnp.float32))

    def init(self, key):
        return 0.1 * jax.random.normal(key, (self.config.dim,))

    def loss(self, params, batch):
        x, y = batch
        return 0.5 * jnp.mean((x @ params - y) ** 2)

    def batch(self, key, split):
        x, y = self.data[split]
        key = jax.random.fold_in(key, split_index(split))
        idx = jax.random.randint(key, (self.config.batch_size,), 0, x.shape[0])
        return x[idx], y[idx]

    def eval_batch(self, split):
        split_index(split)
        return self.data[split]


def _rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def _beale(p):
    x, y = p[0], p[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _booth(p):
    return (p[0] + 2 * p[1] - 7) ** 2 + (2 * p[0] + p[1] - 5) ** 2


def _himmelblau(p):
    return (p[0] ** 2 + p[1] - 11) ** 2 + (p[0] + p[1] ** 2 - 7) ** 2


# name -> (function, start point); every minimum value is 0.
TEST_FUNCTIONS = {
    "rosenbrock": (_rosenbrock, (-1.5, 2.0)),
    "beale": (_beale, (1.0, 1.5)),
    "booth": (_booth, (-3.0, -3.0)),
    "himmelblau": (_himmelblau, (-0.5, -0.5)),
}


@dataclass(frozen=True)
class TestFunctionConfig:
    """A 2-D test function started near its usual start point (jittered by ``init_noise``)."""

    function: str = "rosenbrock"
    init_noise: float = 0.1


class TestFunction2D(Task):
    """Deterministic 2-D problem: there is no data, so every split is the same objective."""

    def __init__(self, config: TestFunctionConfig):
        check_choice("function", config.function, TEST_FUNCTIONS)
        check_range("init_noise", config.init_noise, 0.0)
        self.config = config
        self.name = config_name("fn2d", config)
        self.fn, start = TEST_FUNCTIONS[config.function]
        self.start = jnp.asarray(start, jnp.float32)

    def init(self, key):
        return self.start + self.config.init_noise * jax.random.normal(key, (2,))

    def loss(self, params, batch):
        return self.fn(params)

    def batch(self, key, split):
        split_index(split)
        return jnp.zeros(())

    def eval_batch(self, split):
        return self.batch(None, split)


class QuadraticFamily(TaskFamily):
    name = "quadratic"

    def sample_config(self, rng):
        max_eig = float(rng.choice([0.5, 1.0, 5.0]))
        return QuadraticConfig(
            dim=int(rng.choice([8, 16, 32])),
            min_eig=max_eig / float(rng.choice([10.0, 100.0, 1000.0])),
            max_eig=max_eig,
            noise=float(rng.choice([0.0, 0.1])),
            seed=int(rng.integers(1000)),
        )

    def task(self, config):
        return Quadratic(config)


class LeastSquaresFamily(TaskFamily):
    name = "least_squares"

    def sample_config(self, rng):
        return LeastSquaresConfig(
            dim=int(rng.choice([10, 20, 50])),
            num_samples=int(rng.choice([100, 400])),
            noise=float(rng.choice([0.1, 0.5, 1.0])),
            batch_size=int(rng.choice([16, 64])),
            seed=int(rng.integers(1000)),
        )

    def task(self, config):
        return NoisyLeastSquares(config)


class TestFunctionFamily(TaskFamily):
    """2-D test functions started near their usual start point, jittered."""

    def __init__(self, name: str = "fn2d", functions=None):
        functions = sorted(TEST_FUNCTIONS) if functions is None else functions
        for function in functions:
            check_choice("function", function, TEST_FUNCTIONS)
        self.name, self.functions = name, tuple(functions)

    def sample_config(self, rng):
        return TestFunctionConfig(function=str(rng.choice(self.functions)), init_noise=0.1)

    def task(self, config):
        return TestFunction2D(config)
