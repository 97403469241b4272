"""Scale-out on Ray: meta-gradient estimate workers as Ray actors, one learner.

``RayBackend`` plugs into ``lopt.meta.meta_train(..., backend=...)`` and ``lopt meta-train
--backend ray``; see ``lopt.distributed.backend`` and docs/distributed.md. Ray is the optional
extra ``lopt[ray]``, imported only when a ``RayBackend`` is made.
"""

from lopt.distributed.backend import RayBackend

__all__ = ["RayBackend"]
