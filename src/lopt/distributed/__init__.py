"""Scale-out on Ray: meta-gradient estimate workers as Ray actors, one learner.

``RayBackend`` plugs into ``lopt.meta.meta_train(..., backend=...)`` and ``lopt meta-train
--backend ray``; see ``lopt.distributed.backend`` and docs/distributed.md. Ray is the optional
extra ``lopt[ray]``, imported only when a ``RayBackend`` is made. Importing this package does
not import JAX (``RayBackend`` loads it), so simulated workers stay light.
"""

import importlib

__all__ = ["RayBackend"]


def __getattr__(name: str):
    if name == "RayBackend":
        return importlib.import_module("lopt.distributed.backend").RayBackend
    raise AttributeError(f"module 'lopt.distributed' has no attribute {name!r}")
