"""Find and read a saved learned optimizer for PyTorch, without JAX.

A saved optimizer is ``NAME.safetensors`` (θ, leaves named by their JAX pytree paths) plus
``NAME.json`` (``{"format": "lopt-optimizer", "architecture": {...}, "sha256": ...}``), as
written by ``lopt.learned.save_optimizer``. The checksum, the architecture and every tensor's
name, shape and dtype are checked; any mismatch is one ``LoptError`` naming the file and what
was expected.
"""

from __future__ import annotations

import hashlib
import json

import torch
from safetensors.torch import load as load_safetensors

from lopt.errors import LoptError
from lopt.pretrained import SHIPPED, resolve_stem
from lopt.torch.networks import CONFIGS, MLPConfig, RNNMLPConfig, build_config

FORMAT = "lopt-optimizer"


def load(name_or_path) -> tuple[MLPConfig | RNNMLPConfig, dict[str, torch.Tensor]]:
    """``(config, theta)`` of a saved "mlp" or "rnn-mlp" optimizer; θ as float32 CPU tensors.

    Args:
        name_or_path: ``"small"``, ``"rnn-mlp"``, or a ``.safetensors``/``.json`` file, its stem,
            or a run directory (``best.*`` is preferred to ``optimizer.*``).
    """
    stem = resolve_stem(name_or_path)
    meta_path, weights_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if isinstance(name_or_path, str) and name_or_path in SHIPPED and not weights_path.exists():
        raise LoptError(
            f"the shipped optimizer {name_or_path!r} is not installed ({weights_path} does not "
            "exist)"
        )
    if not meta_path.exists():
        raise LoptError(f"saved optimizer metadata {meta_path} does not exist")
    if not weights_path.exists():
        raise LoptError(f"saved optimizer weights {weights_path} do not exist")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LoptError(f"{meta_path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LoptError(f"{meta_path} is not a saved lopt optimizer (format {FORMAT!r})")
    architecture = meta.get("architecture") or {}
    kind = architecture.get("kind")
    if kind not in CONFIGS:
        raise LoptError(
            f"{meta_path} holds a {kind!r} optimizer; lopt.torch runs the architectures "
            f"{', '.join(repr(k) for k in CONFIGS)}"
        )
    try:
        config = build_config(architecture)
    except (TypeError, ValueError) as e:
        raise LoptError(f"{meta_path}: invalid {kind!r} architecture ({e})") from None

    blob = weights_path.read_bytes()
    if "sha256" in meta and hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise LoptError(f"{weights_path} is corrupt (checksum does not match {meta_path})")
    try:
        tensors = load_safetensors(blob)
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise LoptError(f"{weights_path} is not a valid safetensors file ({e})") from None
    expected = config.theta_shapes()
    missing = [n for n in expected if n not in tensors]
    extra = [n for n in tensors if n not in expected]
    if missing or extra:
        raise LoptError(
            f"{weights_path} does not hold the weights of the {kind!r} optimizer its JSON "
            f"describes (missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'…' if len(extra) > 3 else ''})"
        )
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise LoptError(
                f"{weights_path}: {name} has shape {tuple(t.shape)} {t.dtype}, expected {shape} "
                f"torch.float32 for the {kind!r} architecture in {meta_path.name}"
            )
    return config, tensors
