"""What a whole training step with a learned optimizer costs against one with Adam.

    python benchmarks/train_step.py                                   # small, rnn-mlp
    python benchmarks/train_step.py --optimizer small,rnn-mlp,runs/x/best.safetensors --out t.json

A training step is one jitted call doing the forward and backward pass of a minibatch, the
optimizer's update and its application to the parameters; its time ÷ the same step with
``optax.adam(1e-3)`` is what a learned optimizer costs in a real training run, where the
update's share depends on the model. Measured on each model of a task set (by default
``heldout-large``: 100k–400k parameters, a transformer, a wide MLP, a CNN and a residual MLP)
for each optimizer given — a shipped name (``lopt.pretrained(name, total_steps=1000)``) or the
path of a saved one (``lopt.load(path, total_steps=1000)``), updated with ``loss=`` as
``lopt.inner`` passes it (no ``valid_loss``). The optimizers are timed side by side in one
process, taking turns loop by loop, best of ``--repeats`` loops of ``--calls`` steps each (one
fixed minibatch, parameters and optimizer state carried from step to step), so a slow phase of a
shared machine falls on all of them alike. Prints a markdown table; ``--out`` writes the numbers
as JSON, rewritten as each model finishes.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform

import jax
import optax

import lopt
from lopt.bench.timing import best_time
from lopt.errors import LoptError, check_count, split_names
from lopt.inner import as_extra_args
from lopt.pretrained import SHIPPED
from lopt.storage.outputs import check_output_dir, write_json
from lopt.tasks import Task, get_task, task_names

TOTAL_STEPS = 1000  # the horizon the learned optimizers are told


def learned_optimizer(spec: str) -> optax.GradientTransformationExtraArgs:
    """A shipped optimizer by name, or a saved one by path, told a run of ``TOTAL_STEPS``."""
    if spec in SHIPPED:
        return lopt.pretrained(spec, total_steps=TOTAL_STEPS)
    return lopt.load(spec, total_steps=TOTAL_STEPS)


def step_loop(task: Task, optimizer, calls: int):
    """A function making ``calls`` jitted whole training steps (compiled here, not when timed),
    each continuing from the parameters and optimizer state the last one left."""

    @jax.jit
    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(task.loss)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params, loss=loss)
        return optax.apply_updates(params, updates), opt_state

    params = task.init(jax.random.key(0))
    state = [params, optimizer.init(params)]
    batch = task.batch(jax.random.key(1), "train")
    state[:] = jax.block_until_ready(step(*state, batch))

    def loop():
        for _ in range(calls):
            state[:] = step(*state, batch)
        return state

    return loop


def step_times(task: Task, optimizers: dict, calls: int, repeats: int) -> dict[str, float]:
    """Seconds per training step of ``task`` with each optimizer: best of ``repeats`` loops of
    ``calls`` steps, the optimizers taking turns loop by loop."""
    loops = {name: step_loop(task, opt, calls) for name, opt in optimizers.items()}
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(repeats):
        for name, loop in loops.items():
            best[name] = min(best[name], best_time(loop, 1))
    return {name: seconds / calls for name, seconds in best.items()}


def table(models: dict[str, dict]) -> str:
    """The markdown table of step time ÷ Adam's step time, a row per model."""
    names = list(next(iter(models.values()))["ratio"])
    lines = [
        "| model | params | Adam step (ms) | " + " | ".join(f"{n} ÷ Adam" for n in names) + " |",
        "|---|---:|---:|" + "---:|" * len(names),
    ]
    for model, row in models.items():
        cells = [model, f"{row['num_params']:,}", f"{row['adam_ms']:.2f}"]
        cells += [f"{row['ratio'][n]:.2f}×" for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark with command-line ``argv``; returns what ``--out`` holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="small,rnn-mlp", help="names or paths, commas")
    parser.add_argument("--tasks", default="heldout-large", help="a task set or task names")
    parser.add_argument("--calls", type=int, default=20, help="training steps per timed loop")
    parser.add_argument("--repeats", type=int, default=5, help="timed loops per optimizer")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args(argv)
    check_count("calls", args.calls)
    check_count("repeats", args.repeats)
    out = None if args.out is None else pathlib.Path(args.out)
    if out is not None:
        if out.is_dir():
            raise LoptError(f"cannot write results to {out}: it is a directory; expected a file")
        check_output_dir(out.parent)
    specs = split_names("optimizer", args.optimizer)
    names = task_names(args.tasks)
    optimizers = {"adam": as_extra_args(optax.adam(1e-3))}
    optimizers.update({spec: learned_optimizer(spec) for spec in specs})
    result = {
        "config": {
            "optimizers": list(specs),
            "tasks": list(names),
            "calls": args.calls,
            "repeats": args.repeats,
            "total_steps": TOTAL_STEPS,
            "adam": "adam(1e-3)",
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "devices": [str(d) for d in jax.devices()],
            "jax": jax.__version__,
            "lopt": lopt.__version__,
        },
        "models": {},
        "finished": False,
    }
    for name in names:
        task = get_task(name)
        params = jax.eval_shape(task.init, jax.random.key(0))
        times = step_times(task, optimizers, args.calls, args.repeats)
        adam = times.pop("adam")
        result["models"][name] = {
            "num_params": sum(p.size for p in jax.tree.leaves(params)),
            "adam_ms": 1e3 * adam,
            "ms": {spec: 1e3 * t for spec, t in times.items()},
            "ratio": {spec: t / adam for spec, t in times.items()},
        }
        print(f"{name}: done", flush=True)
        if out is not None:
            write_json(out, result)
    result["finished"] = True
    if out is not None:
        write_json(out, result)
    print(table(result["models"]))
    return result


if __name__ == "__main__":
    main()
