"""Find and read a saved learned optimizer for PyTorch, without JAX.

A saved optimizer is ``NAME.safetensors`` (θ, leaves named by their JAX pytree paths) plus
``NAME.json`` (``{"format": "lopt-optimizer", "architecture": {...}, "sha256": ...}``), as
written by ``lopt.learned.save_optimizer``. The checksum, the architecture and every tensor's
name, shape and dtype are checked (the file checks shared with ``lopt.storage.checkpoint``, in
``lopt.storage.files``); any mismatch is one ``LoptError`` naming the file and what was expected.
"""

from __future__ import annotations

import numpy as np
import torch

from lopt.errors import LoptError
from lopt.pretrained import SHIPPED, resolve_stem
from lopt.storage.files import read_arrays, read_metadata, stem_file
from lopt.torch.networks import CONFIGS, MLPConfig, RNNMLPConfig, build_config

FORMAT = "lopt-optimizer"


def load(
    name_or_path, verify: bool = True
) -> tuple[MLPConfig | RNNMLPConfig, dict[str, torch.Tensor]]:
    """``(config, theta)`` of a saved "mlp" or "rnn-mlp" optimizer; θ as float32 CPU tensors.

    Args:
        name_or_path: ``"small"``, ``"rnn-mlp"``, or a ``.safetensors``/``.json`` file, its stem,
            or a run directory (``best.*`` is preferred to ``optimizer.*``).
        verify: refuse a file whose JSON holds no checksum (lopt always writes one); ``False``
            accepts it unverified.
    """
    stem = resolve_stem(name_or_path)
    meta_path, weights_path = stem_file(stem, ".json"), stem_file(stem, ".safetensors")
    if isinstance(name_or_path, str) and name_or_path in SHIPPED and not weights_path.exists():
        raise LoptError(
            f"the shipped optimizer {name_or_path!r} is not installed ({weights_path} does not "
            "exist)"
        )
    meta = read_metadata(stem)
    if meta.get("format") != FORMAT:
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

    expected = config.theta_shapes()
    arrays = read_arrays(
        stem,
        meta,
        expected,
        f"hold the weights of the {kind!r} optimizer its JSON describes",
        verify,
    )
    tensors = {name: torch.from_numpy(np.array(a)) for name, a in arrays.items()}
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise LoptError(
                f"{weights_path}: {name} has shape {tuple(t.shape)} {t.dtype}, expected {shape} "
                f"torch.float32 for the {kind!r} architecture in {meta_path.name}"
            )
    return config, tensors
