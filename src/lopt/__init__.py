"""lopt: learned optimizers — meta-train, self-train, study and use them.

>>> import lopt, optax
>>> opt = lopt.pretrained("small", total_steps=1000)  # an optax.GradientTransformationExtraArgs
>>> state = opt.init(params)
>>> updates, state = opt.update(grads, state, params, loss=loss)
>>> params = optax.apply_updates(params, updates)

The public API is what ``__all__`` names here, and the ``__all__`` of the subpackages:

- use a learned optimizer: ``pretrained``, ``load`` (and ``lopt.torch`` for PyTorch);
- train and compare: ``get_task``, ``train`` (inner training in ``lax.scan``), ``evaluate``
  (against tuned baselines, in normalized loss);
- make one: the architectures (``MLPOptimizer``, ``RNNMLPOptimizer``, ``FastOptimizer``,
  ``LearnedAdam``, all ``Architecture``), ``meta_train`` / ``MetaTrainConfig``, ``self_train`` /
  ``PopulationConfig``;
- the research lines beside them: ``hybrid`` (HUB) and ``stepsize`` (the step-size laboratory).

Importing lopt does not import JAX: ``pretrained`` and ``load`` import it when they load an
optimizer, and every other name loads its module on first use, so ``import lopt.torch``, the
PyTorch front end, never does.
"""

import importlib

from lopt.errors import LoptError
from lopt.pretrained import load, pretrained

__version__ = "0.12.0"

# Loaded on first use (module-level ``__getattr__``), so that ``import lopt`` imports no JAX.
_LAZY = {
    "get_task": "lopt.tasks",
    "train": "lopt.inner",
    "evaluate": "lopt.evaluation",
    "Architecture": "lopt.learned",
    "FastOptimizer": "lopt.learned",
    "LearnedAdam": "lopt.learned",
    "MLPOptimizer": "lopt.learned",
    "RNNMLPOptimizer": "lopt.learned",
    "MetaTrainConfig": "lopt.meta",
    "meta_train": "lopt.meta",
    "PopulationConfig": "lopt.population",
    "self_train": "lopt.population",
}
_SUBPACKAGES = ("hybrid", "stepsize")

__all__ = [
    "Architecture",
    "FastOptimizer",
    "LearnedAdam",
    "LoptError",
    "MLPOptimizer",
    "MetaTrainConfig",
    "PopulationConfig",
    "RNNMLPOptimizer",
    "__version__",
    "evaluate",
    "get_task",
    "hybrid",
    "load",
    "meta_train",
    "pretrained",
    "self_train",
    "stepsize",
    "train",
]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"lopt.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups find it without this function
        return value
    raise AttributeError(f"module 'lopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
