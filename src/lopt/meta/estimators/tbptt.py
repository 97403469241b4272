"""Truncated backpropagation through time: the exact gradient of one truncation's meta-loss
with respect to θ, by backpropagation through the unroll, the inner state at its start held
fixed (``stop_gradient``). Biased like truncated ES, and low in variance; each particle is an
independent inner run. Non-finite gradient entries are set to 0.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from lopt.meta.estimators.base import Estimator, Setup, assemble, init_particles
from lopt.meta.truncation import Particle, meta_loss, restart_if_done, unroll

SHARDED_WARNING = (
    "tbptt sharded over several local CPU devices ran 4-13x slower per estimate than on one "
    "device on a 2-core machine (docs/learned.md); consider devices: 1"
)


def build(s: Setup) -> Estimator:
    """The ``tbptt`` estimator of ``s`` (``make_estimator("tbptt", ...)``); warns when sharded
    over several devices (``SHARDED_WARNING``)."""
    task, trunc, arch = s.task, s.trunc, s.arch
    if s.devices > 1:
        warnings.warn(SHARDED_WARNING, stacklevel=3)  # at make_estimator's caller

    def per_particle(theta, p: Particle, key, progress):
        del key
        p, _ = restart_if_done(task, s.template_opt, trunc, p, progress=progress)
        inner = jax.lax.stop_gradient(p.inner)

        def loss_fn(th):
            new_inner, chunks = unroll(task, arch.optimizer(th), trunc, inner)
            value, diverged = meta_loss(task, trunc, chunks)
            return value, (new_inner, diverged)

        (value, (new_inner, diverged)), grad = jax.value_and_grad(loss_fn, has_aux=True)(theta)
        grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        if s.mask is not None:
            grad = jax.tree.map(jnp.multiply, grad, s.mask)
        return grad, p._replace(inner=new_inner), {"meta_loss": value, "diverged": diverged}

    return assemble(s, jax.jit(init_particles(s)), per_particle, s.num_particles * trunc.length)
