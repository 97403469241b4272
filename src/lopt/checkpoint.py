"""Pytrees on disk as safetensors + a JSON sidecar, written atomically and checksummed.

A checkpoint ``NAME`` is two files: ``NAME.safetensors`` (every array leaf, named by its pytree
path) and ``NAME.json`` (metadata plus the SHA-256 of the safetensors file). Each file is written
to a temporary name and moved into place with ``os.replace``, the JSON last, so a reader sees
either the old pair or the new pair; a torn or corrupted pair fails the checksum. Loading needs
a template pytree (the structure is code, the numbers are data): no pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any

import jax
import numpy as np
from safetensors.numpy import save as st_save

from lopt.errors import CheckpointError
from lopt.files import read_arrays, read_metadata, stem_file, write_atomically


def leaf_names(tree: Any) -> list[str]:
    """Stable names of a pytree's leaves, e.g. ``['mlp'][0].weight``."""
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def save(stem: str | os.PathLike, tree: Any, metadata: dict | None = None) -> None:
    """Write ``tree`` to ``stem.safetensors`` and ``metadata`` (+ checksum) to ``stem.json``."""
    stem = pathlib.Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree.leaves(tree)
    arrays = {}
    for name, leaf in zip(leaf_names(tree), leaves, strict=True):
        arr = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
        arrays[name] = arr.copy(order="C")  # (ascontiguousarray would turn 0-d into 1-d)
    blob = st_save(arrays)
    meta = dict(metadata or {})
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    write_atomically(stem_file(stem, ".safetensors"), blob)
    write_atomically(stem_file(stem, ".json"), json.dumps(meta, indent=2, sort_keys=True).encode())


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def load(stem: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Load arrays into the structure of ``template``; verify checksum, names, shapes, dtypes.

    Returns:
        ``(tree, metadata)``.
    """
    path = stem_file(stem, ".safetensors")
    meta = read_metadata(stem)
    names = leaf_names(template)
    arrays = read_arrays(stem, meta, names, "match the expected checkpoint structure")
    leaves = []
    for name, ref in zip(names, jax.tree.leaves(template), strict=True):
        arr = arrays[name]
        if _is_key(ref):
            leaves.append(jax.random.wrap_key_data(arr))
            continue
        ref = np.asarray(ref)
        if arr.shape != ref.shape or arr.dtype != ref.dtype:
            raise CheckpointError(
                f"{path}: {name} has shape {arr.shape} {arr.dtype}, "
                f"expected {ref.shape} {ref.dtype}"
            )
        leaves.append(jax.numpy.asarray(arr))
    return jax.tree.unflatten(jax.tree.structure(template), leaves), meta
