"""Tasks and task families (all offline): see ``registry`` for names and the held-out split."""

from lopt.tasks.base import DataTask, LossNormalizer, Task, TaskFamily
from lopt.tasks.datasets import SPLITS
from lopt.tasks.registry import (
    FAMILIES,
    HELDOUT_FAMILIES,
    HELDOUT_TASKS,
    META_TRAIN_FAMILIES,
    TASK_SETS,
    TASKS,
    get_family,
    get_task,
    task_names,
)

__all__ = [
    "FAMILIES",
    "HELDOUT_FAMILIES",
    "HELDOUT_TASKS",
    "META_TRAIN_FAMILIES",
    "SPLITS",
    "TASKS",
    "TASK_SETS",
    "DataTask",
    "LossNormalizer",
    "Task",
    "TaskFamily",
    "get_family",
    "get_task",
    "task_names",
]
