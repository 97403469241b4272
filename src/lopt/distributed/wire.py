"""How pytrees travel between the learner and Ray workers: as numpy arrays.

Ray serializes numpy arrays without copies through its object store; typed PRNG keys go as
their raw ``uint32`` data and are wrapped again on arrival (``from_host`` takes a template to
know which leaves are keys).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_key(leaf: Any) -> bool:
    """Whether ``leaf`` (an array or a ``jax.ShapeDtypeStruct``) holds typed PRNG keys."""
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def to_host(tree: Any) -> Any:
    """``tree`` with every leaf a numpy array (keys as their raw data)."""
    return jax.tree.map(lambda x: np.asarray(jax.random.key_data(x) if is_key(x) else x), tree)


def from_host(tree: Any, template: Any) -> Any:
    """Inverse of ``to_host``: ``template`` (same structure) says which leaves are keys."""
    return jax.tree.map(
        lambda x, t: jax.random.wrap_key_data(x) if is_key(t) else jnp.asarray(x), tree, template
    )


def concatenate(trees: list) -> Any:
    """Join host pytrees along their first (particle) axis, in list order."""
    return jax.tree.map(lambda *xs: np.concatenate(xs), *trees)


def particle_slice(tree: Any, start: int, stop: int) -> Any:
    """Particles ``start:stop`` of a host pytree (first axis)."""
    return jax.tree.map(lambda x: x[start:stop], tree)
