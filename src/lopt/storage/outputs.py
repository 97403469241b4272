"""Output directories of long jobs: checked before the work, filled as results finish.

A command that computes for minutes or hours and only then finds that it cannot write loses all
of it. ``check_output_dir`` runs first and fails at once on a path that is a file or that this
process cannot create or write; the jobs then write each result as it finishes (``write_json``
rewrites a whole file atomically), so an interrupted job keeps what it had done.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

from lopt.errors import LoptError
from lopt.storage.files import write_atomically


def check_output_dir(path: str | os.PathLike) -> pathlib.Path:
    """``path`` as a ``Path`` if it is a directory this process can write files in, or one it
    can create; raises ``LoptError`` naming it otherwise. Creates nothing: a missing directory
    is checked through its nearest existing parent."""
    out = pathlib.Path(path)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "it is a file" if existing == out else f"{existing} is a file"
        raise LoptError(f"cannot write results to {out}: {where}; expected a directory")
    try:  # the one true test of writability (permissions, ACLs, read-only mounts, root)
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        action = "write to" if existing == out else f"create {out} in"
        raise LoptError(
            f"cannot {action} {existing} ({e.strerror or e}); expected a writable directory"
        ) from None
    return out


def write_json(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (a crash leaves the old file or the
    new one), for result files rewritten as each part of a job finishes."""
    write_atomically(path, (json.dumps(data, indent=2) + "\n").encode())
