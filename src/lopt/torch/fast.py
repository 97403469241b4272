"""The ``fast`` learned optimizer in PyTorch: ``lopt.specs.fast`` run over torch tensors.

The specification holds every formula; this module keeps the state per parameter and applies
the specification to all of a step's tensors in one function, ``step``: eagerly or, with
``compile=True``, as one ``torch.compile``d program (``compiled_step``). Everything that changes
from step to step enters it as a tensor (the step counts, the fraction of the run, the loss
statistics), so that it compiles once per set of parameter shapes, and TorchInductor fuses each
tensor's accumulators, reductions and update into a few loops.
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
    """Stack float32 scalars (tensors or Python floats), or tensors of one shape with scalars
    broadcast to it, along a new last axis, on the first tensor's device."""
    device = next((v.device for v in values if torch.is_tensor(v)), torch.device("cpu"))
    tensors = [torch.as_tensor(v, dtype=torch.float32, device=device) for v in values]
    return torch.stack(torch.broadcast_tensors(*tensors), dim=-1)


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
    where=torch.where,
    isfinite=torch.isfinite,
    stack=_stack,
)

LOSS_KEYS = ("mean", "var", "valid", "initial", "count")  # the run's loss statistics, in order


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


def state_names(config: FastSpec) -> tuple[str, ...]:
    """The tensors of a parameter's state that ``step`` reads and updates."""
    lstm = ("h", "c") if config.lstm_hidden else ()
    adapted = ("step_offset",) if config.adaptive_step else ()
    return ("m_fast", "m_slow", "v", "initial_rms", *lstm, *adapted)


def init_param_state(config: FastSpec, p: torch.Tensor) -> dict:
    zeros = lambda shape: torch.zeros(shape, dtype=torch.float32, device=p.device)
    state = {"step": 0, "m_fast": zeros(p.shape), "m_slow": zeros(p.shape), "v": zeros(p.shape)}
    state["initial_rms"] = zeros(())
    if config.adaptive_step:
        state["step_offset"] = zeros(())
    if config.lstm_hidden:
        state["h"], state["c"] = zeros((config.lstm_hidden,)), zeros((config.lstm_hidden,))
    return state


def initial_loss_stats(device: torch.device) -> dict:
    """The loss statistics before the first step: distinct float32 zeros, by ``LOSS_KEYS``."""
    return {k: torch.zeros((), dtype=torch.float32, device=device) for k in LOSS_KEYS}


def step_counts(counts: list[int], total_steps: int | None, device: torch.device):
    """``step``'s ``counts`` input: ``(n, 5)`` float32, for each tensor its update number, the
    fraction of the run it completes and the bias corrections after it (computed here, in
    float64: scalars the compiled update would otherwise recompute for every entry)."""
    rows = [_count_row(count, total_steps) for count in counts]
    return torch.tensor(rows, dtype=torch.float32, device=device)


@functools.lru_cache(maxsize=64)
def _count_row(count: int, total_steps: int | None) -> tuple[float, ...]:
    return (count, run_fraction(count, total_steps), *bias_corrections(count, math.expm1))


def step(
    config: FastSpec,
    theta: dict[str, torch.Tensor],
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: dict[str, list[torch.Tensor]],
    counts: torch.Tensor,
    loss_stats: tuple,
    loss: torch.Tensor,
    valid_loss: torch.Tensor,
) -> tuple[list[torch.Tensor], tuple, torch.Tensor]:
    """One update of ``params`` (non-empty, with float gradients ``grads``), or none when the
    square of a gradient overflows float32: then ``state`` is left as it was.

    Args:
        theta: θ by the specification's names, on the parameters' device.
        state: per ``state_names``, one float32 tensor per parameter; updated in place when the
            step is taken.
        counts: ``step_counts`` of this update.
        loss_stats: the run's loss statistics before this step, float32 scalars ``(mean, var,
            valid, initial, count)`` (``lopt.specs.fast.update_loss_stats``).
        loss, valid_loss: float32 scalars on the parameters' device.

    Returns:
        ``(updates, loss_stats, taken)``: each parameter's float32 update, the statistics after
        this step, and whether it is taken (a boolean scalar; if not, discard the others).
    """
    ops, n = TORCH_OPS, len(params)
    grads = [g.to(torch.float32) for g in grads]
    sum_grad_sq = [torch.sum(g * g) for g in grads]
    taken = torch.isfinite(torch.stack(sum_grad_sq)).all()
    if config.adaptive_step:  # against the accumulators before this step
        previous = zip(grads, sum_grad_sq, state["m_fast"], state["v"], strict=True)
        directions = [(g, gg, config.previous_direction(ops, m, v)) for g, gg, m, v in previous]
        alignment = torch.stack(
            [
                config.step_alignment(ops, torch.sum(g * d), gg, torch.sum(d * d))
                for g, gg, d in directions
            ]
        )
    m_fast = torch._foreach_lerp(state["m_fast"], grads, 1 - MOMENTUM_DECAYS[0])
    m_slow = torch._foreach_lerp(state["m_slow"], grads, 1 - MOMENTUM_DECAYS[1])
    v = torch._foreach_lerp(state["v"], torch._foreach_mul(grads, grads), 1 - SECOND_MOMENT_DECAY)
    count, fraction, corrections = counts[:, 0], counts[:, 1], counts[:, 2:]
    loss_stats = update_loss_stats(ops, loss_stats, loss, valid_loss)

    p32 = [p.detach().to(torch.float32) for p in params]
    rms = torch.stack([torch.sqrt(torch.sum(p * p) / max(p.numel(), 1)) for p in p32])
    initial = torch.where(count == 1, rms, torch.stack(state["initial_rms"]))
    rows = [
        ops.stack(config.tensor_features(ops, p.numel(), p.dim(), rms[i], initial[i]))
        for i, p in enumerate(params)
    ]
    shared = config.shared_features(ops, count, loss_stats, loss, fraction)
    constants = torch.cat([shared, torch.stack(rows)], dim=1)
    bias = config.first_layer_bias(theta, constants)
    log_scale = config.log_steps(ops, theta, rms)
    corrections = [tuple(corrections[i].unbind()) for i in range(n)]
    new = {"m_fast": m_fast, "m_slow": m_slow, "v": v, "initial_rms": initial.unbind()}
    if config.adaptive_step:
        offsets = torch.stack(state["step_offset"])
        offsets = config.adapted_step_offsets(ops, theta, offsets, alignment)
        new["step_offset"] = offsets.unbind()
        log_scale = log_scale + offsets
    if config.lstm_hidden:
        stats = [
            ops.stack(
                config.lstm_statistics(
                    ops, sum_grad_sq[i], torch.sum(m_fast[i] * m_fast[i]), torch.sum(v[i]),
                    params[i].numel(), corrections[i],
                )
            )
            for i in range(n)
        ]  # fmt: skip
        inputs = torch.cat([constants, torch.stack(stats)], dim=1)
        h, c = torch.stack(state["h"]), torch.stack(state["c"])
        h, c, message, log_step = config.lstm_step(ops, theta, inputs, h, c)
        new |= {"h": h.unbind(), "c": c.unbind()}
        bias, log_scale = bias + message, log_scale + log_step
    updates = [
        config.tensor_update(
            ops, theta["w1"], bias[i], theta["w2"], theta["b2"],
            grads[i], m_fast[i], m_slow[i], v[i], corrections[i], log_scale[i],
            config.guard_cap(ops, rms[i]),
        )
        for i in range(n)
    ]  # fmt: skip
    for name, values in new.items():
        for old, value in zip(state[name], values, strict=True):
            old.copy_(torch.where(taken, value, old))
    return updates, loss_stats, taken


@functools.cache
def compiled_step():
    """``step`` through ``torch.compile``: one program per config and set of parameter shapes
    and dtypes (the step counts and statistics are tensors, so it does not recompile as the
    run goes on)."""
    return torch.compile(step, dynamic=False, fullgraph=True, options={"cpp_wrapper": True})
