"""Learned optimizers shipped with lopt, and the loaders behind ``lopt.pretrained``/``lopt.load``.

Each shipped optimizer is ``<name>-v<N>.safetensors`` + ``<name>-v<N>.json`` in this folder (every
version that shipped stays loadable by its versioned name), made by the
commands of the repository's ``reproduce/README.md`` (the JSON file's ``info.produced_by``
records them). Everything loads offline from package data. JAX is imported only when an optimizer
is loaded, so ``import lopt`` stays light (and ``lopt.torch`` never needs JAX).
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import os
import pathlib
from typing import TYPE_CHECKING

from lopt.errors import CheckpointError, LoptError, unknown_name
from lopt.files import stem_file

if TYPE_CHECKING:
    import optax

# The default names and the version each stands for; every versioned name loads as it shipped.
DEFAULTS = {"small": "small-v11", "rnn-mlp": "rnn-mlp-v6"}
VERSIONS = ("small-v11", "rnn-mlp-v6")
SHIPPED = (*DEFAULTS, *VERSIONS)
# Inside a run directory, these stems are tried in order.
RUN_DIR_STEMS = ("best", "optimizer")


def pretrained_path(name: str) -> pathlib.Path:
    """Path stem of a shipped optimizer's files (a default name: of the version it stands for)."""
    if name not in SHIPPED:
        raise unknown_name("pretrained optimizer", name, SHIPPED)
    folder = pathlib.Path(str(importlib.resources.files("lopt.pretrained")))
    return folder / DEFAULTS.get(name, name)


def shipped_architecture(name: str) -> dict:
    """The architecture config (``{"kind": ..., ...}``) of a shipped optimizer, read from its
    JSON file without loading weights or importing JAX."""
    from lopt.files import read_metadata

    return read_metadata(pretrained_path(name))["architecture"]


def resolve_stem(name_or_path) -> pathlib.Path:
    """The file stem of a shipped name, or of a ``.safetensors``/``.json`` file, a stem or a
    run directory (``best.*`` preferred to ``optimizer.*``). Imports no JAX (``lopt.torch``
    uses it too)."""
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        return pretrained_path(name_or_path)
    if not isinstance(name_or_path, str | os.PathLike):
        raise LoptError(
            f"expected the name of a shipped optimizer ({', '.join(SHIPPED)}) or the path of a "
            f"saved one; got {name_or_path!r}"
        )
    path = pathlib.Path(name_or_path)
    if path.is_dir():
        for stem in RUN_DIR_STEMS:
            if (path / f"{stem}.json").exists():
                return path / stem
        raise CheckpointError(
            f"{path} holds no saved optimizer (expected one of "
            f"{', '.join(s + '.safetensors' for s in RUN_DIR_STEMS)})"
        )
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    if stem_file(path, ".json").exists() or stem_file(path, ".safetensors").exists():
        return path
    if isinstance(name_or_path, str) and "/" not in name_or_path and not path.suffix:
        raise CheckpointError(
            f"{unknown_name('pretrained optimizer', name_or_path, SHIPPED)} "
            "(or give the path of a saved optimizer: a .safetensors file, its stem or a run "
            "directory)"
        )
    raise CheckpointError(f"no saved optimizer at {path} (no .safetensors/.json file)")


def load(
    path, total_steps: int | None = None, verify: bool = True
) -> optax.GradientTransformationExtraArgs:
    """Any saved learned optimizer (file, stem or run directory) as an optax transformation.

    ``total_steps``: the length of the training run, for optimizers that condition on it (the
    horizon feature, a decaying distance scale); the same as passing ``horizon=total_steps`` to
    every ``update``. ``verify=False`` accepts a file whose JSON holds no SHA-256 checksum of
    the weights (lopt always writes one; without ``verify=False`` such a file is refused).
    """
    from lopt.learned.base import with_horizon
    from lopt.learned.io import load_theta

    arch, theta, _ = load_theta(path, verify=verify)
    if total_steps is None and (
        arch.kind == "fast" or getattr(arch, "with_horizon_feature", False)
    ):
        _say_once(
            "this learned optimizer reads how far the run has gone: give the run's length "
            "(lopt.pretrained(..., total_steps=N), or horizon=N to every update) for the updates "
            "it was meta-trained to make"
        )
    return with_horizon(arch.optimizer(theta), total_steps)


@functools.cache
def _say_once(message: str) -> None:
    """Log ``message`` as a warning of the ``lopt`` logger, once per process."""
    logging.getLogger("lopt").warning(message)


def pretrained(
    name: str = "small", total_steps: int | None = None
) -> optax.GradientTransformationExtraArgs:
    """A shipped learned optimizer by name (``small`` or ``rnn-mlp``), loaded offline;
    ``total_steps`` as for ``load``."""
    path = pretrained_path(name)
    if not stem_file(path, ".safetensors").exists():
        raise CheckpointError(
            f"the shipped optimizer {name!r} is not installed ({path}.safetensors is missing); "
            "reinstall lopt"
        )
    return load(path, total_steps)
