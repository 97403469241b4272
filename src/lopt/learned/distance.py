"""Prodigy's distance estimate, as a step scale of learned optimizers.

Prodigy (Mishchenko & Defazio 2023, arXiv 2306.06101) keeps a running lower bound ``d`` on the
distance from the initial parameters to a solution, in the units of an Adam learning rate:
``d = max(d, Σₖ wₖ⟨gₖ, x₀ − xₖ⟩ / ‖Σₖ wₖ gₖ‖₁)`` with Prodigy's weights ``wₖ`` (growing with
``d²`` and Adam's bias correction, decayed by √β₂). Here it is measured along the learned
optimizer's own trajectory: where the gradients keep pointing away from the start, ``d`` grows
(larger steps would help), where they turn it stops.

Measured along the shipped ``small`` (v6) on the held-out tasks, ``d`` after 100–200 steps
orders the tasks roughly as the best Adam learning rate does (the MNIST-1D conv net ≈ 0.2, the
digits autoencoder ≈ 0.06, the wide MNIST-1D MLP ≈ 0.007; docs/quality.md), the per-task scale
that every per-parameter feature tried before missed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lopt.learned.features import run_fraction
from lopt.specs.constants import DISTANCE_B1, DISTANCE_B2, DISTANCE_D0, MIN_NORM


class DistanceStats(NamedTuple):
    """The initial parameters, the weighted gradient sum, the weighted numerator
    ``Σ wₖ⟨gₖ, x₀ − xₖ⟩``, the estimate ``d`` (non-decreasing) and the step count."""

    initial: object
    grad_sum: object
    numerator: jax.Array
    d: jax.Array
    count: jax.Array


def init_distance(params) -> DistanceStats:
    """The estimator before the first step: ``d = DISTANCE_D0`` (Prodigy's initial estimate),
    the initial parameters kept in float32."""
    f32 = lambda p: p.astype(jnp.float32)
    return DistanceStats(
        jax.tree.map(f32, params),
        jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
        jnp.zeros((), jnp.float32),
        jnp.full((), DISTANCE_D0, jnp.float32),
        jnp.zeros((), jnp.int32),
    )


def update_distance(stats: DistanceStats, grads, params) -> DistanceStats:
    """Fold in one step's gradients at ``params`` (Prodigy's update of ``d``; a non-finite
    estimate leaves ``d`` as it was)."""
    count = stats.count + 1
    k = count.astype(jnp.float32)
    weight = stats.d**2 * jnp.sqrt(1 - DISTANCE_B2**k) / (1 - DISTANCE_B1**k) / DISTANCE_D0
    decay = DISTANCE_B2**0.5
    g = [x.astype(jnp.float32) for x in jax.tree.leaves(grads)]
    x0, p = jax.tree.leaves(stats.initial), jax.tree.leaves(params)
    moved = sum(jnp.vdot(gi, a - b.astype(jnp.float32)) for gi, a, b in zip(g, x0, p, strict=True))
    sums = [
        decay * s + weight * gi for s, gi in zip(jax.tree.leaves(stats.grad_sum), g, strict=True)
    ]
    numerator = decay * stats.numerator + weight * moved
    estimate = numerator / jnp.maximum(sum(jnp.sum(jnp.abs(s)) for s in sums), MIN_NORM)
    d = jnp.where(jnp.isfinite(estimate), jnp.maximum(stats.d, estimate), stats.d)
    grad_sum = jax.tree.unflatten(jax.tree.structure(stats.grad_sum), sums)
    return DistanceStats(stats.initial, grad_sum, numerator, d, count)


def log_distance_scale(stats: DistanceStats, power: float, ref: float, most: float):
    """``log`` of the step multiplier ``(d / ref)^power`` taken within ``[1, most]``: steps grow
    with the estimate once it passes ``ref``, and never shrink below the network's own."""
    return jnp.clip(power * jnp.log(stats.d / ref), 0.0, math.log(most))


def distance_scaled_log_lr(arch, stats: DistanceStats | None, grads, params, log_lr, horizon=None):
    """One step of an architecture's distance scaling (its ``distance_power``, ``distance_ref``,
    ``distance_max`` and ``distance_decay``): the updated estimate (``None`` when the scaling is
    off) and ``log_lr`` plus the log step multiplier. With ``distance_decay`` the log multiplier
    falls linearly to 0 over the run, ``× (1 − t / horizon)`` (no decay without a horizon)."""
    if arch.distance_power <= 0:
        return None, log_lr
    stats = update_distance(stats, grads, params)
    scale = log_distance_scale(stats, arch.distance_power, arch.distance_ref, arch.distance_max)
    if arch.distance_decay:
        scale = scale * (1.0 - run_fraction(stats.count, horizon))
    return stats, log_lr + scale
