"""The JAX persistent compilation cache, set up in one place (CLI, tests, benchmarks).

Compiling a scanned training loop takes seconds; loading it from disk takes milliseconds, so
re-running an evaluation or the test suite skips most compilation.
"""

from __future__ import annotations

import os
import pathlib

import jax

DEFAULT_DIR = pathlib.Path("~/.cache/lopt/jax")


def enable_compilation_cache(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Turn on JAX's persistent compilation cache and return its directory.

    The directory is ``path``, else ``$JAX_COMPILATION_CACHE_DIR``, else ``~/.cache/lopt/jax``.
    Every compiled program is cached (no minimum compile time or size).
    """
    chosen = path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_DIR
    directory = pathlib.Path(chosen).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
