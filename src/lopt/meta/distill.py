"""Distillation: fit a ``fast`` learned optimizer's updates to another optimizer's.

The teacher (any optax transformation; for lopt's shipped ``small``, the previous learned
optimizer) trains a task as it would on its own, and along *its* trajectory the student's
statistics are kept too (``FastOptimizer.step_inputs``: accumulators, loss statistics — none of
them depends on θ). A sample of steps is recorded; the student's θ is then fitted by supervised
regression of its updates on the teacher's, step by step (teacher forcing): minutes of compute
where evolution strategies take hours, a start that ES can fine-tune.

The loss of one recorded step is the mean over tensors of the relative squared error
``‖u_student − u_teacher‖² / (‖u_teacher‖² + n·δ²)`` (``δ = TINY_STEP``), so every tensor
counts alike whatever its size or step scale.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.errors import LoptError
from lopt.inner import init_state, refresh_valid_loss
from lopt.learned.fast import FastOptimizer, FastState, StepInputs
from lopt.learned.guard import nonempty_float32
from lopt.storage import checkpoint
from lopt.tasks.base import Task

TINY_STEP = 1e-7  # a teacher update this small per entry counts as (about) zero
VALID_EVERY = 10  # steps between refreshes of the validation loss the optimizers read


class Records(NamedTuple):
    """Recorded steps of one task, stacked over a leading axis of ``R`` records.

    Attributes:
        inputs: the student's ``StepInputs`` at each recorded step.
        target: the teacher's float32 updates there, a list of ``(R, *param.shape)``.
    """

    inputs: StepInputs
    target: list


def record(
    task: Task,
    teacher: optax.GradientTransformationExtraArgs,
    student: FastOptimizer,
    key: jax.Array,
    num_steps: int,
    num_records: int,
) -> Records:
    """Train ``task`` with ``teacher`` for ``num_steps`` (the horizon it is told) and record the
    student's inputs and the teacher's update at ``num_records`` evenly spaced steps.

    ``num_steps`` must be a multiple of ``num_records``, and ``num_steps // num_records`` of
    ``VALID_EVERY``.
    """
    every = num_steps // num_records if num_records else 0
    if num_records < 1 or num_steps % num_records or every % VALID_EVERY:
        raise LoptError(
            f"cannot record {num_records} steps of {num_steps}: num_steps must be a multiple "
            f"of num_records, and num_steps // num_records of {VALID_EVERY}"
        )
    state = init_state(task, teacher, key, num_steps)
    fresh = student.optimizer(student.init_theta(jax.random.key(0)))
    student_state = fresh.init(state.params)

    def step(carry):
        inner, stats = carry
        batch = task.batch(jax.random.fold_in(inner.key, inner.step), "train")
        loss, grads = jax.value_and_grad(task.loss)(inner.params, batch)
        extra = {"loss": loss, "valid_loss": inner.valid_loss, "horizon": inner.horizon}
        updates, opt_state = teacher.update(grads, inner.opt_state, inner.params, **extra)
        inputs = student.step_inputs(
            nonempty_float32(grads), stats, nonempty_float32(inner.params), **extra
        )
        params = optax.apply_updates(inner.params, updates)
        inner = inner._replace(params=params, opt_state=opt_state, step=inner.step + 1)
        return (inner, advance(stats, inputs, grads)), (inputs, updates)

    def chunk(carry, _):
        inner, stats = carry
        inner = jax.lax.fori_loop(
            0,
            every - 1,
            lambda i, c: step(_refreshed(task, c, i))[0],
            (inner, stats),
        )
        carry, (inputs, updates) = step(inner)
        target = [u.astype(jnp.float32) for u in jax.tree.leaves(updates)]
        return carry, (inputs, target)

    _, (inputs, target) = jax.lax.scan(chunk, (state, student_state), length=num_records)
    return Records(inputs, target)


def _refreshed(task: Task, carry, i):
    inner, stats = carry
    inner = jax.lax.cond(
        i % VALID_EVERY == 0, lambda s: refresh_valid_loss(task, s), lambda s: s, inner
    )
    return inner, stats


def advance(state: FastState, inputs: StepInputs, grads) -> FastState:
    """The student's state after a step with ``inputs`` (its LSTM state and adapted log steps,
    if any, unchanged)."""
    treedef = jax.tree.structure(nonempty_float32(grads))
    as_tree = lambda xs: jax.tree.unflatten(treedef, xs)
    return state._replace(
        momentum_fast=as_tree(inputs.m_fast),
        momentum_slow=as_tree(inputs.m_slow),
        second_moment=as_tree(inputs.v),
        count=inputs.count,
        loss=inputs.loss_stats,
        initial_rms=inputs.initial_rms,
    )


def distill_loss(student: FastOptimizer, theta, records: Records) -> jax.Array:
    """Mean over records and tensors of the relative squared error of the student's updates."""

    def one(inputs: StepInputs, target: list) -> jax.Array:
        n = len(target)
        zeros = jnp.zeros((n, student.lstm_hidden), jnp.float32)
        updates = student.updates(theta, inputs, zeros, zeros)[0]
        return jnp.mean(
            jnp.stack([tensor_error(u, t) for u, t in zip(updates, target, strict=True)])
        )

    return jnp.mean(jax.vmap(one)(records.inputs, records.target))


def tensor_error(update: jax.Array, target: jax.Array) -> jax.Array:
    """How far one tensor's update is from the teacher's: the squared difference of their log
    RMS (the step size) plus one minus their cosine (the direction)."""
    size = max(target.size, 1)
    su, st = jnp.sum(update * update), jnp.sum(target * target)
    log_rms = 0.5 * (jnp.log(su / size + TINY_STEP**2) - jnp.log(st / size + TINY_STEP**2))
    cosine = jnp.sum(update * target) / jnp.sqrt(su * st + TINY_STEP**4)
    return jnp.square(log_rms) + 1.0 - cosine


def fit(
    student: FastOptimizer,
    theta,
    banks: list[Records],
    num_steps: int,
    key: jax.Array,
    learning_rate: float = 3e-3,
    batch_size: int = 16,
    on_step: Callable[[int, float], Any] | None = None,
):
    """Fit θ to the recorded banks (one task's records each) by Adam on ``distill_loss``: each
    step takes ``batch_size`` records of one bank, the banks in turn.

    Returns:
        ``(theta, losses)``: the fitted θ and the minibatch loss of every step, ``(num_steps,)``.
    """
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(theta)
    sizes = [int(jax.tree.leaves(b.target)[0].shape[0]) for b in banks]

    @jax.jit
    def train_step(theta, opt_state, bank: Records, index):
        batch = jax.tree.map(lambda x: x[index], bank)
        loss, grads = jax.value_and_grad(lambda t: distill_loss(student, t, batch))(theta)
        updates, opt_state = optimizer.update(grads, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, loss

    losses = np.zeros(num_steps, np.float32)
    for i in range(num_steps):
        b = i % len(banks)
        index = jax.random.randint(jax.random.fold_in(key, i), (batch_size,), 0, sizes[b])
        theta, opt_state, loss = train_step(theta, opt_state, banks[b], index)
        losses[i] = float(loss)
        if on_step is not None:
            on_step(i, losses[i])
    return theta, losses


def distill_optimizer(
    teacher: optax.GradientTransformationExtraArgs,
    student: FastOptimizer,
    tasks: list[Task],
    horizons: tuple[int, ...],
    records_per_run: int,
    fit_steps: int,
    key: jax.Array,
    records_dir: str | os.PathLike | None = None,
    on_progress: Callable[[str], Any] | None = None,
):
    """Record the teacher on every task at every horizon, then fit the student from a fresh θ.

    Args:
        records_dir: keep each task's records there as they are made
            (``<task index>-<horizon>.safetensors``) and reuse those found on a re-run, so an
            interrupted distillation resumes where it was.

    Returns:
        ``(theta, losses)`` as ``fit`` returns them.
    """
    say = on_progress or (lambda message: None)
    record_key, init_key, fit_key = jax.random.split(key, 3)
    banks = []
    for i, task in enumerate(tasks):
        for horizon in horizons:
            run = jax.jit(
                lambda k, task=task, horizon=horizon: record(
                    task, teacher, student, k, horizon, records_per_run
                )
            )
            run_key = jax.random.fold_in(record_key, len(banks))
            path = None if records_dir is None else pathlib.Path(records_dir)
            path = None if path is None else path / f"{i:03d}-{horizon}.safetensors"
            if path is not None and path.exists():
                template = jax.tree.map(
                    lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(run, run_key)
                )
                bank, _ = checkpoint.load_file(path, template)
            else:
                bank = jax.block_until_ready(run(run_key))
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    checkpoint.save_file(path, bank, {"task": task.name, "horizon": horizon})
            banks.append(bank)
        say(f"recorded {task.name} ({i + 1}/{len(tasks)})")
    theta = student.init_theta(init_key)
    report = lambda i, loss: (
        say(f"fit step {i + 1}/{fit_steps}: loss {loss:.4f}") if ((i + 1) % 100 == 0) else None
    )
    return fit(student, theta, banks, fit_steps, fit_key, on_step=report)
