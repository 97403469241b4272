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


def test_accumulator_floor_does_the_learned_optimizers_state_update():
    import jax.numpy as jnp
    import numpy as np

    from lopt.bench_learned import accumulators_only, update_time

    decays = (0.5, 0.9)
    params = {"w": jnp.ones((3, 2))}
    floor = accumulators_only(decays)
    state = floor.init(params)
    grads = {"w": jnp.full((3, 2), 2.0)}
    out, state = floor.update(grads, state, params)
    np.testing.assert_allclose(out["w"], 0.5 * 2.0)  # (1 − 0.5)·g after one step
    np.testing.assert_allclose(state.second_moment[1]["w"], 0.1 * 4.0, rtol=1e-6)
    assert int(state.count) == 1
    assert update_time(floor, params, calls=2, repeats=1) > 0
