"""Run directories shared by the outer loops (``lopt meta-train``, ``lopt self-train``).

A run directory holds ``config.json`` (the run's config; only ``outer_steps`` may change on
resume), ``checkpoint.safetensors`` and ``checkpoint-prev.safetensors`` (the whole training
state and its metadata, each one file, SHA-256 checked, via ``lopt.storage.checkpoint``), and
JSON-lines logs whose records carry a ``step`` so that a resumed run drops the records it is
about to recompute. Saving moves the checkpoint to ``checkpoint-prev`` and writes the new one
atomically: a kill at any moment leaves the new checkpoint or the previous one whole, and a
checkpoint that fails verification falls back to the previous one. One process at a time works
in a run directory (``lopt.storage.lock.exclusive``).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from lopt.errors import CheckpointError, LoptError
from lopt.storage import checkpoint
from lopt.storage.files import from_json, to_json, write_atomically

CHECKPOINT, PREVIOUS = "checkpoint.safetensors", "checkpoint-prev.safetensors"
UNUSABLE = "checkpoint-unusable.safetensors"  # one that failed verification, kept to inspect


class RunConfig(Protocol):
    outer_steps: int

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


Config = TypeVar("Config", bound=RunConfig)


def load_config(run_dir: pathlib.Path, config: Config | None, cls: type[Config]) -> Config:
    """The config of the run in ``run_dir``; a new run's ``config`` is written there first.

    Resuming with a ``config`` that differs from the saved one only in ``outer_steps`` extends
    (or shortens) the run; any other difference is an error. Call it holding the run's lock.
    """
    path = run_dir / "config.json"
    if path.exists():
        saved = cls.from_file(path)
        if config is not None and config.to_dict() != saved.to_dict():
            only_steps = {**config.to_dict(), "outer_steps": saved.outer_steps} == saved.to_dict()
            if not only_steps:
                raise LoptError(
                    f"{run_dir} holds a run with a different config; resume it without a new "
                    "config (only --outer-steps may change) or use another directory"
                )
            saved = config
            write_atomically(path, to_json(saved.to_dict(), indent=2).encode())
        return saved
    if config is None:
        raise LoptError(f"{run_dir} holds no run (no config.json) and no config was given")
    write_atomically(path, to_json(config.to_dict(), indent=2).encode())
    return config


def restore(
    run_dir: pathlib.Path, template: Any | Callable[[dict], Any], log: Callable
) -> tuple[Any, dict] | None:
    """The newest verified checkpoint ``(tree, metadata)``, or ``None`` for a fresh run.

    ``template``: the tree the checkpoint fills, or a function from a checkpoint's metadata to
    that tree (when its shapes depend on how far the run had got). When the previous checkpoint
    is used because the newest one failed verification, the failed one is moved to
    ``checkpoint-unusable.safetensors``, out of the way of the next save.
    """
    unusable = None
    for name in (CHECKPOINT, PREVIOUS):
        if not (run_dir / name).exists():
            continue
        try:
            restored = checkpoint.load_file(run_dir / name, template)
        except CheckpointError as e:
            log(f"[yellow]warning:[/] {e}; trying an older checkpoint")
            unusable = run_dir / name
            continue
        if unusable is not None:
            unusable.replace(run_dir / UNUSABLE)
        return restored
    if unusable is not None:
        raise CheckpointError(f"no usable checkpoint in {run_dir} (all failed verification)")
    return None


def has_checkpoint(run_dir: pathlib.Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint (usable or not): the run has made progress."""
    return any((run_dir / name).exists() for name in (CHECKPOINT, PREVIOUS))


def save_checkpoint(run_dir: pathlib.Path, tree: Any, meta: dict) -> None:
    """Save ``tree`` and ``meta`` as the run's checkpoint, keeping the one it replaces as the
    previous one. Each step is one atomic rename: the old checkpoint becomes the previous one,
    then the new one appears whole."""
    current = run_dir / CHECKPOINT
    if current.exists():
        current.replace(run_dir / PREVIOUS)
    checkpoint.save_file(current, tree, meta)


def truncate_jsonl(path: pathlib.Path, step: int) -> None:
    """Drop the records of ``path`` whose ``step`` is ``>= step`` (they will be recomputed), and
    a last line cut short by a kill during its append."""
    if not path.exists():
        return
    keep = [line for line, record in _json_lines(path) if record["step"] < step]
    write_atomically(path, "".join(line + "\n" for line in keep).encode())


def read_jsonl(path: pathlib.Path) -> list[dict]:
    """All records of a JSON-lines file (``[]`` when it does not exist)."""
    return [record for _, record in _json_lines(path)] if path.exists() else []


def _json_lines(path: pathlib.Path) -> list[tuple[str, dict]]:
    """``(line, record)`` per line of ``path``. A last line that does not parse is a record cut
    short by a kill during its append, and is left out; any other is one clear error."""
    lines = [line for line in path.read_text().splitlines() if line]
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append((line, from_json(line)))
        except json.JSONDecodeError:
            if number < len(lines):
                raise LoptError(f"{path}, line {number}, is not a JSON record") from None
    return parsed
