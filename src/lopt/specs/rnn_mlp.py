"""The ``rnn-mlp`` learned optimizer (Metz et al. 2020's hierarchical one), specified once for
JAX and PyTorch: its config, its constants, the names of its inputs and the shapes of θ.

arXiv 2009.11243, section 3. A per-tensor LSTM reads statistics of its tensor, its shape, the
run's time, loss and horizon features, the per-parameter MLP's last hidden layer mean-pooled
over the tensor, and a DeepSets channel (the mean over tensors of a projection of every LSTM's
previous output); a projection of its output is folded into the bias of ``mlp``'s per-parameter
network (``lopt.specs.mlp``), another gives the tensor's log step. Gradients first pass learned
dynamic clipping against an EMA (``GRAD_RMS_DECAY``) of each tensor's gradient RMS. The
arithmetic is written per framework (``lopt.learned.hierarchical``, ``lopt.torch``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lopt.specs.constants import (
    LOSS_FEATURE_NAMES,
    NUM_OUTPUTS,
    horizon_feature_names,
    time_feature_names,
)
from lopt.specs.mlp import (
    NOMINAL_B1,
    NOMINAL_B2,
    distance_problems,
    horizon_problems,
    linear_shapes,
    network_problems,
    param_feature_names,
    trust_region_problems,
)

GRAD_RMS_DECAY = 0.99  # the EMA of each tensor's gradient RMS that the learned clip scales
MAX_RANK = 4  # tensor shapes are padded to this rank for the log-shape features
WIDENED_LOG_CLIP = 10.0  # the learned clip of an rnn-mlp widened from an "mlp" (widen_theta)

# The LSTM's first inputs: log RMS of its tensor's gradient, parameters and momentum at the
# nominal direction's decay, then the tensor's shape (is it a scalar, log #params, log of the
# last MAX_RANK dimensions, padded with 1s).
TENSOR_STATISTIC_NAMES = ("log_rms_grad", "log_rms_param", f"log_rms_momentum_{NOMINAL_B1}")
SHAPE_FEATURE_NAMES = ("is_scalar", "log_num_params", *(f"log_dim_{i}" for i in range(MAX_RANK)))


@dataclass(frozen=True)
class RNNMLPSpec:
    """Static configuration of the ``rnn-mlp`` learned optimizer (see the module docstring).

    Attributes:
        mlp_hidden: hidden widths of the per-parameter MLP.
        lstm_hidden: LSTM state size.
        to_mlp: size of the LSTM -> MLP projection.
        deepsets: size of the cross-tensor DeepSets channel.
        decays, timescales, step_mult, exp_mult: as in ``MLPSpec``.
        clip_mult: gradient clip threshold in units of the gradient-RMS EMA (times exp(θ)).
        trust_ratio, trust_floor: the per-tensor trust region, as in ``MLPSpec``.
        distance_power, distance_ref, distance_max, distance_decay: distance scaling, as in
            ``MLPSpec`` (Prodigy's estimate is fed the gradients before the learned clipping).
        mlp_loss_features: also fold the per-run loss features (which the LSTM always reads)
            into the per-parameter MLP's first-layer bias, as ``MLPSpec``'s
            ``with_loss_features`` does.
        with_horizon_feature, horizon_thresholds: the run's progress towards its length, as in
            ``MLPSpec`` (``update``'s ``horizon=`` argument), read by the LSTM and folded into
            the per-parameter MLP's first-layer bias.
    """

    mlp_hidden: tuple[int, ...] = (32, 32)
    lstm_hidden: int = 32
    to_mlp: int = 8
    deepsets: int = 8
    decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999, 0.9999)
    timescales: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)
    step_mult: float = 1e-3
    exp_mult: float = 1.0
    clip_mult: float = 10.0
    trust_ratio: float | None = None
    trust_floor: float = 1e-3
    distance_power: float = 0.0
    distance_ref: float = 0.05
    distance_max: float = 3.0
    distance_decay: bool = False
    mlp_loss_features: bool = False
    with_horizon_feature: bool = False
    horizon_thresholds: tuple[float, ...] = ()

    kind = "rnn-mlp"
    feature_normalization = "tensor"  # not a setting: features are scaled over the tensor

    def problems(self) -> list[str]:
        """What is wrong with this config, one sentence each (empty when it is valid)."""
        nominal = (NOMINAL_B1, NOMINAL_B2)
        return [
            *network_problems(self.kind, self.mlp_hidden, self.decays, nominal),
            *trust_region_problems(self.kind, self.trust_ratio, self.trust_floor),
            *distance_problems(
                self.kind, self.distance_power, self.distance_ref, self.distance_max
            ),
            *horizon_problems(self.kind, self.with_horizon_feature, self.horizon_thresholds),
        ]

    @property
    def run_feature_names(self) -> tuple[str, ...]:
        """The run's features that every tensor's LSTM reads: time, loss, horizon."""
        horizon = horizon_feature_names(self.with_horizon_feature, self.horizon_thresholds)
        return time_feature_names(self.timescales) + LOSS_FEATURE_NAMES + horizon

    @property
    def param_feature_names(self) -> tuple[str, ...]:
        """The per-parameter MLP's inputs before the LSTM's message: per-parameter features,
        then the per-run ones folded into its bias."""
        loss = LOSS_FEATURE_NAMES if self.mlp_loss_features else ()
        return (
            param_feature_names(self.decays, self.feature_normalization)
            + time_feature_names(self.timescales)
            + loss
            + horizon_feature_names(self.with_horizon_feature, self.horizon_thresholds)
        )

    @property
    def tensor_feature_names(self) -> tuple[str, ...]:
        """The per-tensor LSTM's inputs, in the order of its input weights' columns."""
        return (
            *TENSOR_STATISTIC_NAMES,
            *SHAPE_FEATURE_NAMES,
            *self.run_feature_names,
            *(f"mlp_pooled_{i}" for i in range(self.mlp_hidden[-1])),
            *(f"deepsets_{i}" for i in range(self.deepsets)),
        )

    @property
    def mlp_layer_sizes(self) -> tuple[int, ...]:
        """Widths of the per-parameter MLP, from its inputs (``param_feature_names``, then the
        LSTM's message) to its outputs."""
        return (len(self.param_feature_names) + self.to_mlp, *self.mlp_hidden, NUM_OUTPUTS)

    def theta_shapes(self) -> dict[str, tuple[int, ...]]:
        """Pytree path -> shape of every array of θ, as the ``.safetensors`` file names them
        (the LSTM is an ``equinox.nn.LSTMCell``: gates input, forget, cell, output)."""
        gates = 4 * self.lstm_hidden
        return {
            "['deepsets'].weight": (self.deepsets, self.lstm_hidden),
            "['deepsets'].bias": (self.deepsets,),
            "['log_clip']": (),
            "['log_lr']": (),
            "['lr_head'].weight": (1, self.lstm_hidden),
            "['lr_head'].bias": (1,),
            "['lstm'].weight_ih": (gates, len(self.tensor_feature_names)),
            "['lstm'].weight_hh": (gates, self.lstm_hidden),
            "['lstm'].bias": (gates,),
            **linear_shapes("['mlp']", self.mlp_layer_sizes),
            "['to_mlp'].weight": (self.to_mlp, self.lstm_hidden),
            "['to_mlp'].bias": (self.to_mlp,),
        }
