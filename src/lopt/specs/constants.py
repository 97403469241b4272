"""Constants and feature names shared by every learned-optimizer architecture, in one place.

Metz et al. 2020 (arXiv 2009.11243) feed their optimizers per-parameter features clipped to a
fixed range, time features ``tanh(step / τ)`` and per-run loss features; VeLO (Metz et al. 2022)
adds the fraction of the run done. The numbers below are those of lopt's shipped optimizers.
"""

from __future__ import annotations

FEATURE_CLIP = 5.0  # every per-parameter feature is clipped to ±FEATURE_CLIP
EPS = 1e-8  # added under square roots and to divisors
LSTM_INPUT_CLIP = 10.0  # the per-tensor inputs of the hierarchical optimizers are clipped to this

# Per-run loss features: the minibatch training loss standardized by the EMA mean and deviation of
# the training loss, the validation-loss EMA on the same scale (the generalization gap), and
# log(training-loss EMA / first loss) (progress of the run).
LOSS_FEATURE_NAMES = ("train_loss_standardized", "valid_loss_standardized", "log_loss_ratio")
TRAIN_LOSS_DECAY, VALID_LOSS_DECAY = 0.9, 0.95

# The run's progress: ``count / horizon`` within [0, 1] (0 when the horizon is unknown), and
# optionally ``tanh(HORIZON_SHARPNESS · (fraction − c))`` for thresholds ``c``.
HORIZON_SHARPNESS = 10.0

NUM_OUTPUTS = 2  # the per-parameter network's outputs: a direction (correction), a log-magnitude

# Prodigy's distance estimate (Mishchenko & Defazio 2023), a step scale of "mlp" and "rnn-mlp":
# Adam's decays in its weights, and its initial estimate.
DISTANCE_B1, DISTANCE_B2 = 0.9, 0.999
DISTANCE_D0 = 1e-6
MIN_NORM = 1e-30  # a smaller norm divides as this (the trust region, the distance estimate)


def time_feature_names(timescales: tuple[float, ...]) -> tuple[str, ...]:
    """The names of the ``tanh(step / τ)`` features, one per timescale τ."""
    return tuple(f"tanh_step_over_{t:g}" for t in timescales)


def horizon_feature_names(with_feature: bool, thresholds: tuple[float, ...]) -> tuple[str, ...]:
    """The horizon features' names (none without ``with_feature``)."""
    if not with_feature:
        return ()
    return ("fraction_of_horizon", *(f"fraction_of_horizon_past_{c:g}" for c in thresholds))


def run_fraction(count: int, horizon: int | None) -> float:
    """The fraction of the run done after ``count`` updates, ``count / horizon`` within [0, 1];
    0 when the horizon is unknown (``None`` or not positive). For concrete numbers (PyTorch); the
    JAX optimizers compute the same from traced ones (``lopt.learned.features.run_fraction``)."""
    if not horizon or horizon <= 0:
        return 0.0
    return min(max(count / horizon, 0.0), 1.0)
