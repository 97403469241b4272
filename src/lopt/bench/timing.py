"""Timing primitives of the speed benchmarks: the best wall time of a few repeats (outputs waited
for), FLOPs from XLA's cost analysis, and a measured float32 matmul peak to compare against.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``fn()`` (its outputs are waited for) over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def flops(compiled) -> float:
    """FLOPs of a compiled program from XLA's cost analysis (0 if unavailable)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX: one dict per program
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def matmul_peak(n: int = 1024, repeats: int = 10) -> float:
    """Measured float32 matmul throughput in GFLOP/s (``n × n`` by ``n × n``, best of repeats)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul).lower(a, b).compile()
    jax.block_until_ready(f(a, b))
    return 2 * n**3 / best_time(lambda: f(a, b), repeats) / 1e9
