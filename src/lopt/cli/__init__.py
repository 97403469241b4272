"""The ``lopt`` command.

Each subcommand is one ``add_<name>(subparsers)`` function: it declares its arguments and sets
``run`` to a function ``(args) -> exit code``. They live in one module per concern
(``evaluation``, ``training``, ``stepsize``, ``hub``; shared argument types in ``common``); to
add one, write such a function and list it in ``SUBCOMMANDS``. A command that writes into
``--out`` checks it first (``lopt.storage.outputs.check_output_dir``), so a path it cannot
write fails before any work. User mistakes (a ``LoptError`` or a bad argument) print one line
``error: ...`` to stderr and exit with status 2. A ``run`` function imports what its command
needs when it runs, so that ``lopt --help`` and a mistaken argument answer without loading JAX.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from lopt.cli.evaluation import add_bench, add_demo, add_eval
from lopt.cli.hub import add_hub
from lopt.cli.stepsize import add_stepsize
from lopt.cli.training import add_average, add_meta_train, add_reconfigure, add_self_train
from lopt.errors import LoptError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line ``error: ...`` and exit status 2."""

    def error(self, message: str):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


SUBCOMMANDS: tuple[Callable, ...] = (
    add_eval,
    add_bench,
    add_demo,
    add_meta_train,
    add_self_train,
    add_average,
    add_reconfigure,
    add_stepsize,
    add_hub,
)


def build_parser() -> argparse.ArgumentParser:
    import lopt

    parser = _Parser(prog="lopt", description="Learned optimizers: train, study and use them.")
    parser.add_argument("--version", action="version", version=f"lopt {lopt.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lopt`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LoptError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an output path that cannot be written, a full disk, ...
        where = f": {err.filename}" if err.filename else ""
        print(f"error: {err.strerror or err}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (runs resume from their last checkpoint when re-run)", file=sys.stderr)
        return 130
