"""The ``fast`` learned optimizer, specified once for JAX and PyTorch.

A per-parameter MLP corrects Adam's direction, as ``small``'s does (Metz et al. 2020's
``Δp = −λ₂·exp(λ₁·a)·d`` rescaling around a nominal Adam step, learned_optimization's
"nominal" optimizers), designed from what costs in a learned update on a CPU
(BENCHMARKS.md, ``benchmarks/speed_floor.py``):

- three parameter-sized accumulators: momenta at 0.9 and 0.99 and one second moment at 0.999
  (Adam keeps two);
- per-parameter inputs scaled per parameter by the bias-corrected second moment, as Adam scales
  its step (``PARAM_FEATURE_NAMES``): no statistic of the tensor enters them;
- every per-tensor input — time, loss and horizon features, the tensor's shape, its parameters'
  RMS now and relative to the start (``TENSOR_FEATURE_NAMES``) — is constant over the tensor and
  folded into the first layer's bias; the parameters' RMS is the one reduction over a tensor,
  one pass over the parameters;
- a network of ``hidden`` units (default 4) written as scalar-weight multiply-adds, so a compiler
  fuses the whole update into one loop;
- with ``relative_step``, a step relative to the tensor's size (as Adafactor's and LARS's): the
  log step of a tensor moves by a learned ``step_power`` × ``log(RMS(tensor) / 0.1)`` (the RMS
  floored at ``RELATIVE_FLOOR``), from the same one reduction; ``step_power`` starts at 0;
- with ``valid_over_train``, one more loss input: the log ratio of the validation loss to the
  training loss (their running averages), a generalization gap that keeps growing as a run
  overfits, where the standardized gap of ``LOSS_FEATURE_NAMES`` (divided by the training
  loss's spread) is clipped within a few hundred steps;
- with ``adaptive_step``, each tensor's log step also moves from step to step by the cosine
  between the new gradient and the previous step's nominal direction ``m/√v``, times a learned
  ``adapt_rate`` (the hypergradient of the step size, Baydin et al. 2018's Adam-HD, normalized
  as a cosine): steps grow while successive steps agree and shrink where they oscillate, a
  per-tensor scale found along the run; three sums over a tensor in one pass, one float32
  scalar of state per tensor; ``adapt_rate`` starts at 0;
- a guard against divergence (``guard_ratio``): no entry of a tensor's update exceeds
  ``guard_ratio × max(RMS(tensor), guard_floor)``, an elementwise clip against the same RMS;
- a step whose gradient has a square that is not finite (NaN, inf, or |g| above ≈ 1.8·10¹⁹ in
  float32) is skipped: zero update, state unchanged, so one wild gradient cannot poison the
  second moments for good.

With ``lstm_hidden > 0`` the optimizer is hierarchical, as Metz et al. 2020's: a per-tensor LSTM
reads the tensor features plus two more statistics of one pass (``LSTM_FEATURE_NAMES``) and
modulates the per-parameter network — a message added to its first layer's bias and a log step
per tensor. Its output layer starts at zero, so a fresh hierarchical optimizer makes the flat
one's updates.

All arithmetic is in float32; updates are cast to the parameter's dtype by the caller.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from lopt.specs.constants import (
    EPS,
    FEATURE_CLIP,
    LOSS_FEATURE_NAMES,
    LSTM_INPUT_CLIP,
    MIN_NORM,
    NUM_OUTPUTS,
    TRAIN_LOSS_DECAY,
    VALID_LOSS_DECAY,
    time_feature_names,
)
from lopt.specs.ops import Ops
from lopt.unrolled import affine

MOMENTUM_DECAYS = (0.9, 0.99)  # the first is Adam's β₁: the nominal direction's momentum
SECOND_MOMENT_DECAY = 0.999  # Adam's β₂
EPS_ROOT = 1e-16  # under the square root of the second moment: Adam's ε = 1e-8, squared
MAX_GRADIENT_SQUARE = 3.0e38  # float32's largest value, about: a larger g² is not finite

PARAM_FEATURE_NAMES = (
    "grad_over_rms",
    *(f"momentum_{b}_over_rms" for b in MOMENTUM_DECAYS),
)
TENSOR_FEATURE_NAMES = ("log_num_params", "is_vector", "log_rms_param", "log_rms_param_change")
HORIZON_FEATURE_NAMES = ("fraction_of_horizon",)
VALID_OVER_TRAIN_NAME = "log_valid_over_train"
LSTM_FEATURE_NAMES = ("log_rms_grad_over_rms", "log_rms_momentum_over_rms")
LOG_SIZE_SCALE = math.log(1e6)  # log(#params) is divided by this: about 1 for a 1M tensor
RELATIVE_REF = 0.1  # with relative_step, a tensor of this parameter RMS takes the base step
RELATIVE_FLOOR = 0.01  # ... and one of a smaller RMS (a zero-initialized bias) this one's
ADAPT_RATE_SCALE = 0.1  # with adaptive_step, θ's adapt_rate times this is the per-step rate
STEP_OFFSET_CLIP = math.log(10.0)  # ... and a tensor's adapted log step stays within ±this


@dataclass(frozen=True)
class FastSpec:
    """Static configuration of the ``fast`` learned optimizer (see the module docstring).

    Attributes:
        hidden: hidden units of the per-parameter MLP.
        timescales: step timescales τ of the ``tanh(step/τ)`` inputs.
        step_mult: λ₂, the base step (the learning rate of the nominal Adam direction).
        exp_mult: λ₁, the scale of the log-magnitude output.
        guard_ratio: cap on each update entry, as a fraction of its tensor's RMS (``None``: no
            cap).
        guard_floor: the tensor RMS assumed for tensors smaller than it (zero-initialized ones).
        lstm_hidden: units of the per-tensor LSTM (0: none, a flat optimizer).
        relative_step: add the learned ``step_power`` × log(tensor RMS ÷ ``RELATIVE_REF``) to
            each tensor's log step.
        valid_over_train: add the ``VALID_OVER_TRAIN_NAME`` input (log validation ÷ training
            loss) to the shared inputs.
        adaptive_step: move each tensor's log step along the run by the learned ``adapt_rate``
            × the cosine of the gradient with the previous nominal direction
            (``step_alignment``, ``adapted_step_offsets``).
    """

    hidden: int = 4
    timescales: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)
    step_mult: float = 1e-3
    exp_mult: float = 1.0
    guard_ratio: float | None = 0.1
    guard_floor: float = 1e-3
    lstm_hidden: int = 0
    relative_step: bool = False
    valid_over_train: bool = False
    adaptive_step: bool = False

    kind = "fast"

    def problems(self) -> list[str]:
        """What is wrong with this config, one sentence each (empty when it is valid)."""
        found = []
        if int(self.hidden) < 1:
            found.append(f"hidden must be >= 1, got {self.hidden}")
        if int(self.lstm_hidden) < 0:
            found.append(f"lstm_hidden must be >= 0, got {self.lstm_hidden}")
        if any(not (t > 0) for t in self.timescales):
            found.append(f"timescales must be > 0, got {list(self.timescales)}")
        if not (self.step_mult > 0):
            found.append(f"step_mult must be > 0, got {self.step_mult}")
        if self.guard_ratio is not None and not (self.guard_ratio > 0):
            found.append(f"guard_ratio must be > 0 or null, got {self.guard_ratio}")
        if not (self.guard_floor >= 0):
            found.append(f"guard_floor must be >= 0, got {self.guard_floor}")
        return found

    def config(self) -> dict:
        """JSON-serializable fields, with ``kind``."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"kind": self.kind, **{k: _jsonable(v) for k, v in fields.items()}}

    # --- names and shapes ---

    @property
    def shared_feature_names(self) -> tuple[str, ...]:
        """Inputs shared by every tensor of a step: time, loss and horizon features."""
        gap = (VALID_OVER_TRAIN_NAME,) if self.valid_over_train else ()
        times = time_feature_names(self.timescales)
        return times + LOSS_FEATURE_NAMES + HORIZON_FEATURE_NAMES + gap

    @property
    def constant_feature_names(self) -> tuple[str, ...]:
        """Inputs constant over a tensor, folded into the first layer's bias."""
        return self.shared_feature_names + TENSOR_FEATURE_NAMES

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The per-parameter MLP's inputs, in the order of its first layer's columns."""
        return PARAM_FEATURE_NAMES + self.constant_feature_names

    @property
    def lstm_feature_names(self) -> tuple[str, ...]:
        return self.constant_feature_names + LSTM_FEATURE_NAMES

    def theta_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every array of θ (a flat dict; ``log_lr`` a learned log step)."""
        shapes = {
            "w1": (self.hidden, len(self.feature_names)),
            "b1": (self.hidden,),
            "w2": (NUM_OUTPUTS, self.hidden),
            "b2": (NUM_OUTPUTS,),
            "log_lr": (),
        }
        if self.relative_step:
            shapes["step_power"] = ()
        if self.adaptive_step:
            shapes["adapt_rate"] = ()
        if self.lstm_hidden:
            gates = 4 * self.lstm_hidden
            shapes |= {
                "lstm_wx": (gates, len(self.lstm_feature_names)),
                "lstm_wh": (gates, self.lstm_hidden),
                "lstm_b": (gates,),
                "lstm_w_out": (self.hidden + 1, self.lstm_hidden),
                "lstm_b_out": (self.hidden + 1,),
            }
        return shapes

    def init_bounds(self) -> dict[str, float]:
        """Name -> ``b`` of the uniform ``U(−b, b)`` θ starts from (0: starts at zero). The
        output layers start at zero, so a fresh optimizer is Adam at learning rate λ₂."""
        bounds = {}
        for name, shape in self.theta_shapes().items():
            fan_in = shape[1] if len(shape) == 2 else None
            zero = name in (
                "w2",
                "b2",
                "log_lr",
                "step_power",
                "adapt_rate",
                "lstm_w_out",
                "lstm_b_out",
            )
            if zero:
                bounds[name] = 0.0
            elif name in ("b1", "lstm_b"):
                bounds[name] = 1.0 / math.sqrt(self.theta_shapes()[_weight_of(name)][1])
            else:
                bounds[name] = 1.0 / math.sqrt(fan_in)
        return bounds

    # --- the arithmetic, over any framework's arrays ---

    def shared_features(self, ops: Ops, count, loss_stats, loss, horizon_fraction):
        """The ``shared_feature_names`` inputs of a step: ``(len(shared_feature_names),)``, or
        ``(n, len(shared_feature_names))`` for ``n`` step counts (one per tensor).

        Args:
            count: float32 scalar, the step number (1 at the first update), or ``(n,)``.
            loss_stats: the statistics after this step (``update_loss_stats``).
            loss: this step's training loss (float32 scalar; 0 when not given).
            horizon_fraction: float32, the fraction of the run done (0 when unknown), shaped
                as ``count``.
        """
        times = [ops.tanh(count / tau) for tau in self.timescales]
        gap = [valid_over_train(ops, loss_stats)] if self.valid_over_train else []
        return ops.stack([*times, *loss_features(ops, loss_stats, loss), horizon_fraction, *gap])

    def tensor_features(self, ops: Ops, num_params: int, ndim: int, rms_param, initial_rms):
        """The ``TENSOR_FEATURE_NAMES`` inputs of one tensor: four scalars, the first two
        Python floats (static), the others float32 arrays (``ops.stack`` takes both)."""
        log_rms = ops.log(rms_param + EPS)
        change = log_rms - ops.log(initial_rms + EPS)
        size = math.log(max(num_params, 1)) / LOG_SIZE_SCALE
        return [
            size,
            float(ndim <= 1),
            ops.clip(log_rms, -LSTM_INPUT_CLIP, LSTM_INPUT_CLIP),
            ops.clip(change, -LSTM_INPUT_CLIP, LSTM_INPUT_CLIP),
        ]

    def lstm_statistics(
        self, ops: Ops, sum_grad_sq, sum_momentum_sq, sum_v, num_params, corrections
    ):
        """The ``LSTM_FEATURE_NAMES`` inputs of one tensor from three sums over it (of g², of
        the fast momentum squared and of the second moment): the log RMS of the gradient and
        of the bias-corrected fast momentum, each over the RMS the second moment gives."""
        c_fast, _, c_v = corrections
        n = max(num_params, 1)
        typical = ops.sqrt(sum_v * c_v / n) + EPS
        grad = ops.sqrt(sum_grad_sq / n) / typical
        momentum = ops.sqrt(sum_momentum_sq / n) * c_fast / typical
        return [ops.log(grad + EPS), ops.log(momentum + EPS)]

    def lstm_step(self, ops: Ops, theta: dict, inputs, h, c):
        """One step of the per-tensor LSTM over all tensors at once.

        Args:
            inputs: ``(n_tensors, len(lstm_feature_names))``.
            h, c: ``(n_tensors, lstm_hidden)`` state.

        Returns:
            ``(h, c, message, log_step)``: the new state, ``(n_tensors, hidden)`` added to the
            per-parameter network's first-layer pre-activations, ``(n_tensors,)`` log steps.
        """
        x = ops.clip(inputs, -LSTM_INPUT_CLIP, LSTM_INPUT_CLIP)
        gates = x @ theta["lstm_wx"].T + h @ theta["lstm_wh"].T + theta["lstm_b"]
        n = self.lstm_hidden
        i, f, g, o = (gates[:, k * n : (k + 1) * n] for k in range(4))
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        out = h @ theta["lstm_w_out"].T + theta["lstm_b_out"]
        return h, c, out[:, : self.hidden], out[:, self.hidden]

    def log_steps(self, ops: Ops, theta: dict, rms_params):
        """Each tensor's log step before the LSTM's: ``log λ₂ + log_lr`` (+ the relative step).

        Args:
            rms_params: ``(n_tensors,)`` float32, the parameters' RMS per tensor.
        """
        base = math.log(self.step_mult) + theta["log_lr"] + 0.0 * rms_params
        if not self.relative_step:
            return base
        size = ops.log(ops.clip(rms_params, RELATIVE_FLOOR, math.inf) / RELATIVE_REF)
        return base + theta["step_power"] * size

    def previous_direction(self, ops: Ops, m_fast, v):
        """The nominal direction ``m/√(v + EPS_ROOT)`` of the accumulators before this step,
        which ``step_alignment`` compares the gradient with."""
        return m_fast * ops.rsqrt(v + EPS_ROOT)

    def step_alignment(self, ops: Ops, sum_product, sum_grad_sq, sum_direction_sq):
        """The cosine between a tensor's gradient ``g`` and its previous nominal direction
        ``d = m/√(v + EPS_ROOT)`` (the accumulators before this step), from three sums over the
        tensor: ``Σ g·d``, ``Σ g²`` and ``Σ d²``; 0 where either is zero (the first step)."""
        norms = ops.sqrt(sum_grad_sq) * ops.sqrt(sum_direction_sq)
        return sum_product / (norms + MIN_NORM)

    def adapted_step_offsets(self, ops: Ops, theta: dict, offsets, alignment):
        """Each tensor's adapted log step after this step: ``offsets`` (the previous ones, 0
        before the first step) plus ``ADAPT_RATE_SCALE · adapt_rate · alignment``, within
        ``±STEP_OFFSET_CLIP``. Shapes: ``(n_tensors,)``."""
        moved = offsets + ADAPT_RATE_SCALE * theta["adapt_rate"] * alignment
        return ops.clip(moved, -STEP_OFFSET_CLIP, STEP_OFFSET_CLIP)

    def first_layer_bias(self, theta: dict, constants):
        """The first layer's bias with the constant inputs folded in.

        Args:
            constants: ``(n_tensors, len(constant_feature_names))``.

        Returns:
            ``(n_tensors, hidden)``.
        """
        p = len(PARAM_FEATURE_NAMES)
        return constants @ theta["w1"][:, p:].T + theta["b1"]

    def tensor_update(
        self,
        ops: Ops,
        w1,
        bias,
        w2,
        b2,
        g,
        m_fast,
        m_slow,
        v,
        corrections,
        log_scale,
        cap,
    ):
        """One tensor's update from its accumulators, already updated with ``g``.

        Args:
            w1: ``(hidden, len(feature_names))``, the first layer (its per-parameter columns
                are read here).
            bias: ``(hidden,)``, the first layer's bias with the constant inputs folded in.
            w2, b2: ``(2, hidden)`` and ``(2,)``, the output layer.
            g, m_fast, m_slow, v: float32 arrays of the parameter's shape: the gradient, the
                momenta at ``MOMENTUM_DECAYS`` and the second moment.
            corrections: the bias corrections ``1 / (1 − βᵗ)`` of the two momenta and the
                second moment (three float32 scalars).
            log_scale: float32 scalar, ``log λ₂ + log_lr`` (+ the LSTM's log step).
            cap: float32 scalar, the guard's cap on an update entry (``None``: no guard).

        Returns:
            The update, float32, the parameter's shape.
        """
        c_fast, c_slow, c_v = corrections
        over_rms = ops.rsqrt(v * c_v + EPS_ROOT)
        nominal = m_fast * c_fast * over_rms
        inputs = [
            ops.clip(x, -FEATURE_CLIP, FEATURE_CLIP)
            for x in (g * over_rms, nominal, m_slow * c_slow * over_rms)
        ]
        hidden = [ops.relu(h) for h in affine(w1, bias, inputs)]
        direction, magnitude = affine(w2, b2, hidden)
        update = -ops.exp(self.exp_mult * magnitude + log_scale) * (nominal + direction)
        return update if cap is None else ops.clip(update, -cap, cap)

    def guard_cap(self, ops: Ops, rms_param):
        """The guard's cap on one tensor's update entries (``None`` without a guard)."""
        if self.guard_ratio is None:
            return None
        return self.guard_ratio * ops.clip(rms_param, self.guard_floor, math.inf)


def bias_corrections(count, expm1) -> tuple:
    """``1 / (1 − βᵗ)`` for the momenta and the second moment after ``count`` updates, written
    ``−1 / expm1(t·ln β)`` so that float32 keeps its digits (``1 − 0.999²`` in float32 loses
    four of them); ``expm1`` is the caller's framework's (``count`` may be traced)."""
    decays = (*MOMENTUM_DECAYS, SECOND_MOMENT_DECAY)
    return tuple(-1.0 / expm1(count * math.log(b)) for b in decays)


# --- per-run loss statistics (Metz et al. 2020's loss features) ---


def update_loss_stats(ops: Ops, stats: tuple, loss, valid_loss) -> tuple:
    """Fold one step's training and validation losses (float32 scalars) into
    ``(mean, var, valid, initial, count)``; non-finite losses are skipped."""
    mean, var, valid, initial, count = stats
    first = count == 0
    loss = ops.where(ops.isfinite(loss), loss, mean)
    valid_loss = ops.where(ops.isfinite(valid_loss), valid_loss, valid)
    new_mean = ops.where(first, loss, TRAIN_LOSS_DECAY * mean + (1 - TRAIN_LOSS_DECAY) * loss)
    new_var = ops.where(
        first, 0.0 * var, TRAIN_LOSS_DECAY * var + (1 - TRAIN_LOSS_DECAY) * (loss - new_mean) ** 2
    )
    new_valid = ops.where(
        first, valid_loss, VALID_LOSS_DECAY * valid + (1 - VALID_LOSS_DECAY) * valid_loss
    )
    return new_mean, new_var, new_valid, ops.where(first, loss, initial), count + 1


def loss_features(ops: Ops, stats: tuple, loss) -> list:
    """The ``LOSS_FEATURE_NAMES`` inputs, each clipped to ±FEATURE_CLIP (three scalars)."""
    mean, var, valid, initial, _ = stats
    scale = ops.sqrt(var + EPS)
    train = (ops.where(ops.isfinite(loss), loss, mean) - mean) / scale
    gap = (valid - mean) / scale
    ratio = ops.log((ops.abs(mean) + EPS) / (ops.abs(initial) + EPS))
    return [ops.clip(x, -FEATURE_CLIP, FEATURE_CLIP) for x in (train, gap, ratio)]


def valid_over_train(ops: Ops, stats: tuple):
    """The ``VALID_OVER_TRAIN_NAME`` input: log(|valid| ÷ |train|) of the running averages,
    clipped to ±FEATURE_CLIP (0 when the validation loss is not given: it is the training
    loss then)."""
    mean, _, valid, _, _ = stats
    ratio = ops.log((ops.abs(valid) + EPS) / (ops.abs(mean) + EPS))
    return ops.clip(ratio, -FEATURE_CLIP, FEATURE_CLIP)


def _weight_of(bias_name: str) -> str:
    return {"b1": "w1", "lstm_b": "lstm_wh"}[bias_name]


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value
