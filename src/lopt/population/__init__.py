"""Self-training from scratch (Metz et al. 2021): a population of randomly initialized learned
optimizers trains itself, orchestrated by PBT, with no hand-designed optimizer anywhere."""

from lopt.population.config import OUTER_OPTIMIZERS, PopulationConfig
from lopt.population.feedback import feedback_summary
from lopt.population.guard import (
    HandDesignedOptimizerError,
    check_learned_from_scratch,
    no_hand_designed_optimizers,
)
from lopt.population.selftrain import self_train

__all__ = [
    "OUTER_OPTIMIZERS",
    "HandDesignedOptimizerError",
    "PopulationConfig",
    "check_learned_from_scratch",
    "feedback_summary",
    "no_hand_designed_optimizers",
    "self_train",
]
