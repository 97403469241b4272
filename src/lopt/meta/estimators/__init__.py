"""Meta-gradient estimators behind one interface (``base.Estimator``), one module each,
vmapped over particles and sharded over local devices with ``shard_map``:

- ``es``: antithetic truncated ES (Metz et al. 2020);
- ``pes``: Persistent ES (Vicol et al. 2021, arXiv 2112.13835), unbiased over a whole run;
- ``full-es``: antithetic ES over whole inner runs from initialization (unbiased, expensive);
- ``tbptt``: truncated backpropagation through the unroll (biased, low variance).

``make_estimator(kind, arch, task, trunc, sigma, num_particles)`` returns an ``Estimator``
with ``init(key) -> state`` and ``estimate(theta, state, key, progress=1.0) -> (grad, state,
metrics)``; ``progress`` (outer step ÷ outer steps) drives growing horizon schedules.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from lopt.errors import LoptError, check_range, unknown_name
from lopt.learned.base import Architecture
from lopt.meta.estimators import es, full_es, pes, tbptt
from lopt.meta.estimators.base import Estimator, Setup, combine, particle_keys
from lopt.meta.truncation import TruncationConfig
from lopt.tasks.base import Task

# Each estimator's builder, by the name configs give it.
BUILDERS: dict[str, Callable[[Setup], Estimator]] = {
    "es": es.build,
    "pes": pes.build,
    "full-es": full_es.build,
    "tbptt": tbptt.build,
}
ESTIMATORS = tuple(BUILDERS)

__all__ = ["BUILDERS", "ESTIMATORS", "Estimator", "combine", "make_estimator", "particle_keys"]


def make_estimator(
    kind: str,
    arch: Architecture,
    task: Task,
    trunc: TruncationConfig,
    sigma: float = 0.01,
    num_particles: int = 8,
    devices: int = 1,
    mask=None,
) -> Estimator:
    """Build the estimator ``kind`` for meta-training ``arch`` on ``task``.

    Args:
        sigma: ES perturbation scale (θ ± σ·ε).
        num_particles: antithetic pairs (ES/PES) or independent runs (tbptt) per estimate.
        devices: local devices to shard particles over (must divide ``num_particles``).
        mask: a θ-shaped pytree of 0/1 (``None``: all 1): only the entries at 1 are perturbed
            and get a meta-gradient, so ES searches their subspace alone.
    """
    if kind not in BUILDERS:
        raise unknown_name("estimator", kind, ESTIMATORS)
    check_range("sigma", sigma, 1e-8)
    check_range("num_particles", num_particles, 1)
    if num_particles % max(devices, 1):
        raise LoptError(f"num_particles={num_particles} must be a multiple of devices={devices}")
    task.normalizer  # noqa: B018  (computed eagerly: it must not be traced)
    template_opt = arch.optimizer(arch.init_theta(jax.random.key(0)))
    setup = Setup(arch, task, trunc, sigma, num_particles, devices, mask, template_opt)
    return BUILDERS[kind](setup)
