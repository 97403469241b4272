"""Inner training: train any Task with any optax optimizer inside ``lax.scan``.

The loop is chunked: a scan over evaluation points, each a scan over steps, so learning curves
are recorded without a Python call per step. Everything is a pure function of its inputs, so
``jax.vmap`` batches it over seeds and over hyperparameters — tuning 14 learning rates is one
vmapped program::

    curves = jax.jit(jax.vmap(lambda lr: train(task, optax.adam(lr), key, 1000)[1]))(lrs)

Every step passes ``loss=`` (the minibatch training loss), ``valid_loss=`` (the most recent
inner-validation minibatch loss, refreshed every ``valid_every`` steps), ``horizon=`` (the run's
total number of steps; 0 if unknown) and ``batch=`` (the minibatch itself) as optax extra
arguments; hand-designed optimizers ignore them, learned optimizers use the losses and the
horizon as features, and HUB's selection mode evaluates candidates on ``batch``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.errors import LoptError, check_count
from lopt.tasks.base import Task
from lopt.tasks.datasets import SPLITS

EVAL_SPLITS = SPLITS  # full-batch evaluation of every split at each evaluation point


class InnerState(NamedTuple):
    """State of one inner training run (a pytree; vmappable)."""

    params: Any
    opt_state: Any
    key: jax.Array
    valid_loss: jax.Array  # latest inner-validation minibatch loss (scalar)
    step: jax.Array  # int32 scalar
    horizon: jax.Array  # int32 scalar: the run's total number of steps (0: unknown)


class Curves(NamedTuple):
    """Learning curves of one run. ``E = num_steps // eval_every + 1`` evaluation points.

    Attributes:
        step: ``(E,)`` step at each evaluation point (0 first).
        train_minibatch: ``(E,)`` mean minibatch training loss over the preceding chunk (at step
            0: the loss on the train evaluation batch).
        eval: split -> ``(E,)`` loss on that split's fixed evaluation batch.
    """

    step: jax.Array
    train_minibatch: jax.Array
    eval: dict[str, jax.Array]


def as_extra_args(optimizer: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wrap a plain optax transformation so it accepts (and ignores) extra keyword args."""
    return optax.with_extra_args_support(optimizer)


def init_state(task: Task, optimizer, key: jax.Array, horizon=0) -> InnerState:
    """Initialize params and optimizer state; ``key`` seeds params and all minibatches.
    ``horizon``: the run's total number of steps, passed to every update (0: unknown)."""
    init_key, data_key = jax.random.split(key)
    params = task.init(init_key)
    valid = task.loss(params, task.batch(jax.random.fold_in(data_key, 2**31), "inner_valid"))
    step, horizon = jnp.zeros((), jnp.int32), jnp.asarray(horizon, jnp.int32)
    return InnerState(params, optimizer.init(params), data_key, valid, step, horizon)


def inner_step(task: Task, optimizer, state: InnerState) -> tuple[InnerState, jax.Array]:
    """One optimizer step on a fresh training minibatch; returns the new state and its loss."""
    key = jax.random.fold_in(state.key, state.step)
    batch = task.batch(key, "train")
    loss, grads = jax.value_and_grad(task.loss)(state.params, batch)
    updates, opt_state = optimizer.update(
        grads,
        state.opt_state,
        state.params,
        loss=loss,
        valid_loss=state.valid_loss,
        horizon=state.horizon,
        batch=batch,
    )
    params = optax.apply_updates(state.params, updates)
    return state._replace(params=params, opt_state=opt_state, step=state.step + 1), loss


def refresh_valid_loss(task: Task, state: InnerState) -> InnerState:
    """Recompute the inner-validation minibatch loss at the current parameters."""
    key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 1)
    return state._replace(valid_loss=task.loss(state.params, task.batch(key, "inner_valid")))


def run_steps(
    task: Task, optimizer, state: InnerState, num_steps: int, valid_every: int = 10
) -> tuple[InnerState, jax.Array]:
    """``num_steps`` inner steps (a multiple of ``valid_every``); returns ``(state, losses)``.

    ``losses`` is ``(num_steps,)``, the minibatch training loss of every step.
    """
    if num_steps % valid_every:
        raise LoptError(f"num_steps={num_steps} must be a multiple of valid_every={valid_every}")

    def chunk(state, _):
        state = refresh_valid_loss(task, state)
        return jax.lax.scan(lambda s, _: inner_step(task, optimizer, s), state, length=valid_every)

    state, losses = jax.lax.scan(chunk, state, length=num_steps // valid_every)
    return state, losses.reshape(-1)


def eval_losses(task: Task, params) -> dict[str, jax.Array]:
    """Loss of ``params`` on every split's fixed evaluation batch."""
    return {s: task.loss(params, task.eval_batch(s)) for s in EVAL_SPLITS}


def default_eval_every(num_steps: int, valid_every: int = 10) -> int:
    """About 20 evaluation points: ``num_steps // 20`` rounded down to a multiple of
    ``valid_every`` (at least ``valid_every``)."""
    return max(valid_every, (num_steps // 20) // valid_every * valid_every)


def check_schedule(num_steps: int, eval_every: int, valid_every: int) -> None:
    """Validate step counts with one clear message."""
    for field, value in (("num_steps", num_steps), ("eval_every", eval_every)):
        check_count(field, value)
    if num_steps % eval_every or eval_every % valid_every:
        raise LoptError(
            f"num_steps={num_steps} must be a multiple of eval_every={eval_every}, "
            f"itself a multiple of valid_every={valid_every}"
        )


def train(
    task: Task,
    optimizer,
    key: jax.Array,
    num_steps: int,
    eval_every: int | None = None,
    valid_every: int = 10,
) -> tuple[Any, Curves]:
    """Train ``task`` from a fresh init for ``num_steps`` steps; returns ``(params, curves)``.

    Args:
        task: the problem.
        optimizer: any optax transformation (learned ones receive ``loss=``/``valid_loss=``
            and ``horizon=num_steps``).
        key: PRNG key for initialization and every minibatch.
        num_steps: number of optimizer steps (static).
        eval_every: steps between evaluation points (static; default ``num_steps // 20``).
        valid_every: steps between refreshes of the ``valid_loss`` extra argument.
    """
    if eval_every is None:
        eval_every = default_eval_every(num_steps, valid_every)
    check_schedule(num_steps, eval_every, valid_every)
    optimizer = (
        optimizer
        if isinstance(optimizer, optax.GradientTransformationExtraArgs)
        else as_extra_args(optimizer)
    )
    state = init_state(task, optimizer, key, num_steps)

    def segment(state, _):
        state, losses = run_steps(task, optimizer, state, eval_every, valid_every)
        return state, (jnp.mean(losses), eval_losses(task, state.params))

    first = eval_losses(task, state.params)
    state, (train_mb, evals) = jax.lax.scan(segment, state, length=num_steps // eval_every)
    curves = Curves(
        step=jnp.arange(num_steps // eval_every + 1) * eval_every,
        train_minibatch=jnp.concatenate([first["train"][None], train_mb]),
        eval={s: jnp.concatenate([first[s][None], evals[s]]) for s in EVAL_SPLITS},
    )
    return state.params, curves
