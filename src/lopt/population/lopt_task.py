"""Tasks that are themselves "train a tiny learned optimizer", for the self-training outer loss.

Metz et al. 2021 (arXiv 2101.07367) include such problems in the outer loss, so that a member
is also scored on how well it trains learned optimizers. Here a task's parameters are the
weights θ of a tiny nominal-free ``mlp`` learned optimizer; a minibatch is a set of random
diagonal quadratics ``f(w) = ½ Σ λ_i w_i²`` (eigenvalues log-uniform in ``[min_eig, max_eig]``,
``w₀ ~ N(0, I)``); the loss is the tiny optimizer's mean progress ``f(w_t) / f(w₀)`` over a
short unroll (capped at ``RATIO_CAP``; non-finite counts as the cap), differentiable in θ by
backpropagation through the unroll. The family draws the quadratics' dimension, the unroll
length and the spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.errors import check_range
from lopt.learned.mlp import MLPOptimizer
from lopt.tasks.base import Task, TaskFamily, config_name, split_index

RATIO_CAP = 10.0
FAMILY = "learned-optimizer"


@dataclass(frozen=True)
class LearnedOptimizerTaskConfig:
    """A tiny learned optimizer trained on random quadratics.

    Attributes:
        hidden: hidden width of the tiny optimizer's MLP.
        dim: dimension of the quadratics it trains.
        unroll: inner steps per loss evaluation.
        problems: quadratics per minibatch (``4 ×`` that in an evaluation batch).
        min_eig, max_eig: range of the quadratics' eigenvalues.
        seed: seed of the evaluation batches.
    """

    hidden: int = 4
    dim: int = 8
    unroll: int = 10
    problems: int = 4
    min_eig: float = 0.01
    max_eig: float = 1.0
    seed: int = 0


class LearnedOptimizerTask(Task):
    def __init__(self, config: LearnedOptimizerTaskConfig):
        check_range("hidden", config.hidden, 1)
        check_range("dim", config.dim, 1)
        check_range("unroll", config.unroll, 1)
        check_range("problems", config.problems, 1)
        check_range("min_eig", config.min_eig, 1e-12)
        check_range("max_eig", config.max_eig, config.min_eig)
        self.config = config
        self.name = config_name(FAMILY, config)
        self.arch = MLPOptimizer(
            hidden=(config.hidden,),
            decays=(0.5, 0.9, 0.99),
            timescales=(10.0, 100.0),
            nominal=False,
        )

    def init(self, key):
        return self.arch.init_theta(key)

    def _problems(self, key, count: int):
        k_eig, k_w = jax.random.split(key)
        shape = (count, self.config.dim)
        low, high = np.log(self.config.min_eig), np.log(self.config.max_eig)
        eigenvalues = jnp.exp(jax.random.uniform(k_eig, shape, minval=low, maxval=high))
        return eigenvalues, jax.random.normal(k_w, shape)

    def batch(self, key, split):
        return self._problems(jax.random.fold_in(key, split_index(split)), self.config.problems)

    def eval_batch(self, split):
        key = jax.random.fold_in(jax.random.key(self.config.seed), split_index(split))
        return self._problems(key, 4 * self.config.problems)

    def loss(self, params, batch):
        optimizer = self.arch.optimizer(params)

        def progress(eigenvalues, w0):
            f = lambda w: 0.5 * jnp.sum(eigenvalues * w * w)

            def step(carry, _):
                w, state = carry
                loss, grad = jax.value_and_grad(f)(w)
                updates, state = optimizer.update(grad, state, w, loss=loss)
                w = optax.apply_updates(w, updates)
                ratio = f(w) / f(w0)
                return (w, state), jnp.where(jnp.isfinite(ratio), ratio, RATIO_CAP)

            _, ratios = jax.lax.scan(step, (w0, optimizer.init(w0)), length=self.config.unroll)
            return jnp.mean(jnp.minimum(ratios, RATIO_CAP))

        return jnp.mean(jax.vmap(progress)(*batch))


class LearnedOptimizerFamily(TaskFamily):
    """Tiny learned optimizers on quadratics of dimension 4–16, unrolls of 10 or 20 steps."""

    name = FAMILY

    def sample_config(self, rng: np.random.Generator) -> LearnedOptimizerTaskConfig:
        return LearnedOptimizerTaskConfig(
            dim=int(rng.choice([4, 8, 16])),
            unroll=int(rng.choice([10, 20])),
            min_eig=float(rng.choice([1e-3, 1e-2])),
            seed=int(rng.integers(2**31)),
        )

    def task(self, config: LearnedOptimizerTaskConfig) -> LearnedOptimizerTask:
        return LearnedOptimizerTask(config)
