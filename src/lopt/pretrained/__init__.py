"""Learned optimizers shipped with lopt, and the loaders behind ``lopt.pretrained``/``lopt.load``
(their names and files: ``lopt.pretrained.names``).

Each shipped optimizer is ``<name>-v<N>.safetensors`` + ``<name>-v<N>.json`` in this folder (every
version that shipped stays loadable by its versioned name), made by the
commands of the repository's ``reproduce/README.md`` (the JSON file's ``info.produced_by``
records them). Everything loads offline from package data. JAX is imported only when an optimizer
is loaded, so ``import lopt`` stays light (and ``lopt.torch`` never needs JAX).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lopt.errors import CheckpointError
from lopt.pretrained.names import (
    DEFAULTS,
    META_TRAINED,
    RUN_DIR_STEMS,
    SHIPPED,
    VERSIONS,
    pretrained_path,
    resolve_stem,
    shipped_architecture,
)
from lopt.storage.files import stem_file

if TYPE_CHECKING:
    import optax

__all__ = [
    "DEFAULTS",
    "META_TRAINED",
    "RUN_DIR_STEMS",
    "SHIPPED",
    "VERSIONS",
    "load",
    "pretrained",
    "pretrained_path",
    "resolve_stem",
    "shipped_architecture",
]


def load(
    path, total_steps: int | None = None, verify: bool = True
) -> optax.GradientTransformationExtraArgs:
    """Any saved learned optimizer (file, stem or run directory) as an optax transformation.

    ``total_steps``: the length of the training run, for optimizers that condition on it (the
    horizon feature, a decaying distance scale); the same as passing ``horizon=total_steps`` to
    every ``update``. ``verify=False`` accepts a file whose JSON holds no SHA-256 checksum of
    the weights (lopt always writes one; without ``verify=False`` such a file is refused).
    """
    # Imported here, not at the top: importing lopt (and lopt.torch) must not import JAX.
    from lopt.learned.base import with_horizon
    from lopt.learned.io import load_theta

    arch, theta, _ = load_theta(path, verify=verify)
    return with_horizon(arch.optimizer(theta), total_steps)


def pretrained(
    name: str = "small", total_steps: int | None = None
) -> optax.GradientTransformationExtraArgs:
    """A shipped learned optimizer by name (``small``, ``rnn-mlp``, ``self-trained`` or a
    versioned name), loaded offline; ``total_steps`` as for ``load``."""
    path = pretrained_path(name)
    if not stem_file(path, ".safetensors").exists():
        raise CheckpointError(
            f"the shipped optimizer {name!r} is not installed ({path}.safetensors is missing); "
            "reinstall lopt"
        )
    return load(path, total_steps)
