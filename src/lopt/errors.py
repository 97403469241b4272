"""User-facing errors: one clear sentence naming the value and what was expected."""

from __future__ import annotations

import difflib
import functools
import logging
import numbers
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


def split_names(field: str, text: str) -> tuple[str, ...]:
    """The stripped items of the comma-separated list ``text`` (a flag such as ``--tasks``);
    raises if the list or any item is empty."""
    items = tuple(item.strip() for item in text.split(","))
    if not all(items):
        problem = "is empty" if not text.strip() else "has an empty item"
        raise LoptError(
            f"invalid value for {field}: {text!r} {problem} (expected comma-separated names)"
        )
    return items


def check_range(field: str, value: float, low: float, high: float | None = None) -> None:
    """Raise if `value` is not a number or is outside [low, high] (high=None: unbounded)."""
    scalar = isinstance(value, numbers.Real) or getattr(value, "shape", None) == ()  # 0-d arrays
    if isinstance(value, bool) or not scalar:
        raise LoptError(f"invalid value for {field}: {value!r} (expected a number)")
    ok = value >= low and (high is None or value <= high)
    if not ok:
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise LoptError(f"invalid value for {field}: {value!r} (allowed: {allowed})")


def check_count(field: str, value: object, low: int = 1) -> None:
    """Raise if ``value`` is not an integer >= ``low`` (a step, seed or run count)."""
    check_type(field, "int", value)
    check_range(field, value, low)


def check_choice(field: str, value: object, choices: Iterable[object]) -> None:
    """Raise if `value` is not one of `choices`."""
    choices = list(choices)
    if value not in choices:
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise LoptError(f"invalid value for {field}: {value!r}{hint} (allowed: {choices})")


_SCALARS = {"float": "a number", "int": "an integer", "bool": "true or false", "str": "a string"}
_PLURALS = {"float": "numbers", "int": "integers", "bool": "booleans", "str": "strings"}


def check_type(field: str, annotation: object, value: object) -> None:
    """Raise if ``value`` does not have the type a dataclass field's (string) annotation names:
    ``float``, ``int``, ``bool``, ``str``, ``dict[...]``, ``tuple[T, ...]`` or ``tuple[T, T]``,
    optionally ``| None``; values from JSON, lists already turned into tuples. Other
    annotations are not checked."""
    if not isinstance(annotation, str):
        return
    base = annotation.removesuffix(" | None")
    if value is None and base != annotation:
        return
    expected = _mismatch(base, value)
    if expected:
        null = " or null" if base != annotation else ""
        shown = list(value) if isinstance(value, tuple) else value
        raise LoptError(f"invalid value for {field}: {shown!r} (expected {expected}{null})")


def _mismatch(annotation: str, value: object) -> str | None:
    """What ``value`` should have been, in JSON's terms, or ``None`` if it fits."""
    if annotation.startswith("dict"):
        return None if isinstance(value, dict) else "an object"
    if annotation.startswith("tuple[") and annotation.endswith("]"):
        inner = [t.strip() for t in annotation[len("tuple[") : -1].split(",")]
        element = inner[0]
        if element not in _SCALARS:
            return None
        if inner[-1] == "...":
            fits, expected = isinstance(value, tuple), f"a list of {_PLURALS[element]}"
        else:
            fits = isinstance(value, tuple) and len(value) == len(inner)
            expected = f"a list of {len(inner)} {_PLURALS[element]}"
        fits = fits and all(_is_a(element, v) for v in value)
        return None if fits else expected
    if annotation in _SCALARS:
        return None if _is_a(annotation, value) else _SCALARS[annotation]
    return None


def _is_a(type_name: str, value: object) -> bool:
    if type_name in ("bool", "str"):
        return isinstance(value, bool if type_name == "bool" else str)
    number = numbers.Integral if type_name == "int" else numbers.Real
    return isinstance(value, number) and not isinstance(value, bool)


@functools.cache
def say_once(message: str) -> None:
    """Log ``message`` as a warning of the ``lopt`` logger, once per process."""
    logging.getLogger("lopt").warning(message)
