"""Meta-training: truncated unrolls, gradient estimators, and the outer loop."""

from lopt.meta.config import MetaTrainConfig
from lopt.meta.estimators import ESTIMATORS, Estimator, make_estimator
from lopt.meta.outer import meta_train
from lopt.meta.truncation import TruncationConfig

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "MetaTrainConfig",
    "TruncationConfig",
    "make_estimator",
    "meta_train",
]
