"""Run a per-member function over the whole population: ``vmap`` over members, ``shard_map``
over local devices (``--xla_force_host_platform_device_count`` on CPU).

Every member-stacked argument is first placed with the member axis split over the devices, so
each call sees the same input shardings and compiles once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "members"


def _mesh(devices: int) -> Mesh:
    return Mesh(np.array(jax.devices()[:devices]), (AXIS,))


def place_members(tree: Any, devices: int) -> Any:
    """``tree`` (member axis first) with the member axis split over ``devices`` devices."""
    if devices <= 1:
        return tree
    return jax.device_put(tree, NamedSharding(_mesh(devices), PartitionSpec(AXIS)))


def over_members(
    per_member: Callable, num_args: int, devices: int = 1, shared: Sequence[int] = ()
) -> Callable:
    """Jitted ``per_member`` over a population.

    Args:
        per_member: a function of ``num_args`` positional arguments for one member.
        devices: local devices to shard the member axis over (must divide the population).
        shared: positions of arguments that all members share (no member axis).

    Returns:
        A function of the same arguments whose non-shared ones (and outputs) carry a leading
        member axis.
    """
    in_axes = tuple(None if i in shared else 0 for i in range(num_args))
    batched = jax.vmap(per_member, in_axes=in_axes)
    if devices <= 1:
        return jax.jit(batched)
    specs = tuple(PartitionSpec() if i in shared else PartitionSpec(AXIS) for i in range(num_args))
    # Members' loops start from shared values (initial params drawn from shared keys) and end
    # per-member: the varying-axis check would reject such scan carries, so it is off.
    sharded = jax.jit(
        jax.shard_map(
            batched,
            mesh=_mesh(devices),
            in_specs=specs,
            out_specs=PartitionSpec(AXIS),
            check_vma=False,
        )
    )

    def run(*args):
        args = [a if i in shared else place_members(a, devices) for i, a in enumerate(args)]
        return sharded(*args)

    return run
