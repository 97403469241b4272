"""Antithetic ES over whole inner runs: every particle starts a fresh inner run from
initialization and runs it to the maximum horizon (rounded down to whole truncations) at
θ + σε and at θ − σε. Unbiased for the whole run's meta-loss and expensive: the reference the
truncated estimators are checked against (``tests/test_estimators.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.meta.estimators.base import Estimator, Setup, assemble, scaled, shift
from lopt.meta.truncation import TruncationConfig, init_particle, meta_loss, unroll


def build(s: Setup) -> Estimator:
    """The ``full-es`` estimator of ``s`` (``make_estimator("full-es", ...)``)."""
    task, trunc, arch = s.task, s.trunc, s.arch
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

    def run_loss(theta, inner):
        return meta_loss(task, full, unroll(task, arch.optimizer(theta), full, inner)[1])

    def per_particle(theta, count, key, progress):
        del progress
        k_run, k_z = jax.random.split(key)
        p = init_particle(task, s.template_opt, full, k_run)
        z = s.noise(k_z, theta)
        lp, dp = run_loss(shift(theta, z, s.sigma), p.inner)
        ln, dn = run_loss(shift(theta, z, -s.sigma), p.inner)
        grad = scaled(z, (lp - ln) / (2 * s.sigma))
        return grad, count + 1, {"meta_loss": (lp + ln) / 2, "diverged": dp | dn}

    init = lambda key: jnp.zeros((s.num_particles,), jnp.int32)
    return assemble(s, init, per_particle, 2 * s.num_particles * horizon)
