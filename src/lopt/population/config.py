"""The typed self-training config: a frozen dataclass, read from JSON and overridden by flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lopt.errors import LoptError, check_choice, check_range
from lopt.learned.io import build_architecture
from lopt.meta.config import JsonConfig, MetaTrainConfig
from lopt.population.guard import check_learned_from_scratch
from lopt.tasks.registry import META_TRAIN_FAMILIES

# Who applies a member's meta-gradient: a learned optimizer (its own θ, the best member's, a
# random member's) or, for the comparison run, optax Adam (a hand-designed optimizer).
OUTER_OPTIMIZERS = ("self", "best", "random", "adam")
LEARNED_OUTER = ("self", "best", "random")


def _check_log_range(name: str, bounds: tuple[float, float]) -> None:
    if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
        raise LoptError(
            f"invalid value for {name}: {list(bounds)} (allowed: [low, high] with 0 < low <= high)"
        )


@dataclass(frozen=True)
class PopulationConfig(JsonConfig):
    """Everything that defines a self-training run (saved as the run's ``config.json``).

    Attributes:
        architecture: the members' learned-optimizer config; with a learned outer optimizer it
            must contain no hand-designed formula (``{"kind": "mlp", "nominal": false}``).
        population: number of members P, each initialized at random from its own seed.
        outer: who applies each member's meta-gradient: ``self`` (the member's own current θ),
            ``best`` (the member with the best latest validation), ``random`` (a member drawn
            per step), or ``adam`` (optax Adam, the comparison run; its learning rate is a
            per-member hyperparameter, see ``adam_lr_range``).
        adam_lr_range: ``outer=adam``: the members' initial learning rates, log-spaced over this
            range; PBT perturbs them (``explore_lr_factor``).
        adam_clip: ``outer=adam``: per-weight clipping of the meta-gradient before Adam.
        learned_optimizer_tasks: tasks of the ``learned-optimizer`` family ("train a tiny
            learned optimizer", ``lopt.population.lopt_task``) added to the task bank.
        estimator, num_particles, sigma, truncation, families, task_bank, outer_steps, seed,
        devices, checkpoint_every, log_every: as in ``MetaTrainConfig`` (``devices`` shards the
            members, which must be a multiple of it).
        pbt_every: outer steps between evaluations of the population (and PBT rounds).
        exploit_fraction: share of members (at least one) replaced at each PBT round: the worst
            copy θ, outer-optimizer and estimator state from a random member of the best share.
        explore_sigma: after copying, θ += explore_sigma · N(0, 1).
        explore_lr_factor: after copying, the outer step size — Adam's learning rate, or with
            ``tune_learned_step`` the learned outer optimizer's step multiplier — is multiplied
            or divided by this factor (chosen at random).
        tune_learned_step: with a learned outer optimizer, scale its updates by a per-member
            step multiplier that PBT tunes like Adam's learning rate.
        learned_step_range: ``tune_learned_step``: the members' initial step multipliers,
            log-spaced over this range (the default ``[1, 1]`` starts every member at 1).
        validation_tasks, validation_steps, validation_seeds: the outer-validation tasks that
            score members (mean normalized ``outer_valid`` loss over a run from scratch).
    """

    architecture: dict[str, Any] = field(
        default_factory=lambda: {"kind": "mlp", "hidden": [8], "nominal": False}
    )
    population: int = 8
    outer: str = "self"
    adam_lr_range: tuple[float, float] = (1e-4, 1e-2)
    adam_clip: float = 0.1
    estimator: str = "es"
    num_particles: int = 4
    sigma: float = 0.01
    truncation: dict[str, Any] = field(default_factory=dict)
    families: tuple[str, ...] = META_TRAIN_FAMILIES
    task_bank: int = 6
    learned_optimizer_tasks: int = 0
    outer_steps: int = 3000
    seed: int = 0
    devices: int = 1
    checkpoint_every: int = 100
    log_every: int = 10
    pbt_every: int = 100
    exploit_fraction: float = 0.25
    explore_sigma: float = 0.003
    explore_lr_factor: float = 1.25
    tune_learned_step: bool = False
    learned_step_range: tuple[float, float] = (1.0, 1.0)
    validation_tasks: tuple[str, ...] = ("mlp-digits-32", "quadratic-16", "teacher-student-16")
    validation_steps: int = 300
    validation_seeds: int = 2

    def __post_init__(self):
        self.check_types()
        self.member_config  # noqa: B018  (validates the fields shared with MetaTrainConfig)
        check_range("population", self.population, 1)
        check_choice("outer", self.outer, OUTER_OPTIMIZERS)
        if self.outer in LEARNED_OUTER:
            check_learned_from_scratch(build_architecture(self.architecture))
        _check_log_range("adam_lr_range", self.adam_lr_range)
        _check_log_range("learned_step_range", self.learned_step_range)
        check_range("adam_clip", self.adam_clip, 0.0)
        check_range("learned_optimizer_tasks", self.learned_optimizer_tasks, 0)
        if self.population % self.devices:
            raise LoptError(
                f"population={self.population} must be a multiple of devices={self.devices}"
            )
        check_range("pbt_every", self.pbt_every, 1)
        check_range("exploit_fraction", self.exploit_fraction, 0.0, 0.5)
        check_range("explore_sigma", self.explore_sigma, 0.0)
        check_range("explore_lr_factor", self.explore_lr_factor, 1.0)

    @property
    def member_config(self) -> MetaTrainConfig:
        """One member's run as a ``MetaTrainConfig`` (estimator, tasks, truncation)."""
        shared = {f.name for f in dataclasses.fields(MetaTrainConfig)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in shared}
        return MetaTrainConfig(**{**values, "devices": 1, "validate_every": 0})
