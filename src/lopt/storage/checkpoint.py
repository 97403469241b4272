"""Pytrees on disk as checksummed safetensors (the layouts of ``lopt.storage.files``).

Every array leaf is a tensor named by its pytree path. ``save``/``load``: a pair
``NAME.safetensors`` + ``NAME.json`` (metadata plus the SHA-256 of the safetensors file), for
saved optimizers, which ``lopt.torch`` reads without JAX; each file is replaced atomically, the
JSON last, and a torn pair fails the checksum. ``save_file``/``load_file``: one file whose
header carries the metadata and the checksum, for run checkpoints, which one atomic rename
replaces whole. Loading needs a template pytree (the structure is code, the numbers are data):
no pickle anywhere.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from safetensors.numpy import save as st_save

from lopt.errors import CheckpointError
from lopt.storage.files import (
    METADATA,
    SHA256,
    check_names,
    checkpoint_digest,
    read_arrays,
    read_checkpoint,
    read_metadata,
    stem_file,
    to_json,
    write_atomically,
)


def leaf_names(tree: Any) -> list[str]:
    """Stable names of a pytree's leaves, e.g. ``['mlp'][0].weight``."""
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _arrays(tree: Any) -> dict[str, np.ndarray]:
    arrays = {}
    for name, leaf in zip(leaf_names(tree), jax.tree.leaves(tree), strict=True):
        arr = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
        arrays[name] = arr.copy(order="C")  # (ascontiguousarray would turn 0-d into 1-d)
    return arrays


def save(stem: str | os.PathLike, tree: Any, metadata: dict | None = None) -> None:
    """Write ``tree`` to ``stem.safetensors`` and ``metadata`` (+ checksum) to ``stem.json``."""
    stem = pathlib.Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    blob = st_save(_arrays(tree))
    meta = {**(metadata or {}), SHA256: hashlib.sha256(blob).hexdigest()}
    write_atomically(stem_file(stem, ".safetensors"), blob)
    write_atomically(stem_file(stem, ".json"), to_json(meta, indent=2, sort_keys=True).encode())


def save_file(path: str | os.PathLike, tree: Any, metadata: dict) -> None:
    """Write ``tree`` and ``metadata`` to the one file ``path``, atomically, with a checksum of
    both in its header."""
    arrays = _arrays(tree)
    header = {METADATA: to_json(metadata, sort_keys=True)}
    header[SHA256] = checkpoint_digest(st_save(arrays, header))
    write_atomically(path, st_save(arrays, header))


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def load(stem: str | os.PathLike, template: Any, verify: bool = True) -> tuple[Any, dict]:
    """Load the pair ``stem.*`` into the structure of ``template``; verify checksum, names,
    shapes, dtypes.

    Args:
        verify: refuse a pair whose JSON holds no checksum (``lopt.storage.files.read_arrays``).

    Returns:
        ``(tree, metadata)``.
    """
    meta = read_metadata(stem)
    names = leaf_names(template)
    arrays = read_arrays(stem, meta, names, "match the expected checkpoint structure", verify)
    return _fill(stem_file(stem, ".safetensors"), template, arrays), meta


def load_file(path: str | os.PathLike, template: Any | Callable[[dict], Any]) -> tuple[Any, dict]:
    """Load the one file ``path`` (``save_file``) into the structure of ``template``; verify
    checksum, names, shapes, dtypes.

    Args:
        template: the tree to fill, or a function from the file's metadata to that tree (when
            its shapes depend on what the metadata says).

    Returns:
        ``(tree, metadata)``.
    """
    arrays, meta = read_checkpoint(path)
    tree = template(meta) if callable(template) else template
    check_names(path, arrays, leaf_names(tree), "match the expected checkpoint structure")
    return _fill(path, tree, arrays), meta


def _fill(path: pathlib.Path, template: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``template`` with its leaves replaced by ``arrays`` (checked to match them)."""
    leaves = []
    for name, ref in zip(leaf_names(template), jax.tree.leaves(template), strict=True):
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
    return jax.tree.unflatten(jax.tree.structure(template), leaves)
