"""Learned optimizers shipped with lopt, and the loaders behind ``lopt.pretrained``/``lopt.load``.

Each shipped optimizer is ``<name>.safetensors`` + ``<name>.json`` in this folder, produced by
``lopt meta-train`` with the committed config in ``lopt/configs/<name>.json`` (README gives the
command). Everything loads offline from package data. JAX is imported only when an optimizer
is loaded, so ``import lopt`` stays light (and ``lopt.torch`` never needs JAX).
"""

from __future__ import annotations

import importlib.resources
import pathlib
from typing import TYPE_CHECKING

from lopt.errors import CheckpointError, unknown_name

if TYPE_CHECKING:
    import optax

SHIPPED = ("small", "rnn-mlp")


def pretrained_path(name: str) -> pathlib.Path:
    """Path stem of a shipped optimizer's files."""
    if name not in SHIPPED:
        raise unknown_name("pretrained optimizer", name, SHIPPED)
    return pathlib.Path(str(importlib.resources.files("lopt.pretrained"))) / name


def load(path) -> optax.GradientTransformationExtraArgs:
    """Any saved learned optimizer (file, stem or run directory) as an optax transformation."""
    from lopt.learned.io import load_theta

    arch, theta, _ = load_theta(path)
    return arch.optimizer(theta)


def pretrained(name: str = "small") -> optax.GradientTransformationExtraArgs:
    """A shipped learned optimizer by name (``small`` or ``rnn-mlp``), loaded offline."""
    path = pretrained_path(name)
    if not path.with_suffix(".safetensors").exists():
        raise CheckpointError(
            f"the shipped optimizer {name!r} is not installed ({path}.safetensors is missing); "
            "reinstall lopt"
        )
    return load(path)
