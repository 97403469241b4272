"""The ``fast`` learned optimizer in PyTorch: ``lopt.specs.fast`` run over torch tensors.

The specification holds every formula; this module keeps the state per parameter, updates the
accumulators as ``torch.optim.Adam`` updates its own (``torch._foreach_lerp_``), and applies
the specification's per-tensor update eagerly or, with ``compile=True``, through
``torch.compile`` (TorchInductor fuses the whole per-tensor update into one loop).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from lopt.specs.constants import run_fraction
from lopt.specs.fast import (
    MOMENTUM_DECAYS,
    SECOND_MOMENT_DECAY,
    FastSpec,
    bias_corrections,
    update_loss_stats,
)
from lopt.specs.ops import Ops


def _stack(values: list) -> torch.Tensor:
    """Stack float32 scalars (tensors or Python floats) on the first tensor's device."""
    device = next((v.device for v in values if torch.is_tensor(v)), torch.device("cpu"))
    return torch.stack(
        [torch.as_tensor(v, dtype=torch.float32, device=device).reshape(()) for v in values]
    )


def _where(condition, x, y) -> torch.Tensor:
    """``torch.where`` that also takes a Python bool (the loss statistics' count is an int)."""
    return torch.where(torch.as_tensor(condition), x, y)


TORCH_OPS = Ops(
    rsqrt=torch.rsqrt,
    sqrt=torch.sqrt,
    exp=torch.exp,
    log=torch.log,
    tanh=torch.tanh,
    sigmoid=torch.sigmoid,
    relu=torch.relu,
    abs=torch.abs,
    clip=torch.clamp,
    where=_where,
    isfinite=torch.isfinite,
    stack=_stack,
)


@dataclass(frozen=True)
class FastConfig(FastSpec):
    """Static config of the ``fast`` optimizer: ``lopt.specs.fast.FastSpec``; θ's tensors are
    named by their JAX pytree paths (``"['w1']"``), as the ``.safetensors`` file stores them."""

    def __post_init__(self):
        found = self.problems()
        if found:
            raise ValueError("; ".join(found))

    def theta_shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"['{name}']": shape for name, shape in super().theta_shapes().items()}


def plain_names(theta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """θ keyed by the specification's names (``"w1"``) instead of pytree paths."""
    return {name[2:-2]: tensor for name, tensor in theta.items()}


@functools.cache
def compiled_tensor_update(config: FastSpec):
    """The specification's per-tensor update for ``config``, through ``torch.compile``."""
    return torch.compile(functools.partial(config.tensor_update, TORCH_OPS), dynamic=True)


def init_param_state(config: FastSpec, p: torch.Tensor) -> dict:
    zeros = lambda shape: torch.zeros(shape, dtype=torch.float32, device=p.device)
    state = {"step": 0, "m_fast": zeros(p.shape), "m_slow": zeros(p.shape), "v": zeros(p.shape)}
    state["initial_rms"] = zeros(())
    if config.lstm_hidden:
        state["h"], state["c"] = zeros((config.lstm_hidden,)), zeros((config.lstm_hidden,))
    return state


def step(
    config: FastSpec,
    theta: dict[str, torch.Tensor],
    params: list[torch.Tensor],
    states: list[dict],
    loss_stats: tuple,
    loss: torch.Tensor,
    valid_loss: torch.Tensor,
    total_steps: int | None,
    tensor_update=None,
) -> tuple[list[torch.Tensor], tuple]:
    """One update of ``params`` (non-empty, with float gradients; ``states`` theirs).

    Args:
        theta: θ by the specification's names, on the parameters' device.
        loss_stats: the run's loss statistics before this step, ``(mean, var, valid, initial,
            count)`` (``lopt.specs.fast.update_loss_stats``).
        loss, valid_loss: float32 scalars on the parameters' device.
        tensor_update: the per-tensor update (default: the specification's, eagerly).

    Returns:
        ``(updates, loss_stats)``: each parameter's float32 update, and the new statistics.
    """
    ops = TORCH_OPS
    update_fn = tensor_update or functools.partial(config.tensor_update, ops)
    grads = [p.grad.to(torch.float32) for p in params]
    m_fast, m_slow, v = ([s[k] for s in states] for k in ("m_fast", "m_slow", "v"))
    torch._foreach_lerp_(m_fast, grads, 1 - MOMENTUM_DECAYS[0])
    torch._foreach_lerp_(m_slow, grads, 1 - MOMENTUM_DECAYS[1])
    torch._foreach_lerp_(v, torch._foreach_mul(grads, grads), 1 - SECOND_MOMENT_DECAY)
    for s in states:
        s["step"] += 1
    loss_stats = update_loss_stats(ops, loss_stats, loss, valid_loss)
    device = params[0].device

    rows, shared_by_count = [], {}
    rms_params = []
    for p, s in zip(params, states, strict=True):
        p32 = p.detach().to(torch.float32)
        rms = torch.sqrt(torch.sum(p32 * p32) / max(p.numel(), 1))
        if s["step"] == 1:
            s["initial_rms"] = rms.clone()
        rms_params.append(rms)
        count = s["step"]
        if count not in shared_by_count:
            fraction = run_fraction(count, total_steps)
            count_t = torch.tensor(float(count), device=device)
            shared_by_count[count] = config.shared_features(
                ops, count_t, loss_stats, loss, torch.tensor(fraction, device=device)
            )
        tensor = _stack(config.tensor_features(ops, p.numel(), p.dim(), rms, s["initial_rms"]))
        rows.append(torch.cat([shared_by_count[count], tensor]))
    constants = torch.stack(rows)
    bias = config.first_layer_bias(theta, constants)
    log_scale = config.log_steps(ops, theta, torch.stack(rms_params))
    corrections = [_corrections(s["step"], device) for s in states]
    if config.lstm_hidden:
        stats = [
            _stack(
                config.lstm_statistics(
                    ops, torch.sum(g * g), torch.sum(m * m), torch.sum(vv), g.numel(), c
                )
            )
            for g, m, vv, c in zip(grads, m_fast, v, corrections, strict=True)
        ]
        inputs = torch.cat([constants, torch.stack(stats)], dim=1)
        h = torch.stack([s["h"] for s in states])
        c = torch.stack([s["c"] for s in states])
        h, c, message, log_step = config.lstm_step(ops, theta, inputs, h, c)
        for i, s in enumerate(states):
            s["h"], s["c"] = h[i], c[i]
        bias, log_scale = bias + message, log_scale + log_step
    updates = []
    for i in range(len(params)):
        updates.append(
            update_fn(
                theta["w1"], bias[i], theta["w2"], theta["b2"],
                grads[i], m_fast[i], m_slow[i], v[i], corrections[i], log_scale[i],
                config.guard_cap(ops, rms_params[i]),
            )
        )  # fmt: skip
    return updates, loss_stats


@functools.lru_cache(maxsize=64)
def _corrections(count: int, device: torch.device) -> tuple:
    """The bias corrections after ``count`` updates, as float32 scalars (read, never written)."""
    values = bias_corrections(count, math.expm1)
    return tuple(torch.tensor(x, dtype=torch.float32, device=device) for x in values)
