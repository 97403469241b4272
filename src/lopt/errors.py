"""User-facing errors: one clear sentence naming the value and what was expected."""

from __future__ import annotations

from collections.abc import Iterable


class LoptError(ValueError):
    """A mistake in what the user asked for (a name, a config value, a file)."""


class CheckpointError(LoptError):
    """A checkpoint or saved optimizer is missing, corrupt, or not what the caller expected."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> LoptError:
    """Error for a name that is not registered, listing the valid ones."""
    return LoptError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")


def check_range(field: str, value: float, low: float, high: float | None = None) -> None:
    """Raise if `value` is outside [low, high] (high=None means unbounded)."""
    ok = value >= low and (high is None or value <= high)
    if not ok:
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise LoptError(f"invalid value for {field}: {value!r} (allowed: {allowed})")


def check_choice(field: str, value: object, choices: Iterable[object]) -> None:
    """Raise if `value` is not one of `choices`."""
    choices = list(choices)
    if value not in choices:
        raise LoptError(f"invalid value for {field}: {value!r} (allowed: {choices})")
