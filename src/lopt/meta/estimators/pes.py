"""Persistent ES (Vicol, Metz & Sohl-Dickstein 2021, "Unbiased gradient estimation in unrolled
computation graphs with persistent evolution strategies", arXiv 2112.13835).

Each particle keeps two inner runs, one at θ + σε and one at θ − σε, that never merge, and the
noise ε accumulated since the run began; the loss difference of a truncation weights that
accumulated noise. The effect of θ on earlier truncations is counted, so the estimate is
unbiased over the whole inner run (at the cost of variance that grows with the run's length).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lopt.meta.estimators.base import Estimator, Setup, assemble, particle_keys, scaled, shift
from lopt.meta.truncation import (
    Particle,
    all_finite,
    init_particle,
    meta_loss,
    restart_if_done,
    unroll,
)


class PESParticle(NamedTuple):
    pos: Particle
    neg: Particle
    noise: Any  # accumulated standard-normal perturbations since the run began (θ-shaped)


def build(s: Setup) -> Estimator:
    """The ``pes`` estimator of ``s`` (``make_estimator("pes", ...)``)."""
    task, trunc, arch = s.task, s.trunc, s.arch

    def per_particle(theta, p: PESParticle, key, progress):
        pos, restarted = restart_if_done(
            task, s.template_opt, trunc, p.pos, ~all_finite(p.neg.inner.params), progress
        )
        neg = jax.tree.map(lambda a, b: jnp.where(restarted, a, b), pos, p.neg)
        total = jax.tree.map(lambda n: jnp.where(restarted, 0.0, n), p.noise)
        z = s.noise(key, theta)
        total = jax.tree.map(jnp.add, total, z)
        inner_p, chunks_p = unroll(task, arch.optimizer(shift(theta, z, s.sigma)), trunc, pos.inner)
        inner_n, chunks_n = unroll(
            task, arch.optimizer(shift(theta, z, -s.sigma)), trunc, neg.inner
        )
        lp, dp = meta_loss(task, trunc, chunks_p)
        ln, dn = meta_loss(task, trunc, chunks_n)
        grad = scaled(total, (lp - ln) / (2 * s.sigma))
        new = PESParticle(pos._replace(inner=inner_p), neg._replace(inner=inner_n), total)
        return grad, new, {"meta_loss": (lp + ln) / 2, "diverged": dp | dn}

    def init(key):
        theta0 = arch.init_theta(jax.random.key(0))

        def one(k):
            p = init_particle(task, s.template_opt, trunc, k)
            return PESParticle(p, p, jax.tree.map(jnp.zeros_like, theta0))

        return jax.vmap(one)(particle_keys(key, s.num_particles))

    return assemble(s, jax.jit(init), per_particle, 2 * s.num_particles * trunc.length)
