"""Outer training (``lopt meta-train``): estimate meta-gradients on a bank of sampled tasks and
apply them to θ with an optax outer optimizer; checkpoint atomically and resume exactly.

Metz et al. 2020 (arXiv 2009.11243): antithetic truncated ES on many sampled tasks, outer Adam
with per-weight clipping of the meta-gradient at 0.1, a normalized outer-validation meta-loss.

Run directory: ``config.json``, ``metrics.jsonl`` (one line per outer step, plus validation
lines), ``checkpoint.safetensors`` (+ ``checkpoint-prev``; ``lopt.meta.rundir``), ``best.*``
(the best θ by outer-validation), ``optimizer.*`` (θ where the run last stopped), and PNG plots.
Everything is a function of the config and the outer step, so a run killed at any moment and
re-run on its directory continues from its last checkpoint to the same θ as an uninterrupted
run.
"""

from __future__ import annotations

import math
import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from rich.console import Console

from lopt.errors import CheckpointError, LoptError
from lopt.learned.io import build_architecture, save_optimizer, warm_start_theta
from lopt.meta.augment import scaled_task
from lopt.meta.backend import Backend, InProcess
from lopt.meta.config import MetaTrainConfig
from lopt.meta.estimators import Estimator, make_estimator
from lopt.meta.plots import plot_run
from lopt.meta.rundir import has_checkpoint, load_config, save_checkpoint, truncate_jsonl
from lopt.meta.runloop import check_devices, resume, run_outer_steps
from lopt.meta.validation import Validator
from lopt.runtime.mappings import check_mapping_headroom, release_compiled_programs
from lopt.runtime.stopping import stop_on_signals
from lopt.storage.files import to_json
from lopt.storage.lock import exclusive
from lopt.tasks.registry import get_family


def bank_generation(cfg: MetaTrainConfig, step: int) -> int:
    """Which bank outer step ``step`` trains on (always 0 without ``bank_refresh``)."""
    return step // cfg.bank_refresh if cfg.bank_refresh else 0


def bank_tasks(cfg: MetaTrainConfig, generation: int = 0) -> list:
    """The meta-training tasks of bank ``generation``: ``task_bank`` samples, families taken
    round robin, each rescaled as ``parameter_scale`` says; sample numbers continue from one
    bank to the next."""
    n, first = len(cfg.families), generation * cfg.task_bank
    samples = [(cfg.families[i % n], cfg.seed * 100_003 + first + i) for i in range(cfg.task_bank)]
    return [
        scaled_task(get_family(family).sample(sample), cfg.parameter_scale, sample)
        for family, sample in samples
    ]


def bank_estimators(cfg: MetaTrainConfig, devices: int, generation: int = 0) -> list[Estimator]:
    """One estimator per task of a bank, sharding particles over ``devices`` local devices."""
    return _estimators(cfg, bank_tasks(cfg, generation), devices)


def _estimators(cfg: MetaTrainConfig, tasks: list, devices: int) -> list[Estimator]:
    arch, trunc = build_architecture(cfg.architecture), cfg.truncation_config
    mask = cfg.trainable_mask()
    return [
        make_estimator(cfg.estimator, arch, t, trunc, cfg.sigma, cfg.num_particles, devices, mask)
        for t in tasks
    ]


class _Bank(NamedTuple):
    """The tasks outer training visits now, their estimators, and which bank they are."""

    generation: int
    tasks: list
    estimators: list[Estimator]
    first: int  # the number of the bank's first task, counted over the whole run

    @classmethod
    def sample(cls, cfg: MetaTrainConfig, generation: int) -> _Bank:
        tasks = bank_tasks(cfg, generation)
        estimators = _estimators(cfg, tasks, cfg.devices)
        return cls(generation, tasks, estimators, generation * cfg.task_bank)

    def fresh_states(self, base_key: jax.Array) -> list:
        """Each task's estimator state at its first visit (keys numbered over the run)."""
        key = jax.random.fold_in(base_key, 1)
        return [
            e.init(jax.random.fold_in(key, self.first + i)) for i, e in enumerate(self.estimators)
        ]


def make_outer_optimizer(cfg: MetaTrainConfig) -> optax.GradientTransformation:
    base = optax.adam(cfg.outer_lr) if cfg.outer_optimizer == "adam" else optax.sgd(cfg.outer_lr)
    return optax.chain(optax.clip(cfg.outer_clip), base) if cfg.outer_clip > 0 else base


def meta_train(
    run_dir: str | pathlib.Path,
    config: MetaTrainConfig | None = None,
    max_minutes: float | None = None,
    console: Console | None = None,
    backend: Backend | None = None,
) -> dict:
    """Run (or resume) meta-training in ``run_dir``; returns a summary dict.

    SIGINT or SIGTERM finishes the current outer step, saves a checkpoint and θ, then raises
    what the signal would have (``KeyboardInterrupt``; ``SystemExit(143)`` for SIGTERM); a
    second SIGINT raises ``KeyboardInterrupt`` at once.

    Args:
        run_dir: the run directory (created, or resumed when it holds a run).
        config: the config of a new run (``None`` to resume the one in ``run_dir``).
        max_minutes: stop (with a checkpoint) after this much wall time; re-run to continue.
        backend: where estimates are computed: ``InProcess()`` (default) or
            ``lopt.distributed.RayBackend(...)``. Not part of the config: a run may be resumed
            on another backend.
    """
    run_dir = pathlib.Path(run_dir)
    initial_theta = None  # a new run's warm start, read before the run directory is created
    if config is not None and config.init_from and not (run_dir / "config.json").exists():
        initial_theta = _warm_start(config)
    with exclusive(run_dir):
        cfg = load_config(run_dir, config, MetaTrainConfig)
        console, backend = console or Console(), backend or InProcess()
        return _meta_train(run_dir, cfg, max_minutes, console, backend, initial_theta)


def _warm_start(cfg: MetaTrainConfig):
    """θ read from ``cfg.init_from`` for ``cfg``'s architecture (one clear error if it is not)."""
    try:
        return warm_start_theta(cfg.init_from, build_architecture(cfg.architecture))
    except CheckpointError as e:
        raise CheckpointError(f"init_from {cfg.init_from!r}: {e}") from None


def _check_headroom(what: str, checkpoint_now, done: int) -> None:
    """Stop with a checkpoint (at ``done`` outer steps) and one clear error before a compile
    that could exhaust the process's memory mappings (``lopt.runtime.mappings``)."""
    try:
        check_mapping_headroom(f"meta-training stopped before {what}")
    except LoptError as e:
        checkpoint_now(done)
        raise LoptError(f"{e}; the run is checkpointed at outer step {done}") from None


def _meta_train(
    run_dir: pathlib.Path,
    cfg: MetaTrainConfig,
    max_minutes: float | None,
    console: Console,
    backend: Backend,
    initial_theta=None,
) -> dict:
    arch = build_architecture(cfg.architecture)
    check_devices(cfg.devices)
    outer = make_outer_optimizer(cfg)
    base_key = jax.random.key(cfg.seed)
    if initial_theta is not None:
        theta = initial_theta
    elif cfg.init_from is None or has_checkpoint(run_dir):
        # Random θ, or the template of a resumed run's θ (its init_from is no longer read).
        theta = arch.init_theta(jax.random.fold_in(base_key, 0))
    else:  # resumed before its first checkpoint
        theta = _warm_start(cfg)
    opt_state = outer.init(theta)
    bank = _Bank.sample(cfg, 0)

    def state_template(meta: dict) -> dict:  # the checkpoint holds its bank's estimator states
        nonlocal bank
        if meta.get("bank", 0) != bank.generation:
            bank = _Bank.sample(cfg, meta.get("bank", 0))
        return {"theta": theta, "opt_state": opt_state, "est": bank.fresh_states(base_key)}

    restored = resume(run_dir, state_template, console.log)
    start, best, next_estimate = 0, {"score": math.inf, "step": -1}, 0
    if restored is not None:
        state, meta = restored
        start, best = meta["step"], meta["best"]
        next_estimate = meta.get("next_estimate", start)
    else:
        state = {"theta": theta, "opt_state": opt_state, "est": bank.fresh_states(base_key)}
    metrics_path = run_dir / "metrics.jsonl"
    truncate_jsonl(metrics_path, start)

    validator = None
    if cfg.validate_every:
        validator = Validator(
            cfg.validation_tasks,
            cfg.validation_steps,
            cfg.validation_seeds,
            run_dir / "validation_reference.json",
            cfg.seed,
        )

    @jax.jit
    def apply(theta, opt_state, grad):
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)]))
        grad = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grad)
        updates, opt_state = outer.update(grad, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, ~finite

    def checkpoint_now(done: int) -> None:
        metrics_file.flush()
        meta = {"step": done, "best": best, "next_estimate": next_estimate}
        if cfg.bank_refresh:
            meta["bank"] = bank.generation
        save_checkpoint(run_dir, state, meta)

    compiled = set()
    ema = None

    def outer_step(step: int) -> None:
        nonlocal bank, source, next_estimate, ema, best
        if bank_generation(cfg, step) != bank.generation:
            source.close()
            bank = _Bank.sample(cfg, bank_generation(cfg, step))
            state["est"] = bank.fresh_states(base_key)
            compiled.clear()
            release_compiled_programs()
            source = backend.start(cfg, bank.estimators, base_key, next_estimate, bank.generation)
            console.log(f"outer step {step}: a fresh bank of {cfg.task_bank} tasks")
        if step % cfg.task_bank not in compiled:  # a first visit in this process
            _check_headroom(f"outer step {step}", checkpoint_now, step)
        t0 = time.time()
        est = source.next(step, state["theta"], state["est"])
        i, m = est.task, est.metrics
        state["theta"], state["opt_state"], bad_grad = apply(
            state["theta"], state["opt_state"], est.grad
        )
        state["est"][i] = est.state
        next_estimate = max(next_estimate, est.number + 1)
        meta_loss = float(m["meta_loss"])
        dt = time.time() - t0
        rate = bank.estimators[i].inner_steps_per_estimate / dt if i in compiled else float("nan")
        compiled.add(i)
        ema = meta_loss if ema is None else 0.98 * ema + 0.02 * meta_loss
        record = {
            "step": step,
            "task": bank.tasks[i].name,
            "meta_loss": meta_loss,
            "diverged": int(m["diverged"]),
            "bad_grad": bool(bad_grad),
            "inner_steps_per_s": rate,
            "seconds": dt,
            **est.info,
        }
        metrics_file.write(to_json(record) + "\n")
        if (step + 1) % cfg.log_every == 0:
            metrics_file.flush()
            console.log(
                f"step {step + 1}/{cfg.outer_steps}  meta-loss {meta_loss:+.4f} "
                f"(ema {ema:+.4f})  diverged {int(m['diverged'])}  "
                f"inner steps/s {rate:,.0f}  task {bank.tasks[i].name[:48]}"
            )
        done = step + 1
        if validator is not None and done % cfg.validate_every == 0:
            _check_headroom(f"validation at outer step {done}", checkpoint_now, done)
            v = validator.score(arch, state["theta"])
            metrics_file.write(to_json({"step": step, "validation": v}) + "\n")
            console.log(
                f"validation at {done}: score {v['score']:.4f} (tuned Adam {v['adam_tuned']:.4f})"
            )
            if v["score"] < best["score"]:
                best = {"score": v["score"], "step": done}
                info = {"outer_step": done, "validation": v}
                save_optimizer(run_dir / "best", arch, state["theta"], info)

    t_begin = time.time()
    source = backend.start(cfg, bank.estimators, base_key, next_estimate, bank.generation)
    with metrics_path.open("a") as metrics_file, stop_on_signals() as stop:
        try:
            reached = run_outer_steps(
                start,
                cfg,
                outer_step,
                checkpoint_now,
                stop,
                t_begin,
                max_minutes,
                console.log,
                metrics_file.flush,
            )
        finally:
            source.close()
    finished = reached >= cfg.outer_steps
    info = {"outer_step": reached, "finished": finished}
    save_optimizer(run_dir / "optimizer", arch, state["theta"], info)
    plot_run(run_dir)
    stop.reraise()
    return {"run_dir": str(run_dir), "finished": finished, "best": best, "theta": state["theta"]}
