"""The conv tasks' convolution as patches × kernel (lopt's form) against XLA's convolution.

    python benchmarks/conv_as_matmul.py            # as in BENCHMARKS.md

``lopt.tasks.models.ConvNet`` computes each convolution as the input's patches times the
flattened kernel (``conv_as_matmul``). Under ``jax.vmap`` over several sets of weights — a grid
of Adam learning rates, ES particles — JAX batches a convolution into a grouped convolution,
which XLA on CPU runs slowly; the matmul form batches into a batched matmul. Timed side by
side in one process, best of 3 (after compilation), for three ways the conv tasks are run
(through lopt.inner.run_steps, the inner loop of `lopt bench`):
one Adam run (1000 steps), Adam over the 14 learning rates of the tuning grid vmapped (200
steps each), and ES estimates for the shipped ``small`` (8 antithetic pairs, truncation 50).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import lopt.tasks.models as models
from lopt.baselines.tuning import ADAM_LRS
from lopt.bench.learned import ARCHITECTURES
from lopt.bench.timing import best_time
from lopt.inner import as_extra_args, init_state, run_steps
from lopt.learned import build_architecture
from lopt.meta.estimators import make_estimator
from lopt.meta.truncation import TruncationConfig
from lopt.tasks import FAMILIES, get_task

FORMS = {"convolution": lambda conv, x: conv(x), "patches @ kernel": models.conv_as_matmul}
TASKS = {
    "conv-digits-8-16": lambda: get_task("conv-digits-8-16"),
    "conv-mnist1d-8-16": lambda: get_task("conv-mnist1d-8-16"),
    "conv-mnist1d-16": lambda: get_task("conv-mnist1d-16"),
    "conv-breast_cancer (sample 0)": lambda: FAMILIES["conv-breast_cancer"].sample(0),
}


def adam_run(task, num_steps: int):
    """``(lr, key) -> losses``: one Adam run of ``num_steps`` on ``task`` (lopt's inner loop)."""

    def run(lr, key):
        optimizer = as_extra_args(optax.adam(lr))
        return run_steps(task, optimizer, init_state(task, optimizer, key), num_steps)[1]

    return run


def rates(task) -> dict[str, float]:
    """Steps per second of the three workloads on ``task`` with the current convolution."""
    key = jax.random.key(0)
    single = jax.jit(lambda k: adam_run(task, 1000)(1e-3, k))
    grid = jax.jit(jax.vmap(lambda lr, k: adam_run(task, 200)(lr, k), in_axes=(0, None)))
    lrs = jnp.asarray(ADAM_LRS, jnp.float32)
    arch = build_architecture(ARCHITECTURES["small"])
    theta = arch.init_theta(key)
    estimator = make_estimator("es", arch, task, TruncationConfig(length=50), num_particles=8)
    state = estimator.init(key)
    work = {
        "one Adam run": (lambda: single(key), 1000),
        "Adam grid (vmap)": (lambda: grid(lrs, key), 200 * len(ADAM_LRS)),
        "ES estimate": (
            lambda: estimator.estimate(theta, state, key),
            estimator.inner_steps_per_estimate,
        ),
    }
    out = {}
    for name, (fn, steps) in work.items():
        jax.block_until_ready(fn())
        out[name] = steps / best_time(fn, 3)
    return out


def main() -> None:
    print("task | workload | " + " | ".join(f"{f} steps/s" for f in FORMS) + " | speedup")
    for task_name, make_task in TASKS.items():
        task = make_task()
        measured = {}
        for form_name, form in FORMS.items():
            models.conv_as_matmul = form  # looked up when the model is traced
            measured[form_name] = rates(task)
        models.conv_as_matmul = FORMS["patches @ kernel"]
        conv, matmul = measured.values()
        for workload in conv:
            print(
                f"{task_name} | {workload} | {conv[workload]:,.0f} | {matmul[workload]:,.0f} | "
                f"{matmul[workload] / conv[workload]:.2f}×",
                flush=True,
            )


if __name__ == "__main__":
    main()
