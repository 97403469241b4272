"""The learned-optimizer protocol: an architecture (static config) plus weights θ (a pytree of
arrays) gives an ``optax.GradientTransformationExtraArgs``.

Static configuration (sizes, decays), the meta-parameters θ that ES perturbs and vmaps over,
and the evolving optimizer state are three different things and live apart.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from lopt.errors import LoptError, check_count

Theta = Any


class Architecture(abc.ABC):
    """A learned-optimizer architecture. Subclasses are frozen (hashable) dataclasses."""

    kind: str = "architecture"

    @abc.abstractmethod
    def init_theta(self, key: jax.Array) -> Theta:
        """Initial meta-parameters θ drawn from ``key``."""

    @abc.abstractmethod
    def optimizer(self, theta: Theta) -> optax.GradientTransformationExtraArgs:
        """The optax transformation with weights ``theta`` (jittable, vmappable over θ), behind
        ``lopt.learned.guard.guarded``: statistics in float32, empty tensors left out, a step
        whose squared gradient overflows float32 skipped (zero update, state unchanged)."""

    def widen_theta(self, saved: Architecture, theta: Theta) -> Theta | None:
        """θ of this architecture from a saved optimizer's θ that does not fit it as it is
        (``saved`` is that optimizer's architecture), or ``None`` if there is no such θ."""
        del saved, theta
        return None

    def input_mask(self, features: tuple[str, ...]) -> Theta:
        """A θ-shaped pytree of 0/1: 1 on the first-layer weights that read ``features``
        (meta-training only those; ``MetaTrainConfig.trainable_features``)."""
        raise LoptError(
            f"architecture {self.kind!r} cannot meta-train the weights of single input "
            f"features (asked for {list(features)}); only 'mlp' can"
        )

    def config(self) -> dict:
        """JSON-serializable description; ``build_architecture(**config)`` rebuilds it."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
        return {"kind": self.kind, **fields}


def check_spec(spec) -> None:
    """Raise one ``LoptError`` with every problem of an architecture's config (its
    specification's ``problems()``; ``lopt.specs``), if it has any."""
    found = spec.problems()
    if found:
        raise LoptError("; ".join(found))


def check_update_args(kind: str, grads, params) -> None:
    """One clear error where ``update`` gets no parameters, or gradients that do not match them
    (shapes are static, so this runs once per trace, under jit and vmap alike)."""
    if params is None:
        raise LoptError(
            f"the {kind!r} learned optimizer reads the parameters: call "
            "update(grads, state, params, ...)"
        )
    if jax.tree.structure(grads) != jax.tree.structure(params):
        raise LoptError(
            f"the gradients' structure {jax.tree.structure(grads)} is not the parameters' "
            f"{jax.tree.structure(params)}"
        )
    named = jax.tree_util.tree_flatten_with_path(grads)[0]
    for (path, g), p in zip(named, jax.tree.leaves(params), strict=True):
        if g.shape != p.shape:
            raise LoptError(
                f"the gradient at {jax.tree_util.keystr(path) or 'the root'} has shape "
                f"{tuple(g.shape)}, its parameter {tuple(p.shape)}"
            )


def dense(layer, x: jax.Array) -> jax.Array:
    """Apply an ``eqx.nn.Linear`` to a batch ``x (..., in)`` -> ``(..., out)``."""
    return x @ layer.weight.T + layer.bias


def first_layer_by_name(saved_first, saved_names, layer, names):
    """``layer`` (an ``eqx.nn.Linear`` whose inputs are ``names``, then any unnamed ones) with
    the saved first layer's weights by input name and its bias; zero weights on every input
    the saved layer did not read, so the layer computes what the saved one did."""
    column = dict(zip(saved_names, saved_first.weight.T, strict=True))
    zeros = jnp.zeros(saved_first.weight.shape[0], saved_first.weight.dtype)
    unnamed = layer.weight.shape[1] - len(names)
    weight = jnp.stack([column.get(n, zeros) for n in names] + [zeros] * unnamed, axis=1)
    return eqx.tree_at(lambda la: (la.weight, la.bias), layer, (weight, saved_first.bias))


def zero_last_layer(layers: list) -> list:
    """Zero the output layer so a fresh optimizer starts exactly at its nominal update."""
    last = layers[-1]
    last = eqx.tree_at(
        lambda layer: (layer.weight, layer.bias), last, (last.weight * 0, last.bias * 0)
    )
    return [*layers[:-1], last]


def with_horizon(
    optimizer: optax.GradientTransformationExtraArgs, total_steps: int | None
) -> optax.GradientTransformationExtraArgs:
    """``optimizer`` with ``horizon=total_steps`` passed to every update that does not pass
    its own (optimizers with the horizon feature read it; others ignore it)."""
    if total_steps is None:
        return optimizer
    check_count("total_steps", total_steps)
    horizon = int(total_steps)

    def update(grads, state, params=None, **extra):
        extra.setdefault("horizon", horizon)
        return optimizer.update(grads, state, params, **extra)

    return optax.GradientTransformationExtraArgs(optimizer.init, update)
