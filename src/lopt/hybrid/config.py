"""The settings of a HUB comparison (``lopt hub``) and what their names mean: the labels of the
optimizers compared (HUB's modes, the learned optimizer alone, the lr-tuned baselines), the
learning-rate grid of the tuned ones, and HUB's two components.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import optax

import lopt
from lopt.baselines import make
from lopt.errors import LoptError, check_choice, check_range
from lopt.hybrid.hub import DEFAULT_TEMPERATURE, MODES
from lopt.inner import check_schedule, default_eval_every
from lopt.pretrained import SHIPPED

TUNED = ("adam", "adamw", "sgd-momentum")
ADAMW_WEIGHT_DECAY = 1e-4  # as ``baselines.make("adamw", lr)``
MODE_LABELS = {"weighting": "hub", "select": "hub-select"}  # HUB mode -> label
LEARNED_LABEL = "learned"
COMPETITORS = (LEARNED_LABEL, *TUNED)


def lr_grid(size: int) -> np.ndarray:
    """``size`` log-spaced learning rates from 1e-4 to 1 (``size=14`` is ``ADAM_LRS``)."""
    check_range("number of learning rates", size, 1, 64)
    return np.geomspace(1e-4, 1.0, size) if size > 1 else np.asarray([1e-3])


@dataclasses.dataclass(frozen=True)
class HubConfig:
    """Settings of one comparison (``config.json``); equal configs give equal results.

    Attributes:
        learned: shipped name (``small``, ``rnn-mlp``) or path of a saved learned optimizer.
        hand_designed: HUB's hand-designed component, ``NAME@LR`` of a baseline.
        lrs: size of each tuned optimizer's learning-rate grid.
        modes: the HUB modes to run (``weighting``, ``select``).
    """

    tasks: tuple[str, ...]
    steps: int = 1000
    seeds: int = 2
    lrs: int = 14
    learned: str = "small"
    hand_designed: str = "adam@1e-3"
    temperature: float = DEFAULT_TEMPERATURE
    seed: int = 0
    modes: tuple[str, ...] = MODES

    def __post_init__(self):
        if not self.tasks:
            raise LoptError("no tasks given (expected a task set or task names)")
        if not self.modes:
            raise LoptError(f"no HUB mode given (allowed: {list(MODES)})")
        for mode in self.modes:
            check_choice("mode", mode, MODES)
        check_range("steps", self.steps, 1)
        check_range("seeds", self.seeds, 1)
        check_range("temperature", self.temperature, 1e-6)
        lr_grid(self.lrs)
        check_schedule(self.steps, self.eval_every, 10)
        hand_designed_optimizer(self.hand_designed)
        learned_optimizer(self.learned)

    @property
    def eval_every(self) -> int:
        return default_eval_every(self.steps)

    @property
    def hub_labels(self) -> tuple[str, ...]:
        return tuple(MODE_LABELS[m] for m in self.modes)

    @property
    def optimizers(self) -> tuple[str, ...]:
        """Every label of the comparison: HUB modes first, then the competitors."""
        return (*self.hub_labels, *COMPETITORS)

    def to_json(self) -> dict:
        return json.loads(json.dumps({**dataclasses.asdict(self), "lopt": lopt.__version__}))


def hand_designed_optimizer(spec: str) -> optax.GradientTransformation:
    """``NAME@LR`` (``adam@1e-3``) -> that optax baseline."""
    name, _, lr_text = spec.partition("@")
    try:
        lr = float(lr_text)
    except ValueError:
        raise LoptError(
            f"invalid hand-designed optimizer {spec!r} (expected NAME@LR, e.g. adam@1e-3)"
        ) from None
    check_range(f"learning rate of {spec!r}", lr, 1e-12)
    return make(name, lr)


def learned_optimizer(spec: str) -> optax.GradientTransformationExtraArgs:
    """A shipped learned optimizer by name, or one saved at a path."""
    return lopt.pretrained(spec) if spec in SHIPPED else lopt.load(spec)
