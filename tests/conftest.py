"""Test setup shared by every test file: one persistent JAX compilation cache per machine, and
a baseline cache private to the session.

Compiled programs are reused across test sessions and across the xdist workers of one session
(``$JAX_COMPILATION_CACHE_DIR``, else ``~/.cache/lopt/jax``), so a re-run skips compilation.
``lopt eval`` run by the tests keeps its Adam/NAdamW runs in a temporary directory
(``$LOPT_BASELINE_CACHE``), never in the user's ``~/.cache/lopt/baselines``.
"""

import atexit
import os
import shutil
import tempfile

from lopt.runtime.compilation_cache import enable_compilation_cache

enable_compilation_cache()
os.environ["LOPT_BASELINE_CACHE"] = tempfile.mkdtemp(prefix="lopt-baselines-")
atexit.register(shutil.rmtree, os.environ["LOPT_BASELINE_CACHE"], ignore_errors=True)
