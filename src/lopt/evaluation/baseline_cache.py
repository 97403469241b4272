"""A disk cache of the reference baselines' runs in ``lopt.evaluation.harness``.

An evaluation spends most of its time on the 14 Adam learning rates (and the NAdamW trials) of
every task, which are the same every time a new learned optimizer is evaluated on the same
tasks. Their curves are cached per (task, trial grid, steps, seeds, eval interval, key), keyed
also by the lopt version, the JAX version and a digest of the source of every lopt module the
grids' code imports (``GRID_MODULES`` and, transitively, their module-level lopt imports), so a
change of the code that produced them makes a fresh run, while a change of a learned optimizer
does not. Entries are written atomically; an unreadable entry is ignored and recomputed.
"""

from __future__ import annotations

import ast
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


# The modules that run the reference grids: the evaluation loop, the optimizer specs that build
# the baselines, the baselines, inner training and the tasks.
GRID_MODULES = (
    "lopt.evaluation.harness",
    "lopt.evaluation.optimizer_specs",
    "lopt.baselines",
    "lopt.inner",
    "lopt.tasks",
)


def _module_file(root: pathlib.Path, module: str) -> pathlib.Path | None:
    """The source file of lopt module ``module`` (a package's ``__init__.py``), if any."""
    base = root.joinpath(*module.split(".")[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _lopt_imports(path: pathlib.Path, module: str) -> set[str]:
    """The lopt modules that ``module`` (source ``path``) imports at module level, and the
    modules of any names it imports from them (``from lopt.tasks import base``)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                parent = f"{base}.{parent}" if parent else base
            found.add(parent)
            found.update(f"{parent}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "lopt" or m.startswith("lopt.")}


def grid_source_files() -> list[pathlib.Path]:
    """The source files of ``GRID_MODULES`` and every lopt module they import at module level,
    transitively (imports inside functions, e.g. of the learned optimizers, are not followed)."""
    root = pathlib.Path(lopt.__file__).parent
    files, todo, seen = set(), list(GRID_MODULES), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(root, module)
        if path is None:
            continue
        files.add(path)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(_lopt_imports(path, module))
    return sorted(files)


@cache
def source_digest() -> str:
    """SHA-256 over the contents of ``grid_source_files()``."""
    root = pathlib.Path(lopt.__file__).parent
    digest = hashlib.sha256()
    for path in grid_source_files():
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
