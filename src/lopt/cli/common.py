"""Argument types and helpers shared by the ``lopt`` subcommands."""

from __future__ import annotations

import argparse
import sys


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {low}, got {text!r}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def setup() -> None:
    """Work every command needs before it computes (the persistent compilation cache)."""
    from lopt.runtime.compilation_cache import enable_compilation_cache

    enable_compilation_cache()


def print_results(data: dict, out_dir: str, reused: bool) -> None:
    from lopt.evaluation.report import print_summary

    if reused:
        print(f"{out_dir} already holds these results (remove it to re-run)", file=sys.stderr)
    print_summary(data)
    print(f"report: {out_dir}/results.md")
