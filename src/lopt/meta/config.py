"""The typed meta-training config: a frozen dataclass, read from JSON and overridden by flags."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from dataclasses import dataclass, field
from typing import Any, Self

from lopt.errors import LoptError, check_choice, check_range, check_type
from lopt.learned.io import build_architecture
from lopt.meta.augment import check_scale_range
from lopt.meta.estimators import ESTIMATORS
from lopt.meta.truncation import TruncationConfig
from lopt.tasks.registry import FAMILIES, META_TRAIN_FAMILIES, TASKS

OUTER_OPTIMIZERS = ("adam", "sgd")


class JsonConfig:
    """JSON round trip for frozen config dataclasses (lists in JSON are tuples in Python)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in names:
                raise LoptError(f"invalid config field {key!r} (allowed: {sorted(names)})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def check_types(self) -> None:
        """One clear error for a field whose value does not have the type its annotation names
        (a list passes for a tuple); ``__post_init__`` calls it first."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            check_type(f.name, f.type, tuple(value) if isinstance(value, list) else value)

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> Self:
        path = pathlib.Path(path)
        if not path.exists():
            raise LoptError(f"config file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise LoptError(f"config file {path} is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise LoptError(f"config file {path} holds {type(data).__name__}, not a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


@dataclass(frozen=True)
class MetaTrainConfig(JsonConfig):
    """Everything that defines a meta-training run (saved as the run's ``config.json``).

    Attributes:
        architecture: learned-optimizer config (``{"kind": "mlp", ...}``; see ``lopt.learned``).
        init_from: start θ from a saved optimizer whose θ fits the architecture (same kind
            and θ shapes; settings outside θ such as the trust region may differ), given as a
            shipped optimizer's name (``small``), a file, stem or run directory, instead of a fresh
            initialization: continued meta-training, e.g. on another task mixture or meta-loss.
            Checked when a run starts (it may name a run that a previous command produces).
        estimator: ``es`` | ``pes`` | ``full-es`` | ``tbptt``.
        num_particles: antithetic pairs (or runs) per meta-gradient estimate.
        sigma: ES perturbation scale.
        truncation: how inner runs are cut and scored (``TruncationConfig`` fields).
        families: meta-training task families; ``task_bank`` tasks are sampled from them
            (round robin over families) and visited round robin, one per outer step.
        parameter_scale: ``[low, high]``: each bank task is trained in coordinates rescaled by
            a factor drawn log-uniformly from this range (``lopt.meta.augment``), so the
            learning rate it wants moves by the inverse factor; ``[1, 1]``: no rescaling.
        bank_refresh: outer steps between fresh banks (0: one bank for the whole run). Every
            ``bank_refresh`` steps the bank is replaced by ``task_bank`` newly sampled tasks and
            the old tasks' compiled programs are released, so a run sees many more tasks than
            one process could hold compiled at once (``lopt.runtime.mappings``). A multiple of
            ``task_bank``, so that every task of a bank gets the same number of visits.
        outer_steps: number of meta-gradient steps.
        outer_optimizer, outer_lr, outer_clip: outer optax optimizer (per-weight clipping of
            the meta-gradient at ``outer_clip`` first, as Metz et al. 2020 needed).
        devices: local devices to shard particles over (1: plain vmap).
        checkpoint_every, log_every: in outer steps.
        validate_every: outer steps between validations (0: never); validation_tasks are fixed
            meta-training-family tasks scored on their outer_valid split.
        trainable_features: meta-train only the first-layer weights that read these input
            features (an ``mlp``'s ``feature_names``), every other weight frozen: e.g. teach a
            trained optimizer a new input without moving what it knew (empty: train all).
    """

    architecture: dict[str, Any] = field(default_factory=lambda: {"kind": "mlp"})
    init_from: str | None = None
    estimator: str = "es"
    num_particles: int = 8
    sigma: float = 0.01
    truncation: dict[str, Any] = field(default_factory=dict)
    families: tuple[str, ...] = META_TRAIN_FAMILIES
    task_bank: int = 12
    parameter_scale: tuple[float, float] = (1.0, 1.0)
    bank_refresh: int = 0
    outer_steps: int = 2000
    outer_optimizer: str = "adam"
    outer_lr: float = 3e-3
    outer_clip: float = 0.1
    seed: int = 0
    devices: int = 1
    checkpoint_every: int = 100
    log_every: int = 10
    validate_every: int = 250
    validation_tasks: tuple[str, ...] = ("mlp-digits-32", "conv-digits-8-16", "teacher-student-16")
    validation_steps: int = 500
    validation_seeds: int = 2
    trainable_features: tuple[str, ...] = ()

    def __post_init__(self):
        self.check_types()
        self.trainable_mask()  # validates the architecture and the feature names
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_range("num_particles", self.num_particles, 1)
        check_range("sigma", self.sigma, 1e-8)
        self.truncation_config  # noqa: B018  (validates the truncation fields)
        for fam in self.families:
            check_choice("families", fam, FAMILIES)
        check_range("task_bank", self.task_bank, 1)
        check_scale_range("parameter_scale", self.parameter_scale)
        check_range("bank_refresh", self.bank_refresh, 0)
        if self.bank_refresh % self.task_bank:
            raise LoptError(
                f"invalid value for bank_refresh: {self.bank_refresh} (a multiple of "
                f"task_bank={self.task_bank}, or 0 for one bank)"
            )
        check_range("outer_steps", self.outer_steps, 0)
        check_choice("outer_optimizer", self.outer_optimizer, OUTER_OPTIMIZERS)
        check_range("outer_lr", self.outer_lr, 0.0)
        check_range("outer_clip", self.outer_clip, 0.0)
        check_range("devices", self.devices, 1)
        check_range("checkpoint_every", self.checkpoint_every, 1)
        check_range("log_every", self.log_every, 1)
        check_range("validate_every", self.validate_every, 0)
        for name in self.validation_tasks:
            check_choice("validation_tasks", name, TASKS)

    def trainable_mask(self):
        """θ-shaped 0/1 pytree of the weights meta-training may move (``None``: all of them)."""
        arch = build_architecture(self.architecture)
        return arch.input_mask(self.trainable_features) if self.trainable_features else None

    @property
    def truncation_config(self) -> TruncationConfig:
        names = {f.name for f in dataclasses.fields(TruncationConfig)}
        for key in self.truncation:
            if key not in names:
                raise LoptError(f"invalid field truncation.{key} (allowed: {sorted(names)})")
        return TruncationConfig(**self.truncation)
