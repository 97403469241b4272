"""HUB's added cost per training step, against each of its components alone.

A HUB step runs both component optimizers and combines their updates; the selection mode also
evaluates the minibatch loss under both candidates (two extra forward passes). We time whole
training steps (minibatch, forward, backward, optimizer update) inside the scanned loop of
``lopt.inner.run_steps``, after compilation. The four optimizers of a task are timed in
interleaved rounds and each keeps its best round, so load from other jobs on the machine
affects them alike and the ratios are measured side by side.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import optax

from lopt.errors import unknown_name
from lopt.hybrid.config import hand_designed_optimizer, learned_optimizer
from lopt.hybrid.hub import hub
from lopt.inner import init_state, run_steps
from lopt.storage.outputs import write_json
from lopt.tasks import TASKS, get_task

COST_TASKS = ("mlp-digits-32", "mlp-mnist1d-128x128", "conv-digits-8-16", "charlm-prose")


def _compiled_loop(task, optimizer, num_steps: int):
    optimizer = optax.with_extra_args_support(optimizer)
    state = init_state(task, optimizer, jax.random.key(0))
    loop = jax.jit(lambda s: run_steps(task, optimizer, s, num_steps)).lower(state).compile()
    jax.block_until_ready(loop(state))
    return lambda: loop(state)


def step_costs(
    task_name: str,
    learned: str = "small",
    hand_designed: str = "adam@1e-3",
    num_steps: int = 500,
    rounds: int = 3,
) -> dict:
    """Milliseconds per training step of each optimizer on one task, and HUB's ratios.

    Returns:
        ``{"ms_per_step": {label: ms}, "ratios": {"hub / learned": x, ...}}``.
    """
    task = get_task(task_name)
    learned_opt = learned_optimizer(learned)
    hand = hand_designed_optimizer(hand_designed)
    optimizers = {
        hand_designed: hand,
        learned: learned_opt,
        "hub": hub(learned_opt, hand),
        "hub-select": hub(learned_opt, hand, "select", loss_fn=task.loss),
    }
    loops = {label: _compiled_loop(task, opt, num_steps) for label, opt in optimizers.items()}
    best = {label: float("inf") for label in loops}
    for _ in range(rounds):
        for label, loop in loops.items():
            start = time.perf_counter()
            jax.block_until_ready(loop())
            best[label] = min(best[label], time.perf_counter() - start)
    ms = {label: 1e3 * seconds / num_steps for label, seconds in best.items()}
    ratios = {
        f"{h} / {c}": ms[h] / ms[c] for h in ("hub", "hub-select") for c in (learned, hand_designed)
    }
    return {"ms_per_step": ms, "ratios": ratios}


def measure_costs(
    tasks: Sequence[str] = COST_TASKS,
    num_steps: int = 500,
    rounds: int = 3,
    progress: Callable[[str], None] | None = None,
    save: Callable[[dict], object] | None = None,
    **components,
) -> dict:
    """``step_costs`` on every task in ``tasks``; ``components`` are ``learned=``/
    ``hand_designed=`` specs. ``save`` is called with the costs so far after each task, so that
    an interrupted run keeps them."""
    for name in tasks:  # a misspelt name fails before any measurement
        if name not in TASKS:
            raise unknown_name("task", name, TASKS)
    say = progress or (lambda _msg: None)
    out = {}
    for name in tasks:
        say(f"cost {name}")
        out[name] = step_costs(name, num_steps=num_steps, rounds=rounds, **components)
        if save is not None:
            save(out)
    return out


def write_costs(costs: dict, out_dir: str | pathlib.Path) -> pathlib.Path:
    """Write ``costs`` (with JAX version and device) to ``out_dir/cost.json`` atomically;
    returns its path."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cost.json"
    meta = {"jax": jax.__version__, "device": str(jax.devices()[0].device_kind)}
    write_json(path, {"machine": meta, "tasks": costs})
    return path
