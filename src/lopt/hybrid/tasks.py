"""HUB's 17 evaluation tasks: 13 trained from scratch, 4 fine-tuned (Dai et al. 2023 use 13 + 4).

The from-scratch tasks are named tasks of ``lopt.tasks`` chosen to vary model size (42 to 23k
parameters), architecture (logistic regression, MLPs of depth 1–2, 1-D and 2-D conv nets, an
autoencoder, a GRU language model, a teacher–student regression) and dataset size (wine's 71
training rows, breast cancer, digits, MNIST-1D, 280k characters of prose, unlimited synthetic
data). The fine-tuning tasks (``lopt.hybrid.finetune``) pretrain with Adam, then shift the data.
"""

from __future__ import annotations

from collections.abc import Callable

from lopt.errors import unknown_name
from lopt.hybrid.finetune import (
    FineTuneTask,
    MovedTeacherStudent,
    Pretraining,
    label_subset,
    shifted_signals,
    with_dataset,
)
from lopt.tasks import TASKS, get_task
from lopt.tasks.base import Task
from lopt.tasks.charlm import CharLM, CharLMConfig
from lopt.tasks.classifiers import MLPClassifier, MLPClassifierConfig
from lopt.tasks.registry import expand_task_list
from lopt.tasks.regression import TeacherStudent, TeacherStudentConfig

SCRATCH_TASKS = (
    "logreg-wine",
    "mlp-wine-16",
    "mlp-breast-cancer-16",
    "mlp-digits-32",
    "mlp-digits-64x64-tanh",
    "mlp-digits-128-elu",
    "conv-digits-8-16",
    "mlp-mnist1d-64",
    "mlp-mnist1d-128x128",
    "conv-mnist1d-8-16",
    "autoencoder-digits",
    "teacher-student-16",
    "charlm-prose",
)

MNIST1D_SHIFT = 20  # half of the 40-step signal


def _digits_0to4_5to9() -> FineTuneTask:
    base = MLPClassifier(MLPClassifierConfig("digits", (64,), "relu", 64))
    source = with_dataset(base, label_subset(base.data, range(5)), f"{base.name}[0-4]")
    target = with_dataset(base, label_subset(base.data, range(5, 10)), f"{base.name}[5-9]")
    return FineTuneTask("ft-digits-0to4-5to9", source, target, Pretraining(1000, 3e-3))


def _mnist1d_shifted() -> FineTuneTask:
    source = MLPClassifier(MLPClassifierConfig("mnist1d", (64,), "relu", 64))
    shifted = shifted_signals(source.data, MNIST1D_SHIFT)
    target = with_dataset(source, shifted, f"{source.name}[shift={MNIST1D_SHIFT}]")
    return FineTuneTask("ft-mnist1d-shifted", source, target, Pretraining(1000, 3e-3))


def _charlm_code_to_prose() -> FineTuneTask:
    source = CharLM(CharLMConfig("code", 16, 64, 32, 32))
    target = CharLM(CharLMConfig("prose", 16, 64, 32, 32))
    return FineTuneTask("ft-charlm-code-to-prose", source, target, Pretraining(1000, 1e-2))


def _teacher_student_moved() -> FineTuneTask:
    config = TeacherStudentConfig(seed=1)
    source = TeacherStudent(config)
    target = MovedTeacherStudent(config, move=1.0)
    return FineTuneTask("ft-teacher-student-moved", source, target, Pretraining(1000, 3e-3))


FINETUNE_TASKS: dict[str, Callable[[], FineTuneTask]] = {
    "ft-digits-0to4-5to9": _digits_0to4_5to9,
    "ft-mnist1d-shifted": _mnist1d_shifted,
    "ft-charlm-code-to-prose": _charlm_code_to_prose,
    "ft-teacher-student-moved": _teacher_student_moved,
}

HUB_TASKS = (*SCRATCH_TASKS, *FINETUNE_TASKS)
HUB_TASK_SETS: dict[str, tuple[str, ...]] = {
    "all": HUB_TASKS,
    "scratch": SCRATCH_TASKS,
    "finetune": tuple(FINETUNE_TASKS),
    "quick": ("logreg-wine", "ft-teacher-student-moved"),
}


def get_hub_task(name: str) -> Task:
    """Build one of the HUB tasks by name (fine-tuning tasks pretrain here)."""
    if name in FINETUNE_TASKS:
        return FINETUNE_TASKS[name]()
    if name in SCRATCH_TASKS or name in TASKS:
        return get_task(name)
    raise unknown_name("task", name, HUB_TASKS)


def hub_task_names(spec: str) -> tuple[str, ...]:
    """Expand a comma-separated list of HUB task sets (``all``, ``scratch``, ``finetune``,
    ``quick``) and task names (HUB's own or lopt's)."""
    return expand_task_list(spec, HUB_TASK_SETS, (*HUB_TASKS, *TASKS), listed=HUB_TASKS)


def is_finetune(task: Task) -> bool:
    """Whether ``task`` starts from pretrained weights (HUB then uses ``finetune=True``)."""
    return isinstance(task, FineTuneTask)
