"""Learned hyperparameters: Adam whose learning rate, β₁, β₂ and ε are meta-parameters.

θ holds ``log_lr``, ``log(1 − β₁)``, ``log(1 − β₂)`` and ``log ε`` (a parameterization in which
ES perturbations are scale-free); the update is optax's own Adam.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import optax

from lopt.learned.base import Architecture
from lopt.learned.guard import guarded


@dataclass(frozen=True)
class LearnedAdam(Architecture):
    kind = "learned-adam"
    init_lr: float = 1e-3

    def init_theta(self, key):
        del key
        return {
            "log_lr": jnp.asarray(np.log(self.init_lr), jnp.float32),
            "log_one_minus_b1": jnp.asarray(np.log(0.1), jnp.float32),
            "log_one_minus_b2": jnp.asarray(np.log(0.001), jnp.float32),
            "log_eps": jnp.asarray(np.log(1e-8), jnp.float32),
        }

    def optimizer(self, theta) -> optax.GradientTransformationExtraArgs:
        adam = optax.adam(
            learning_rate=jnp.exp(theta["log_lr"]),
            b1=1 - jnp.exp(theta["log_one_minus_b1"]),
            b2=1 - jnp.exp(theta["log_one_minus_b2"]),
            eps=jnp.exp(theta["log_eps"]),
        )

        def update(grads, state, params=None, **extra):
            del extra
            return adam.update(grads, state, params)

        # Updates come back in each parameter's dtype (a traced float32 learning rate would
        # promote low-precision ones), and Adam's state is float32 (lopt.learned.guard).
        return guarded(
            self.kind, optax.GradientTransformationExtraArgs(adam.init, update), reads_params=False
        )
