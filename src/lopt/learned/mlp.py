"""The small per-parameter MLP learned optimizer ("small").

Each parameter's features (gradient, parameter, momenta, rsqrt second moments, their products —
see ``features``) plus global time features (and optionally the per-run loss features) go
through a small MLP that outputs a direction ``d`` and a log-magnitude ``m``. The update follows
Metz et al. 2020's rescaling,
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
    check_config,
    first_layer_by_name,
    zero_last_layer,
)
from lopt.learned.distance import (
    DistanceStats,
    check_distance_scaling,
    distance_scaled_log_lr,
    init_distance,
)
from lopt.learned.features import (
    LOSS_FEATURE_NAMES,
    Accumulators,
    LossStats,
    check_feature_normalization,
    check_horizon_thresholds,
    horizon_feature_names,
    horizon_features,
    init_accumulators,
    init_loss_stats,
    leaves_per_decay,
    nominal_direction,
    param_feature_names,
    param_features,
    per_param_mlp,
    per_parameter_features,
    step_loss_features,
    time_feature_names,
    time_features,
    update_accumulators,
)
from lopt.learned.guard import guarded
from lopt.learned.trust_region import check_trust_region, trust_region


class MLPOptState(NamedTuple):
    acc: Accumulators
    loss: LossStats | None = None  # with ``with_loss_features`` only
    distance: DistanceStats | None = None  # with ``distance_power > 0`` only


@dataclass(frozen=True)
class MLPOptimizer(Architecture):
    """Per-parameter MLP optimizer.

    Attributes:
        hidden: hidden layer widths of the per-parameter MLP.
        decays: momentum / second-moment decays.
        timescales: step timescales of the ``tanh(step/τ)`` features.
        step_mult: λ₂, the base step (the learning rate of the nominal Adam direction).
        exp_mult: λ₁, the scale of the log-magnitude output.
        nominal: add Adam's direction under the learned correction (and start at it).
        trust_ratio: cap each tensor's update RMS at this fraction of the tensor's RMS
            (``None``: no cap; see ``lopt.learned.trust_region``).
        trust_floor: the tensor RMS assumed for tensors smaller than it (zero-initialized ones).
        with_loss_features: also feed the network the per-run loss features
            (``LOSS_FEATURE_NAMES``: from ``update``'s ``loss=`` and ``valid_loss=`` arguments),
            folded into the first layer's bias like the time features.
        distance_power: scale every step by ``(d / distance_ref)^distance_power`` within
            ``[1, distance_max]``, ``d`` being Prodigy's distance estimate along this
            optimizer's run (``lopt.learned.distance``; 0: off). Not learned, like the trust
            region; it gives the network a per-task step scale that its inputs cannot see.
        distance_ref, distance_max: see ``distance_power``.
        distance_decay: let the log of that multiplier fall linearly to 0 over the run
            (``× (1 − t / horizon)``, from ``update``'s ``horizon=`` argument; no decay when
            it is not given), so that the scaled steps do not last into the end of a long run.
        with_horizon_feature: also feed the network the run's progress towards its length
            (``horizon_feature_names``: from ``update``'s ``horizon=`` argument, the run's total
            number of steps; 0 when it is not given), folded into the first layer's bias.
        horizon_thresholds: with the horizon feature, also ``tanh(10·(fraction − c))`` for
            each threshold ``c`` (``lopt.learned.features.horizon_features``).
        feature_normalization: ``"tensor"``: each per-parameter feature divided by its RMS
            over the tensor (``param_features``, as the shipped optimizers do); ``"parameter"``:
            scaled per parameter by its own second moment, with no reduction over the tensor
            (``per_parameter_features``; no parameter-value input; on a CPU about half the cost
            of an update with the same network, ``benchmarks/speed_floor.py``).
    """

    kind = "mlp"
    hidden: tuple[int, ...] = (32,)
    decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
    timescales: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)
    step_mult: float = 1e-3
    exp_mult: float = 1.0
    nominal: bool = True
    trust_ratio: float | None = None
    trust_floor: float = 1e-3
    with_loss_features: bool = False
    distance_power: float = 0.0
    distance_ref: float = 0.05
    distance_max: float = 3.0
    distance_decay: bool = False
    with_horizon_feature: bool = False
    horizon_thresholds: tuple[float, ...] = ()
    feature_normalization: str = "tensor"

    def __post_init__(self):
        check_config(self.kind, self.hidden, self.decays, (0.9, 0.999) if self.nominal else ())
        check_feature_normalization(self.kind, self.feature_normalization, self.decays)
        check_trust_region(self.kind, self.trust_ratio, self.trust_floor)
        check_distance_scaling(self.kind, self.distance_power, self.distance_ref, self.distance_max)
        check_horizon_thresholds(self.kind, self.with_horizon_feature, self.horizon_thresholds)

    @property
    def feature_names(self) -> tuple[str, ...]:
        loss = LOSS_FEATURE_NAMES if self.with_loss_features else ()
        horizon = horizon_feature_names(self.with_horizon_feature, self.horizon_thresholds)
        return (
            param_feature_names(self.decays, self.feature_normalization)
            + time_feature_names(self.timescales)
            + loss
            + horizon
        )

    def init_theta(self, key):
        sizes = (len(self.feature_names), *self.hidden, 2)
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
                    direction = direction + nominal_direction(
                        ms, vs, acc.count, self.decays, 0.9, 0.999
                    )
                scale = self.step_mult * jnp.exp(self.exp_mult * magnitude + log_lr)
                return trust_region(-scale * direction, p, self.trust_ratio, self.trust_floor)

            ms, vs = leaves_per_decay(acc.momentum), leaves_per_decay(acc.second_moment)
            g_leaves, treedef = jax.tree.flatten(grads)
            p_leaves = jax.tree.leaves(params)
            updates = [per_tensor(*args) for args in zip(p_leaves, g_leaves, ms, vs, strict=True)]
            updates = jax.tree.unflatten(treedef, updates)
            return updates, MLPOptState(acc, stats, distance)

        return guarded(self.kind, optax.GradientTransformationExtraArgs(init, update))
