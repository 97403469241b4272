"""The files lopt writes and reads back, without JAX: atomic writes, strict JSON, and
checksummed safetensors files in two layouts.

- A pair ``NAME.safetensors`` + ``NAME.json`` (saved optimizers; ``lopt.torch.files`` reads
  them too): the JSON sidecar holds metadata and the SHA-256 of the safetensors file
  (``read_metadata``, ``read_arrays``).
- One file ``NAME.safetensors`` (run checkpoints): the metadata and a SHA-256 of everything
  else in the file travel in its header (``checkpoint_digest``, ``read_checkpoint``), so that
  one rename replaces a checkpoint whole.

Reading checks the checksum, that the file parses, and that it holds exactly the expected
tensor names; every failure is one ``CheckpointError`` naming the file. A file without a
checksum is refused unless the caller passes ``verify=False``. Shapes and dtypes are the
caller's to check (it knows what it expects).

JSON that lopt writes is strict (RFC 8259, which has no NaN or Infinity): ``to_json`` writes a
non-finite float as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` and ``from_json``
reads those strings back as floats.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
from collections.abc import Iterable

import numpy as np
from safetensors.numpy import load as load_safetensors

from lopt.errors import CheckpointError

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
TEMPORARY = ".tmp-"  # write_atomically's temporary files: ".NAME.tmp-PID"
METADATA, SHA256 = "lopt", "sha256"  # a one-file checkpoint's header keys


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename: a crash leaves the
    old file or the new one, never a partial one (and perhaps a temporary file, which
    ``remove_stale_temporaries`` deletes)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}{TEMPORARY}{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_stale_temporaries(directory: str | os.PathLike) -> None:
    """Delete the temporary files that writes killed before their rename left in ``directory``
    (call it only while no other process writes there, e.g. holding
    ``lopt.storage.lock.exclusive``)."""
    directory = pathlib.Path(directory)
    if directory.is_dir():
        for path in directory.glob(f".*{TEMPORARY}*"):
            path.unlink(missing_ok=True)


def to_json(data: object, indent: int | None = None, sort_keys: bool = False) -> str:
    """``data`` as strict JSON, non-finite floats written as ``"NaN"``, ``"Infinity"`` or
    ``"-Infinity"``."""
    return json.dumps(_finite(data), indent=indent, sort_keys=sort_keys, allow_nan=False)


def _finite(data: object) -> object:
    if isinstance(data, float) and not math.isfinite(data):
        return "NaN" if math.isnan(data) else "Infinity" if data > 0 else "-Infinity"
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


def from_json(text: str | bytes) -> object:
    """The data of JSON ``text`` written by ``to_json`` (the strings ``"NaN"``, ``"Infinity"``
    and ``"-Infinity"`` read as floats). Raises ``json.JSONDecodeError``."""
    return _non_finite(json.loads(text))


def _non_finite(data: object) -> object:
    if isinstance(data, str):
        return NON_FINITE.get(data, data)
    if isinstance(data, dict):
        return {key: _non_finite(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_non_finite(value) for value in data]
    return data


def read_json_or_none(path: str | os.PathLike) -> object:
    """The JSON in ``path`` (as ``from_json`` reads it), or ``None`` if it is missing or cannot
    be parsed (for files that are recomputed when unreadable)."""
    try:
        return from_json(pathlib.Path(path).read_text())
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
        meta = from_json(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"metadata {path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"metadata {path} is not a JSON object")
    return meta


def read_arrays(
    stem: str | os.PathLike, meta: dict, names: Iterable[str], mismatch: str, verify: bool = True
) -> dict[str, np.ndarray]:
    """The arrays of ``stem.safetensors``, verified against ``meta["sha256"]`` and ``names``.

    Args:
        stem: the pair's path without suffix.
        meta: its metadata (from ``read_metadata``).
        names: the tensor names the file must hold, no more, no fewer.
        mismatch: how a wrong set of names reads in the error, completing
            "FILE does not ...", e.g. ``"match the expected checkpoint structure"``.
        verify: refuse a file whose metadata holds no checksum (lopt always writes one);
            ``False`` accepts it unverified (a checksum that is there is always checked).
    """
    path = stem_file(stem, ".safetensors")
    if not path.exists():
        raise CheckpointError(f"weights {path} do not exist")
    blob = path.read_bytes()
    if SHA256 not in meta and verify:
        raise CheckpointError(
            f"{stem}.json holds no sha256 checksum, so {path} cannot be verified; to use it "
            "unverified, load it with verify=False (lopt.load, lopt.torch.load)"
        )
    if SHA256 in meta and hashlib.sha256(blob).hexdigest() != meta[SHA256]:
        raise CheckpointError(f"{path} is corrupt (checksum does not match {stem}.json)")
    arrays = _parse(path, blob)
    check_names(path, arrays, names, mismatch)
    return arrays


def checkpoint_digest(blob: bytes) -> str:
    """The SHA-256 of a one-file checkpoint: its header's JSON (canonical, without the digest
    itself) followed by its tensor data. Raises ``ValueError`` if ``blob`` has no valid
    safetensors header."""
    header, data = _split(blob)
    metadata = {k: v for k, v in header.get("__metadata__", {}).items() if k != SHA256}
    canonical = json.dumps({**header, "__metadata__": metadata}, sort_keys=True).encode()
    return hashlib.sha256(canonical + data).hexdigest()


def _split(blob: bytes) -> tuple[dict, bytes]:
    """A safetensors file's header and data (layout: 8-byte little-endian header size, JSON
    header, data)."""
    size = int.from_bytes(blob[:8], "little")
    if len(blob) < 8 or 8 + size > len(blob):
        raise ValueError("the header is cut short")
    header = json.loads(blob[8 : 8 + size])
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise ValueError("the header is not a JSON object")
    return header, blob[8 + size :]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, metadata)`` of the one-file checkpoint ``path``, its checksum verified."""
    path = pathlib.Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    blob = path.read_bytes()
    try:
        header = _split(blob)[0]
        digest = checkpoint_digest(blob)
    except (ValueError, UnicodeDecodeError) as e:  # a truncated file, or not safetensors
        raise CheckpointError(f"{path} is corrupt (its header cannot be read: {e})") from None
    strings = header.get("__metadata__", {})
    if METADATA not in strings or SHA256 not in strings:
        raise CheckpointError(
            f"{path} is not a lopt checkpoint (its header holds no {METADATA!r} metadata and "
            f"{SHA256!r} checksum)"
        )
    if digest != strings[SHA256]:
        raise CheckpointError(f"{path} is corrupt (checksum does not match its contents)")
    arrays = _parse(path, blob)
    try:
        meta = from_json(strings[METADATA])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its metadata is not valid JSON ({e})") from None
    return arrays, meta


def _parse(path: pathlib.Path, blob: bytes) -> dict[str, np.ndarray]:
    try:
        return load_safetensors(blob)
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{path} is not a valid safetensors file ({e})") from None


def check_names(path: str | os.PathLike, arrays: dict, names: Iterable[str], mismatch: str) -> None:
    """Raise ``CheckpointError`` unless ``arrays`` (read from ``path``) holds exactly ``names``;
    ``mismatch`` completes "PATH does not ..." in the error."""
    names = list(names)
    expected = set(names)
    missing = [n for n in names if n not in arrays]
    extra = [n for n in arrays if n not in expected]
    if missing or extra:
        raise CheckpointError(
            f"{path} does not {mismatch} (missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'…' if len(extra) > 3 else ''})"
        )
