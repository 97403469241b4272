"""Truncated inner unrolls for meta-training: particles, resets, and the meta-loss.

A *particle* is one inner training run of a task that meta-training advances a truncation
(``length`` steps) at a time; when it reaches its sampled horizon (or diverges) it restarts from
a fresh initialization. Horizons are drawn per run, so particles desynchronize and truncations
cover the whole inner trajectory (Metz et al. 2020, arXiv 2009.11243, section 4).

Meta-loss of a truncation: the mean over its chunks (one per ``valid_every`` steps, i.e. 5
minibatches for a 50-step truncation) of the task-normalized loss on an ``outer_valid``
minibatch (options: ``train`` minibatch loss, or only the ``last`` chunk), optionally in log
space. Non-finite losses count as ``max_normalized``, so a diverged inner run costs a bounded
amount and never poisons θ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lopt.errors import check_choice, check_range
from lopt.inner import InnerState, init_state, inner_step, refresh_valid_loss
from lopt.tasks.base import Task

META_LOSSES = ("outer_valid", "train", "last")
HORIZON_SCHEDULES = ("uniform", "log-uniform", "growing")
TRANSFORMS = ("log", "linear")


@dataclass(frozen=True)
class TruncationConfig:
    """How inner runs are cut into truncations and scored.

    Attributes:
        length: steps per truncation (a multiple of ``valid_every``).
        min_horizon, max_horizon: range of inner run lengths (in whole truncations).
        schedule: how run lengths are drawn: ``uniform``, ``log-uniform``, or ``growing``
            (uniform up to a cap that grows from min to max over outer training, Metz 2020's
            "increasing truncation" phase).
        valid_every: steps per chunk (one meta-loss evaluation, one ``valid_loss`` refresh).
        meta_loss: ``outer_valid`` (default), ``train`` or ``last``.
        transform: ``log`` (default; scale-free across tasks) or ``linear``.
        max_normalized: normalized loss above this (or non-finite) is clipped to it.
        stagger: draw each particle's first horizon from [length, max_horizon] so particles
            desynchronize (off: every run is aligned, as gradient checks need).
    """

    length: int = 50
    min_horizon: int = 200
    max_horizon: int = 1000
    schedule: str = "uniform"
    valid_every: int = 10
    meta_loss: str = "outer_valid"
    transform: str = "log"
    max_normalized: float = 2.0
    stagger: bool = True

    def __post_init__(self):
        check_range("truncation length", self.length, 1)
        check_range("valid_every", self.valid_every, 1)
        if self.length % self.valid_every:
            check_range("truncation length (a multiple of valid_every)", -1, 0)
        check_range("min_horizon", self.min_horizon, self.length)
        check_range("max_horizon", self.max_horizon, self.min_horizon)
        check_choice("schedule", self.schedule, HORIZON_SCHEDULES)
        check_choice("meta_loss", self.meta_loss, META_LOSSES)
        check_choice("transform", self.transform, TRANSFORMS)
        check_range("max_normalized", self.max_normalized, 1e-3)


class Particle(NamedTuple):
    """One inner run (its state holds the horizon it stops at) and how many runs came before."""

    inner: InnerState
    run: jax.Array  # int32
    key: jax.Array  # this particle's own PRNG key (runs fold in ``run``)


def _sample_horizon(cfg: TruncationConfig, key, low: int, progress=1.0) -> jax.Array:
    """A run length (a multiple of ``length``) per ``cfg.schedule``; ``progress`` in [0, 1]."""
    lo, hi = max(1, low // cfg.length), max(1, cfg.max_horizon // cfg.length)
    if cfg.schedule == "log-uniform":
        u = jax.random.uniform(key, (), minval=jnp.log(lo), maxval=jnp.log(hi + 1))
        n = jnp.clip(jnp.floor(jnp.exp(u)), lo, hi).astype(jnp.int32)
    elif cfg.schedule == "growing":
        top = jnp.floor(lo + jnp.asarray(progress) * (hi - lo)).astype(jnp.int32)
        n = jax.random.randint(key, (), lo, top + 1)
    else:
        n = jax.random.randint(key, (), lo, hi + 1)
    return n * cfg.length


def init_particle(task: Task, optimizer, cfg: TruncationConfig, key: jax.Array) -> Particle:
    """A fresh particle (its first horizon from [length, max_horizon] when staggering)."""
    k_run, k_h = jax.random.split(jax.random.fold_in(key, 0))
    horizon = _sample_horizon(cfg, k_h, cfg.length if cfg.stagger else cfg.min_horizon)
    inner = init_state(task, optimizer, k_run, horizon)
    return Particle(inner, jnp.zeros((), jnp.int32), key)


def all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def restart_if_done(
    task: Task, optimizer, cfg: TruncationConfig, p: Particle, extra_done=False, progress=1.0
):
    """Restart the run (fresh init, new horizon) if it reached its horizon or diverged.

    ``progress`` (outer step ÷ outer steps) drives the ``growing`` horizon schedule.

    Returns ``(particle, restarted)``.
    """
    done = (p.inner.step >= p.inner.horizon) | ~all_finite(p.inner.params) | extra_done
    run = p.run + 1
    k_run, k_h = jax.random.split(jax.random.fold_in(p.key, run))
    horizon = _sample_horizon(cfg, k_h, cfg.min_horizon, progress)
    fresh = Particle(init_state(task, optimizer, k_run, horizon), run, p.key)
    return jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, p), done


def unroll(task: Task, optimizer, cfg: TruncationConfig, inner: InnerState):
    """Advance one truncation; returns ``(inner, chunk_losses)``.

    ``chunk_losses`` is ``(length // valid_every,)`` raw (unnormalized) losses: the
    ``outer_valid`` minibatch loss after each chunk, or the chunk's mean training loss.
    """

    def chunk(state, _):
        state = refresh_valid_loss(task, state)
        state, losses = jax.lax.scan(
            lambda s, _: inner_step(task, optimizer, s), state, length=cfg.valid_every
        )
        if cfg.meta_loss == "train":
            return state, jnp.mean(losses)
        key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 2)
        return state, task.loss(state.params, task.batch(key, "outer_valid"))

    return jax.lax.scan(chunk, inner, length=cfg.length // cfg.valid_every)


def meta_loss(
    task: Task, cfg: TruncationConfig, chunk_losses: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Scalar meta-loss from raw chunk losses; returns ``(meta_loss, diverged)``."""
    normalized = task.normalizer.normalize(chunk_losses)
    diverged = ~jnp.all(jnp.isfinite(normalized))
    normalized = jnp.where(jnp.isfinite(normalized), normalized, cfg.max_normalized)
    normalized = jnp.clip(normalized, 1e-6, cfg.max_normalized)
    if cfg.meta_loss == "last":
        normalized = normalized[-1:]
    values = jnp.log(normalized) if cfg.transform == "log" else normalized
    return jnp.mean(values), diverged
