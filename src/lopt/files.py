"""Read a checksummed ``NAME.safetensors`` + ``NAME.json`` pair, without JAX.

Checkpoints and saved optimizers (``lopt.checkpoint``) and the PyTorch loader
(``lopt.torch.files``) store arrays this way: the JSON sidecar holds metadata and the SHA-256
of the safetensors file. Reading checks the checksum, that the file parses, and that it holds
exactly the expected tensor names; every failure is one ``CheckpointError`` naming the file.
Shapes and dtypes are the caller's to check (it knows what it expects).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Iterable

import numpy as np
from safetensors.numpy import load as load_safetensors

from lopt.errors import CheckpointError


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename: a crash leaves the
    old file or the new one, never a partial one."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json_or_none(path: str | os.PathLike) -> object:
    """The JSON in ``path``, or ``None`` if it is missing or cannot be parsed (for files that
    are recomputed when unreadable)."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def stem_file(stem: str | os.PathLike, extension: str) -> pathlib.Path:
    """``stem`` + ``extension``: the pair's file. Unlike ``Path.with_suffix``, a dot in the stem
    (``runs/lr-0.5``) stays part of the name."""
    return pathlib.Path(f"{os.fspath(stem)}{extension}")


def read_metadata(stem: str | os.PathLike) -> dict:
    """The JSON sidecar ``stem.json`` (raises ``CheckpointError`` if missing or unreadable)."""
    path = stem_file(stem, ".json")
    if not path.exists():
        raise CheckpointError(f"metadata {path} does not exist")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"metadata {path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"metadata {path} is not a JSON object")
    return meta


def read_arrays(
    stem: str | os.PathLike, meta: dict, names: Iterable[str], mismatch: str
) -> dict[str, np.ndarray]:
    """The arrays of ``stem.safetensors``, verified against ``meta["sha256"]`` and ``names``.

    Args:
        stem: the pair's path without suffix.
        meta: its metadata (from ``read_metadata``).
        names: the tensor names the file must hold, no more, no fewer.
        mismatch: how a wrong set of names reads in the error, completing
            "FILE does not ...", e.g. ``"match the expected checkpoint structure"``.
    """
    path = stem_file(stem, ".safetensors")
    if not path.exists():
        raise CheckpointError(f"weights {path} do not exist")
    blob = path.read_bytes()
    if "sha256" in meta and hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{path} is corrupt (checksum does not match {stem}.json)")
    try:
        arrays = load_safetensors(blob)
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{path} is not a valid safetensors file ({e})") from None
    names = list(names)
    expected = set(names)
    missing = [n for n in names if n not in arrays]
    extra = [n for n in arrays if n not in expected]
    if missing or extra:
        raise CheckpointError(
            f"{path} does not {mismatch} (missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'…' if len(extra) > 3 else ''})"
        )
    return arrays
