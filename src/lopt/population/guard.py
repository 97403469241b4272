"""A guard that makes "no hand-designed optimizer anywhere" checkable (Metz et al. 2021).

Inside ``no_hand_designed_optimizers()``, building any of optax's hand-designed optimizers —
every optimizer alias optax defines (``sgd``, ``adam``, ``adamw``, ``lion``, …, found by
inspecting optax, not listed by hand) and the update rules they are made of (``scale_by_adam``,
``scale_by_rms``, ``trace``, …) — raises ``HandDesignedOptimizerError``. Every hand-designed
optimizer in lopt comes from optax (lopt never hand-writes one: ``lopt.baselines`` and
``learned-adam`` call optax), so they trip it too. Each name is replaced both in ``optax``'s
namespace and in the module that defines it, so optax's internal references fail as well;
everything is restored on exit.

A learned optimizer whose update contains a hand-designed formula without calling optax (the
nominal Adam direction of the ``mlp`` and ``rnn-mlp`` architectures) is caught by
``check_learned_from_scratch`` instead.

Limits: an optimizer object built *before* entering the guard is not detected when called
inside it (self-training builds everything inside the guard).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator

import optax

from lopt.errors import LoptError
from lopt.learned.base import Architecture

# The per-parameter update rules behind optax's optimizers (momentum, second moments, signs).
UPDATE_RULES = tuple(
    name
    for name in dir(optax)
    if (name.startswith("scale_by_") or name in ("trace", "ema"))
    and name not in ("scale_by_learning_rate", "scale_by_schedule", "scale_by_stddev")
)


class HandDesignedOptimizerError(LoptError):
    """A hand-designed optimizer was built where none is allowed."""


def hand_designed_names() -> tuple[str, ...]:
    """optax's hand-designed optimizers: every alias ``optax._src.alias`` defines, plus
    ``UPDATE_RULES``."""
    aliases = tuple(
        name
        for name, obj in vars(optax).items()
        if inspect.isfunction(obj) and obj.__module__ == "optax._src.alias"
    )
    return tuple(sorted(set(aliases) | set(UPDATE_RULES)))


def _forbidden(name: str, reason: str):
    def refuse(*args, **kwargs):
        raise HandDesignedOptimizerError(
            f"optax.{name} is a hand-designed optimizer, which is not allowed here ({reason})"
        )

    refuse.__name__ = name
    return refuse


@contextlib.contextmanager
def no_hand_designed_optimizers(
    reason: str = "self-training uses no hand-designed optimizer",
) -> Iterator[tuple[str, ...]]:
    """Within this context, building an optax hand-designed optimizer raises.

    Yields the guarded names. Example::

        with no_hand_designed_optimizers():
            optax.adam(1e-3)   # HandDesignedOptimizerError
    """
    patched = []
    names = hand_designed_names()
    try:
        for name in names:
            original = getattr(optax, name)
            refuse = _forbidden(name, reason)
            for module in {optax, sys.modules[original.__module__]}:
                if getattr(module, name, None) is original:
                    patched.append((module, name, original))
                    setattr(module, name, refuse)
        yield names
    finally:
        for module, name, original in reversed(patched):
            setattr(module, name, original)


def check_learned_from_scratch(arch: Architecture) -> None:
    """Raise unless ``arch`` is a learned optimizer with no hand-designed formula in its update:
    an ``mlp`` with ``nominal=False`` (``learned-adam`` is optax's Adam; ``rnn-mlp`` and
    ``mlp`` with ``nominal=True`` add Adam's direction under their learned correction)."""
    if arch.kind != "mlp" or getattr(arch, "nominal", True):
        raise HandDesignedOptimizerError(
            f"architecture {arch.config()} contains a hand-designed update (Adam's formula); "
            'self-training needs {"kind": "mlp", "nominal": false}'
        )
