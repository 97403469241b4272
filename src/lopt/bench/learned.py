"""Learned-optimizer speed benchmarks (part of ``lopt bench``), ratios measured in one run.

- update time of each shipped architecture ÷ ``optax.adam`` update time, on MLP-shaped
  parameter sets of about 10k, 100k and 1M parameters (targets: ≤ 3× small, ≤ 8× rnn-mlp),
  and the same ratio for the architecture's accumulators alone (the EMAs of g and g² at its
  decays, no network): what keeping those statistics alone costs, whatever the network;
- ES meta-training throughput: inner steps/s and achieved GFLOP/s ÷ the measured matmul peak
  (FLOPs per inner step from XLA's cost analysis of one unscanned step);
- the speedup of sharding ES particles over 2 local devices (``shard_map``) vs plain vmap on one.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.bench.timing import best_time, flops
from lopt.inner import init_state, inner_step
from lopt.learned import build_architecture
from lopt.learned.features import init_accumulators, update_accumulators
from lopt.meta.estimators import make_estimator
from lopt.meta.truncation import TruncationConfig
from lopt.pretrained import META_TRAINED, shipped_architecture
from lopt.tasks import get_task

# The default optimizers' architectures as shipped (``self-trained`` is a ``small``-sized mlp).
ARCHITECTURES = {name: shipped_architecture(name) for name in META_TRAINED}
SIZES = (10_000, 100_000, 1_000_000)
ES_TASK = "mlp-digits-32"


def mlp_params(num_params: int) -> dict:
    """A two-layer MLP's parameters (square weights) with about ``num_params`` entries."""
    width = int(np.sqrt(num_params / 2))
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "w1": jax.random.normal(k1, (width, width)),
        "b1": jnp.zeros(width),
        "w2": jax.random.normal(k2, (width, width)),
        "b2": jnp.zeros(width),
    }


def _update_loop(optimizer, params, calls: int):
    """A function making ``calls`` jitted ``update`` calls (compiled here, not when timed), each
    taking the state the previous one returned, as a training loop does: no call can start
    before the one before it has finished (independent calls would overlap on XLA's CPU
    threads, and overlap helps a memory-bound update less than a compute-bound one)."""
    state = optimizer.init(params)
    grads = jax.tree.map(lambda p: 0.01 * p, params)
    step = jax.jit(lambda g, s, p: optimizer.update(g, s, p, loss=jnp.float32(1.0)))
    jax.block_until_ready(step(grads, state, params))

    def loop():
        out = (None, state)
        for _ in range(calls):
            out = step(grads, out[1], params)
        return out

    return loop


def update_times(optimizers: dict, params, calls: int, repeats: int) -> dict[str, float]:
    """Seconds per jitted ``update`` call of each optimizer: best of ``repeats`` loops of
    ``calls``, the optimizers taking turns loop by loop, so that a slow phase of a shared machine
    falls on all of them alike and their ratios stay side by side."""
    loops = {name: _update_loop(opt, params, calls) for name, opt in optimizers.items()}
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(repeats):
        for name, loop in loops.items():
            best[name] = min(best[name], best_time(loop, 1))
    return {name: seconds / calls for name, seconds in best.items()}


def update_time(optimizer, params, calls: int, repeats: int) -> float:
    """Seconds per jitted ``update`` call of one optimizer (``update_times``)."""
    return update_times({"it": optimizer}, params, calls, repeats)["it"]


def accumulators_only(decays: tuple[float, ...]) -> optax.GradientTransformationExtraArgs:
    """Only the momenta and second moments a learned optimizer with ``decays`` keeps (its
    output is the first momentum, so the work cannot be optimized away)."""

    def init(params):
        return init_accumulators(params, len(decays))

    def update(grads, state, params=None, **extra):
        del params, extra
        state = update_accumulators(state, grads, decays)
        return state.momentum[0], state

    return optax.GradientTransformationExtraArgs(init, update)


def update_ratios(quick: bool = False) -> dict:
    """Learned update time ÷ Adam update time per architecture and model size."""
    calls, repeats = (5, 2) if quick else (30, 5)
    rows = {}
    for size in SIZES[:2] if quick else SIZES:
        params = mlp_params(size)
        optimizers = {"adam": optax.with_extra_args_support(optax.adam(1e-3))}
        for name, config in ARCHITECTURES.items():
            arch = build_architecture(config)
            optimizers[name] = arch.optimizer(arch.init_theta(jax.random.key(0)))
            optimizers[f"{name}_accumulators"] = accumulators_only(arch.decays)
        times = update_times(optimizers, params, calls, repeats)
        adam = times.pop("adam")
        row = {
            "num_params": int(sum(p.size for p in jax.tree.leaves(params))),
            "adam_ms": 1e3 * adam,
            **{f"{name}_ratio": seconds / adam for name, seconds in times.items()},
        }
        rows[str(size)] = row
    return rows


def es_throughput(peak_gflops: float, quick: bool = False) -> dict:
    """Inner steps/s and GFLOP/s of antithetic ES meta-training ``small`` on ``ES_TASK``."""
    arch = build_architecture(ARCHITECTURES["small"])
    task = get_task(ES_TASK)
    theta = arch.init_theta(jax.random.key(0))
    trunc = TruncationConfig(length=50)
    repeats = 2 if quick else 5
    opt = arch.optimizer(theta)
    state = init_state(task, opt, jax.random.key(0))
    step_flops = flops(jax.jit(lambda s: inner_step(task, opt, s)).lower(state).compile())
    out = {"task": ES_TASK, "particles": 8, "truncation": trunc.length}
    for devices in (1, 2):
        if devices > len(jax.devices()):
            out["devices_2"] = None
            continue
        est = make_estimator("es", arch, task, trunc, num_particles=8, devices=devices)
        start = time.perf_counter()
        # The timed calls start from the state an estimate returns (sharded over the devices),
        # as every outer step of meta-training after a task's first does.
        _, s, _ = jax.block_until_ready(
            est.estimate(theta, est.init(jax.random.key(1)), jax.random.key(2))
        )
        compile_s = time.perf_counter() - start
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        seconds = best_time(lambda est=est, s=s: est.estimate(theta, s, jax.random.key(3)), repeats)
        cores_busy = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
        rate = est.inner_steps_per_estimate / seconds
        out[f"devices_{devices}"] = {
            "inner_steps_per_s": rate,
            "outer_steps_per_s": 1 / seconds,
            "first_call_s": compile_s,
            "gflop_per_s": rate * step_flops / 1e9,
            "fraction_of_peak": rate * step_flops / 1e9 / peak_gflops,
            # CPU seconds of every thread of the process per wall second while timing: how
            # many cores the estimate keeps busy (XLA already spreads one device's work).
            "cores_busy": cores_busy,
        }
    if out.get("devices_2"):
        out["device_speedup"] = (
            out["devices_2"]["inner_steps_per_s"] / out["devices_1"]["inner_steps_per_s"]
        )
    return out
