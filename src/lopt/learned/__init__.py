"""Learned-optimizer architectures: each is static config + θ -> an optax transformation."""

from lopt.learned.adam import LearnedAdam
from lopt.learned.base import Architecture
from lopt.learned.fast import FastOptimizer
from lopt.learned.hierarchical import RNNMLPOptimizer
from lopt.learned.io import ARCHITECTURES, build_architecture, load_theta, save_optimizer
from lopt.learned.mlp import MLPOptimizer

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "FastOptimizer",
    "LearnedAdam",
    "MLPOptimizer",
    "RNNMLPOptimizer",
    "build_architecture",
    "load_theta",
    "save_optimizer",
]
