"""Framework-free specifications of lopt's learned optimizers.

A specification holds what an architecture *is*: its static config, its named constants, the
names of its input features, the shapes of its weights θ, and (for ``fast``) the update
arithmetic itself, written once over an array namespace (``Ops``). The JAX implementation
(``lopt.learned``) and the PyTorch front end (``lopt.torch``) both import it, so the two cannot
drift apart: each architecture's config is one dataclass here (``FastSpec``, ``MLPSpec``,
``RNNMLPSpec``) that both frameworks subclass, and no constant or feature name is assigned
outside this package (``tests/test_specs.py``). Nothing here imports JAX or PyTorch.
"""

from lopt.specs.constants import (
    EPS,
    FEATURE_CLIP,
    HORIZON_SHARPNESS,
    LOSS_FEATURE_NAMES,
    TRAIN_LOSS_DECAY,
    VALID_LOSS_DECAY,
    horizon_feature_names,
    time_feature_names,
)
from lopt.specs.fast import FastSpec
from lopt.specs.mlp import MLPSpec
from lopt.specs.ops import Ops
from lopt.specs.rnn_mlp import RNNMLPSpec

__all__ = [
    "EPS",
    "FEATURE_CLIP",
    "HORIZON_SHARPNESS",
    "LOSS_FEATURE_NAMES",
    "TRAIN_LOSS_DECAY",
    "VALID_LOSS_DECAY",
    "FastSpec",
    "MLPSpec",
    "Ops",
    "RNNMLPSpec",
    "horizon_feature_names",
    "time_feature_names",
]
