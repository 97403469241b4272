"""The "mlp" and "rnn-mlp" learned-optimizer networks, written again in PyTorch.

Each function mirrors one in ``lopt.learned`` (``features.py``, ``mlp.py``, ``hierarchical.py``)
operation for operation, in float32, so that a step here equals a step of the JAX optimizer to
float32 rounding (``tests/test_torch.py`` checks it). The architectures' static configs, their
constants, feature names and θ's shapes are the specifications that the JAX optimizers subclass
too (``lopt.specs.mlp``, ``lopt.specs.rnn_mlp``); θ is a flat dict of tensors named by the JAX
leaf paths (``"['mlp'][0].weight"``), exactly as the ``.safetensors`` file stores it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from lopt.specs import constants as spec_constants
from lopt.specs.constants import (
    DISTANCE_B1,
    DISTANCE_B2,
    DISTANCE_D0,
    EPS,
    FEATURE_CLIP,
    HORIZON_SHARPNESS,
    MIN_NORM,
    TRAIN_LOSS_DECAY,
    VALID_LOSS_DECAY,
)
from lopt.specs.mlp import NOMINAL_B1, NOMINAL_B2, PER_PARAMETER_REFERENCE, MLPSpec
from lopt.specs.rnn_mlp import MAX_RANK, RNNMLPSpec
from lopt.torch.fast import FastConfig


@dataclass(frozen=True)
class MLPConfig(MLPSpec):
    """Static config of the ``mlp`` optimizer: ``lopt.specs.mlp.MLPSpec`` (the fields and
    defaults of ``lopt.learned.MLPOptimizer``)."""

    def __post_init__(self):
        found = self.problems()
        if found:
            raise ValueError("; ".join(found))


@dataclass(frozen=True)
class RNNMLPConfig(RNNMLPSpec):
    """Static config of the ``rnn-mlp`` optimizer: ``lopt.specs.rnn_mlp.RNNMLPSpec`` (the fields
    and defaults of ``lopt.learned.RNNMLPOptimizer``)."""

    def __post_init__(self):
        found = self.problems()
        if found:
            raise ValueError("; ".join(found))


CONFIGS: dict[str, type] = {cls.kind: cls for cls in (FastConfig, MLPConfig, RNNMLPConfig)}


def build_config(architecture: dict) -> FastConfig | MLPConfig | RNNMLPConfig:
    """The config from a ``NAME.json`` ``"architecture"`` entry; raises ``ValueError``/``KeyError``
    (turned into a clear message by the loader) on an unknown kind or field."""
    architecture = dict(architecture)
    cls = CONFIGS[architecture.pop("kind", None)]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(architecture) - fields)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} (allowed: {sorted(fields)})")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in architecture.items()})


def mlp_layers(theta: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The per-parameter MLP's ``(weight (out, in), bias (out,))`` pairs, in order."""
    layers = []
    while f"['mlp'][{len(layers)}].weight" in theta:
        i = len(layers)
        layers.append((theta[f"['mlp'][{i}].weight"], theta[f"['mlp'][{i}].bias"]))
    return layers


# --- accumulators and per-parameter features (lopt.learned.features) ---


def decay_tensors(decays: tuple[float, ...], ndim: int, device) -> tuple[torch.Tensor, ...]:
    """``(b, 1 − b)`` as float32 columns ``(K, 1, …, 1)`` broadcasting over a ``(K, *shape)``
    accumulator (``1 − b`` rounded from float64, as JAX does with a Python scalar)."""
    shape = (len(decays),) + (1,) * ndim
    b = torch.tensor(decays, dtype=torch.float32, device=device).reshape(shape)
    one_minus = torch.tensor([1 - d for d in decays], dtype=torch.float32, device=device)
    return b, one_minus.reshape(shape)


def update_accumulators(m, v, g, b, one_minus_b) -> None:
    """In place: ``m ← b·m + (1−b)·g`` and ``v ← b·v + (1−b)·g²``, all ``K`` decays at once.

    Args:
        m, v: ``(K, *shape)`` momenta and second moments.
        g: ``shape`` gradient.
        b, one_minus_b: ``(K, 1, …)`` from ``decay_tensors``.
    """
    m.mul_(b).addcmul_(one_minus_b, g)
    v.mul_(b).addcmul_(one_minus_b, g.square())


def bias_correction(decay: float, count: int) -> float:
    """``1 − decay**count`` rounded like JAX's float32 ``1 − jnp.power(decay, count)``."""
    power = np.float32(float(np.float32(decay)) ** count)
    return float(np.float32(1.0) - power)


def rms(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(mean(x²) + EPS)`` over the whole tensor (without materializing ``x²``)."""
    return torch.linalg.vector_norm(x).square().div(x.numel()).add(EPS).sqrt()


def param_features(p, g, m, v) -> torch.Tensor:
    """Normalized per-parameter features of one tensor, one row each: ``(2 + 3K, numel)``.

    Rows: grad, param, momenta, rsqrt second moments, their products; each divided by its RMS
    over the tensor and clipped to ±FEATURE_CLIP.

    Args:
        p, g: parameter and gradient (float32, ``shape``).
        m, v: ``(K, *shape)`` momenta and second moments.
    """
    k, numel = m.shape[0], g.numel()
    x = torch.empty((2 + 3 * k, numel), dtype=torch.float32, device=g.device)
    for i, row in enumerate((g.reshape(1, -1), p.reshape(1, -1), m.reshape(k, -1))):
        rows = x[i : i + 1] if i < 2 else x[2 : 2 + k]
        _normalize(row, out=rows)  # copies and normalizes in one pass
    r = torch.add(v.reshape(k, -1), EPS, out=x[2 + k : 2 + 2 * k]).rsqrt_()
    mr = torch.mul(m.reshape(k, -1), r, out=x[2 + 2 * k :])
    _normalize(r, out=r)
    _normalize(mr, out=mr)
    return x


def per_parameter_features(g, m, v, count: int, decays: tuple[float, ...]) -> torch.Tensor:
    """Features needing no reduction over the tensor, one row each: ``(1 + 2K, numel)``
    (``lopt.learned.features.per_parameter_features``; names from
    ``lopt.specs.mlp.param_feature_names``): the gradient and the momenta over √v̂ at
    the reference decay (bias-corrected), then each momentum over the root of its own second
    moment; clipped to ±FEATURE_CLIP."""
    k = m.shape[0]
    reference = v[decays.index(PER_PARAMETER_REFERENCE)] / bias_correction(
        PER_PARAMETER_REFERENCE, count
    )
    over_rms = reference.reshape(1, -1).add(EPS).rsqrt_()
    x = torch.empty((1 + 2 * k, g.numel()), dtype=torch.float32, device=g.device)
    torch.mul(g.reshape(1, -1), over_rms, out=x[:1])
    torch.mul(m.reshape(k, -1), over_rms, out=x[1 : 1 + k])
    torch.mul(m.reshape(k, -1), v.reshape(k, -1).add(EPS).rsqrt_(), out=x[1 + k :])
    return x.clamp_(-FEATURE_CLIP, FEATURE_CLIP)


def _normalize(x: torch.Tensor, out: torch.Tensor) -> None:
    """Rows of ``x`` divided by their RMS and clipped to ±FEATURE_CLIP, written to ``out``."""
    mean_square = torch.linalg.vector_norm(x, dim=1, keepdim=True).square_().div_(x.shape[1])
    torch.mul(x, mean_square.add_(EPS).rsqrt_(), out=out).clamp_(-FEATURE_CLIP, FEATURE_CLIP)


def per_param_mlp(layers, features: torch.Tensor, constants: torch.Tensor):
    """The ReLU MLP at every parameter; ``constants (C,)`` folded into the first bias.

    Args:
        layers: ``(weight, bias)`` pairs from ``mlp_layers``.
        features: ``(n, numel)`` from ``param_features``.
        constants: ``(C,)`` inputs shared by the tensor's parameters (first layer takes
            ``n + C`` inputs, per-parameter ones first).

    Returns:
        ``(direction, magnitude, pooled)``: two ``(numel,)`` outputs and the last hidden layer
        averaged over the tensor, ``(hidden[-1],)``.
    """
    n = features.shape[0]
    weight, bias = layers[0]
    bias = bias + weight[:, n:] @ constants
    x = torch.addmm(bias[:, None], weight[:, :n], features)  # (hidden, numel)
    pooled = x
    for weight, bias in layers[1:]:
        pooled = x.relu_()
        x = torch.addmm(bias[:, None], weight, pooled)
    return x[0], x[1], pooled.mean(dim=1)


def time_features(count: int, timescales: tuple[float, ...], device) -> torch.Tensor:
    """``tanh(count / τ)`` for every timescale τ, float32: ``(len(timescales),)``."""
    step = torch.tensor(float(count), dtype=torch.float32, device=device)
    return torch.tanh(step / torch.tensor(timescales, dtype=torch.float32, device=device))


def run_fraction(count: int, horizon: int | None, device) -> torch.Tensor:
    """The fraction of the run done, ``count / horizon`` within [0, 1], float32 (0 when the
    horizon is unknown)."""
    fraction = spec_constants.run_fraction(count, horizon)
    return torch.tensor(fraction, dtype=torch.float32, device=device)


def horizon_features(
    count: int, horizon: int | None, thresholds: tuple[float, ...], device
) -> torch.Tensor:
    """``run_fraction``, then ``tanh(10·(fraction − c))`` per threshold, float32."""
    fraction = run_fraction(count, horizon, device)
    cuts = torch.tensor(thresholds, dtype=torch.float32, device=device)
    return torch.cat([fraction.reshape(1), torch.tanh(HORIZON_SHARPNESS * (fraction - cuts))])


def nominal_direction(m, v, count: int, decays: tuple[float, ...]) -> torch.Tensor:
    """Adam's bias-corrected direction m̂/(√v̂ + ε) from the accumulators at the nominal decays
    (``NOMINAL_B1``, ``NOMINAL_B2``)."""
    m_hat = m[decays.index(NOMINAL_B1)] / bias_correction(NOMINAL_B1, count)
    v_hat = v[decays.index(NOMINAL_B2)] / bias_correction(NOMINAL_B2, count)
    return m_hat.div_(v_hat.sqrt_().add_(EPS))


def trust_region(update: torch.Tensor, param: torch.Tensor, ratio, floor: float) -> torch.Tensor:
    """In place: ``update`` scaled so that ``RMS(update) ≤ ratio · max(RMS(param), floor)``
    (``lopt.learned.trust_region``); unchanged when ``ratio`` is ``None``."""
    if ratio is None:
        return update
    rms = lambda x: x.square().mean().sqrt()
    limit = rms(param).clamp(min=floor).mul(ratio)
    return update.mul_(limit.div_(rms(update).clamp(min=MIN_NORM)).clamp(max=1.0))


# --- Prodigy's distance estimate (lopt.learned.distance) ---


def update_distance(stats: dict, tensors: list, device) -> dict:
    """One step of the distance estimate over all tensors taking part in it.

    Args:
        stats: float32 scalars ``numerator`` and ``d`` and an int ``count``.
        tensors: ``(g, p, initial, grad_sum)`` per tensor, float32; each ``grad_sum`` is updated
            in place.

    Returns:
        The new ``stats``.
    """
    count = stats["count"] + 1
    k = torch.tensor(float(count), dtype=torch.float32, device=device)
    d = stats["d"]
    weight = d * d * torch.sqrt(1 - DISTANCE_B2**k) / (1 - DISTANCE_B1**k) / DISTANCE_D0
    decay = DISTANCE_B2**0.5
    moved = torch.zeros((), dtype=torch.float32, device=device)
    denominator = torch.zeros((), dtype=torch.float32, device=device)
    for g, p, initial, grad_sum in tensors:
        moved = moved + torch.dot(g.reshape(-1), (initial - p).reshape(-1)).to(device)
        grad_sum.mul_(decay).addcmul_(weight.to(g.device), g)
        denominator = denominator + grad_sum.abs().sum().to(device)
    numerator = decay * stats["numerator"] + weight * moved
    estimate = numerator / denominator.clamp(min=MIN_NORM)
    d = torch.where(torch.isfinite(estimate), torch.maximum(d, estimate), d)
    return {"numerator": numerator, "d": d, "count": count}


def log_distance_scale(d: torch.Tensor, power: float, ref: float, most: float) -> torch.Tensor:
    """``log`` of the step multiplier ``(d / ref)^power`` within ``[1, most]``."""
    return torch.clamp(power * torch.log(d / ref), 0.0, math.log(most))


# --- the hierarchical optimizer's tensor-level parts (lopt.learned.hierarchical) ---


def tensor_static_features(shape: torch.Size) -> list[float]:
    """is_scalar, log #params, log of the last MAX_RANK dims (padded with 1s)."""
    numel = math.prod(shape)
    dims = list(shape)[-MAX_RANK:]
    dims = [1] * (MAX_RANK - len(dims)) + dims
    return [float(numel == 1), math.log(numel), *(math.log(d) for d in dims)]


def update_loss_stats(stats: dict, loss: torch.Tensor, valid_loss: torch.Tensor) -> dict:
    """EMA mean / variance of the training loss, EMA of the validation loss, first loss seen.

    ``stats`` holds float32 scalars ``mean``, ``var``, ``valid``, ``initial`` and an int
    ``count``; non-finite losses are replaced by the running values.
    """
    first = stats["count"] == 0
    loss = torch.where(torch.isfinite(loss), loss, stats["mean"])
    valid_loss = torch.where(torch.isfinite(valid_loss), valid_loss, stats["valid"])
    if first:
        mean, var, valid, initial = loss, torch.zeros_like(loss), valid_loss, loss
    else:
        mean = TRAIN_LOSS_DECAY * stats["mean"] + (1 - TRAIN_LOSS_DECAY) * loss
        var = TRAIN_LOSS_DECAY * stats["var"] + (1 - TRAIN_LOSS_DECAY) * (loss - mean) ** 2
        valid = VALID_LOSS_DECAY * stats["valid"] + (1 - VALID_LOSS_DECAY) * valid_loss
        initial = stats["initial"]
    return {
        "mean": mean,
        "var": var,
        "valid": valid,
        "initial": initial,
        "count": stats["count"] + 1,
    }


def loss_features(stats: dict, loss: torch.Tensor) -> torch.Tensor:
    """Standardized training and validation loss and the log loss ratio, clipped: ``(3,)``."""
    scale = torch.sqrt(stats["var"] + EPS)
    train = (torch.where(torch.isfinite(loss), loss, stats["mean"]) - stats["mean"]) / scale
    valid = (stats["valid"] - stats["mean"]) / scale
    ratio = torch.log((torch.abs(stats["mean"]) + EPS) / (torch.abs(stats["initial"]) + EPS))
    return torch.clamp(torch.stack([train, valid, ratio]), -FEATURE_CLIP, FEATURE_CLIP)


def dense(theta: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """``x (..., in) @ weight.T + bias`` for the linear layer ``theta['name']``."""
    return x @ theta[f"['{name}'].weight"].T + theta[f"['{name}'].bias"]


def lstm_cell(theta: dict, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """``equinox.nn.LSTMCell`` on a batch: ``x (n, in)``, ``h, c (n, hidden)`` -> ``(h, c)``.

    Gates are split in equinox's order (input, forget, cell, output).
    """
    lin = x @ theta["['lstm'].weight_ih"].T + h @ theta["['lstm'].weight_hh"].T
    lin = lin + theta["['lstm'].bias"]
    i, f, g, o = torch.chunk(lin, 4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c
