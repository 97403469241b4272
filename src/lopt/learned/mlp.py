"""The small per-parameter MLP learned optimizer ("small").

Each parameter's features (gradient, parameter, momenta, rsqrt second moments, their products —
see ``features``; their names, the config and θ's shapes are ``lopt.specs.mlp``'s) plus global
time features (and optionally the per-run loss features) go through a small MLP that outputs a
direction ``d`` and a log-magnitude ``m``. The update follows Metz et al. 2020's rescaling,
``Δp = −λ₂ · exp(λ₁·m + log_lr) · (nominal + d)``, where ``nominal`` is Adam's direction
m̂/√v̂ (a hand-designed direction the network corrects, as in learned_optimization's
"nominal" optimizers and Harrison et al. 2022) and ``log_lr`` a learned scalar. With the output
layer zeroed, a fresh optimizer is exactly Adam at learning rate λ₂; ``nominal=False`` gives
the plain ``λ₂·d·exp(λ₁·m)`` of the paper, with every layer random at initialization (zeroed,
the output would never move anything, and could not train itself; Metz et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from lopt.errors import LoptError
from lopt.learned.base import (
    Architecture,
    check_spec,
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
    per_parameter_features,
    step_loss_features,
    time_features,
    update_accumulators,
)
from lopt.learned.guard import guarded
from lopt.learned.trust_region import trust_region
from lopt.specs.mlp import MLPSpec


class MLPOptState(NamedTuple):
    acc: Accumulators
    loss: LossStats | None = None  # with ``with_loss_features`` only
    distance: DistanceStats | None = None  # with ``distance_power > 0`` only


@dataclass(frozen=True)
class MLPOptimizer(MLPSpec, Architecture):
    """Per-parameter MLP optimizer: ``lopt.specs.mlp.MLPSpec``'s fields (its docstring), θ and
    the update in JAX."""

    def __post_init__(self):
        check_spec(self)

    def init_theta(self, key):
        sizes = self.layer_sizes
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        ]
        return {
            "mlp": zero_last_layer(layers) if self.nominal else layers,
            "log_lr": jnp.zeros(()),
        }

    def widen_theta(self, saved, theta):
        """A saved ``mlp`` whose input features are a subset of this one's (e.g. without the
        loss features) and whose layers are otherwise the same: its first-layer weights are
        kept by feature name and new features get zero weights, so the widened optimizer makes
        exactly the saved one's updates until meta-training moves them."""
        if saved.kind != self.kind or not set(saved.feature_names) <= set(self.feature_names):
            return None
        first = first_layer_by_name(
            theta["mlp"][0],
            saved.feature_names,
            self.init_theta(jax.random.key(0))["mlp"][0],
            self.feature_names,
        )
        return {**theta, "mlp": [first, *theta["mlp"][1:]]}

    def input_mask(self, features: tuple[str, ...]):
        unknown = sorted(set(features) - set(self.feature_names))
        if unknown:
            raise LoptError(
                f"unknown input feature(s) {unknown} of this {self.kind!r} "
                f"(its features: {list(self.feature_names)})"
            )
        mask = jax.tree.map(jnp.zeros_like, self.init_theta(jax.random.key(0)))
        columns = jnp.asarray([n in features for n in self.feature_names], jnp.float32)
        first = mask["mlp"][0]
        weight = jnp.broadcast_to(columns, first.weight.shape)
        first = eqx.tree_at(lambda la: la.weight, first, weight)
        return {**mask, "mlp": [first, *mask["mlp"][1:]]}

    def optimizer(self, theta) -> optax.GradientTransformationExtraArgs:
        def init(params):
            stats = init_loss_stats() if self.with_loss_features else None
            distance = init_distance(params) if self.distance_power > 0 else None
            return MLPOptState(init_accumulators(params, len(self.decays)), stats, distance)

        def update(grads, state, params=None, *, loss=None, valid_loss=None, horizon=None, **extra):
            del extra
            acc = update_accumulators(state.acc, grads, self.decays)
            t = time_features(acc.count, self.timescales)
            stats = None
            if self.with_loss_features:
                stats, losses = step_loss_features(state.loss, loss, valid_loss)
                t = jnp.concatenate([t, losses])
            if self.with_horizon_feature:
                fraction = horizon_features(acc.count, horizon, self.horizon_thresholds)
                t = jnp.concatenate([t, fraction])
            distance, log_lr = distance_scaled_log_lr(
                self, state.distance, grads, params, theta["log_lr"], horizon
            )

            def per_tensor(p, g, ms, vs):
                if self.feature_normalization == "parameter":
                    features = per_parameter_features(g, ms, vs, acc.count, self.decays)
                else:
                    features = param_features(p, g, ms, vs)
                (direction, magnitude), _ = per_param_mlp(theta["mlp"], features, t)
                if self.nominal:
                    direction = direction + nominal_direction(ms, vs, acc.count, self.decays)
                scale = self.step_mult * jnp.exp(self.exp_mult * magnitude + log_lr)
                return trust_region(-scale * direction, p, self.trust_ratio, self.trust_floor)

            ms, vs = leaves_per_decay(acc.momentum), leaves_per_decay(acc.second_moment)
            g_leaves, treedef = jax.tree.flatten(grads)
            p_leaves = jax.tree.leaves(params)
            updates = [per_tensor(*args) for args in zip(p_leaves, g_leaves, ms, vs, strict=True)]
            updates = jax.tree.unflatten(treedef, updates)
            return updates, MLPOptState(acc, stats, distance)

        reads_horizon = self.with_horizon_feature or self.distance_decay
        return guarded(
            self.kind,
            optax.GradientTransformationExtraArgs(init, update),
            reads_horizon=reads_horizon,
        )
