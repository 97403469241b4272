"""The names of the shipped learned optimizers and the files a name or path means. Imports no
JAX: ``lopt.torch`` and ``lopt.learned.io`` resolve names through it alike.
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib

from lopt.errors import CheckpointError, LoptError, unknown_name
from lopt.storage.files import read_metadata, stem_file

# The default names and the version each stands for; every versioned name loads as it shipped.
# ``small`` and ``rnn-mlp`` were meta-trained from Adam's start; ``self-trained`` trained itself
# from a random initialization (``lopt self-train``), never touched by a hand-designed optimizer.
DEFAULTS = {"small": "small-v11", "rnn-mlp": "rnn-mlp-v6", "self-trained": "self-trained-v1"}
VERSIONS = ("small-v11", "rnn-mlp-v6", "self-trained-v1")
SHIPPED = (*DEFAULTS, *VERSIONS)
# The meta-trained defaults: the optimizers the speed benchmarks time against Adam.
META_TRAINED = ("small", "rnn-mlp")
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
