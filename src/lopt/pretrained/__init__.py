"""Learned optimizers shipped with lopt, and the loaders behind ``lopt.pretrained``/``lopt.load``.

Each shipped optimizer is ``<name>.safetensors`` + ``<name>.json`` in this folder, produced by
``lopt meta-train`` with the committed config in ``lopt/configs/<name>.json`` (README gives the
command). Everything loads offline from package data.
"""

from __future__ import annotations

import importlib.resources
import pathlib

import optax

from lopt.errors import unknown_name
from lopt.learned.io import load_theta

SHIPPED = ("small", "rnn-mlp")


def pretrained_path(name: str) -> pathlib.Path:
    """Path stem of a shipped optimizer's files."""
    if name not in SHIPPED:
        raise unknown_name("pretrained optimizer", name, SHIPPED)
    return pathlib.Path(str(importlib.resources.files("lopt.pretrained"))) / name


def load(path) -> optax.GradientTransformationExtraArgs:
    """Any saved learned optimizer (file, stem or run directory) as an optax transformation."""
    arch, theta, _ = load_theta(path)
    return arch.optimizer(theta)


def pretrained(name: str = "small") -> optax.GradientTransformationExtraArgs:
    """A shipped learned optimizer by name (``small`` or ``rnn-mlp``), loaded offline."""
    return load(pretrained_path(name))
