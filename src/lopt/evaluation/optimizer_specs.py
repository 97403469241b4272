"""Optimizer specs for ``lopt eval``: what a string such as ``adam-tuned``, ``adam@3e-3``,
``small`` or ``runs/my-run`` means, as a label plus a builder over a grid of trials.

A spec names one optimizer of an evaluation; specs that share a trial grid (``adam-tuned`` and
``adam-global`` both read the 14 Adam learning rates) share one run per task, and differ only in
how a trial is selected: ``fixed`` (trial 0), ``task`` (best per task) or ``global`` (one trial
best over all tasks of the run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optax

import lopt
from lopt.baselines import ADAM_LRS, BASELINES, DEFAULT_LR, NADAMW_TRIALS, make
from lopt.baselines.tuning import NAdamWTrial, nadamw_trial
from lopt.errors import LoptError, check_range, did_you_mean
from lopt.pretrained import SHIPPED, resolve_stem
from lopt.storage.files import read_metadata


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """What to run for one optimizer spec: a label and a builder over a trial grid.

    Attributes:
        label: the name in tables and plots (the spec as typed).
        grid: id of the trial grid; specs sharing a grid share one run per task.
        build: ``(hparams_row, num_steps) -> optax transformation``, traceable in the row.
        hparams: pytree whose leaves have a leading trial axis ``(T, ...)``.
        describe: trial index -> readable hyperparameters (``"lr=1e-03"``).
        select: ``"fixed"`` (trial 0), ``"task"`` (best trial per task on inner_valid) or
            ``"global"`` (the one trial best over all tasks of the run).
        weights_sha256: for a learned optimizer, the SHA-256 of its weights file and
            architecture (``weights_digest``), so that an evaluation records which optimizer
            it ran (``None`` for hand-designed optimizers).
    """

    label: str
    grid: str
    build: Callable[[Any, int], optax.GradientTransformation]
    hparams: Any
    describe: Callable[[int], str]
    select: str = "fixed"
    weights_sha256: str | None = None


def _adam_grid(label: str, select: str) -> OptimizerSpec:
    return OptimizerSpec(
        label,
        "adam-lrs",
        lambda lr, _: make("adam", lr),
        jnp.asarray(ADAM_LRS, jnp.float32),
        lambda i: f"lr={ADAM_LRS[i]:.3g}",
        select,
    )


def _nadamw_grid(label: str) -> OptimizerSpec:
    table = NAdamWTrial(*(jnp.asarray(c, jnp.float32) for c in zip(*NADAMW_TRIALS, strict=True)))
    return OptimizerSpec(
        label,
        "nadamw-trials",
        nadamw_trial,
        table,
        lambda i: ", ".join(f"{k}={v:g}" for k, v in NADAMW_TRIALS[i]._asdict().items()),
        "task",
    )


def fixed_optimizer(
    label: str,
    optimizer: optax.GradientTransformation,
    hparams: str = "",
    weights_sha256: str | None = None,
):
    """Spec for one ready-made optimizer (a baseline at a fixed lr, a learned optimizer)."""
    return OptimizerSpec(
        label,
        label,
        lambda _h, _n: optimizer,
        jnp.zeros((1,)),
        lambda _: hparams,
        "fixed",
        weights_sha256,
    )


def weights_digest(name_or_path: str) -> str:
    """SHA-256 of a saved or shipped learned optimizer: its weights file, then its architecture
    (the JSON's ``"architecture"``, canonical): the same weights under other settings (a
    reconfigured trust region or distance scaling) are a different optimizer."""
    stem = resolve_stem(name_or_path)
    with open(f"{stem}.safetensors", "rb") as f:
        digest = hashlib.file_digest(f, "sha256")
    architecture = read_metadata(stem).get("architecture")
    digest.update(json.dumps(architecture, sort_keys=True).encode())
    return digest.hexdigest()


LOSS_ONLY = "loss-only"

# Named specs -> factory. Add an entry here to make a new name valid everywhere.
NAMED_SPECS: dict[str, Callable[[], OptimizerSpec]] = {
    "adam-tuned": lambda: _adam_grid("adam-tuned", "task"),
    "adam-global": lambda: _adam_grid("adam-global", "global"),
    "nadamw-tuned": lambda: _nadamw_grid("nadamw-tuned"),
}


def valid_specs() -> list[str]:
    return [*NAMED_SPECS, *BASELINES, "NAME@LR", *SHIPPED, "PATH", f"LEARNED:{LOSS_ONLY}"]


def loss_only(optimizer) -> optax.GradientTransformationExtraArgs:
    """``optimizer`` updated as a generic optax client calls it: ``loss=`` alone, no validation
    loss and no run length (what a learned optimizer does without them)."""

    def update(updates, state, params=None, *, loss=None, **_unused):
        return optimizer.update(updates, state, params, loss=loss)

    return optax.GradientTransformationExtraArgs(optimizer.init, update)


def resolve_optimizer(spec: str) -> OptimizerSpec:
    """Turn a spec string into an ``OptimizerSpec``.

    Specs: ``adam-tuned``, ``adam-global``, ``nadamw-tuned``, a baseline name (``adam``,
    ``sgd``, … at its ``DEFAULT_LR``), ``NAME@LR`` (``adam@3e-3``), a shipped learned optimizer
    (``small``, ``rnn-mlp``), or anything ``lopt.load`` accepts (a saved learned optimizer);
    a learned one with ``:loss-only`` appended (``small:loss-only``) is updated with ``loss=``
    alone, as a generic optax client calls it (``loss_only``).
    """
    spec = spec.strip()
    base, colon, call = spec.rpartition(":")
    if colon and call == LOSS_ONLY:
        learned = resolve_optimizer(base)
        if learned.weights_sha256 is None:
            raise LoptError(f"optimizer {spec!r}: :{LOSS_ONLY} applies to learned optimizers only")
        optimizer = learned.build(None, 0)
        return fixed_optimizer(spec, loss_only(optimizer), weights_sha256=learned.weights_sha256)
    if spec in NAMED_SPECS:
        return NAMED_SPECS[spec]()
    name, at, lr_text = spec.partition("@")
    if name in BASELINES:
        lr = DEFAULT_LR[name]
        if at:
            try:
                lr = float(lr_text)
            except ValueError:
                raise LoptError(
                    f"invalid learning rate in optimizer {spec!r}: {lr_text!r} (expected a number)"
                ) from None
            check_range(f"learning rate of {spec!r}", lr, 1e-12)
        return fixed_optimizer(spec, make(name, lr), f"lr={lr:.3g}")
    if spec in SHIPPED:
        return fixed_optimizer(spec, lopt.pretrained(spec), weights_sha256=weights_digest(spec))
    try:
        return fixed_optimizer(spec, lopt.load(spec), weights_sha256=weights_digest(spec))
    except LoptError as err:
        hint = did_you_mean(name, BASELINES) if at else did_you_mean(spec, valid_specs())
        raise LoptError(
            f"unknown optimizer {spec!r}{hint}; valid optimizers: {', '.join(valid_specs())} "
            f"(PATH: a saved learned optimizer; loading {spec!r} failed: {err})"
        ) from None
