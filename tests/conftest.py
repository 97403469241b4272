"""Test setup shared by every test file: one persistent JAX compilation cache per machine.

Compiled programs are reused across test sessions and across the xdist workers of one session
(``$JAX_COMPILATION_CACHE_DIR``, else ``~/.cache/lopt/jax``), so a re-run skips compilation.
"""

from lopt._cache import enable_compilation_cache

enable_compilation_cache()
