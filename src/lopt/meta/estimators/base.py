"""The interface every meta-gradient estimator presents, and what they share: θ-shaped noise,
the per-particle program vmapped over particles and sharded over local devices with
``shard_map``, and the mean over particles.

An estimate is two steps, so that it can be split over processes (``lopt.distributed``) and
still give the same numbers: ``particles`` runs any slice of the particles (state and
``particle_keys`` cut along their first axis) and returns per-particle results; ``combine``
averages the concatenated per-particle results in one fixed order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lopt.learned.base import Architecture
from lopt.meta.truncation import TruncationConfig, init_particle
from lopt.tasks.base import Task


class Estimator(NamedTuple):
    """``init(key) -> state``: per-particle state, leading axis ``num_particles``.
    ``particles(theta, state, keys, progress) -> (grads, state, metrics)``: the particles of
    ``state`` (any number ``n``, with ``keys`` of shape ``(n,)``); grads ``(n, *θ.shape)``,
    metrics ``(n,)``.
    ``estimate(theta, state, key, progress=1.0) -> (grad, state, metrics)``: all particles,
    combined (``particles`` on ``particle_keys(key, num_particles)``, then ``combine``).
    """

    init: Callable[[jax.Array], Any]
    particles: Callable[..., tuple[Any, Any, dict]]
    estimate: Callable[..., tuple[Any, Any, dict]]
    num_particles: int
    inner_steps_per_estimate: int


class Setup(NamedTuple):
    """What an estimator is built from (``make_estimator``'s arguments, checked).

    Attributes:
        template_opt: the optimizer of some θ of ``arch``, whose state structure starts an
            inner run (``truncation.init_particle``).
        mask: a θ-shaped pytree of 0/1, or ``None`` (all 1): the entries ES perturbs and that
            get a meta-gradient.
    """

    arch: Architecture
    task: Task
    trunc: TruncationConfig
    sigma: float
    num_particles: int
    devices: int
    mask: Any
    template_opt: Any

    def noise(self, key: jax.Array, theta) -> Any:
        """Standard-normal θ-shaped noise, zero outside ``mask``."""
        z = tree_normal(key, theta)
        return z if self.mask is None else jax.tree.map(jnp.multiply, z, self.mask)


def particle_keys(key: jax.Array, num_particles: int) -> jax.Array:
    """One PRNG key per particle of an estimate, shape ``(num_particles,)``."""
    return jax.random.split(key, num_particles)


@jax.jit
def combine(grads, metrics: dict) -> tuple[Any, dict]:
    """Mean meta-gradient over particles (axis 0); mean meta-loss, count of diverged runs."""
    grad = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    metrics = {k: jnp.mean(v) if k != "diverged" else jnp.sum(v) for k, v in metrics.items()}
    return grad, metrics


def tree_normal(key: jax.Array, tree) -> Any:
    """Standard-normal noise shaped like ``tree``, one key per leaf."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    )


def shift(theta, z, scale):
    """``θ + scale · z``."""
    return jax.tree.map(lambda t, e: t + scale * e, theta, z)


def scaled(z, coef):
    """``coef · z``."""
    return jax.tree.map(lambda e: coef * e, z)


def _batched(per_particle: Callable, devices: int) -> tuple[Callable, NamedSharding | None]:
    """vmap over particles; shard the particle axis over ``devices`` local devices. Returns the
    batched function and the sharding of its particle axis (``None`` on one device)."""
    batched = jax.vmap(per_particle, in_axes=(None, 0, 0, None))
    if devices <= 1:
        return batched, None
    mesh = Mesh(np.array(jax.devices()[:devices]), ("p",))
    spec, replicated = PartitionSpec("p"), PartitionSpec()
    sharded = jax.shard_map(
        batched, mesh=mesh, in_specs=(replicated, spec, spec, replicated), out_specs=spec
    )
    return sharded, NamedSharding(mesh, spec)


def assemble(setup: Setup, init: Callable, per_particle: Callable, inner_steps: int) -> Estimator:
    """The ``Estimator`` of ``per_particle(theta, particle_state, key, progress) -> (grad,
    particle_state, metrics)``, batched over ``setup.num_particles`` particles whose states
    ``init(key)`` makes; ``inner_steps``: inner steps one estimate runs, over all particles."""
    batched, particle_axis = _batched(per_particle, setup.devices)
    run = jax.jit(batched)

    def particles(theta, state, keys, progress=1.0):
        if particle_axis is not None:
            # Laid out as the returned state is, so a fresh state (on one device) and a
            # returned one (sharded) meet one compiled program, not one each.
            state, keys = jax.device_put((state, keys), particle_axis)
        return run(theta, state, keys, jnp.asarray(progress, jnp.float32))

    def estimate(theta, state, key, progress=1.0):
        keys = particle_keys(key, setup.num_particles)
        grads, state, metrics = particles(theta, state, keys, progress)
        grad, metrics = combine(grads, metrics)
        return grad, state, metrics

    return Estimator(init, particles, estimate, setup.num_particles, inner_steps)


def init_particles(s: Setup) -> Callable[[jax.Array], Any]:
    """``key -> particles``: a fresh inner run per particle (stacked along the first axis), for
    estimators whose particle state is one inner run."""
    return lambda key: jax.vmap(lambda k: init_particle(s.task, s.template_opt, s.trunc, k))(
        particle_keys(key, s.num_particles)
    )
