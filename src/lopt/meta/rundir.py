"""Run directories shared by the outer loops (``lopt meta-train``, ``lopt self-train``).

A run directory holds ``config.json`` (the run's config; only ``outer_steps`` may change on
resume), ``checkpoint.*`` and ``checkpoint-prev.*`` (the whole training state, atomic and
SHA-256 checked via ``lopt.checkpoint``; a corrupt checkpoint falls back to the previous one),
and JSON-lines logs whose records carry a ``step`` so that a resumed run drops the records it is
about to recompute. One process at a time works in a run directory (``exclusive``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from lopt import checkpoint
from lopt.errors import CheckpointError, LoptError
from lopt.files import read_metadata, stem_file, write_atomically

CHECKPOINT, PREVIOUS = "checkpoint", "checkpoint-prev"


class RunConfig(Protocol):
    outer_steps: int

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...


Config = TypeVar("Config", bound=RunConfig)


@contextlib.contextmanager
def exclusive(run_dir: pathlib.Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock (``.lock``, an advisory ``flock``) or fail at once.

    Two processes resuming one run would interleave their logs and checkpoints. The lock is
    released when the block ends or the process dies (even by SIGKILL), so it never goes stale.
    """
    path = run_dir / ".lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise LoptError(
                f"{run_dir} is in use by another process (pid {holder}); wait for it or stop it "
                "before resuming this run"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_config(run_dir: pathlib.Path, config: Config | None, cls: type[Config]) -> Config:
    """The config of the run in ``run_dir``; a new run's ``config`` is written there first.

    Resuming with a ``config`` that differs from the saved one only in ``outer_steps`` extends
    (or shortens) the run; any other difference is an error.
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
            write_atomically(path, json.dumps(saved.to_dict(), indent=2).encode())
        return saved
    if config is None:
        raise LoptError(f"{run_dir} holds no run (no config.json) and no config was given")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(config.to_dict(), indent=2).encode())
    return config


def restore(
    run_dir: pathlib.Path, template: Any | Callable[[dict], Any], log: Callable
) -> tuple[Any, dict] | None:
    """The newest verified checkpoint ``(tree, metadata)``, or ``None`` for a fresh run.

    ``template``: the tree the checkpoint fills, or a function from a checkpoint's metadata to
    that tree (when its shapes depend on how far the run had got).
    """
    for stem in (CHECKPOINT, PREVIOUS):
        if not (run_dir / f"{stem}.json").exists():
            continue
        try:
            tree = template(read_metadata(run_dir / stem)) if callable(template) else template
            return checkpoint.load(run_dir / stem, tree)
        except CheckpointError as e:
            log(f"[yellow]warning:[/] {e}; trying an older checkpoint")
    if has_checkpoint(run_dir):
        raise CheckpointError(f"no usable checkpoint in {run_dir} (all failed verification)")
    return None


def has_checkpoint(run_dir: pathlib.Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint (usable or not): the run has made progress."""
    return any((run_dir / f"{stem}.json").exists() for stem in (CHECKPOINT, PREVIOUS))


def save_checkpoint(run_dir: pathlib.Path, tree: Any, meta: dict) -> None:
    """Save ``tree`` as the run's checkpoint, keeping the previous one as a fallback."""
    cur = run_dir / CHECKPOINT
    if stem_file(cur, ".json").exists():
        for extension in (".safetensors", ".json"):
            stem_file(cur, extension).replace(stem_file(run_dir / PREVIOUS, extension))
    checkpoint.save(cur, tree, meta)


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
            parsed.append((line, json.loads(line)))
        except json.JSONDecodeError:
            if number < len(lines):
                raise LoptError(f"{path}, line {number}, is not a JSON record") from None
    return parsed
