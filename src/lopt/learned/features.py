"""Per-parameter features of learned optimizers and the fused per-parameter MLP that reads them.

Accumulators follow Metz et al. 2020 ("Tasks, stability, architecture, and compute",
arXiv 2009.11243): momenta and second moments at several decays. Each per-parameter feature is
divided by its root-mean-square over the tensor ("normalized by its second moment across the
tensor") and clipped, so the optimizer network sees the same scale on every task; the
``mlp`` architecture can instead scale them per parameter, as Adam scales its step
(``per_parameter_features``: no reduction over the tensor, cheaper on a CPU).
The features' names, their constants and the loss statistics' decays are the architectures'
specifications' (``lopt.specs``); feature counts are never hard-coded.

Speed: accumulators are kept one array per decay (contiguous), and inputs that are constant
over a tensor (time, the LSTM's message) are folded into the first layer's bias of the
per-parameter MLP instead of being broadcast to every parameter.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lopt.specs.constants import (
    EPS,
    FEATURE_CLIP,
    HORIZON_SHARPNESS,
    TRAIN_LOSS_DECAY,
    VALID_LOSS_DECAY,
)
from lopt.specs.mlp import NOMINAL_B1, NOMINAL_B2, PER_PARAMETER_REFERENCE
from lopt.unrolled import affine


class Accumulators(NamedTuple):
    """Running statistics, one params-like pytree per decay.

    Attributes:
        momentum: ``K`` pytrees like params: EMA of g at each decay.
        second_moment: ``K`` pytrees like params: EMA of g² at each decay.
        count: int32 scalar, number of updates so far.
    """

    momentum: tuple
    second_moment: tuple
    count: jax.Array


def init_accumulators(params, num_decays: int) -> Accumulators:
    zeros = jax.tree.map(jnp.zeros_like, params)
    return Accumulators((zeros,) * num_decays, (zeros,) * num_decays, jnp.zeros((), jnp.int32))


def update_accumulators(acc: Accumulators, grads, decays: tuple[float, ...]) -> Accumulators:
    """EMA update of momenta (of g) and second moments (of g²) at every decay."""
    ema = lambda b: lambda x, g: b * x + (1 - b) * g
    momentum = tuple(
        jax.tree.map(ema(b), m, grads) for b, m in zip(decays, acc.momentum, strict=True)
    )
    sq = jax.tree.map(jnp.square, grads)
    second = tuple(
        jax.tree.map(ema(b), v, sq) for b, v in zip(decays, acc.second_moment, strict=True)
    )
    return Accumulators(momentum, second, acc.count + 1)


def leaves_per_decay(stats: tuple) -> list[list[jax.Array]]:
    """``K`` pytrees -> per tensor, the list of its ``K`` arrays."""
    return [list(x) for x in zip(*(jax.tree.leaves(s) for s in stats), strict=True)]


@jax.custom_jvp
def sqrt0(x: jax.Array) -> jax.Array:
    """``jnp.sqrt(x)`` whose derivative at ``x = 0`` is 0 instead of infinity.

    The same values as ``jnp.sqrt``; only differentiation differs. An exactly zero second moment
    (a weight whose gradient is always 0, behind a dead ReLU) or a zero tensor (a bias at its
    initial 0) would otherwise give ``0 · ∞ = NaN`` in a meta-gradient taken by
    backpropagation through the inner run (``tbptt``), and zero that whole particle's estimate.
    """
    return jnp.sqrt(x)


@sqrt0.defjvp
def _sqrt0_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    root = jnp.sqrt(x)
    return root, jnp.where(x > 0, 0.5 * t / jnp.where(x > 0, root, 1.0), 0.0)


def bias_corrected(x: jax.Array, decay: float, count: jax.Array) -> jax.Array:
    """Adam-style bias correction of an EMA after ``count`` updates."""
    return x / (1 - jnp.power(decay, count.astype(jnp.float32)))


def _normalized(x: jax.Array) -> jax.Array:
    """``x`` divided by its RMS over the tensor, clipped to ±FEATURE_CLIP."""
    scale = jax.lax.rsqrt(jnp.mean(jnp.square(x)) + EPS)
    return jnp.clip(x * scale, -FEATURE_CLIP, FEATURE_CLIP)


def param_features(p: jax.Array, g: jax.Array, ms: list, vs: list) -> list[jax.Array]:
    """The normalized per-parameter features of one tensor, each of ``param.shape``, in the
    order of ``lopt.specs.mlp.param_feature_names(decays, "tensor")``.

    Args:
        p, g: parameter and gradient.
        ms, vs: ``K`` momenta and ``K`` second moments (same shape as ``p``).
    """
    rsqrt = [jax.lax.rsqrt(v + EPS) for v in vs]
    raw = [g, p, *ms, *rsqrt, *(m * r for m, r in zip(ms, rsqrt, strict=True))]
    return [_normalized(x) for x in raw]


def per_parameter_features(
    g: jax.Array, ms: list, vs: list, count: jax.Array, decays: tuple[float, ...]
) -> list[jax.Array]:
    """Per-parameter features of one tensor that need no reduction over it, each of ``g.shape``,
    in the order of ``lopt.specs.mlp.param_feature_names(decays, "parameter")``.

    The gradient and the momenta are divided by the parameter's own RMS gradient — √v̂ at decay
    ``PER_PARAMETER_REFERENCE`` (bias-corrected), as Adam normalizes its step — and each
    momentum is also divided by the root of its own second moment; all clipped to
    ±FEATURE_CLIP. Unlike ``param_features`` nothing is averaged over the tensor, so the
    features need no pass over it of their own (BENCHMARKS.md: reductions over the tensor are
    what costs most in a learned update on a CPU). No parameter-value feature: it has no scale
    of its own without one.
    """
    reference = PER_PARAMETER_REFERENCE
    v_hat = bias_corrected(vs[decays.index(reference)], reference, count)
    over_rms = jax.lax.rsqrt(v_hat + EPS)
    raw = [
        g * over_rms,
        *(m * over_rms for m in ms),
        *(m * jax.lax.rsqrt(v + EPS) for m, v in zip(ms, vs, strict=True)),
    ]
    return [jnp.clip(x, -FEATURE_CLIP, FEATURE_CLIP) for x in raw]


def per_param_mlp(
    layers, features: list[jax.Array], constants: jax.Array | None = None, pool: bool = False
):
    """A ReLU MLP applied independently at every parameter of one tensor.

    The first layer is written as scalar-weight multiply-adds over whole feature arrays, not as
    a matmul of a stacked ``(numel, n)`` feature matrix, so XLA fuses feature normalization and
    the first layer into one loop over the parameters; without ``pool`` the other (tiny) layers
    are fused the same way. With ``pool``, the hidden layers after the first are stacked and
    run as matmuls, which XLA on CPU handles better than a reduction over a fused chain.
    Measured side by side against the stacked-matmul form on the 2-core CPU
    (``benchmarks/per_param_mlp.py``): ``small`` updates up to 2× faster, ``rnn-mlp`` 6–12%.

    Args:
        layers: ``eqx.nn.Linear`` list; the first takes ``len(features) + len(constants)``
            inputs (per-parameter features first).
        features: per-parameter inputs, each ``param.shape``.
        constants: ``(C,)`` inputs shared by every parameter of the tensor (or ``None``); they
            are folded into the first layer's bias instead of being broadcast.
        pool: also return the last hidden layer averaged over the tensor.

    Returns:
        ``(outputs, pooled)``: the output units as a list of ``param.shape`` arrays, and
        (with ``pool``; else ``None``) the last hidden layer's mean, ``(hidden[-1],)``.
    """
    shape, n = features[0].shape, len(features)
    first = layers[0]
    bias = first.bias if constants is None else first.bias + first.weight[:, n:] @ constants
    x = affine(first.weight[:, :n], bias, features)
    if not pool:
        for layer in layers[1:]:
            x = affine(layer.weight, layer.bias, [jax.nn.relu(h) for h in x])
        return x, None
    hidden = jnp.stack([jax.nn.relu(h).reshape(-1) for h in x])  # (width, numel)
    for layer in layers[1:-1]:
        hidden = jax.nn.relu(layer.weight @ hidden + layer.bias[:, None])
    last = layers[-1]
    outputs = last.weight @ hidden + last.bias[:, None]
    return [o.reshape(shape) for o in outputs], jnp.mean(hidden, axis=1)


def time_features(step: jax.Array, timescales: tuple[float, ...]) -> jax.Array:
    """``tanh(step / τ)`` for every timescale τ: ``(len(timescales),)``."""
    return jnp.tanh(step.astype(jnp.float32) / jnp.asarray(timescales, jnp.float32))


# The run's progress towards its announced length (VeLO, Metz et al. 2022, conditions on it too):
# ``f = count / horizon`` clipped to [0, 1], where ``horizon`` is the run's total number of steps
# as passed by ``update``'s ``horizon=`` argument, and 0 when the horizon is unknown (``None`` or
# 0); optionally also ``tanh(HORIZON_SHARPNESS·(f − c))`` for thresholds ``c``, steps that a
# linear first layer can combine into a schedule (VeLO embeds its fraction of training the same
# way).
def run_fraction(count: jax.Array, horizon) -> jax.Array:
    """The fraction of the run done after ``count`` updates, ``count / horizon`` within
    ``[0, 1]`` in float32; 0 when the horizon is unknown (``None`` or not positive)."""
    if horizon is None:
        return jnp.zeros((), jnp.float32)
    horizon = jnp.asarray(horizon, jnp.float32)
    fraction = count.astype(jnp.float32) / jnp.maximum(horizon, 1.0)
    return jnp.where(horizon > 0, jnp.clip(fraction, 0.0, 1.0), 0.0)


def horizon_features(count: jax.Array, horizon, thresholds: tuple[float, ...] = ()) -> jax.Array:
    """The ``lopt.specs.horizon_feature_names(True, thresholds)`` features after ``count``
    updates."""
    fraction = run_fraction(count, horizon)
    steps = jnp.tanh(HORIZON_SHARPNESS * (fraction - jnp.asarray(thresholds, jnp.float32)))
    return jnp.concatenate([fraction[None], steps])


def nominal_direction(ms: list, vs: list, count: jax.Array, decays: tuple[float, ...]):
    """Adam's bias-corrected direction m̂/(√v̂ + ε), from the accumulators at the nominal decays
    (``lopt.specs.mlp.NOMINAL_B1``, ``NOMINAL_B2``)."""
    m_hat = bias_corrected(ms[decays.index(NOMINAL_B1)], NOMINAL_B1, count)
    v_hat = bias_corrected(vs[decays.index(NOMINAL_B2)], NOMINAL_B2, count)
    return m_hat / (sqrt0(v_hat) + EPS)


class LossStats(NamedTuple):
    """EMA mean/variance of the training loss, EMA of the validation loss, first loss seen."""

    mean: jax.Array
    var: jax.Array
    valid: jax.Array
    initial: jax.Array
    count: jax.Array


def init_loss_stats() -> LossStats:
    z = jnp.zeros((), jnp.float32)
    return LossStats(z, z, z, z, jnp.zeros((), jnp.int32))


def step_loss_features(stats: LossStats, loss, valid_loss) -> tuple[LossStats, jax.Array]:
    """One step of an optimizer's loss inputs: fold ``update``'s ``loss=`` (``None`` reads as 0)
    and ``valid_loss=`` (``None``: the training loss stands in) into ``stats``; return the new
    statistics and the ``lopt.specs.LOSS_FEATURE_NAMES`` features."""
    loss = jnp.zeros(()) if loss is None else loss
    valid_loss = loss if valid_loss is None else valid_loss
    stats = update_loss_stats(stats, loss, valid_loss)
    return stats, loss_features(stats, loss)


def update_loss_stats(stats: LossStats, loss, valid_loss) -> LossStats:
    """Fold in one step's training and validation losses (non-finite ones are skipped)."""
    first = stats.count == 0
    loss = jnp.where(jnp.isfinite(loss), loss, stats.mean)
    valid_loss = jnp.where(jnp.isfinite(valid_loss), valid_loss, stats.valid)
    mean = jnp.where(first, loss, TRAIN_LOSS_DECAY * stats.mean + (1 - TRAIN_LOSS_DECAY) * loss)
    var = jnp.where(
        first, 0.0, TRAIN_LOSS_DECAY * stats.var + (1 - TRAIN_LOSS_DECAY) * (loss - mean) ** 2
    )
    valid = jnp.where(
        first, valid_loss, VALID_LOSS_DECAY * stats.valid + (1 - VALID_LOSS_DECAY) * valid_loss
    )
    initial = jnp.where(first, loss, stats.initial)
    return LossStats(mean, var, valid, initial, stats.count + 1)


def loss_features(stats: LossStats, loss) -> jax.Array:
    """The ``lopt.specs.LOSS_FEATURE_NAMES`` features, clipped to ±FEATURE_CLIP: ``(3,)``."""
    scale = jnp.sqrt(stats.var + EPS)
    train = (jnp.where(jnp.isfinite(loss), loss, stats.mean) - stats.mean) / scale
    valid = (stats.valid - stats.mean) / scale
    ratio = jnp.log((jnp.abs(stats.mean) + EPS) / (jnp.abs(stats.initial) + EPS))
    return jnp.clip(jnp.stack([train, valid, ratio]), -FEATURE_CLIP, FEATURE_CLIP)
