"""A disk cache of the reference baselines' runs in ``lopt.evaluate``.

An evaluation spends most of its time on the 14 Adam learning rates (and the NAdamW trials) of
every task, which are the same every time a new learned optimizer is evaluated on the same
tasks. Their curves are cached per (task, trial grid, steps, seeds, eval interval, key), keyed
also by the lopt version, the JAX version and a digest of lopt's own source files, so any change
of the code that produced them makes a fresh run. Entries are written atomically; an unreadable
entry is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from functools import cache

import jax
import numpy as np

import lopt

DEFAULT_DIR = pathlib.Path("~/.cache/lopt/baselines")


def default_dir() -> pathlib.Path:
    """``$LOPT_BASELINE_CACHE``, else ``~/.cache/lopt/baselines``."""
    return pathlib.Path(os.environ.get("LOPT_BASELINE_CACHE") or DEFAULT_DIR).expanduser()


@cache
def source_digest() -> str:
    """SHA-256 over the contents of every ``.py`` file of the installed ``lopt`` package."""
    root = pathlib.Path(lopt.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def entry_key(**fields) -> str:
    """The file name of one cached run, from the JSON-able fields that determine it."""
    fields = {
        **fields,
        "lopt_version": lopt.__version__,
        "jax_version": jax.__version__,
        "source": source_digest(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


class BaselineCache:
    """Cached runs of trial grids in directory ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or ``None`` when absent or unreadable."""
        path = self.root / f"{key}.npz"
        try:
            with np.load(path) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, KeyError, EOFError):
            return None

    def store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write ``arrays`` under ``key`` atomically (a crash leaves no partial entry)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, self.root / f"{key}.npz")
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
