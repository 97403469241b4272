"""Antithetic truncated ES (Metz et al. 2020, "Tasks, stability, architecture, and compute",
arXiv 2009.11243): each particle runs one truncation of its inner run at θ + σε and at θ − σε
from the same inner state and on the same minibatches; the run continues from the + branch.

The estimate, ``(L(θ + σε) − L(θ − σε)) / (2σ) · ε`` averaged over particles, is the gradient
of the Gaussian-smoothed meta-loss of one truncation: biased with respect to the whole inner
run (the truncation ignores the effect of θ on later truncations), low in variance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.meta.estimators.base import (
    Estimator,
    Setup,
    assemble,
    init_particles,
    scaled,
    shift,
)
from lopt.meta.truncation import Particle, meta_loss, restart_if_done, unroll


def build(s: Setup) -> Estimator:
    """The ``es`` estimator of ``s`` (``make_estimator("es", ...)``)."""
    task, trunc, arch = s.task, s.trunc, s.arch

    def per_particle(theta, p: Particle, key, progress):
        p, _ = restart_if_done(task, s.template_opt, trunc, p, progress=progress)
        z = s.noise(key, theta)
        thetas = jax.tree.map(
            lambda a, b: jnp.stack([a, b]), shift(theta, z, s.sigma), shift(theta, z, -s.sigma)
        )
        run_one = lambda th: unroll(task, arch.optimizer(th), trunc, p.inner)
        inners, chunks = jax.vmap(run_one)(thetas)
        (lp, dp), (ln, dn) = [meta_loss(task, trunc, chunks[i]) for i in (0, 1)]
        grad = scaled(z, (lp - ln) / (2 * s.sigma))
        pos = p._replace(inner=jax.tree.map(lambda x: x[0], inners))
        return grad, pos, {"meta_loss": (lp + ln) / 2, "diverged": dp | dn}

    return assemble(s, jax.jit(init_particles(s)), per_particle, 2 * s.num_particles * trunc.length)
