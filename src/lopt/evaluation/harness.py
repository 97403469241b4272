"""Compare optimizers on a task set with honestly tuned baselines and normalized loss.

Quality follows Metz et al. 2020 ("Tasks, stability, architecture, and compute", arXiv
2009.11243). Per task, with test curves averaged over seeds:

- ``L0``: the initial test loss (mean over seeds);
- ``L*``: the lowest test loss reached at any evaluation point by any trial of the reference
  baselines (all 14 Adam learning rates, plus the NAdamW trials when they were run);
- ``normalized(L) = (L - L*) / (L0 - L*)``, non-finite values -> 2, clipped to ``[-1, 2]``.

Two numbers per optimizer and task: ``curve``, the mean of the normalized test curve over all
evaluation points (primary: it rewards speed as well as final quality), and ``final``, the
normalized loss at the last point. Tuned baselines select trials on the inner-validation curve
by the same criterion (``selection_score(..., criterion="curve")``) and report test.

Every trial × seed of one optimizer on one task is one vmapped program (``run_trials``)::

    result = evaluate(["quadratic-16"], ["adam-tuned", "sgd@0.1"], 300, 2, jax.random.key(0))
    write_run(result, "runs/eval")      # config.json, results.json, results.md, PNGs
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import time
import zlib
from collections.abc import Sequence

import jax
import numpy as np

import lopt
from lopt.baselines import global_best_index, run_trials, selection_score
from lopt.errors import LoptError, check_count, unknown_name
from lopt.evaluation import plots, report
from lopt.evaluation.baseline_cache import BaselineCache, entry_key
from lopt.evaluation.optimizer_specs import OptimizerSpec, resolve_optimizer
from lopt.evaluation.report import progress_bar, read_results
from lopt.inner import check_schedule, default_eval_every
from lopt.storage.files import write_atomically
from lopt.storage.outputs import check_output_dir
from lopt.tasks import SPLITS, TASKS, get_task

# Always run: normalization needs the Adam grid, and these two are the baselines to beat.
REFERENCE_SPECS = ("adam-tuned", "adam-global")
# Trial grids whose every trial counts towards L* when they were run.
REFERENCE_GRIDS = ("adam-lrs", "nadamw-trials")
GRIDS_DIR = "grids"  # a run directory's finished grid runs, until its results are written
NONFINITE = 2.0  # normalized value of a diverged point
CLIP = (-1.0, 2.0)


def normalized_loss(curve, initial: float, best: float) -> np.ndarray:
    """``(L - L*) / (L0 - L*)`` per point; non-finite -> 2, clipped to ``[-1, 2]``.

    Args:
        curve: ``(E,)`` seed-mean losses.
        initial: ``L0``. best: ``L*`` (``<= L0``).
    """
    curve = np.asarray(curve, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        out = (curve - best) / max(initial - best, 1e-12)
    return np.clip(np.where(np.isfinite(out), out, NONFINITE), *CLIP)


def reference_losses(test_curves: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(L0, L*)`` from the reference grids' test curves, each ``(T, S, E)``."""
    initial = float(np.mean(test_curves[0][0, :, 0]))
    means = np.concatenate([np.mean(c, axis=1).ravel() for c in test_curves])
    finite = means[np.isfinite(means)]
    best = float(finite.min()) if finite.size else initial
    return initial, min(best, initial)


@dataclasses.dataclass(frozen=True)
class Metrics:
    """One optimizer on one task (losses are seed means of the test split)."""

    final_test_loss: float
    normalized_curve: float
    normalized_final: float
    hyperparameters: str


@dataclasses.dataclass
class TaskResult:
    """Everything measured on one task.

    Attributes:
        steps: ``(E,)`` step of every evaluation point.
        curves: label -> split -> ``(S, E)`` loss curves of the selected trial.
        metrics: label -> ``Metrics``.
        seconds: grid id -> wall time of its run (compilation included).
    """

    name: str
    initial_loss: float
    best_loss: float
    steps: np.ndarray
    curves: dict[str, dict[str, np.ndarray]]
    metrics: dict[str, Metrics]
    seconds: dict[str, float]


@dataclasses.dataclass
class EvalResult:
    config: dict
    optimizers: tuple[str, ...]
    tasks: dict[str, TaskResult]

    def summary(self) -> dict[str, dict]:
        """Per optimizer: mean/median normalized curve and final, and wins over each other
        optimizer (tasks where its normalized curve is strictly lower)."""
        out = {}
        for label in self.optimizers:
            curve = [t.metrics[label].normalized_curve for t in self.tasks.values()]
            final = [t.metrics[label].normalized_final for t in self.tasks.values()]
            wins = {
                other: sum(
                    t.metrics[label].normalized_curve < t.metrics[other].normalized_curve
                    for t in self.tasks.values()
                )
                for other in self.optimizers
                if other != label
            }
            out[label] = {
                "mean_curve": float(np.mean(curve)),
                "median_curve": float(np.median(curve)),
                "mean_final": float(np.mean(final)),
                "median_final": float(np.median(final)),
                "wins": wins,
            }
        return out

    def to_json(self) -> dict:
        tasks = {
            name: {
                "initial_test_loss": t.initial_loss,
                "best_test_loss": t.best_loss,
                "seconds": t.seconds,
                "optimizers": {k: dataclasses.asdict(m) for k, m in t.metrics.items()},
            }
            for name, t in self.tasks.items()
        }
        return {"config": self.config, "tasks": tasks, "summary": self.summary()}


def run_config(
    task_names: Sequence[str],
    optimizer_specs: Sequence[str],
    num_steps: int,
    num_seeds: int,
    key: jax.Array,
    eval_every: int | None = None,
) -> dict:
    """The JSON config of an evaluation (validated); equal configs give equal results."""
    return _resolved_config(task_names, optimizer_specs, num_steps, num_seeds, key, eval_every)[0]


def _resolved_config(
    task_names, optimizer_specs, num_steps, num_seeds, key, eval_every
) -> tuple[dict, list[OptimizerSpec]]:
    """``run_config`` and the resolved spec of each of its ``"optimizers"``, in order (each
    learned optimizer is loaded and hashed once per evaluation)."""
    for name in task_names:
        if name not in TASKS:
            raise unknown_name("task", name, TASKS)
    if not task_names:
        raise LoptError("no tasks given (expected a task set or task names)")
    for field, value in (("steps", num_steps), ("seeds", num_seeds)):
        check_count(field, value)
    eval_every = default_eval_every(num_steps) if eval_every is None else eval_every
    check_schedule(num_steps, eval_every, 10)
    resolved = [resolve_optimizer(s) for s in optimizer_specs]
    config = {
        "tasks": list(task_names),
        "optimizers": list(dict.fromkeys([*(r.label for r in resolved), *REFERENCE_SPECS])),
        "steps": num_steps,
        "seeds": num_seeds,
        "eval_every": eval_every,
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "lopt_version": lopt.__version__,
    }
    # Which weights each learned optimizer had: retrained weights make another evaluation.
    weights = {r.label: r.weights_sha256 for r in resolved if r.weights_sha256}
    if weights:
        config["learned_sha256"] = weights
    by_label = {r.label: r for r in resolved}
    specs = [by_label.get(label) or resolve_optimizer(label) for label in config["optimizers"]]
    return config, specs


def task_key(key: jax.Array, name: str) -> jax.Array:
    """Per-task key from the task's name, so a task's numbers do not depend on the set."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def evaluate(
    task_names: Sequence[str],
    optimizer_specs: Sequence[str],
    num_steps: int,
    num_seeds: int,
    key: jax.Array,
    eval_every: int | None = None,
    progress: bool = True,
    baseline_cache: BaselineCache | None = None,
) -> EvalResult:
    """Train every optimizer on every task (``num_seeds`` seeds) and compute the metrics.

    ``adam-tuned`` and ``adam-global`` are always included. All optimizers on a task share
    its seeds' keys (common random numbers: same inits, same minibatches). With
    ``baseline_cache``, the runs of the reference grids (Adam's learning rates, NAdamW's
    trials) are reused from it when the same code made them, and stored there otherwise.
    """
    config, specs = _resolved_config(
        task_names, optimizer_specs, num_steps, num_seeds, key, eval_every
    )
    return _evaluate_resolved(config, specs, key, progress, baseline_cache)


def _evaluate_resolved(config, specs, key, progress, baseline_cache, finished=None) -> EvalResult:
    """``evaluate`` of a config from ``_resolved_config``; ``finished`` (a ``BaselineCache`` in
    the run directory) keeps every grid's run as it finishes and gives back those an
    interrupted evaluation of the same config had finished."""
    task_names = config["tasks"]
    grids: dict[str, OptimizerSpec] = {}  # one run per grid (its first spec builds it)
    for spec in specs:
        grids.setdefault(spec.grid, spec)
    runs: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, dict[str, float]] = {}
    steps = None
    with progress_bar(len(task_names) * len(grids), progress) as bar:
        for i, name in enumerate(task_names, 1):
            task = get_task(name)
            runs[name], scores[name], seconds[name] = {}, {}, {}
            for grid, spec in grids.items():
                trials = len(jax.tree.leaves(spec.hparams)[0])
                bar(f"task {i}/{len(task_names)} {name} · {grid} ({trials} trials)")
                cache = baseline_cache if grid in REFERENCE_GRIDS else None
                arrays = _grid_arrays(
                    name, task, spec, task_key(key, name), config, cache, finished
                )
                runs[name][grid] = {s: arrays[s] for s in SPLITS}
                scores[name][grid] = arrays["selection_score"]
                seconds[name][grid] = float(arrays["seconds"])
                steps = arrays["steps"]
    global_choice = {
        g: global_best_index([scores[n][g] for n in task_names])
        for g, s in grids.items()
        if any(x.grid == g and x.select == "global" for x in specs)
    }
    tasks = {}
    for name in task_names:
        refs = [runs[name][g]["test"] for g in REFERENCE_GRIDS if g in runs[name]]
        initial, best = reference_losses(refs)
        curves, metrics = {}, {}
        for spec in specs:
            index = {
                "fixed": 0,
                "task": int(np.argmin(scores[name][spec.grid])),
                "global": global_choice.get(spec.grid, 0),
            }[spec.select]
            curves[spec.label] = {s: c[index] for s, c in runs[name][spec.grid].items()}
            test = curves[spec.label]["test"].mean(axis=0)
            norm = normalized_loss(test, initial, best)
            metrics[spec.label] = Metrics(
                float(test[-1]), float(norm.mean()), float(norm[-1]), spec.describe(index)
            )
        tasks[name] = TaskResult(name, initial, best, steps, curves, metrics, seconds[name])
    return EvalResult(config, tuple(s.label for s in specs), tasks)


def _grid_arrays(name, task, spec, key, config, cache, finished) -> dict:
    """``_run_grid``'s arrays: from ``finished`` (this evaluation's finished runs), else from
    the baseline ``cache``, else run; a new run is stored in both (those that are not None)."""
    arrays = None
    if finished is not None:
        done = entry_key(config=config, task=name, grid=spec.grid)
        arrays = finished.load(done)
        if arrays is not None:
            return arrays
    if cache is not None:
        entry = entry_key(
            task=name,
            grid=spec.grid,
            steps=config["steps"],
            seeds=config["seeds"],
            eval_every=config["eval_every"],
            key=np.asarray(jax.random.key_data(key)).tolist(),
        )
        arrays = cache.load(entry)
    if arrays is None:
        arrays = _run_grid(task, spec, key, config["steps"], config["seeds"], config)
        if cache is not None:
            cache.store(entry, arrays)
    if finished is not None:
        finished.store(done, arrays)
    return arrays


def _run_grid(task, spec: OptimizerSpec, key, num_steps, num_seeds, config) -> dict:
    """Every trial × seed of one grid on one task: the arrays ``evaluate`` keeps (and caches)."""
    start = time.perf_counter()
    curves = run_trials(
        task,
        lambda h: spec.build(h, num_steps),
        spec.hparams,
        key,
        num_steps,
        num_seeds,
        config["eval_every"],
    )
    return {
        **{s: np.asarray(curves.eval[s]) for s in SPLITS},
        "selection_score": np.asarray(selection_score(curves, "inner_valid", "curve")),
        "steps": np.asarray(curves.step[0, 0]),
        "seconds": np.asarray(time.perf_counter() - start),
    }


def write_run(result: EvalResult, out_dir: str | pathlib.Path) -> pathlib.Path:
    """Write ``config.json``, ``results.json``, ``results.md``, ``metrics.jsonl``,
    ``curves.npz``, one learning-curve PNG per task and ``summary.png`` into ``out_dir``."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    (out / "config.json").write_text(json.dumps(result.config, indent=2) + "\n")
    with open(out / "metrics.jsonl", "w") as f:
        for name, task in data["tasks"].items():
            for label, m in task["optimizers"].items():
                f.write(json.dumps({"task": name, "optimizer": label, **m}) + "\n")
    arrays = {
        f"{name}/{label}/{split}": c
        for name, t in result.tasks.items()
        for label, by_split in t.curves.items()
        for split, c in by_split.items()
    }
    np.savez_compressed(out / "curves.npz", **arrays)
    figures = {}
    for name, t in result.tasks.items():
        path = out / plots.curve_filename(name)
        seed_mean = {label: c["test"].mean(axis=0) for label, c in t.curves.items()}
        plots.plot_curves(name, t.steps, seed_mean, t.best_loss, path, result.optimizers)
        figures[name] = path.name
    plots.plot_summary(data["summary"], out / "summary.png")
    (out / "results.md").write_text(report.markdown(data, figures))
    # last, and atomically: a complete results.json marks the evaluation done
    write_atomically(out / "results.json", (json.dumps(data, indent=2) + "\n").encode())
    return out


def evaluate_into(
    out_dir: str | pathlib.Path,
    task_names: Sequence[str],
    optimizer_specs: Sequence[str],
    num_steps: int,
    num_seeds: int,
    key: jax.Array,
    eval_every: int | None = None,
    progress: bool = True,
    baseline_cache: BaselineCache | None = None,
    replace: bool = False,
) -> tuple[dict, bool]:
    """``evaluate`` + ``write_run`` with resume: returns ``(results_json, reused)``.

    If ``out_dir`` already holds results of the same config (same learned weights included)
    they are returned as they are (``reused=True``); results of a different config are an
    error, never overwritten — unless ``replace`` (for directories whose evaluation is derived
    output, such as the demo's), which evaluates again and replaces them. Until the results
    are written, each finished run of a trial grid is kept in ``out_dir/grids/``: an
    interrupted evaluation, re-run with the same config, runs only the grids it had not
    finished.
    """
    config, specs = _resolved_config(
        task_names, optimizer_specs, num_steps, num_seeds, key, eval_every
    )
    out = check_output_dir(out_dir)  # an unusable path fails now, not after the work
    out.mkdir(parents=True, exist_ok=True)
    previous = read_results(out)
    if previous is not None:
        if previous.get("config") == config:
            return previous, True
        old = previous.get("config", {})
        fields = [k for k in sorted({*config, *old}) if config.get(k) != old.get(k)]
        if not replace:
            raise LoptError(
                f"{out_dir} holds results of a different evaluation (differs in: "
                f"{', '.join(fields)}); choose another output directory or remove it"
            )
        # results.json marks a finished evaluation: gone until the new one is written.
        (out / "results.json").unlink()
    finished = BaselineCache(out / GRIDS_DIR)
    result = _evaluate_resolved(config, specs, key, progress, baseline_cache, finished)
    write_run(result, out)
    shutil.rmtree(finished.root, ignore_errors=True)  # the results hold what was kept
    return result.to_json(), False
