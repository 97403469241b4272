"""Hand-designed baselines, all from optax, built by name from a learning rate.

``make(name, lr)`` must accept a traced ``lr`` so that tuning can vmap over learning rates.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from lopt.errors import unknown_name

BASELINES: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "adam": lambda lr: optax.adam(lr),
    "adamw": lambda lr: optax.adamw(lr, weight_decay=1e-4),
    "nadamw": lambda lr: optax.nadamw(lr, weight_decay=1e-4),
    "rmsprop": lambda lr: optax.rmsprop(lr),
    "adafactor": lambda lr: optax.adafactor(lr),
}

# A sensible fixed learning rate per baseline, used when no tuning is asked for.
DEFAULT_LR = {
    "sgd": 0.1,
    "momentum": 0.01,
    "adam": 1e-3,
    "adamw": 1e-3,
    "nadamw": 1e-3,
    "rmsprop": 1e-3,
    "adafactor": 1e-2,
}


def make(name: str, lr) -> optax.GradientTransformation:
    """Build baseline ``name`` with learning rate ``lr`` (a float or a traced scalar)."""
    if name not in BASELINES:
        raise unknown_name("baseline optimizer", name, BASELINES)
    return BASELINES[name](lr)
