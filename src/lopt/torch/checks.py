"""What ``LearnedOptimizer`` accepts: one clear ``LoptError`` per kind of bad input, raised
before the optimizer changes anything (parameters, state, param groups); and which steps it
skips (``gradients_overflow``)."""

from __future__ import annotations

import math
import numbers

import torch

from lopt.errors import LoptError


def check_multiplier(value) -> float:
    """An ``lr_multiplier``: a real number >= 0, as a float."""
    if not isinstance(value, int | float) or not value >= 0:
        raise LoptError(f"invalid value for lr_multiplier: {value!r} (allowed: a number >= 0)")
    return float(value)


def check_parameter(p: torch.Tensor) -> None:
    if not p.is_floating_point():
        raise LoptError(
            f"LearnedOptimizer needs real floating-point parameters; got a {p.dtype} parameter "
            f"of shape {tuple(p.shape)}"
        )


def check_loss(value, name: str) -> None:
    """A loss argument must be ``None``, a real number or a one-element tensor."""
    if value is None:
        return
    if hasattr(value, "shape"):  # a tensor or an array
        if math.prod(value.shape) != 1:
            raise LoptError(f"{name} must be a scalar; got a tensor of shape {tuple(value.shape)}")
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LoptError(f"{name} must be a number or a scalar tensor; got {value!r}")


def gradients_overflow(param_groups: list[dict], active: list) -> bool:
    """Whether the step over ``active`` (``(param, multiplier)`` pairs) is to be skipped: its
    gradients are finite but the sum of some tensor's squared entries in float32 is not (as
    ``lopt.learned.guard.overflows``). Raise, naming the first offending parameter, if a
    gradient holds a NaN or an inf. One pass over the gradients and one device-to-host sync."""
    device = active[0][0].device
    squares = []
    for p, _ in active:
        g = p.grad.reshape(-1).to(torch.float32)
        squares.append(torch.dot(g, g).to(device))
    if bool(torch.isfinite(torch.stack(squares)).all()):
        return False
    finite = torch.stack([torch.isfinite(p.grad).all().to(device) for p, _ in active])
    if bool(finite.all()):
        return True
    bad = active[int((~finite).nonzero()[0])][0]
    g, i = next(
        (g, i)
        for g, group in enumerate(param_groups)
        for i, p in enumerate(group["params"])
        if p is bad
    )
    raise LoptError(
        f"the gradient of parameter {i} of param group {g} (shape {tuple(bad.shape)}) holds NaN "
        "or inf; the step was not taken: parameters and optimizer state are unchanged"
    )


def check_state_shapes(param_groups: list[dict], state_dict: dict, decays: int) -> None:
    """Raise if a saved parameter's state does not fit the parameter in its place (torch checks
    only the number of parameters per group); ``decays``: the accumulators per parameter."""
    saved = [g["params"] for g in state_dict.get("param_groups", [])]
    for g, (ids, group) in enumerate(zip(saved, param_groups, strict=False)):
        for i, (saved_id, p) in enumerate(zip(ids, group["params"], strict=False)):
            shape = tuple(p.shape)
            expected = {
                "momentum": (decays, *shape),
                "second_moment": (decays, *shape),
                "initial": shape,
                "grad_sum": shape,
                "m_fast": shape,
                "m_slow": shape,
                "v": shape,
            }
            state = state_dict.get("state", {}).get(saved_id, {})
            for key, want in expected.items():
                value = state.get(key)
                if torch.is_tensor(value) and tuple(value.shape) != want:
                    raise LoptError(
                        f"this state_dict's state for parameter {i} of param group {g} ({key} of "
                        f"shape {tuple(value.shape)}) does not fit that parameter (shape {shape}); "
                        "nothing was loaded"
                    )
