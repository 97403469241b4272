"""The ``mlp`` learned optimizer ("small"), specified once for JAX and PyTorch: its config, its
constants, the names of its inputs and the shapes of θ.

Each parameter's features (``param_feature_names``) plus the run's time features (and optionally
its loss and horizon features) go through a small per-parameter MLP that outputs a direction
``d`` and a log-magnitude ``m``; the update is ``Δp = −λ₂ · exp(λ₁·m + log_lr) · (nominal + d)``
around Adam's direction m̂/(√v̂ + ε) at decays ``NOMINAL_B1``, ``NOMINAL_B2``. The arithmetic is
written per framework (``lopt.learned.mlp``, ``lopt.torch.networks``). ``rnn-mlp``
(``lopt.specs.rnn_mlp``) runs the same per-parameter network under a per-tensor LSTM and shares
the settings validated here: network widths and decays, the trust region, distance scaling and
the horizon features.
"""

from __future__ import annotations

from dataclasses import dataclass

from lopt.errors import LoptError, check_range
from lopt.specs.constants import (
    LOSS_FEATURE_NAMES,
    NUM_OUTPUTS,
    horizon_feature_names,
    time_feature_names,
)

NOMINAL_B1, NOMINAL_B2 = 0.9, 0.999  # the decays of the nominal Adam direction

# How the per-parameter features are scaled: by their RMS over the tensor, or per parameter by
# the second moment at PER_PARAMETER_REFERENCE (bias-corrected), as Adam scales its step.
FEATURE_NORMALIZATIONS = ("tensor", "parameter")
PER_PARAMETER_REFERENCE = 0.999


def param_feature_names(
    decays: tuple[float, ...], normalization: str = "tensor"
) -> tuple[str, ...]:
    """Names of the per-parameter features at ``decays``, in the order the per-parameter MLP
    reads them, for feature normalization ``"tensor"`` or ``"parameter"``."""
    if normalization == "parameter":
        return (
            "grad_over_rms",
            *(f"momentum_{b}_over_rms" for b in decays),
            *(f"momentum_{b}_over_own_rms" for b in decays),
        )
    return (
        "grad",
        "param",
        *(f"momentum_{b}" for b in decays),
        *(f"rsqrt_second_moment_{b}" for b in decays),
        *(f"momentum_x_rsqrt_second_moment_{b}" for b in decays),
    )


@dataclass(frozen=True)
class MLPSpec:
    """Static configuration of the ``mlp`` learned optimizer (see the module docstring).

    Attributes:
        hidden: hidden layer widths of the per-parameter MLP.
        decays: momentum / second-moment decays.
        timescales: step timescales τ of the ``tanh(step/τ)`` features.
        step_mult: λ₂, the base step (the learning rate of the nominal Adam direction).
        exp_mult: λ₁, the scale of the log-magnitude output.
        nominal: add Adam's direction under the learned correction (and start at it).
        trust_ratio: cap each tensor's update RMS at this fraction of the tensor's RMS
            (``None``: no cap; see ``lopt.learned.trust_region``).
        trust_floor: the tensor RMS assumed for tensors smaller than it (zero-initialized ones).
        with_loss_features: also feed the network the per-run loss features
            (``LOSS_FEATURE_NAMES``: from ``update``'s ``loss=`` and ``valid_loss=`` arguments),
            folded into the first layer's bias like the time features.
        distance_power: scale every step by ``(d / distance_ref)^distance_power`` within
            ``[1, distance_max]``, ``d`` being Prodigy's distance estimate along this
            optimizer's run (``lopt.learned.distance``; 0: off). Not learned, like the trust
            region; it gives the network a per-task step scale that its inputs cannot see.
        distance_ref, distance_max: see ``distance_power``.
        distance_decay: let the log of that multiplier fall linearly to 0 over the run
            (``× (1 − t / horizon)``, from ``update``'s ``horizon=`` argument; no decay when
            it is not given), so that the scaled steps do not last into the end of a long run.
        with_horizon_feature: also feed the network the run's progress towards its length
            (``horizon_feature_names``: from ``update``'s ``horizon=`` argument, the run's total
            number of steps; 0 when it is not given), folded into the first layer's bias.
        horizon_thresholds: with the horizon feature, also ``tanh(10·(fraction − c))`` for
            each threshold ``c`` (``lopt.learned.features.horizon_features``).
        feature_normalization: ``"tensor"``: each per-parameter feature divided by its RMS
            over the tensor (as the shipped optimizers do); ``"parameter"``: scaled per
            parameter by its own second moment, with no reduction over the tensor (no
            parameter-value input; on a CPU about half the cost of an update with the same
            network, ``benchmarks/speed_floor.py``).
    """

    hidden: tuple[int, ...] = (32,)
    decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
    timescales: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)
    step_mult: float = 1e-3
    exp_mult: float = 1.0
    nominal: bool = True
    trust_ratio: float | None = None
    trust_floor: float = 1e-3
    with_loss_features: bool = False
    distance_power: float = 0.0
    distance_ref: float = 0.05
    distance_max: float = 3.0
    distance_decay: bool = False
    with_horizon_feature: bool = False
    horizon_thresholds: tuple[float, ...] = ()
    feature_normalization: str = "tensor"

    kind = "mlp"

    def problems(self) -> list[str]:
        """What is wrong with this config, one sentence each (empty when it is valid)."""
        nominal = (NOMINAL_B1, NOMINAL_B2) if self.nominal else ()
        return [
            *network_problems(self.kind, self.hidden, self.decays, nominal),
            *normalization_problems(self.kind, self.feature_normalization, self.decays),
            *trust_region_problems(self.kind, self.trust_ratio, self.trust_floor),
            *distance_problems(
                self.kind, self.distance_power, self.distance_ref, self.distance_max
            ),
            *horizon_problems(self.kind, self.with_horizon_feature, self.horizon_thresholds),
        ]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The per-parameter MLP's inputs, in the order of its first layer's columns:
        per-parameter features, then the per-run ones folded into its bias."""
        loss = LOSS_FEATURE_NAMES if self.with_loss_features else ()
        horizon = horizon_feature_names(self.with_horizon_feature, self.horizon_thresholds)
        return (
            param_feature_names(self.decays, self.feature_normalization)
            + time_feature_names(self.timescales)
            + loss
            + horizon
        )

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths of the per-parameter MLP, from its inputs to its outputs."""
        return (len(self.feature_names), *self.hidden, NUM_OUTPUTS)

    def theta_shapes(self) -> dict[str, tuple[int, ...]]:
        """Pytree path -> shape of every array of θ, as the ``.safetensors`` file names them."""
        return {"['log_lr']": (), **linear_shapes("['mlp']", self.layer_sizes)}


def linear_shapes(prefix: str, sizes: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Path -> shape of the weights ``(out, in)`` and biases of the linear layers of widths
    ``sizes`` (a list of layers at pytree path ``prefix``)."""
    shapes = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        shapes[f"{prefix}[{i}].weight"] = (b, a)
        shapes[f"{prefix}[{i}].bias"] = (b,)
    return shapes


# --- validation of the settings that "mlp" and "rnn-mlp" share ---


def network_problems(kind: str, hidden, decays, required_decays) -> list[str]:
    """What is wrong with the per-parameter MLP's widths and the decays of architecture
    ``kind``; ``required_decays`` are those of the nominal Adam direction (if it has one)."""
    found = []
    if not hidden or any(int(w) < 1 for w in hidden):
        found.append(f"invalid hidden sizes for {kind!r}: {list(hidden)} (need >= 1 layer of >= 1)")
    for decay in decays:
        found += _range_problems(f"decays of {kind!r}", decay, 0.0, 0.99999)
    missing = [d for d in required_decays if d not in decays]
    if missing:
        found.append(
            f"invalid decays for {kind!r}: {list(decays)} (must include {list(required_decays)}, "
            "the decays of the nominal Adam direction)"
        )
    return found


def normalization_problems(kind: str, normalization: str, decays) -> list[str]:
    """What is wrong with the feature normalization of architecture ``kind``."""
    if normalization not in FEATURE_NORMALIZATIONS:
        return [
            f"invalid feature_normalization for {kind!r}: {normalization!r} "
            f"(one of {list(FEATURE_NORMALIZATIONS)})"
        ]
    if normalization == "parameter" and PER_PARAMETER_REFERENCE not in decays:
        return [
            f"invalid decays for {kind!r} with feature_normalization 'parameter': "
            f"{list(decays)} (must include {PER_PARAMETER_REFERENCE}, the second moment "
            "that scales the features)"
        ]
    return []


def trust_region_problems(kind: str, ratio: float | None, floor: float) -> list[str]:
    """What is wrong with the trust-region settings of architecture ``kind``."""
    found = [] if ratio is None else _range_problems(f"trust_ratio of {kind!r}", ratio, 1e-6)
    return found + _range_problems(f"trust_floor of {kind!r}", floor, 0.0)


def distance_problems(kind: str, power: float, ref: float, most: float) -> list[str]:
    """What is wrong with the distance-scaling settings of architecture ``kind``."""
    return [
        *_range_problems(f"distance_power of {kind!r}", power, 0.0),
        *_range_problems(f"distance_ref of {kind!r}", ref, 1e-12),
        *_range_problems(f"distance_max of {kind!r}", most, 1.0),
    ]


def horizon_problems(kind: str, with_feature: bool, thresholds) -> list[str]:
    """What is wrong with the horizon-feature settings of architecture ``kind``."""
    if thresholds and not with_feature:
        return [
            f"invalid config for {kind!r}: horizon_thresholds {list(thresholds)} need "
            "with_horizon_feature: true"
        ]
    return []


def _range_problems(field: str, value, low: float, high: float | None = None) -> list[str]:
    """``lopt.errors.check_range``'s sentence about ``value``, as a one-item list (empty when
    the value is in range)."""
    try:
        check_range(field, value, low, high)
    except LoptError as e:
        return [str(e)]
    return []
