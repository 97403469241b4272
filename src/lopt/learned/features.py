"""Per-parameter and per-tensor features of learned optimizers, named and derived in one place.

Accumulators follow Metz et al. 2020 ("Tasks, stability, architecture, and compute",
arXiv 2009.11243): momenta and second moments at several decays. Each per-parameter feature is
divided by its root-mean-square over the tensor ("normalized by its second moment across the
tensor") and clipped, so the optimizer network sees the same scale on every task.
Feature counts are never hard-coded: ``param_feature_names`` derives them from the config.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

FEATURE_CLIP = 5.0
EPS = 1e-8


class Accumulators(NamedTuple):
    """Running statistics per parameter tensor.

    Attributes:
        momentum: pytree like params, leaves ``(*param.shape, K)`` for K momentum decays.
        second_moment: pytree like params, leaves ``(*param.shape, K)`` (same decays).
        count: int32 scalar, number of updates so far.
    """

    momentum: object
    second_moment: object
    count: jax.Array


def init_accumulators(params, num_decays: int) -> Accumulators:
    zeros = jax.tree.map(lambda p: jnp.zeros((*p.shape, num_decays), p.dtype), params)
    return Accumulators(zeros, zeros, jnp.zeros((), jnp.int32))


def update_accumulators(acc: Accumulators, grads, decays: tuple[float, ...]) -> Accumulators:
    """EMA update of momenta (of g) and second moments (of g²) at every decay."""
    beta = jnp.asarray(decays, jnp.float32)
    momentum = jax.tree.map(lambda m, g: beta * m + (1 - beta) * g[..., None], acc.momentum, grads)
    second = jax.tree.map(
        lambda v, g: beta * v + (1 - beta) * jnp.square(g)[..., None], acc.second_moment, grads
    )
    return Accumulators(momentum, second, acc.count + 1)


def bias_corrected(x: jax.Array, decay: float, count: jax.Array) -> jax.Array:
    """Adam-style bias correction of an EMA after ``count`` updates."""
    return x / (1 - jnp.power(decay, count.astype(jnp.float32)))


def param_feature_names(decays: tuple[float, ...]) -> tuple[str, ...]:
    """Names of the per-parameter features, in the order ``param_features`` stacks them."""
    return (
        "grad",
        "param",
        *(f"momentum_{b}" for b in decays),
        *(f"rsqrt_second_moment_{b}" for b in decays),
        *(f"momentum_x_rsqrt_second_moment_{b}" for b in decays),
    )


def tensor_rms(x: jax.Array, axes) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + EPS)


def normalize_per_tensor(features: jax.Array) -> jax.Array:
    """Divide each feature ``(..., F)`` by its RMS over the tensor axes, then clip."""
    axes = tuple(range(features.ndim - 1))
    return jnp.clip(features / tensor_rms(features, axes), -FEATURE_CLIP, FEATURE_CLIP)


def param_features(p: jax.Array, g: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
    """Stack and normalize the per-parameter features of one tensor.

    Args:
        p, g: parameter and gradient, ``param.shape``.
        m, v: momenta and second moments, ``(*param.shape, K)``.

    Returns:
        ``(*param.shape, 2 + 3K)`` in the order of ``param_feature_names``.
    """
    rsqrt = jax.lax.rsqrt(v + EPS)
    raw = jnp.concatenate([g[..., None], p[..., None], m, rsqrt, m * rsqrt], axis=-1)
    return normalize_per_tensor(raw)


def time_feature_names(timescales: tuple[float, ...]) -> tuple[str, ...]:
    return tuple(f"tanh_step_over_{t:g}" for t in timescales)


def time_features(step: jax.Array, timescales: tuple[float, ...]) -> jax.Array:
    """``tanh(step / τ)`` for every timescale τ: ``(len(timescales),)``."""
    return jnp.tanh(step.astype(jnp.float32) / jnp.asarray(timescales, jnp.float32))


def nominal_direction(
    m: jax.Array, v: jax.Array, count: jax.Array, decays: tuple[float, ...], b1: float, b2: float
) -> jax.Array:
    """Adam's bias-corrected direction m̂/(√v̂ + ε) from the accumulators at decays b1, b2."""
    i, j = decays.index(b1), decays.index(b2)
    m_hat = bias_corrected(m[..., i], b1, count)
    v_hat = bias_corrected(v[..., j], b2, count)
    return m_hat / (jnp.sqrt(v_hat) + EPS)
