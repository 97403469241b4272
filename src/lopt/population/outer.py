"""Who applies each member's meta-gradient.

A learned optimizer is an optax transformation, so self-training is the usual outer loop with a
learned outer optimizer: member ``i``'s meta-gradient is applied by ``arch.optimizer(θ_j)``,
where ``j`` is the member itself (``self``), the best member as of the latest validation
(``best``; its θ of that moment) or a member drawn at random each step (``random``). The
comparison run applies it with optax Adam (after per-weight clipping, as ``lopt meta-train``
does) at a per-member learning rate that PBT tunes.

With ``tune_learned_step``, a learned outer optimizer's updates are scaled by a per-member
step multiplier that PBT perturbs exactly as it perturbs Adam's learning rate in the comparison
run (the network still computes every update; the multiplier is a population hyperparameter).

Both rules share one per-member interface, vmapped over the population by the caller:
``init(theta) -> state`` and ``update(applier, theta, state, grad, meta_loss) -> (theta, state,
bad_grad)``, where the *applier* is ``(θ, log step multiplier)`` of the learned optimizer that
applies the update, or Adam's log learning rate; ``appliers`` gives them for the whole
population.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.learned.base import Architecture
from lopt.population.config import PopulationConfig


class OuterRule(NamedTuple):
    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any, jax.Array]]


def _finite_or_zero(grad) -> tuple[Any, jax.Array]:
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)]))
    return jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grad), ~finite


def learned_rule(arch: Architecture) -> OuterRule:
    """The update is applied by the learned optimizer ``arch.optimizer(applier)``."""

    def init(theta):
        return arch.optimizer(theta).init(theta)

    def update(applier, theta, state, grad, meta_loss):
        applier_theta, log_step = applier
        grad, bad = _finite_or_zero(grad)
        updates, state = arch.optimizer(applier_theta).update(grad, state, theta, loss=meta_loss)
        updates = jax.tree.map(lambda u: u * jnp.exp(log_step), updates)
        return optax.apply_updates(theta, updates), state, bad

    return OuterRule(init, update)


def adam_rule(clip: float) -> OuterRule:
    """The update is applied by optax Adam at learning rate ``exp(applier)``."""

    def make(lr):
        adam = optax.adam(lr)
        return optax.chain(optax.clip(clip), adam) if clip > 0 else adam

    def init(theta):
        return make(1.0).init(theta)

    def update(applier, theta, state, grad, meta_loss):
        del meta_loss
        grad, bad = _finite_or_zero(grad)
        updates, state = make(jnp.exp(applier)).update(grad, state, theta)
        return optax.apply_updates(theta, updates), state, bad

    return OuterRule(init, update)


def make_rule(cfg: PopulationConfig, arch: Architecture) -> OuterRule:
    return adam_rule(cfg.adam_clip) if cfg.outer == "adam" else learned_rule(arch)


def initial_hyperparameters(cfg: PopulationConfig) -> dict[str, jax.Array]:
    """The per-member hyperparameters PBT perturbs: Adam's log learning rates, log-spaced over
    ``adam_lr_range``; with ``tune_learned_step``, a learned outer optimizer's log step
    multipliers, log-spaced over ``learned_step_range``; else none."""

    def log_spaced(bounds):
        low, high = np.log(bounds[0]), np.log(bounds[1])
        return jnp.asarray(np.linspace(low, high, cfg.population), jnp.float32)

    if cfg.outer == "adam":
        return {"log_lr": log_spaced(cfg.adam_lr_range)}
    return {"log_step": log_spaced(cfg.learned_step_range)} if cfg.tune_learned_step else {}


def appliers(
    cfg: PopulationConfig, key: jax.Array, thetas: Any, hyper: dict, best_theta: Any = None
) -> Any:
    """Each member's applier this step, stacked over members (see the module docstring).

    ``best_theta``: with ``outer: best``, the θ the best member had at the latest validation: one
    fixed applier per PBT round, whatever that member becomes in between. (Measured on the
    default config: with either this snapshot or the member's live θ, one applier for the
    whole population eventually drags every member down — docs/self_training.md.)
    """
    population = cfg.population
    if cfg.outer == "adam":
        return hyper["log_lr"]
    log_step = hyper.get("log_step", jnp.zeros((population,), jnp.float32))
    if cfg.outer == "self":
        return thetas, log_step
    if cfg.outer == "best":
        return jax.tree.map(
            lambda x: jnp.broadcast_to(x, (population, *x.shape)), best_theta
        ), log_step
    index = jax.random.randint(key, (population,), 0, population)
    return jax.tree.map(lambda x: x[index], thetas), log_step
