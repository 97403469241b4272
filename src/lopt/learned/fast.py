"""The ``fast`` learned optimizer in JAX: ``lopt.specs.fast`` run over ``jax.numpy``.

Everything the optimizer computes is written once in the framework-free specification
(``lopt.specs.fast``: features, the per-parameter network, the per-tensor LSTM, the guard); this
module holds its state, draws its initial θ and applies the specification to a pytree of
parameters. ``lopt.torch`` applies the same specification to torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.errors import LoptError
from lopt.learned.base import Architecture
from lopt.learned.features import LossStats, init_loss_stats, run_fraction
from lopt.learned.guard import guarded
from lopt.specs.fast import (
    MOMENTUM_DECAYS,
    SECOND_MOMENT_DECAY,
    FastSpec,
    bias_corrections,
    update_loss_stats,
)
from lopt.specs.ops import Ops

JAX_OPS = Ops(
    rsqrt=jax.lax.rsqrt,
    sqrt=jnp.sqrt,
    exp=jnp.exp,
    log=jnp.log,
    tanh=jnp.tanh,
    sigmoid=jax.nn.sigmoid,
    relu=jax.nn.relu,
    abs=jnp.abs,
    clip=jnp.clip,
    where=jnp.where,
    isfinite=jnp.isfinite,
    stack=lambda xs: jnp.stack(
        jnp.broadcast_arrays(*(jnp.asarray(x, jnp.float32) for x in xs)), axis=-1
    ),
)


class FastState(NamedTuple):
    """State of the ``fast`` optimizer.

    Attributes:
        momentum_fast, momentum_slow, second_moment: float32 pytrees like the parameters, EMAs
            of g at ``MOMENTUM_DECAYS`` and of g² at ``SECOND_MOMENT_DECAY``.
        count: int32 scalar, updates made (skipped steps not counted).
        loss: per-run loss statistics.
        initial_rms: ``(n_tensors,)`` each tensor's parameter RMS at the first update.
        h, c: ``(n_tensors, lstm_hidden)`` per-tensor LSTM state (zero-width when flat).
        step_offset: ``(n_tensors,)`` each tensor's adapted log step (``(0,)`` without
            ``adaptive_step``).
    """

    momentum_fast: optax.Params
    momentum_slow: optax.Params
    second_moment: optax.Params
    count: jax.Array
    loss: LossStats
    initial_rms: jax.Array
    h: jax.Array
    c: jax.Array
    step_offset: jax.Array


class StepInputs(NamedTuple):
    """One step's statistics, before θ enters (``FastOptimizer.step_inputs``); lists hold one
    float32 array per tensor, in leaf order."""

    params: list
    grads: list
    m_fast: list
    m_slow: list
    v: list
    count: jax.Array  # int32, this update's number (1 at the first)
    rms_param: jax.Array  # (n_tensors,)
    initial_rms: jax.Array  # (n_tensors,)
    loss_stats: LossStats
    loss: jax.Array  # float32 scalar (0 when not given)
    fraction: jax.Array  # float32 scalar, the fraction of the run done (0 when unknown)
    alignment: jax.Array  # (n_tensors,) step_alignment, or (0,) without adaptive_step
    step_offset: jax.Array  # (n_tensors,) the adapted log steps before this step, or (0,)


@dataclass(frozen=True)
class FastOptimizer(FastSpec, Architecture):
    """The ``fast`` learned optimizer (``lopt.specs.fast.FastSpec``'s fields and docstring)."""

    kind = "fast"

    def __post_init__(self):
        found = self.problems()
        if found:
            raise LoptError(f"invalid config for {self.kind!r}: {'; '.join(found)}")

    def init_theta(self, key):
        shapes, bounds = self.theta_shapes(), self.init_bounds()
        keys = dict(zip(shapes, jax.random.split(key, len(shapes)), strict=True))
        return {
            name: jax.random.uniform(keys[name], shape, jnp.float32, -bounds[name], bounds[name])
            for name, shape in shapes.items()
        }

    def widen_theta(self, saved, theta):
        """θ of this optimizer from a saved one that it extends — by a per-tensor LSTM (the
        saved one flat), the ``valid_over_train`` input and/or ``adaptive_step`` — otherwise
        alike: the saved weights, zero weights for each new input, a fresh LSTM whose output
        layer is zero and ``adapt_rate`` 0, so that the widened optimizer makes exactly the
        saved one's updates until meta-training moves it."""
        if saved.kind != self.kind or saved.lstm_hidden not in (0, self.lstm_hidden):
            return None
        extended = ("lstm_hidden", "valid_over_train", "adaptive_step")
        if {**saved.config(), **{k: getattr(self, k) for k in extended}} != self.config():
            return None
        if any(getattr(saved, k) and not getattr(self, k) for k in extended[1:]):
            return None
        widened = {**self.init_theta(jax.random.key(0)), **theta}
        widened["w1"] = _columns(theta["w1"], saved.feature_names, self.feature_names)
        if saved.lstm_hidden:
            widened["lstm_wx"] = _columns(
                theta["lstm_wx"], saved.lstm_feature_names, self.lstm_feature_names
            )
        return widened

    def optimizer(self, theta) -> optax.GradientTransformationExtraArgs:
        def init(params):
            zeros = jax.tree.map(jnp.zeros_like, params)
            n = len(jax.tree.leaves(params))
            lstm = jnp.zeros((n, self.lstm_hidden), jnp.float32)
            offsets = jnp.zeros((n if self.adaptive_step else 0,), jnp.float32)
            return FastState(
                zeros, zeros, zeros, jnp.zeros((), jnp.int32), init_loss_stats(),
                jnp.zeros((n,), jnp.float32), lstm, lstm, offsets,
            )  # fmt: skip

        def update(grads, state, params=None, *, loss=None, valid_loss=None, horizon=None, **extra):
            del extra
            inputs = self.step_inputs(grads, state, params, loss, valid_loss, horizon)
            updates, h, c, offsets = self.updates(theta, inputs, state.h, state.c)
            treedef = jax.tree.structure(grads)
            new_state = FastState(
                *(jax.tree.unflatten(treedef, x) for x in (inputs.m_fast, inputs.m_slow, inputs.v)),
                inputs.count, inputs.loss_stats, inputs.initial_rms, h, c, offsets,
            )  # fmt: skip
            return jax.tree.unflatten(treedef, updates), new_state

        return guarded(
            self.kind, optax.GradientTransformationExtraArgs(init, update), reads_horizon=True
        )

    def step_inputs(self, grads, state: FastState, params, loss, valid_loss, horizon) -> StepInputs:
        """Fold one step's gradients and losses into the statistics: everything ``updates``
        reads, none of it depending on θ (float32 leaves, as ``guarded`` passes them)."""
        g = jax.tree.leaves(grads)
        m_fast = _ema(MOMENTUM_DECAYS[0], state.momentum_fast, g)
        m_slow = _ema(MOMENTUM_DECAYS[1], state.momentum_slow, g)
        v = _ema(SECOND_MOMENT_DECAY, state.second_moment, [x * x for x in g])
        count = state.count + 1
        p = jax.tree.leaves(params)
        rms_param = jnp.stack([_rms(x) for x in p])
        initial_rms = jnp.where(state.count == 0, rms_param, state.initial_rms)
        loss = jnp.zeros((), jnp.float32) if loss is None else jnp.asarray(loss, jnp.float32)
        valid_loss = loss if valid_loss is None else jnp.asarray(valid_loss, jnp.float32)
        stats = LossStats(*update_loss_stats(JAX_OPS, tuple(state.loss), loss, valid_loss))
        fraction = run_fraction(count, horizon)
        alignment = jnp.zeros((0,), jnp.float32)
        if self.adaptive_step:
            before = (jax.tree.leaves(state.momentum_fast), jax.tree.leaves(state.second_moment))
            previous = zip(g, *before, strict=True)
            alignment = jnp.stack([_alignment(self, *x) for x in previous])
        return StepInputs(
            p, g, m_fast, m_slow, v, count, rms_param, initial_rms, stats, loss, fraction,
            alignment, state.step_offset,
        )  # fmt: skip

    def updates(self, theta, inputs: StepInputs, h: jax.Array, c: jax.Array):
        """The float32 updates (a list, one per tensor), the new LSTM state and the adapted
        log steps, from θ and one step's ``step_inputs``: the part of a step that θ enters
        (what distillation fits)."""
        ops, x = JAX_OPS, inputs
        count = x.count.astype(jnp.float32)
        corrections = bias_corrections(count, jnp.expm1)
        shared = self.shared_features(ops, count, x.loss_stats, x.loss, x.fraction)
        rows = [
            ops.stack(self.tensor_features(ops, p.size, p.ndim, x.rms_param[i], x.initial_rms[i]))
            for i, p in enumerate(x.params)
        ]
        n = len(rows)
        constants = jnp.concatenate(
            [jnp.broadcast_to(shared, (n, shared.shape[0])), jnp.stack(rows)], axis=1
        )
        bias = self.first_layer_bias(theta, constants)
        log_scale = self.log_steps(ops, theta, x.rms_param)
        offsets = x.step_offset
        if self.adaptive_step:
            offsets = self.adapted_step_offsets(ops, theta, offsets, x.alignment)
            log_scale = log_scale + offsets
        if self.lstm_hidden:
            stats = [
                ops.stack(
                    self.lstm_statistics(
                        ops, jnp.sum(g * g), jnp.sum(m * m), jnp.sum(v), g.size, corrections
                    )
                )
                for g, m, v in zip(x.grads, x.m_fast, x.v, strict=True)
            ]
            lstm_inputs = jnp.concatenate([constants, jnp.stack(stats)], axis=1)
            h, c, message, log_step = self.lstm_step(ops, theta, lstm_inputs, h, c)
            bias, log_scale = bias + message, log_scale + log_step
        updates = [
            self.tensor_update(
                ops, theta["w1"], bias[i], theta["w2"], theta["b2"],
                x.grads[i], x.m_fast[i], x.m_slow[i], x.v[i], corrections, log_scale[i],
                self.guard_cap(ops, x.rms_param[i]),
            )
            for i in range(n)
        ]  # fmt: skip
        return updates, h, c, offsets


def _ema(decay: float, averages, values: list) -> list:
    """``decay · average + (1 − decay) · value`` for each tensor (``averages`` a pytree)."""
    return [
        decay * a + (1 - decay) * x for a, x in zip(jax.tree.leaves(averages), values, strict=True)
    ]


def _columns(weight: jax.Array, names: tuple, new_names: tuple) -> jax.Array:
    """``weight``'s columns (one per input of ``names``) rearranged for the inputs
    ``new_names``: a new input's column is zero."""
    columns = {name: weight[:, i] for i, name in enumerate(names)}
    zero = jnp.zeros(weight.shape[:1], weight.dtype)
    return jnp.stack([columns.get(name, zero) for name in new_names], axis=1)


def _alignment(spec: FastSpec, g: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
    """``step_alignment`` of gradient ``g`` with the direction of the accumulators ``m, v``
    before this step."""
    d = spec.previous_direction(JAX_OPS, m, v)
    return spec.step_alignment(JAX_OPS, jnp.sum(g * d), jnp.sum(g * g), jnp.sum(d * d))


def _rms(x: jax.Array) -> jax.Array:
    """RMS over a tensor (0 for an empty one)."""
    return jnp.sqrt(jnp.sum(x * x) / max(x.size, 1))
