"""Smoke tests of the benchmark helpers (speed itself is measured by `lopt bench`, not tests)."""

from __future__ import annotations

import optax

from lopt.bench import bench_rows, inner_throughput, tuning_speedup
from lopt.tasks import get_task


def test_bench_helpers_on_a_tiny_task():
    task = get_task("quadratic-16")
    stats = inner_throughput(task, optax.adam(1e-3), num_steps=20, repeats=1)
    assert stats["steps_per_s"] > 0 and stats["flops_per_step"] > 0
    assert stats["num_params"] == 16
    tuning = tuning_speedup(task, num_steps=20, repeats=1)
    assert tuning["speedup"] > 0
    result = {
        "families": {"quadratic": {**stats, "task": task.name, "fraction_of_peak": 0.01}},
        "tuning": {"quadratic-16": tuning},
    }
    families, rows = bench_rows(result)
    assert families[0][0] == "quadratic" and rows[0][0] == "quadratic-16"
