"""Hybrid updates (HUB, Dai et al. 2023, arXiv 2305.16823): a learned and a hand-designed
optimizer combined per tensor, its 17 evaluation tasks and the comparison behind ``lopt hub``.

>>> import lopt, optax
>>> opt = lopt.hybrid.hub(lopt.pretrained("small"), optax.adam(1e-3))   # weighting mode
"""

from lopt.hybrid.finetune import FineTuneTask, Pretraining
from lopt.hybrid.hub import MODES, HubState, hub, mean_learned_weight, softmax_weight
from lopt.hybrid.tasks import (
    FINETUNE_TASKS,
    HUB_TASK_SETS,
    HUB_TASKS,
    SCRATCH_TASKS,
    get_hub_task,
    hub_task_names,
)

__all__ = [
    "FINETUNE_TASKS",
    "HUB_TASKS",
    "HUB_TASK_SETS",
    "MODES",
    "SCRATCH_TASKS",
    "FineTuneTask",
    "HubState",
    "Pretraining",
    "get_hub_task",
    "hub",
    "hub_task_names",
    "mean_learned_weight",
    "softmax_weight",
]
