"""User-facing errors: one clear sentence naming the value and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LoptError(ValueError):
    """A mistake in what the user asked for (a name, a config value, a file)."""


class CheckpointError(LoptError):
    """A checkpoint or saved optimizer is missing, corrupt, or not what the caller expected."""


def did_you_mean(name: object, valid: Iterable[object]) -> str:
    """`` (did you mean 'x'?)`` for the valid choice closest to a misspelt ``name``, or ``""``."""
    choices = {str(v): v for v in valid}
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {choices[close[0]]!r}?)" if close else ""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> LoptError:
    """Error for a name that is not registered, listing the valid ones."""
    valid = sorted(valid)
    hint = did_you_mean(name, valid)
    return LoptError(f"unknown {kind} {name!r}{hint}; valid {kind}s: {', '.join(valid)}")


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
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise LoptError(f"invalid value for {field}: {value!r}{hint} (allowed: {choices})")
