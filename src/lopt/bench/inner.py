"""Inner-training speed: steps/s and achieved GFLOP/s of an optimizer training a task inside the
scanned training loop, and the speedup of tuning 14 Adam learning rates as one vmapped program.

XLA's cost analysis counts a loop body once, whatever its trip count, so FLOPs per step come from
compiling one unscanned ``inner_step``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from lopt.baselines import ADAM_LRS, make
from lopt.bench.timing import best_time, flops
from lopt.inner import as_extra_args, init_state, inner_step, run_steps, train
from lopt.tasks import Task

TUNING_TASKS = ("quadratic-16", "mlp-digits-32")


def inner_throughput(task: Task, optimizer, num_steps: int, repeats: int = 3) -> dict:
    """Steps/s, compile time and achieved GFLOP/s of ``optimizer`` training ``task``."""
    optimizer = as_extra_args(optimizer)
    state = init_state(task, optimizer, jax.random.key(0))
    start = time.perf_counter()
    loop = jax.jit(lambda s: run_steps(task, optimizer, s, num_steps)).lower(state).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(loop(state))
    seconds = best_time(lambda: loop(state), repeats)
    step_flops = flops(jax.jit(lambda s: inner_step(task, optimizer, s)).lower(state).compile())
    steps_per_s = num_steps / seconds
    return {
        "steps_per_s": steps_per_s,
        "compile_s": compile_s,
        "flops_per_step": step_flops,
        "gflop_per_s": step_flops * steps_per_s / 1e9,
        "num_params": int(sum(x.size for x in jax.tree.leaves(state.params))),
    }


def tuning_speedup(task: Task, num_steps: int, repeats: int = 3) -> dict:
    """Wall time of 14 Adam lrs as one vmapped program vs a loop of 14 calls to one jitted run."""
    key = jax.random.key(0)
    lrs = jnp.asarray(ADAM_LRS, jnp.float32)
    one = lambda lr: train(task, make("adam", lr), key, num_steps)[1]
    vmapped = jax.jit(jax.vmap(one)).lower(lrs).compile()
    single = jax.jit(one).lower(lrs[0]).compile()
    jax.block_until_ready((vmapped(lrs), single(lrs[0])))
    vmapped_s = best_time(lambda: vmapped(lrs), repeats)
    loop_s = best_time(lambda: [single(lr) for lr in lrs], repeats)
    return {"vmapped_s": vmapped_s, "loop_s": loop_s, "speedup": loop_s / vmapped_s}
