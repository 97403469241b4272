"""Meta-gradient estimators behind one interface, vmapped over particles and sharded over
local devices with ``shard_map``.

- ``es``: antithetic truncated ES (Metz et al. 2020): the ± pair shares the inner state and
  every minibatch; the run continues from the + branch.
- ``pes``: Persistent ES (Vicol et al. 2021, arXiv 2112.13835): the ± branches keep their own
  states and the noise accumulated since the run began weights the loss difference, which
  removes truncation bias.
- ``full-es``: antithetic ES over whole inner runs from initialization (unbiased, expensive).
- ``tbptt``: truncated backpropagation through the unroll (biased, low variance).

``make_estimator(kind, arch, task, trunc, sigma, num_particles)`` returns an ``Estimator``
with ``init(key) -> state`` and ``estimate(theta, state, key, progress=1.0) -> (grad, state,
metrics)``; ``progress`` (outer step ÷ outer steps) drives growing horizon schedules.

An estimate is two steps, so that it can be split over processes (``lopt.distributed``) and
still give the same numbers: ``particles`` runs any slice of the particles (state and
``particle_keys`` cut along their first axis) and returns per-particle results; ``combine``
averages the concatenated per-particle results in one fixed order.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lopt.errors import LoptError, check_range, unknown_name
from lopt.learned.base import Architecture
from lopt.meta.truncation import (
    Particle,
    TruncationConfig,
    all_finite,
    init_particle,
    meta_loss,
    restart_if_done,
    unroll,
)
from lopt.tasks.base import Task

ESTIMATORS = ("es", "pes", "full-es", "tbptt")
TBPTT_SHARDED_WARNING = (
    "tbptt sharded over several local CPU devices ran 4-13x slower per estimate than on one "
    "device on a 2-core machine (docs/learned.md); consider devices: 1"
)


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


def particle_keys(key: jax.Array, num_particles: int) -> jax.Array:
    """One PRNG key per particle of an estimate, shape ``(num_particles,)``."""
    return jax.random.split(key, num_particles)


@jax.jit
def combine(grads, metrics: dict) -> tuple[Any, dict]:
    """Mean meta-gradient over particles (axis 0); mean meta-loss, count of diverged runs."""
    grad = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    metrics = {k: jnp.mean(v) if k != "diverged" else jnp.sum(v) for k, v in metrics.items()}
    return grad, metrics


class PESParticle(NamedTuple):
    pos: Particle
    neg: Particle
    noise: Any  # accumulated standard-normal perturbations since the run began (θ-shaped)


def tree_normal(key: jax.Array, tree) -> Any:
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    )


def _shift(theta, z, scale):
    return jax.tree.map(lambda t, e: t + scale * e, theta, z)


def _scaled(z, coef):
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


def make_estimator(
    kind: str,
    arch: Architecture,
    task: Task,
    trunc: TruncationConfig,
    sigma: float = 0.01,
    num_particles: int = 8,
    devices: int = 1,
    mask=None,
) -> Estimator:
    """Build the estimator ``kind`` for meta-training ``arch`` on ``task``.

    Args:
        sigma: ES perturbation scale (θ ± σ·ε).
        num_particles: antithetic pairs (ES/PES) or independent runs (tbptt) per estimate.
        devices: local devices to shard particles over (must divide ``num_particles``).
        mask: a θ-shaped pytree of 0/1 (``None``: all 1): only the entries at 1 are perturbed
            and get a meta-gradient, so ES searches their subspace alone.
    """
    if kind not in ESTIMATORS:
        raise unknown_name("estimator", kind, ESTIMATORS)
    check_range("sigma", sigma, 1e-8)
    check_range("num_particles", num_particles, 1)
    if num_particles % max(devices, 1):
        raise LoptError(f"num_particles={num_particles} must be a multiple of devices={devices}")
    if kind == "tbptt" and devices > 1:
        warnings.warn(TBPTT_SHARDED_WARNING, stacklevel=2)
    task.normalizer  # noqa: B018  (computed eagerly: it must not be traced)
    template_opt = arch.optimizer(arch.init_theta(jax.random.key(0)))

    def noise(key, theta):
        z = tree_normal(key, theta)
        return z if mask is None else jax.tree.map(jnp.multiply, z, mask)

    def finish(init, per_particle, inner_steps):
        batched, particle_axis = _batched(per_particle, devices)
        run = jax.jit(batched)

        def particles(theta, state, keys, progress=1.0):
            if particle_axis is not None:
                # Laid out as the returned state is, so a fresh state (on one device) and a
                # returned one (sharded) meet one compiled program, not one each.
                state, keys = jax.device_put((state, keys), particle_axis)
            return run(theta, state, keys, jnp.asarray(progress, jnp.float32))

        def estimate(theta, state, key, progress=1.0):
            keys = particle_keys(key, num_particles)
            grads, state, metrics = particles(theta, state, keys, progress)
            grad, metrics = combine(grads, metrics)
            return grad, state, metrics

        return Estimator(init, particles, estimate, num_particles, inner_steps)

    steps = 2 * num_particles * trunc.length
    if kind == "es":

        def per_particle(theta, p: Particle, key, progress):
            p, _ = restart_if_done(task, template_opt, trunc, p, progress=progress)
            z = noise(key, theta)
            thetas = jax.tree.map(
                lambda a, b: jnp.stack([a, b]), _shift(theta, z, sigma), _shift(theta, z, -sigma)
            )
            run_one = lambda th: unroll(task, arch.optimizer(th), trunc, p.inner)
            inners, chunks = jax.vmap(run_one)(thetas)
            (lp, dp), (ln, dn) = [meta_loss(task, trunc, chunks[i]) for i in (0, 1)]
            grad = _scaled(z, (lp - ln) / (2 * sigma))
            pos = p._replace(inner=jax.tree.map(lambda x: x[0], inners))
            return grad, pos, {"meta_loss": (lp + ln) / 2, "diverged": dp | dn}

        init = lambda key: jax.vmap(lambda k: init_particle(task, template_opt, trunc, k))(
            particle_keys(key, num_particles)
        )
        return finish(jax.jit(init), per_particle, steps)

    if kind == "pes":

        def per_particle(theta, s: PESParticle, key, progress):
            pos, restarted = restart_if_done(
                task, template_opt, trunc, s.pos, ~all_finite_particle(s.neg), progress
            )
            neg = jax.tree.map(lambda a, b: jnp.where(restarted, a, b), pos, s.neg)
            total = jax.tree.map(lambda n: jnp.where(restarted, 0.0, n), s.noise)
            z = noise(key, theta)
            total = jax.tree.map(jnp.add, total, z)
            inner_p, chunks_p = unroll(
                task, arch.optimizer(_shift(theta, z, sigma)), trunc, pos.inner
            )
            inner_n, chunks_n = unroll(
                task, arch.optimizer(_shift(theta, z, -sigma)), trunc, neg.inner
            )
            lp, dp = meta_loss(task, trunc, chunks_p)
            ln, dn = meta_loss(task, trunc, chunks_n)
            grad = _scaled(total, (lp - ln) / (2 * sigma))
            new = PESParticle(pos._replace(inner=inner_p), neg._replace(inner=inner_n), total)
            return grad, new, {"meta_loss": (lp + ln) / 2, "diverged": dp | dn}

        def init(key):
            theta0 = arch.init_theta(jax.random.key(0))

            def one(k):
                p = init_particle(task, template_opt, trunc, k)
                return PESParticle(p, p, jax.tree.map(jnp.zeros_like, theta0))

            return jax.vmap(one)(particle_keys(key, num_particles))

        return finish(jax.jit(init), per_particle, steps)

    if kind == "full-es":
        horizon = trunc.max_horizon // trunc.length * trunc.length
        full = TruncationConfig(
            length=horizon,
            min_horizon=horizon,
            max_horizon=horizon,
            valid_every=trunc.valid_every,
            meta_loss=trunc.meta_loss,
            transform=trunc.transform,
            max_normalized=trunc.max_normalized,
            stagger=False,
        )

        def per_particle(theta, count, key, progress):
            del progress
            k_run, k_z = jax.random.split(key)
            p = init_particle(task, template_opt, full, k_run)
            z = noise(k_z, theta)
            lp, dp = meta_loss(
                task, full, unroll(task, arch.optimizer(_shift(theta, z, sigma)), full, p.inner)[1]
            )
            ln, dn = meta_loss(
                task, full, unroll(task, arch.optimizer(_shift(theta, z, -sigma)), full, p.inner)[1]
            )
            grad = _scaled(z, (lp - ln) / (2 * sigma))
            return grad, count + 1, {"meta_loss": (lp + ln) / 2, "diverged": dp | dn}

        init = lambda key: jnp.zeros((num_particles,), jnp.int32)
        return finish(init, per_particle, 2 * num_particles * horizon)

    # tbptt
    def per_particle(theta, p: Particle, key, progress):
        del key
        p, _ = restart_if_done(task, template_opt, trunc, p, progress=progress)
        inner = jax.lax.stop_gradient(p.inner)

        def loss_fn(th):
            new_inner, chunks = unroll(task, arch.optimizer(th), trunc, inner)
            value, diverged = meta_loss(task, trunc, chunks)
            return value, (new_inner, diverged)

        (value, (new_inner, diverged)), grad = jax.value_and_grad(loss_fn, has_aux=True)(theta)
        grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        if mask is not None:
            grad = jax.tree.map(jnp.multiply, grad, mask)
        return grad, p._replace(inner=new_inner), {"meta_loss": value, "diverged": diverged}

    init = lambda key: jax.vmap(lambda k: init_particle(task, template_opt, trunc, k))(
        particle_keys(key, num_particles)
    )
    return finish(jax.jit(init), per_particle, num_particles * trunc.length)


def all_finite_particle(p: Particle) -> jax.Array:
    return all_finite(p.inner.params)
