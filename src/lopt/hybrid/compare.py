"""``lopt hub``: HUB against the learned optimizer alone and lr-tuned Adam, AdamW, SGD-momentum.

Dai et al. 2023 (arXiv 2305.16823) report that HUB has a lower test loss than every
hyperparameter-tuned competitor on 94% of 17 tasks. Here, per task and with common random
numbers (every optimizer sees the same seeds' initializations and minibatches):

- Adam, AdamW and SGD with momentum 0.9 each run a grid of log-spaced learning rates
  (``lr_grid``: the 14 of ``ADAM_LRS`` by default); the learning rate with the lowest final
  inner-validation loss (mean over seeds) is selected and its test loss reported;
- the learned optimizer alone and the two HUB modes run untuned (HUB's hand-designed component
  has a fixed learning rate; on fine-tuning tasks the weighting mode uses ``finetune=True``).

Every trial × seed of one optimizer on one task is one vmapped program (``run_trials``). Each
finished task is written to ``tasks/<name>.json`` at once, so an interrupted run resumes where
it stopped; ``config.json`` guards against mixing runs of different settings.
"""

from __future__ import annotations

import json
import pathlib
import re
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.baselines import make, run_trials, selection_score
from lopt.errors import LoptError
from lopt.evaluation.harness import task_key
from lopt.evaluation.report import progress_bar
from lopt.hybrid.config import (
    ADAMW_WEIGHT_DECAY,
    LEARNED_LABEL,
    MODE_LABELS,
    HubConfig,
    hand_designed_optimizer,
    learned_optimizer,
    lr_grid,
)
from lopt.hybrid.hub import hub
from lopt.hybrid.report import write_report
from lopt.hybrid.tasks import get_hub_task, is_finetune
from lopt.storage.files import read_json_or_none, write_atomically
from lopt.tasks.base import Task


def _entry(curves, index: int, hyperparameters: str, seconds: float) -> dict:
    test = np.asarray(curves.eval["test"])[index]  # (S, E)
    return {
        "final_test_loss": float(np.mean(test[:, -1])),
        "final_inner_valid_loss": float(
            np.mean(np.asarray(curves.eval["inner_valid"])[index, :, -1])
        ),
        "hyperparameters": hyperparameters,
        "seconds": seconds,
        "test_curve": np.mean(test, axis=0).tolist(),
    }


def _fixed(task, optimizer, key, config: HubConfig):
    """One untuned optimizer: a grid of one trial."""
    build = lambda _: optimizer
    return run_trials(
        task, build, jnp.zeros((1,)), key, config.steps, config.seeds, config.eval_every
    )


def tuned_grids(lrs: np.ndarray) -> list[tuple[tuple[str, ...], Callable, jax.Array]]:
    """The tuned baselines as ``(labels, build, hyperparameter table)`` programs.

    Adam is AdamW with weight decay 0 (the decay term adds ``0·params``: the same bits), so
    Adam's and AdamW's grids run as one vmapped program of ``2·len(lrs)`` trials, rows
    ``(lr, weight_decay)``; the first half is Adam. SGD-momentum is ``make("momentum", lr)``.
    """
    adam_rows = [(lr, wd) for wd in (0.0, ADAMW_WEIGHT_DECAY) for lr in lrs]
    return [
        (
            ("adam", "adamw"),
            lambda h: optax.adamw(h[0], weight_decay=h[1]),
            jnp.asarray(adam_rows, jnp.float32),
        ),
        (("sgd-momentum",), lambda lr: make("momentum", lr), jnp.asarray(lrs, jnp.float32)),
    ]


def hub_optimizers(task: Task, config: HubConfig) -> dict[str, optax.GradientTransformation]:
    """The learned optimizer alone and the chosen HUB modes, set up for ``task``."""
    learned = learned_optimizer(config.learned)
    hand = hand_designed_optimizer(config.hand_designed)
    finetune = is_finetune(task)
    built = {
        "weighting": lambda: hub(learned, hand, temperature=config.temperature, finetune=finetune),
        "select": lambda: hub(learned, hand, "select", loss_fn=task.loss),
    }
    return {
        **{MODE_LABELS[m]: built[m]() for m in config.modes},
        LEARNED_LABEL: learned,
    }


def run_task(name: str, config: HubConfig, key: jax.Array, say: Callable[[str], None]) -> dict:
    """Every optimizer on one task -> its JSON record (metrics and seed-mean test curves)."""
    task = get_hub_task(name)
    key = task_key(key, name)
    record: dict = {"finetune": is_finetune(task), "optimizers": {}}
    for label, optimizer in hub_optimizers(task, config).items():
        say(f"{name} · {label}")
        start = time.perf_counter()
        curves = jax.block_until_ready(_fixed(task, optimizer, key, config))
        hparams = f"T={config.temperature:g}, {config.hand_designed}" if label == "hub" else ""
        if label == "hub-select":
            hparams = f"{config.hand_designed}, 2 extra forward passes/step"
        record["optimizers"][label] = _entry(curves, 0, hparams, time.perf_counter() - start)
    lrs = lr_grid(config.lrs)
    for labels, build, table in tuned_grids(lrs):
        say(f"{name} · {' + '.join(labels)} ({len(lrs)} lrs each)")
        start = time.perf_counter()
        curves = run_trials(task, build, table, key, config.steps, config.seeds, config.eval_every)
        curves = jax.block_until_ready(curves)  # dispatch is asynchronous
        seconds = time.perf_counter() - start
        scores = selection_score(curves, "inner_valid", "final")
        for part, label in enumerate(labels):
            offset = part * len(lrs)
            best = offset + int(np.argmin(scores[offset : offset + len(lrs)]))
            entry = _entry(curves, best, f"lr={lrs[best - offset]:.3g}", seconds)
            record["optimizers"][label] = entry
    record["steps"] = np.asarray(curves.step[0, 0]).tolist()
    record["initial_test_loss"] = float(np.mean(np.asarray(curves.eval["test"])[0, :, 0]))
    return record


def _task_file(out: pathlib.Path, name: str) -> pathlib.Path:
    return out / "tasks" / (re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".json")


def _check_config(out: pathlib.Path, config: dict) -> None:
    path = out / "config.json"
    if path.exists():
        old = read_json_or_none(path)
        if not isinstance(old, dict):
            raise LoptError(
                f"{path} is not the config of a HUB comparison; remove it, or choose another "
                "output directory"
            )
        if old != config:
            fields = [k for k in sorted({*config, *old}) if config.get(k) != old.get(k)]
            raise LoptError(
                f"{out} holds a HUB comparison with other settings (differs in: "
                f"{', '.join(fields)}); choose another output directory or remove it"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(config, indent=2) + "\n").encode())


def compare(
    config: HubConfig, out_dir: str | pathlib.Path, progress: bool = True
) -> tuple[dict, int]:
    """Run (or resume) the comparison into ``out_dir``; returns ``(results, tasks_reused)``.

    Writes ``config.json``, ``tasks/<name>.json`` per task, then ``metrics.jsonl``,
    ``results.json``, ``results.md`` and one ``curves-<task>.png`` per task
    (``lopt.hybrid.report``).
    """
    out = pathlib.Path(out_dir)
    _check_config(out, config.to_json())
    key = jax.random.key(config.seed)
    tasks, reused = {}, 0
    with progress_bar(len(config.tasks) * len(config.optimizers), progress) as bar:
        for name in config.tasks:
            path = _task_file(out, name)
            done = read_json_or_none(path)
            if isinstance(done, dict):  # an unreadable file is recomputed, like a missing one
                tasks[name] = done
                reused += 1
                for label in config.optimizers:
                    bar(f"{name} · {label} (done)")
                continue
            tasks[name] = run_task(name, config, key, bar)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, (json.dumps(tasks[name]) + "\n").encode())
    results = {"config": config.to_json(), "tasks": tasks}
    write_report(results, out)
    return results, reused
