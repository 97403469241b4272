"""The hierarchical RNN-MLP learned optimizer of Metz et al. 2020 ("rnn-mlp").

arXiv 2009.11243, section 3. A per-tensor LSTM sees tensor-level statistics, time and
training-/validation-loss features; a per-parameter MLP sees per-parameter features plus a
projection of its tensor's LSTM output. Communication runs both ways: the MLP's last hidden
layer is mean-pooled per tensor into the next LSTM step, and a DeepSets channel feeds every LSTM
the mean over tensors of a projection of all LSTM outputs. Gradients pass through learned
dynamic clipping (an EMA of the gradient RMS, clipped at ``clip_mult·exp(θ)`` times it).

Update: ``Δp = −λ₂ · exp(λ₁·m + log_lr + s_tensor) · (nominal + d)`` with ``d, m`` from the MLP,
``s_tensor`` a per-tensor log step from the LSTM, and ``nominal`` Adam's direction (zeroed
output layers make a fresh optimizer exactly Adam at learning rate λ₂). With
``distance_power > 0`` every step is also scaled by Prodigy's distance estimate, as ``small``'s
(``lopt.learned.distance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.learned.base import (
    Architecture,
    check_spec,
    dense,
    first_layer_by_name,
    zero_last_layer,
)
from lopt.learned.distance import DistanceStats, distance_scaled_log_lr, init_distance
from lopt.learned.features import (
    Accumulators,
    LossStats,
    horizon_features,
    init_accumulators,
    init_loss_stats,
    leaves_per_decay,
    nominal_direction,
    param_features,
    per_param_mlp,
    step_loss_features,
    time_features,
    update_accumulators,
)
from lopt.learned.guard import guarded
from lopt.learned.trust_region import trust_region
from lopt.specs.constants import EPS, LSTM_INPUT_CLIP
from lopt.specs.mlp import NOMINAL_B1
from lopt.specs.rnn_mlp import GRAD_RMS_DECAY, MAX_RANK, WIDENED_LOG_CLIP, RNNMLPSpec


class RNNMLPState(NamedTuple):
    acc: Accumulators
    h: jax.Array  # (n_tensors, lstm_hidden)
    c: jax.Array  # (n_tensors, lstm_hidden)
    pooled: jax.Array  # (n_tensors, mlp_hidden[-1]) MLP hidden layer mean-pooled per tensor
    grad_rms: jax.Array  # (n_tensors,) EMA of each tensor's gradient RMS
    loss: LossStats
    distance: DistanceStats | None = None  # with ``distance_power > 0`` only


@dataclass(frozen=True)
class RNNMLPOptimizer(RNNMLPSpec, Architecture):
    """Hierarchical optimizer, per-tensor LSTM + per-parameter MLP:
    ``lopt.specs.rnn_mlp.RNNMLPSpec``'s fields (its docstring), θ and the update in JAX."""

    def __post_init__(self):
        check_spec(self)

    def init_theta(self, key):
        k_mlp, k_lstm, k_proj, k_lr, k_ds = jax.random.split(key, 5)
        sizes = self.mlp_layer_sizes
        # per-parameter features, then the time features and the LSTM message (see update)
        keys = jax.random.split(k_mlp, len(sizes) - 1)
        mlp = [
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        ]
        lr_head = eqx.nn.Linear(self.lstm_hidden, 1, key=k_lr)
        return {
            "mlp": zero_last_layer(mlp),
            "lstm": eqx.nn.LSTMCell(len(self.tensor_feature_names), self.lstm_hidden, key=k_lstm),
            "to_mlp": eqx.nn.Linear(self.lstm_hidden, self.to_mlp, key=k_proj),
            "lr_head": zero_last_layer([lr_head])[0],
            "deepsets": eqx.nn.Linear(self.lstm_hidden, self.deepsets, key=k_ds),
            "log_lr": jnp.zeros(()),
            "log_clip": jnp.zeros(()),
        }

    def widen_theta(self, saved, theta):
        """θ that makes exactly the updates of a saved ``small``-style optimizer (kind
        ``"mlp"``, nominal) whose inputs are among this one's per-parameter MLP inputs and whose
        hidden widths start this one's (any further hidden layer as wide as its last):

        - the MLP's first layer keeps the saved weights by feature name; new inputs (more
          decays, the LSTM's message) get zero weights; further hidden layers are identities
          (exact after a ReLU), and the output layer is the saved one;
        - the LSTM's per-tensor log step (``lr_head``) is zero and the learned gradient clip
          sits at ``exp(WIDENED_LOG_CLIP)`` times ``clip_mult`` (no clipping unless a gradient
          entry exceeds ≈ 2·10⁵ times its tensor's running gradient RMS);
        - the LSTM and its projections are those of ``init_theta(key(0))``: meta-training
          starts from the saved optimizer and may put the LSTM to use.

        Settings outside θ (step and exp multipliers, trust region, distance scaling) are this
        architecture's; they must equal the saved ones for the updates to be the same.
        """
        if saved.kind != "mlp" or not saved.nominal:
            return None
        names = self.param_feature_names
        depth = len(saved.hidden)
        extra = self.mlp_hidden[depth:]
        if (
            not set(saved.feature_names) <= set(names)
            or tuple(self.mlp_hidden[:depth]) != tuple(saved.hidden)
            or any(width != saved.hidden[-1] for width in extra)
        ):
            return None
        fresh = self.init_theta(jax.random.key(0))
        saved_first, *saved_rest = theta["mlp"]
        first = first_layer_by_name(saved_first, saved.feature_names, fresh["mlp"][0], names)
        identities = [
            eqx.tree_at(
                lambda la: (la.weight, la.bias),
                layer,
                (jnp.eye(layer.weight.shape[0], dtype=layer.weight.dtype), layer.bias * 0),
            )
            for layer in fresh["mlp"][depth : depth + len(extra)]
        ]
        mlp = [first, *saved_rest[:-1], *identities, saved_rest[-1]]
        return {
            **fresh,
            "mlp": mlp,
            "log_lr": theta["log_lr"],
            "log_clip": jnp.full((), WIDENED_LOG_CLIP, jnp.float32),
        }

    def _tensor_static_features(self, params) -> jax.Array:
        """Shape features per tensor (constants): is_scalar, log #params, log dims (rank 4)."""
        rows = []
        for p in jax.tree.leaves(params):
            dims = list(p.shape)[-MAX_RANK:]
            dims = [1] * (MAX_RANK - len(dims)) + dims
            rows.append([float(p.size == 1), np.log(p.size), *np.log(dims)])
        return jnp.asarray(rows, jnp.float32)

    def optimizer(self, theta) -> optax.GradientTransformationExtraArgs:
        def init(params):
            n = len(jax.tree.leaves(params))
            return RNNMLPState(
                acc=init_accumulators(params, len(self.decays)),
                h=jnp.zeros((n, self.lstm_hidden)),
                c=jnp.zeros((n, self.lstm_hidden)),
                pooled=jnp.zeros((n, self.mlp_hidden[-1])),
                grad_rms=jnp.zeros((n,)),
                loss=init_loss_stats(),
                distance=init_distance(params) if self.distance_power > 0 else None,
            )

        def update(grads, state, params=None, *, loss=None, valid_loss=None, horizon=None, **extra):
            del extra
            g_leaves, treedef = jax.tree.flatten(grads)
            p_leaves = jax.tree.leaves(params)
            rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x)) + EPS)
            distance, log_lr = distance_scaled_log_lr(
                self, state.distance, grads, params, theta["log_lr"], horizon
            )

            # Learned dynamic gradient clipping.
            g_rms = jnp.stack([rms(g) for g in g_leaves])
            first = state.acc.count == 0
            grad_rms = jnp.where(
                first, g_rms, GRAD_RMS_DECAY * state.grad_rms + (1 - GRAD_RMS_DECAY) * g_rms
            )
            limit = self.clip_mult * jnp.exp(theta["log_clip"]) * grad_rms
            g_leaves = [jnp.clip(g, -lim, lim) for g, lim in zip(g_leaves, limit, strict=True)]
            grads = jax.tree.unflatten(treedef, g_leaves)

            acc = update_accumulators(state.acc, grads, self.decays)
            stats, losses = step_loss_features(state.loss, loss, valid_loss)
            t = time_features(acc.count, self.timescales)
            fraction = (
                horizon_features(acc.count, horizon, self.horizon_thresholds)
                if self.with_horizon_feature
                else jnp.zeros((0,), jnp.float32)
            )
            ms, vs = leaves_per_decay(acc.momentum), leaves_per_decay(acc.second_moment)

            # Per-tensor LSTM.
            i_nominal = self.decays.index(NOMINAL_B1)
            dynamic = jnp.stack(
                [
                    jnp.stack([jnp.log(rms(g)), jnp.log(rms(p)), jnp.log(rms(m[i_nominal]))])
                    for g, p, m in zip(g_leaves, p_leaves, ms, strict=True)
                ]
            )
            n = dynamic.shape[0]
            shared = jnp.concatenate([t, losses, fraction])
            deepsets = jnp.mean(dense(theta["deepsets"], state.h), axis=0)
            x = jnp.concatenate(
                [
                    dynamic,
                    self._tensor_static_features(params),
                    jnp.broadcast_to(shared, (n, shared.shape[0])),
                    state.pooled,
                    jnp.broadcast_to(deepsets, (n, self.deepsets)),
                ],
                axis=1,
            )
            x = jnp.clip(x, -LSTM_INPUT_CLIP, LSTM_INPUT_CLIP)
            h, c = jax.vmap(theta["lstm"])(x, (state.h, state.c))
            to_mlp = dense(theta["to_mlp"], h)  # (n, to_mlp)
            tensor_log_lr = dense(theta["lr_head"], h)[:, 0]  # (n,)

            # Per-parameter MLP (per-run and per-tensor inputs folded into its first-layer bias).
            run = [t, losses, fraction] if self.mlp_loss_features else [t, fraction]
            updates, pooled = [], []
            for i, (p, g, m, v) in enumerate(zip(p_leaves, g_leaves, ms, vs, strict=True)):
                constants = jnp.concatenate([*run, to_mlp[i]])
                (direction, magnitude), pooled_i = per_param_mlp(
                    theta["mlp"], param_features(p, g, m, v), constants, pool=True
                )
                pooled.append(pooled_i)
                direction = direction + nominal_direction(m, v, acc.count, self.decays)
                log_step = self.exp_mult * magnitude + log_lr + tensor_log_lr[i]
                update = -self.step_mult * jnp.exp(log_step) * direction
                updates.append(trust_region(update, p, self.trust_ratio, self.trust_floor))

            new_state = RNNMLPState(acc, h, c, jnp.stack(pooled), grad_rms, stats, distance)
            return jax.tree.unflatten(treedef, updates), new_state

        reads_horizon = self.with_horizon_feature or self.distance_decay
        return guarded(
            self.kind,
            optax.GradientTransformationExtraArgs(init, update),
            reads_horizon=reads_horizon,
        )
