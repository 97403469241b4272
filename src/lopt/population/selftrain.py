"""Self-training from scratch (``lopt self-train``): a population of randomly initialized learned
optimizers trains itself, orchestrated by PBT, with no hand-designed optimizer anywhere.

Metz et al. 2021, "Training learned optimizers with randomly initialized learned optimizers"
(arXiv 2101.07367). Each outer step, every member estimates its meta-gradient (ES/PES from
``lopt.meta.estimators``, the same task for all members, its own particles and noise) and a
learned optimizer applies it (``lopt.population.outer``); the members are vmapped and sharded
over local devices. Every ``pbt_every`` steps the population is scored on outer-validation tasks
and the worst members copy better ones (``lopt.population.pbt``). With a learned outer
optimizer the whole run executes inside ``no_hand_designed_optimizers()``.

Run directory: ``config.json``; ``metrics.jsonl`` (per outer step: every member's meta-loss,
best, median, wall-clock; per validation: every member's score); ``lineage.jsonl`` (who copied
whom, when); ``checkpoint.safetensors`` and ``checkpoint-prev.safetensors`` (the whole
population, for exact resume; ``lopt.meta.rundir``); ``members/member-<slot>.*`` (each
member's θ as a saved optimizer, with its latest score; a fresh copy carries its parent's);
``best.*`` (the best member at the latest validation, what ``lopt eval``/``lopt.load`` pick
up); ``summary.json`` (the feedback-loop numbers) and PNG plots. Everything is a function of
the config and the outer step, so an interrupted run re-run on its directory reaches the same
population, bit for bit, as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console

from lopt.learned.io import build_architecture, save_optimizer
from lopt.meta.estimators import make_estimator
from lopt.meta.outer import bank_tasks
from lopt.meta.rundir import load_config, save_checkpoint, truncate_jsonl
from lopt.meta.runloop import check_devices, resume, run_outer_steps
from lopt.population import outer, pbt
from lopt.population.config import LEARNED_OUTER, PopulationConfig
from lopt.population.feedback import feedback_summary
from lopt.population.guard import no_hand_designed_optimizers
from lopt.population.lopt_task import LearnedOptimizerFamily
from lopt.population.plots import plot_population
from lopt.population.scoring import MemberScorer
from lopt.population.vectorize import over_members
from lopt.runtime.stopping import stop_on_signals
from lopt.storage.files import remove_stale_temporaries, to_json, write_atomically
from lopt.storage.lock import exclusive

# Independent PRNG streams, each folded with the outer step.
INIT, ESTIMATOR_INIT, ESTIMATE, CONTROL, PBT_PLAN, PBT_EXPLORE = range(6)


def self_train(
    run_dir: str | pathlib.Path,
    config: PopulationConfig | None = None,
    max_minutes: float | None = None,
    console: Console | None = None,
    members=None,
) -> dict:
    """Run (or resume) self-training in ``run_dir``; returns a summary dict.

    Args:
        run_dir: the run directory (created, or resumed when it holds a run).
        config: the config of a new run (``None`` to resume the one in ``run_dir``).
        max_minutes: stop (with a checkpoint) after this much wall time; re-run to continue.
            SIGINT/SIGTERM also stop with a checkpoint, then raise as ``meta_train`` does.
        members: where the members' estimates are computed: ``None`` (this process, vmapped
            and sharded over ``devices``) or ``lopt.distributed.RayMembers(...)`` (Ray actors,
            each a slice of the members).
    """
    run_dir = pathlib.Path(run_dir)
    console = console or Console()
    with exclusive(run_dir):
        cfg = load_config(run_dir, config, PopulationConfig)
        remove_stale_temporaries(run_dir / "members")
        learned = cfg.outer in LEARNED_OUTER
        with no_hand_designed_optimizers() if learned else contextlib.nullcontext():
            return _self_train(run_dir, cfg, max_minutes, console, members)


def _initial_state(cfg: PopulationConfig, arch, rule, estimators) -> dict:
    base = jax.random.key(cfg.seed)
    stream = lambda s: jax.random.split(jax.random.fold_in(base, s), cfg.population)
    thetas = jax.vmap(arch.init_theta)(stream(INIT))
    est_keys = stream(ESTIMATOR_INIT)
    return {
        "thetas": thetas,
        "outer_state": jax.vmap(rule.init)(thetas),
        "hyper": outer.initial_hyperparameters(cfg),
        "est": [
            jax.vmap(e.init)(jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(est_keys))
            for i, e in enumerate(estimators)
        ],
        "scores": jnp.full((cfg.population,), jnp.inf, jnp.float32),
        "member_id": jnp.arange(cfg.population, dtype=jnp.int32),
        "next_id": jnp.asarray(cfg.population, jnp.int32),
        **({"best_theta": jax.tree.map(lambda x: x[0], thetas)} if cfg.outer == "best" else {}),
    }


def _remember_best(state: dict) -> None:
    """With ``outer: best``: keep the θ of the best-scoring member as of this validation."""
    if "best_theta" in state:
        scores = np.asarray(state["scores"])
        best = int(np.argmin(np.where(np.isfinite(scores), scores, np.inf)))
        state["best_theta"] = jax.tree.map(lambda x: x[best], state["thetas"])


def _step_key(cfg: PopulationConfig, stream: int, step: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.seed), stream), step)


def provenance(cfg: PopulationConfig) -> dict:
    """What every optimizer a run saves records of how it was made: who applied the
    meta-gradients, whether the run executed inside the hand-designed-optimizer guard, and the
    run's config (its recipe, with ``lopt self-train --config``)."""
    return {
        "made_by": "lopt self-train",
        "outer": cfg.outer,
        "hand_designed_optimizer_guard": cfg.outer in LEARNED_OUTER,
        "self_train_config": cfg.to_dict(),
    }


def _save_members(run_dir: pathlib.Path, cfg, arch, state: dict, done: int) -> None:
    ids, scores = np.asarray(state["member_id"]), np.asarray(state["scores"])
    for slot in range(len(ids)):
        theta = jax.tree.map(lambda x, s=slot: x[s], state["thetas"])
        info = {"outer_step": done, "member": int(ids[slot]), "score": float(scores[slot])}
        save_optimizer(run_dir / "members" / f"member-{slot}", arch, theta, info | provenance(cfg))


def population_estimators(cfg: PopulationConfig) -> tuple[list, list]:
    """The task bank (meta-training tasks, then learned-optimizer tasks) and an estimator each."""
    arch = build_architecture(cfg.architecture)
    member_cfg = cfg.member_config
    trunc = member_cfg.truncation_config
    tasks = bank_tasks(member_cfg) + [
        LearnedOptimizerFamily().sample(cfg.seed * 100_003 + 50_000 + i)
        for i in range(cfg.learned_optimizer_tasks)
    ]
    estimators = [
        make_estimator(cfg.estimator, arch, t, trunc, cfg.sigma, cfg.num_particles) for t in tasks
    ]
    return tasks, estimators


def _self_train(run_dir, cfg: PopulationConfig, max_minutes, console: Console, members) -> dict:
    arch = build_architecture(cfg.architecture)
    check_devices(cfg.devices)
    trunc = cfg.member_config.truncation_config
    tasks, estimators = population_estimators(cfg)
    if members is None:
        population_estimate = [
            over_members(e.estimate, 4, cfg.devices, shared=(3,)) for e in estimators
        ]
    else:
        population_estimate = members.estimates(cfg, len(estimators))
    rule = outer.make_rule(cfg, arch)
    apply_updates = over_members(rule.update, 5, cfg.devices)
    scorer = MemberScorer(
        arch,
        cfg.validation_tasks,
        cfg.validation_steps,
        cfg.validation_seeds,
        cfg.seed,
        cfg.devices,
        trunc.max_normalized,
    )

    state = _initial_state(cfg, arch, rule, estimators)
    restored = resume(run_dir, state, console.log)
    start, wall0 = 0, 0.0
    if restored is not None:
        state, meta = restored
        start, wall0 = meta["step"], meta["wall"]
    metrics_path, lineage_path = run_dir / "metrics.jsonl", run_dir / "lineage.jsonl"
    # Records carry the number of outer steps done; those after the checkpoint are recomputed.
    keep_below = start + 1 if restored is not None else 0
    truncate_jsonl(metrics_path, keep_below)
    truncate_jsonl(lineage_path, keep_below)

    t_begin = time.time()
    wall = lambda: wall0 + time.time() - t_begin

    def validate(done: int, metrics_file) -> np.ndarray:
        """Score the population, log it, save the best member as ``best.*``."""
        scores, per_task = scorer(state["thetas"])
        best = int(np.argmin(scores))
        record = {
            "step": done,
            "wall": wall(),
            "validation": scores.tolist(),
            "best": float(scores[best]),
            "median": float(np.median(scores)),
            "best_member": int(state["member_id"][best]),
            "per_task": {name: v.tolist() for name, v in per_task.items()},
        }
        metrics_file.write(to_json(record) + "\n")
        metrics_file.flush()
        theta = jax.tree.map(lambda x: x[best], state["thetas"])
        info = {"outer_step": done, "member": record["best_member"], "score": record["best"]}
        save_optimizer(run_dir / "best", arch, theta, info | provenance(cfg))
        console.log(
            f"validation at {done}: best {record['best']:.4f} (member {record['best_member']}) "
            f"median {record['median']:.4f}"
        )
        return scores

    def pbt_round(done: int, lineage_file) -> None:
        parents = pbt.plan(
            _step_key(cfg, PBT_PLAN, done), np.asarray(state["scores"]), cfg.exploit_fraction
        )
        replaced = parents != np.arange(cfg.population)
        records, ids, next_id = pbt.lineage(
            done,
            parents,
            np.asarray(state["scores"]),
            np.asarray(state["member_id"]),
            int(state["next_id"]),
        )
        for key in ("thetas", "outer_state", "hyper", "est", "scores"):
            state[key] = pbt.exploit(state[key], parents)
        k_theta, k_hyper = jax.random.split(_step_key(cfg, PBT_EXPLORE, done))
        state["thetas"] = pbt.explore(k_theta, state["thetas"], replaced, cfg.explore_sigma)
        for name in state["hyper"]:  # Adam's log lr, or a learned outer step's log multiplier
            state["hyper"][name] = pbt.explore_log_scale(
                k_hyper, state["hyper"][name], replaced, cfg.explore_lr_factor
            )
        state["member_id"] = jnp.asarray(ids, jnp.int32)
        state["next_id"] = jnp.asarray(next_id, jnp.int32)
        for record in records:
            lineage_file.write(to_json(record) + "\n")
        lineage_file.flush()

    def outer_step(step: int) -> None:
        i = step % len(tasks)
        t0 = time.time()
        keys = jax.random.split(_step_key(cfg, ESTIMATE, step), cfg.population)
        grads, state["est"][i], m = population_estimate[i](
            state["thetas"], state["est"][i], keys, step / cfg.outer_steps
        )
        applier = outer.appliers(
            cfg,
            _step_key(cfg, CONTROL, step),
            state["thetas"],
            state["hyper"],
            state.get("best_theta"),
        )
        state["thetas"], state["outer_state"], bad = apply_updates(
            applier, state["thetas"], state["outer_state"], grads, m["meta_loss"]
        )
        losses = np.asarray(m["meta_loss"])
        done = step + 1
        record = {
            "step": done,
            "wall": wall(),
            "seconds": time.time() - t0,
            "task": tasks[i].name,
            "meta_loss": losses.tolist(),
            "best": float(np.min(losses)),
            "median": float(np.median(losses)),
            "diverged": int(np.sum(np.asarray(m["diverged"]))),
            "bad_grad": int(np.sum(np.asarray(bad))),
        }
        metrics_file.write(to_json(record) + "\n")
        if done % cfg.log_every == 0:
            metrics_file.flush()
            console.log(
                f"step {done}/{cfg.outer_steps}  meta-loss best {record['best']:+.4f} "
                f"median {record['median']:+.4f}  diverged {record['diverged']}  "
                f"{record['seconds']:.2f}s/step  task {tasks[i].name[:40]}"
            )
        # A PBT round's scores enter the state; a last validation off the PBT schedule only
        # reports, so that extending a run retraces an uninterrupted one.
        if done % cfg.pbt_every == 0:
            state["scores"] = jnp.asarray(validate(done, metrics_file), jnp.float32)
            _remember_best(state)
            pbt_round(done, lineage_file)
        elif done == cfg.outer_steps:
            validate(done, metrics_file)

    def checkpoint(done: int) -> None:
        metrics_file.flush()
        # Members first: a kill while they are written leaves the checkpoint before them, and
        # the resumed run writes them again.
        _save_members(run_dir, cfg, arch, state, done)
        save_checkpoint(run_dir, state, {"step": done, "wall": wall()})

    with (
        metrics_path.open("a") as metrics_file,
        lineage_path.open("a") as lineage_file,
        stop_on_signals() as stop,
    ):
        if restored is None:
            state["scores"] = jnp.asarray(validate(0, metrics_file), jnp.float32)
            _remember_best(state)
        reached = run_outer_steps(
            start,
            cfg,
            outer_step,
            checkpoint,
            stop,
            t_begin,
            max_minutes,
            console.log,
            metrics_file.flush,
        )
    finished = reached >= cfg.outer_steps
    summary = feedback_summary(run_dir)
    write_atomically(run_dir / "summary.json", to_json(summary, indent=2).encode())
    plot_population(run_dir)
    stop.reraise()
    return {"run_dir": str(run_dir), "finished": finished, "outer_step": reached, **summary}
