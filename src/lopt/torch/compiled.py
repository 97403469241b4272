"""The per-parameter part of a learned update as one function for ``torch.compile``.

``LearnedOptimizer(..., compile=True)`` runs this instead of the eager path of
``lopt.torch.networks``. It computes the same thing — normalized features, the per-parameter
MLP, Adam's nominal direction, the step and the trust region of one tensor — but written as
scalar-weight multiply-adds over whole feature arrays rather than as a matmul of a stacked
``(features, numel)`` matrix: eager PyTorch wants the matmul (one kernel per operation), while
TorchInductor fuses the multiply-adds, feature normalization and output into a few loops over
the parameters, the form ``lopt.learned.features.per_param_mlp`` gives XLA. Shapes are dynamic,
so a model compiles at most three times (one-element tensors, tensors of up to 4096 entries,
larger ones: TorchInductor specializes its reductions), not once per tensor shape.
"""

from __future__ import annotations

import functools

import torch

from lopt.specs.constants import EPS, FEATURE_CLIP
from lopt.specs.mlp import NOMINAL_B1, NOMINAL_B2, PER_PARAMETER_REFERENCE
from lopt.torch.networks import trust_region
from lopt.unrolled import affine


@functools.cache
def compiled_tensor_update(
    decays: tuple[float, ...],
    exp_mult: float,
    step_mult: float,
    trust_ratio: float | None,
    trust_floor: float,
    nominal: bool,
    pool: bool,
    per_parameter: bool = False,
):
    """``tensor_update`` with these static settings, compiled (one compiled function per
    setting, shared by every optimizer that has it)."""
    settings = {
        "nominal_index": (decays.index(NOMINAL_B1), decays.index(NOMINAL_B2)) if nominal else None,
        "reference_index": decays.index(PER_PARAMETER_REFERENCE) if per_parameter else None,
        "exp_mult": exp_mult,
        "step_mult": step_mult,
        "trust_ratio": trust_ratio,
        "trust_floor": trust_floor,
        "pool": pool,
    }
    return torch.compile(functools.partial(tensor_update, **settings), dynamic=True)


def tensor_update(
    p: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    constants: torch.Tensor,
    log_lr: torch.Tensor,
    bias_corrections: torch.Tensor,
    *,
    nominal_index: tuple[int, int] | None,
    reference_index: int | None,
    exp_mult: float,
    step_mult: float,
    trust_ratio: float | None,
    trust_floor: float,
    pool: bool,
):
    """One tensor's update from its accumulators (all float32, flattened).

    Args:
        p, g: parameter and gradient, ``(numel,)``.
        m, v: ``(K, numel)`` momenta and second moments, already updated with ``g``.
        layers: the per-parameter MLP's ``(weight, bias)`` pairs.
        constants: ``(C,)`` per-tensor inputs folded into the first layer's bias.
        log_lr: the log step added to the network's magnitude (θ's, plus the LSTM's per-tensor
            one for "rnn-mlp").
        bias_corrections: ``(2,)`` Adam bias corrections ``1 − β**t`` at the nominal decays.
        nominal_index: indices of the nominal decays in ``m``/``v`` (``None``: no nominal).
        reference_index: with per-parameter features (``feature_normalization="parameter"``),
            the index of their reference decay (0.999, the second nominal one, whose bias
            correction is ``bias_corrections[1]``); ``None``: features normalized over the
            tensor.
        exp_mult, step_mult, trust_ratio, trust_floor: as in the architecture's config.
        pool: also return the last hidden layer's mean over the tensor.

    Returns:
        ``(update (numel,), pooled (hidden[-1],) or None)``.
    """
    k = m.shape[0]
    rsqrt = [torch.rsqrt(v[i] + EPS) for i in range(k)]
    if reference_index is not None:
        over_rms = torch.rsqrt(v[reference_index] / bias_corrections[1] + EPS)
        raw = [
            g * over_rms,
            *(m[i] * over_rms for i in range(k)),
            *(m[i] * rsqrt[i] for i in range(k)),
        ]
        features = [torch.clamp(x, -FEATURE_CLIP, FEATURE_CLIP) for x in raw]
    else:
        raw = [g, p, *(m[i] for i in range(k)), *rsqrt, *(m[i] * rsqrt[i] for i in range(k))]
        features = [_normalized(x) for x in raw]
    weight, bias = layers[0]
    n = len(features)
    hidden = affine(weight[:, :n], bias + weight[:, n:] @ constants, features)
    for weight, bias in layers[1:-1]:
        hidden = affine(weight, bias, [torch.relu(h) for h in hidden])
    hidden = [torch.relu(h) for h in hidden]
    pooled = torch.stack([h.mean() for h in hidden]) if pool else None
    direction, magnitude = affine(*layers[-1], hidden)
    if nominal_index is not None:
        b1, b2 = nominal_index
        m_hat = m[b1] / bias_corrections[0]
        v_hat = v[b2] / bias_corrections[1]
        direction = direction + m_hat / (torch.sqrt(v_hat) + EPS)
    update = torch.exp(magnitude * exp_mult + log_lr) * -step_mult * direction
    return trust_region(update, p, trust_ratio, trust_floor), pooled


def _normalized(x: torch.Tensor) -> torch.Tensor:
    """``x`` divided by its RMS over the tensor, clipped to ±FEATURE_CLIP."""
    scale = torch.rsqrt(torch.mean(torch.square(x)) + EPS)
    return torch.clamp(x * scale, -FEATURE_CLIP, FEATURE_CLIP)
