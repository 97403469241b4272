"""Saved learned optimizers: ``NAME.safetensors`` (θ) + ``NAME.json`` (architecture config).

The JSON sidecar names the architecture and its static config, so a file alone rebuilds the
optimizer; weights load into the structure the architecture defines (no pickle), in JAX here
and in PyTorch by ``lopt.torch``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax

from lopt.errors import CheckpointError, LoptError, check_type, did_you_mean, unknown_name
from lopt.learned.adam import LearnedAdam
from lopt.learned.base import Architecture
from lopt.learned.fast import FastOptimizer
from lopt.learned.hierarchical import RNNMLPOptimizer
from lopt.learned.mlp import MLPOptimizer
from lopt.pretrained.names import resolve_stem
from lopt.storage import checkpoint
from lopt.storage.files import read_metadata

FORMAT = "lopt-optimizer"
ARCHITECTURES: dict[str, type[Architecture]] = {
    cls.kind: cls for cls in (FastOptimizer, MLPOptimizer, RNNMLPOptimizer, LearnedAdam)
}


def build_architecture(config: dict[str, Any]) -> Architecture:
    """Rebuild an architecture from ``Architecture.config()`` output (or a partial dict)."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in ARCHITECTURES:
        raise unknown_name("architecture", str(kind), ARCHITECTURES)
    cls = ARCHITECTURES[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in config:
        if name not in fields:
            raise LoptError(
                f"invalid field {name!r} for architecture {kind!r} (allowed: {sorted(fields)})"
            )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    for name, value in values.items():
        check_type(f"{name} of {kind!r}", fields[name].type, value)
    return cls(**values)


def save_optimizer(stem, arch: Architecture, theta, info: dict | None = None) -> None:
    """Write a learned optimizer (θ + architecture) to ``stem.safetensors`` / ``stem.json``."""
    meta = {"format": FORMAT, "architecture": arch.config(), "info": info or {}}
    checkpoint.save(stem, theta, meta)


def warm_start_theta(path, arch: Architecture) -> Any:
    """θ for architecture ``arch`` from the optimizer saved at ``path``, to meta-train further.

    The saved θ is used as it is when it fits (the same kind, θ structure and shapes; settings
    outside θ such as a trust region or step multipliers may differ). Otherwise the architecture
    may widen it (``Architecture.widen_theta``: an ``mlp`` given more input features starts with
    zero weights on them, so it begins exactly as the saved optimizer). Anything else raises one
    clear error naming the file and both architectures.
    """
    saved_arch, theta, _ = load_theta(path)
    return _fit_theta(path, saved_arch, theta, arch)


def _fit_theta(path, saved_arch: Architecture, theta, arch: Architecture) -> Any:
    """``warm_start_theta`` of an optimizer already loaded from ``path``."""
    if saved_arch.kind == arch.kind and _shapes(theta) == _theta_shapes(arch):
        return theta
    return _widened_theta(path, saved_arch, theta, arch)


def _shapes(theta) -> Any:
    return jax.tree.map(lambda x: (x.shape, x.dtype), theta)


def _theta_shapes(arch: Architecture) -> Any:
    return _shapes(jax.eval_shape(arch.init_theta, jax.random.key(0)))


def _widened_theta(path, saved_arch: Architecture, theta, arch: Architecture) -> Any:
    """The saved θ widened by ``arch`` (``Architecture.widen_theta``), or one clear error."""
    widened = arch.widen_theta(saved_arch, theta)
    if widened is not None and _shapes(widened) == _theta_shapes(arch):
        return widened
    raise CheckpointError(
        f"{resolve_stem(path)}.safetensors holds the architecture {saved_arch.config()}, whose θ "
        f"does not fit {arch.config()}"
    )


def average_optimizers(paths, weights=None) -> tuple[Architecture, Any]:
    """``(architecture, θ)``: the weighted mean of the θ of saved optimizers of one
    architecture (a "model soup"; with a fine-tuned optimizer and its starting point, the
    weight-space interpolation of WiSE-FT, Wortsman et al. 2022).

    The architecture is the first optimizer's. Each other one must have it too, or have a θ
    that this architecture widens as a warm start would (``Architecture.widen_theta``: a
    ``small`` averaged into an ``rnn-mlp`` started from it, an ``mlp`` into one with more
    input features); then its widened θ, which makes its own updates, is averaged.

    Args:
        paths: two or more saved optimizers (names, files, stems or run directories).
        weights: one non-negative weight per path (normalized to sum to 1; default equal).
    """
    paths = list(paths)
    if len(paths) < 2:
        raise LoptError(f"averaging needs two or more optimizers; got {len(paths)}")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    valid = all(math.isfinite(w) and w >= 0 for w in weights) and sum(weights) > 0
    if len(weights) != len(paths) or not valid:
        raise LoptError(
            f"invalid weights {weights} for {len(paths)} optimizers (need one weight >= 0 "
            "per optimizer, not all 0)"
        )
    loaded = [load_theta(path) for path in paths]
    arch = loaded[0][0]
    thetas = [loaded[0][1]]
    for path, (other, theta, _) in zip(paths[1:], loaded[1:], strict=True):
        if other == arch:
            thetas.append(theta)
        elif other.kind == arch.kind and _shapes(theta) == _theta_shapes(arch):
            raise CheckpointError(  # the same θ under other settings: not one optimizer's θ
                f"{resolve_stem(path)}.safetensors holds the architecture {other.config()}, "
                f"not that of {resolve_stem(paths[0])}.safetensors ({arch.config()})"
            )
        else:
            thetas.append(_widened_theta(path, other, theta, arch))
    total = sum(weights)
    mean = jax.tree.map(
        lambda *xs: sum(w / total * x for w, x in zip(weights, xs, strict=True)), *thetas
    )
    return arch, mean


def reconfigure_optimizer(path, changes: dict) -> tuple[Architecture, Any]:
    """``(architecture, θ)``: a saved optimizer's θ under its architecture with ``changes`` to
    settings outside θ (``trust_ratio``, ``distance_power``, …; the kind stays). θ must fit the
    new architecture as it is, or be widened by it (``warm_start_theta``); a setting that
    changes θ's shapes is refused with one clear error."""
    saved, theta, _ = load_theta(path)
    if "kind" in changes:
        raise LoptError("reconfiguring cannot change an optimizer's kind")
    unknown = sorted(set(changes) - set(saved.config()))
    if unknown:
        hint = did_you_mean(unknown[0], list(saved.config()))
        raise LoptError(f"unknown setting {unknown[0]!r} of {saved.kind!r}{hint}")
    arch = build_architecture({**saved.config(), **changes})
    return arch, _fit_theta(path, saved, theta, arch)


def load_theta(
    path, expected_kind: str | None = None, verify: bool = True
) -> tuple[Architecture, Any, dict]:
    """Load ``(architecture, theta, metadata)`` from a shipped name, file, stem or run dir.

    ``verify=False`` accepts a file whose JSON holds no checksum (lopt always writes one).
    """
    stem = resolve_stem(path)
    meta = read_metadata(stem)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{stem}.json is not a saved lopt optimizer (format {FORMAT!r})")
    try:
        arch = build_architecture(meta.get("architecture") or {})
    except LoptError as e:
        raise CheckpointError(f"{stem}.json: {e}") from None
    if expected_kind is not None and arch.kind != expected_kind:
        raise CheckpointError(
            f"{stem}.safetensors holds a {arch.kind!r} optimizer, expected {expected_kind!r}"
        )
    template = arch.init_theta(jax.random.key(0))
    theta, meta = checkpoint.load(stem, template, verify)
    return arch, theta, meta
