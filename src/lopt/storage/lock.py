"""One process at a time in an output directory: an advisory lock, taken before anything in it
is written.

Two processes writing one directory (resuming one run, or two runs started on it at the same
moment) would interleave their files: a config that disagrees with the checkpoints, logs with
records of both. ``exclusive`` holds ``DIRECTORY/.lock`` (an ``flock``) or fails at once; a
process refused this way has changed nothing in the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from collections.abc import Iterator

from lopt.errors import LoptError
from lopt.storage.files import remove_stale_temporaries

LOCK = ".lock"


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Hold ``directory``'s lock (created with the directory if need be) or fail at once.

    The lock is released when the block ends or the process dies (even by SIGKILL), so it
    never goes stale. Once it is held, the temporary files of writes killed before their rename
    (``lopt.storage.files.write_atomically``) are deleted from the directory.

    Yields:
        ``directory`` as a ``Path``.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise LoptError(
                f"{directory} is in use by another process (pid {holder}); wait for it or stop "
                "it, or use another directory"
            ) from None
        try:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            remove_stale_temporaries(directory)
            yield directory
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
