"""Named task families, named fixed tasks and task sets, and the meta-train / held-out split.

The split (documented in docs/tasks.md): learned optimizers are meta-trained on tasks sampled
from ``META_TRAIN_FAMILIES`` only. ``heldout`` tasks come from families never used in
meta-training, or are configs of training families outside their sampled choices (wider, other
activations, harder conditioning). Quality is reported on the two sets separately.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from lopt.errors import split_names, unknown_name
from lopt.tasks.base import Task, TaskFamily
from lopt.tasks.charlm import CharLM, CharLMConfig, CharLMFamily
from lopt.tasks.classifiers import (
    ConvClassifier,
    ConvClassifierConfig,
    ConvClassifierFamily,
    MLPClassifier,
    MLPClassifierConfig,
    MLPClassifierFamily,
    ResMLPClassifier,
    ResMLPClassifierConfig,
)
from lopt.tasks.regression import (
    Autoencoder,
    AutoencoderConfig,
    AutoencoderFamily,
    MLPRegressor,
    MLPRegressorConfig,
    MLPRegressorFamily,
    TeacherStudent,
    TeacherStudentConfig,
    TeacherStudentFamily,
)
from lopt.tasks.synthetic import (
    LeastSquaresConfig,
    LeastSquaresFamily,
    NoisyLeastSquares,
    Quadratic,
    QuadraticConfig,
    QuadraticFamily,
    TestFunction2D,
    TestFunctionConfig,
    TestFunctionFamily,
)
from lopt.tasks.transformer import TransformerLM, TransformerLMConfig

FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in [
        QuadraticFamily(),
        LeastSquaresFamily(),
        TestFunctionFamily(),
        TestFunctionFamily("fn2d-booth-himmelblau", ("booth", "himmelblau")),
        MLPClassifierFamily("digits"),
        MLPClassifierFamily("breast_cancer"),
        MLPClassifierFamily("digits", train_rows=(50, 100, 200)),
        MLPClassifierFamily("breast_cancer", train_rows=(40, 80, 160)),
        MLPClassifierFamily("mnist1d", widths=(32, 64, 128)),
        MLPClassifierFamily("wine", widths=(8, 16), depths=(0, 1)),
        ConvClassifierFamily("digits"),
        ConvClassifierFamily("mnist1d"),
        ConvClassifierFamily("breast_cancer"),
        TeacherStudentFamily(),
        TeacherStudentFamily(train_rows=(100, 200, 400)),
        AutoencoderFamily("digits"),
        AutoencoderFamily("breast_cancer"),
        MLPClassifierFamily("iris", widths=(8, 16, 32)),
        MLPRegressorFamily("diabetes"),
        AutoencoderFamily("mnist1d"),
        CharLMFamily(),
        CharLMFamily("charlm-code", ("code",), (8,), (16, 32), (8, 16), (16,)),
    ]
}

META_TRAIN_FAMILIES = (
    "quadratic",
    "least_squares",
    "mlp-digits",
    "mlp-breast_cancer",
    "conv-digits",
    "conv-breast_cancer",
    "teacher_student",
    "charlm-code",
    "fn2d-booth-himmelblau",
    "autoencoder-breast_cancer",
    "mlp-digits-few",
    "mlp-breast_cancer-few",
)
# Families sharing nothing with the meta-training families: no dataset, no architecture-and-data
# combination, no function. (``fn2d`` and ``charlm`` overlap the restricted training families
# ``fn2d-booth-himmelblau`` and ``charlm-code``, so they are neither.) The last three were added
# with the ``heldout-unseen`` set.
HELDOUT_FAMILIES = (
    "mlp-mnist1d",
    "mlp-wine",
    "conv-mnist1d",
    "autoencoder-digits",
    "mlp-iris",
    "mlp-diabetes",
    "autoencoder-mnist1d",
)


def _mlp(dataset, hidden, activation="relu", batch_size=64, init_scale=1.0):
    return lambda: MLPClassifier(
        MLPClassifierConfig(dataset, tuple(hidden), activation, batch_size, init_scale)
    )


def _conv(dataset, channels, kernel=3, activation="relu", batch_size=64):
    return lambda: ConvClassifier(
        ConvClassifierConfig(dataset, tuple(channels), kernel, activation, batch_size)
    )


# Fixed tasks by name. The first block draws its configs from the meta-training families'
# choices; the second block is held out (families or configs never seen in meta-training).
TRAIN_TASKS: dict[str, Callable[[], Task]] = {
    "quadratic-16": lambda: Quadratic(QuadraticConfig(16, 0.01, 1.0, 0.0, 1)),
    "least-squares-20": lambda: NoisyLeastSquares(LeastSquaresConfig(20, 400, 0.5, 64, 1)),
    "mlp-digits-32": _mlp("digits", [32]),
    "mlp-digits-64x64-tanh": _mlp("digits", [64, 64], "tanh", 128),
    "mlp-breast-cancer-16": _mlp("breast_cancer", [16], batch_size=32),
    "conv-digits-8-16": _conv("digits", [8, 16]),
    "teacher-student-16": lambda: TeacherStudent(TeacherStudentConfig(seed=1)),
    "charlm-code-32": lambda: CharLM(CharLMConfig("code", 8, 32, 16, 16)),
    "booth": lambda: TestFunction2D(TestFunctionConfig("booth")),
}
# Held out in two ways (docs/tasks.md): families never used in meta-training, and configs of
# meta-training families outside their sampled choices.
HELDOUT_FAMILY_TASKS: dict[str, Callable[[], Task]] = {
    "mlp-mnist1d-64": _mlp("mnist1d", [64]),
    "mlp-mnist1d-128x128": _mlp("mnist1d", [128, 128], batch_size=128),
    "conv-mnist1d-8-16": _conv("mnist1d", [8, 16], kernel=5),
    "logreg-wine": _mlp("wine", [], batch_size=32),
    "mlp-wine-16": _mlp("wine", [16], "tanh", batch_size=32),
    "autoencoder-digits": lambda: Autoencoder(AutoencoderConfig(32, 8)),
}
HELDOUT_CONFIG_TASKS: dict[str, Callable[[], Task]] = {
    "charlm-prose": lambda: CharLM(CharLMConfig("prose", 16, 64, 32, 32)),
    "rosenbrock": lambda: TestFunction2D(TestFunctionConfig("rosenbrock")),
    "beale": lambda: TestFunction2D(TestFunctionConfig("beale")),
    "mlp-digits-128-elu": _mlp("digits", [128], "elu", batch_size=32),
    "quadratic-64-ill": lambda: Quadratic(QuadraticConfig(64, 1e-4, 1.0, 0.0, 7)),
}
HELDOUT_TASKS = {**HELDOUT_FAMILY_TASKS, **HELDOUT_CONFIG_TASKS}
# A second held-out set, defined after ``heldout`` had guided design choices (docs/tasks.md):
# new configs of the held-out families (and of the prose corpus), to be evaluated once per
# shipped optimizer and never used to choose anything.
HELDOUT_FRESH_TASKS: dict[str, Callable[[], Task]] = {
    "mlp-mnist1d-32x32": _mlp("mnist1d", [32, 32]),
    "logreg-mnist1d": _mlp("mnist1d", []),
    "conv-mnist1d-16": _conv("mnist1d", [16]),
    "mlp-wine-8-relu": _mlp("wine", [8], batch_size=16),
    "autoencoder-digits-64-16": lambda: Autoencoder(AutoencoderConfig(64, 16)),
    "charlm-prose-small": lambda: CharLM(CharLMConfig("prose", 8, 32, 16, 16)),
}
# A third held-out set, defined (2026-12-03, with small v10 and rnn-mlp v5 shipped) when every
# shipped optimizer had been chosen partly on ``heldout-fresh``: tasks on data that no run or
# choice had ever touched — two sklearn datasets new to lopt (iris; diabetes, a regression) and
# MNIST-1D's signals as autoencoder inputs. Evaluated once per shipped optimizer; never used to
# choose anything.
HELDOUT_UNSEEN_TASKS: dict[str, Callable[[], Task]] = {
    "mlp-iris-16": _mlp("iris", [16], batch_size=16),
    "mlp-iris-32x32-tanh": _mlp("iris", [32, 32], "tanh", batch_size=32),
    "linreg-diabetes": lambda: MLPRegressor(MLPRegressorConfig("diabetes", (), batch_size=32)),
    "mlp-diabetes-32": lambda: MLPRegressor(MLPRegressorConfig("diabetes", (32,), batch_size=32)),
    "autoencoder-mnist1d-32-8": lambda: Autoencoder(AutoencoderConfig(32, 8, dataset="mnist1d")),
    "autoencoder-mnist1d-64-4-tanh": lambda: Autoencoder(
        AutoencoderConfig(64, 4, "tanh", dataset="mnist1d")
    ),
}
# A fourth held-out set, defined (2026-12-03, before small v11) after ``heldout-unseen`` had been
# evaluated (and so had shaped what was tried next): real data still untouched then, sklearn's
# two bundled photographs — patches of them classified and reconstructed, and one of them
# fitted by coordinate networks. Evaluated once per shipped optimizer; never used to choose.
HELDOUT_PHOTO_TASKS: dict[str, Callable[[], Task]] = {
    "logreg-patches": _mlp("photo-patches", []),
    "mlp-patches-32": _mlp("photo-patches", [32]),
    "conv-patches-8-16": _conv("photo-patches", [8, 16]),
    "autoencoder-patches-32-8": lambda: Autoencoder(
        AutoencoderConfig(32, 8, dataset="photo-patches")
    ),
    "inr-flower-64x64-tanh": lambda: MLPRegressor(
        MLPRegressorConfig("flower-pixels", (64, 64), "tanh", batch_size=64)
    ),
    "inr-flower-128-relu": lambda: MLPRegressor(
        MLPRegressorConfig("flower-pixels", (128,), batch_size=128)
    ),
}
# Models larger than any meta-training task, for judging optimizers on scale: the largest
# model a meta-training family samples (``META_TRAIN_FAMILIES``; the ``train`` set's too) has
# 8,970 parameters (``mlp-digits`` at 64×64; a test checks it), and these have 13–40× that: a
# character-level transformer (114,528), a wide MLP (301,066), a 1-D CNN (134,922) and a
# residual MLP with LayerNorm (361,210). Defined before any optimizer was run on them;
# evaluated once per shipped optimizer, never used to choose anything.
HELDOUT_LARGE_TASKS: dict[str, Callable[[], Task]] = {
    "transformer-prose-64x2": lambda: TransformerLM(TransformerLMConfig("prose", 64, 2, 4, 32, 32)),
    "mlp-digits-512x512": _mlp("digits", [512, 512]),
    "conv-mnist1d-32-64-128-128": _conv("mnist1d", [32, 64, 128, 128], kernel=5),
    "resmlp-mnist1d-240x3": lambda: ResMLPClassifier(
        ResMLPClassifierConfig("mnist1d", 240, 3, batch_size=64)
    ),
}
TASKS: dict[str, Callable[[], Task]] = {
    **TRAIN_TASKS,
    **HELDOUT_TASKS,
    **HELDOUT_FRESH_TASKS,
    **HELDOUT_UNSEEN_TASKS,
    **HELDOUT_PHOTO_TASKS,
    **HELDOUT_LARGE_TASKS,
}

TASK_SETS: dict[str, tuple[str, ...]] = {
    "tiny": ("quadratic-16", "mlp-digits-32", "logreg-wine"),
    "train": tuple(TRAIN_TASKS),
    "heldout": tuple(HELDOUT_TASKS),
    "heldout-families": tuple(HELDOUT_FAMILY_TASKS),
    "heldout-configs": tuple(HELDOUT_CONFIG_TASKS),
    "heldout-fresh": tuple(HELDOUT_FRESH_TASKS),
    "heldout-unseen": tuple(HELDOUT_UNSEEN_TASKS),
    "heldout-photos": tuple(HELDOUT_PHOTO_TASKS),
    "heldout-large": tuple(HELDOUT_LARGE_TASKS),
    "all": tuple(TASKS),
}


TASK_GROUPS = {
    "meta-train configs": tuple(TRAIN_TASKS),
    "held-out families": tuple(HELDOUT_FAMILY_TASKS),
    "held-out configs": tuple(HELDOUT_CONFIG_TASKS),
    "fresh held-out": tuple(HELDOUT_FRESH_TASKS),
    "unseen held-out": tuple(HELDOUT_UNSEEN_TASKS),
    "photo held-out": tuple(HELDOUT_PHOTO_TASKS),
    "large held-out": tuple(HELDOUT_LARGE_TASKS),
}


def task_group(name: str) -> str:
    """Which of ``TASK_GROUPS`` a named task belongs to."""
    for group, names in TASK_GROUPS.items():
        if name in names:
            return group
    raise unknown_name("task", name, TASKS)


def get_task(name: str) -> Task:
    """Build a named fixed task (see ``TASKS``)."""
    if name not in TASKS:
        raise unknown_name("task", name, TASKS)
    return TASKS[name]()


def get_family(name: str) -> TaskFamily:
    """Look up a task family by name (see ``FAMILIES``)."""
    if name not in FAMILIES:
        raise unknown_name("task family", name, FAMILIES)
    return FAMILIES[name]


def task_names(spec: str) -> tuple[str, ...]:
    """Expand a comma-separated list of task-set and task names (``heldout-unseen,heldout-photos``,
    ``heldout,booth``) to task names, each once, in the order given."""
    return expand_task_list(spec, TASK_SETS, TASKS)


def expand_task_list(
    spec: str, sets: Mapping[str, tuple[str, ...]], tasks: Collection[str], listed=None
) -> tuple[str, ...]:
    """``spec``'s comma-separated items expanded: a name in ``sets`` to its tasks, a name in
    ``tasks`` to itself; each task once, in order. An unknown item raises, listing the sets
    and ``listed`` (default: ``tasks``) as the valid names."""
    names = []
    for item in split_names("tasks", spec):
        if item in sets:
            names += sets[item]
        elif item in tasks:
            names.append(item)
        else:
            valid = [*sets, *(tasks if listed is None else listed)]
            raise unknown_name("task or task set", item, valid)
    return tuple(dict.fromkeys(names))
