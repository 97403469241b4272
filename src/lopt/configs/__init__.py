"""Run configs shipped with lopt, and how ``--config`` finds one. Imports no JAX.

Each ``<name>.json`` in this folder is a config that runs on its own, with nothing to start
from: ``mlp-from-scratch`` (``lopt meta-train``: the ``small`` architecture meta-trained from
Adam's start), ``self-train`` and ``self-train-slow`` (``lopt self-train``). The configs that
made the shipped optimizers continue one another's runs; they live in the repository's
``reproduce/configs/`` and run by path (``reproduce/README.md``).
"""

from __future__ import annotations

import json
import pathlib

from lopt.errors import LoptError, unknown_name

FOLDER = pathlib.Path(__file__).resolve().parent
COMMANDS = ("meta-train", "self-train")


def command_of(path: str | pathlib.Path) -> str:
    """The command a config file is for: ``self-train`` if it sets a ``population``, else
    ``meta-train``."""
    data = json.loads(pathlib.Path(path).read_text())
    return "self-train" if "population" in data else "meta-train"


def shipped_config_names(command: str | None = None) -> list[str]:
    """The names of the shipped configs (sorted), all of them or those of one command."""
    if command is not None and command not in COMMANDS:
        raise unknown_name("command", command, COMMANDS)
    paths = sorted(FOLDER.glob("*.json"))
    return [p.stem for p in paths if command is None or command_of(p) == command]


def shipped_config_path(name: str) -> pathlib.Path:
    """The file of a shipped config, by name (``src/lopt/configs/NAME.json``)."""
    path = FOLDER / f"{name}.json"
    if not path.exists():
        raise LoptError(
            f"{unknown_name('shipped config', name, shipped_config_names())} (the configs that "
            "made the shipped optimizers are files: reproduce/configs/NAME.json in the repository)"
        )
    return path


def config_path(name_or_path: str | pathlib.Path) -> pathlib.Path:
    """What ``--config`` names: a path with a suffix (``reproduce/configs/small-stage1.json``)
    is a file, anything else the name of a shipped config."""
    path = pathlib.Path(name_or_path)
    return path if path.suffix else shipped_config_path(str(name_or_path))
