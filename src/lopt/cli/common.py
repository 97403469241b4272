"""Argument types and helpers shared by the ``lopt`` subcommands."""

from __future__ import annotations

import argparse
import sys


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


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
    from lopt._cache import enable_compilation_cache

    enable_compilation_cache()


def print_results(data: dict, out_dir: str, reused: bool) -> None:
    from lopt.report import print_summary

    if reused:
        print(f"{out_dir} already holds these results (remove it to re-run)", file=sys.stderr)
    print_summary(data)
    print(f"report: {out_dir}/results.md")
