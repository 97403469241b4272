"""The handful of array operations a specification's arithmetic needs, per framework.

Arithmetic operators (``+ - * / @``) work on JAX arrays and torch tensors alike; the rest differ
in name (``jnp.clip`` / ``torch.clamp``, ``jax.lax.rsqrt`` / ``torch.rsqrt``), so a
specification receives them in an ``Ops`` and never imports a framework.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Ops(NamedTuple):
    """Elementwise operations of one framework (each takes and returns arrays of one kind).

    ``clip(x, lo, hi)`` takes arrays or Python floats as bounds; ``where(c, x, y)`` broadcasts;
    ``stack(list)`` stacks float32 scalars (arrays or Python floats) into a vector, or arrays of
    one shape (scalars broadcast to it) along a new last axis.
    """

    rsqrt: Callable
    sqrt: Callable
    exp: Callable
    log: Callable
    tanh: Callable
    sigmoid: Callable
    relu: Callable
    abs: Callable
    clip: Callable
    where: Callable
    isfinite: Callable
    stack: Callable
