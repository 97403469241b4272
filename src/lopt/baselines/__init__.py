"""Hand-designed optax baselines and their honest tuning grids."""

from lopt.baselines.optimizers import BASELINES, DEFAULT_LR, make
from lopt.baselines.tuning import (
    ADAM_LRS,
    NADAMW_TRIALS,
    global_best_index,
    run_trials,
    selection_score,
    tune_adam,
    tune_nadamw,
)

__all__ = [
    "ADAM_LRS",
    "BASELINES",
    "DEFAULT_LR",
    "NADAMW_TRIALS",
    "global_best_index",
    "make",
    "run_trials",
    "selection_score",
    "tune_adam",
    "tune_nadamw",
]
