"""High-precision reference meta-gradients for the quadratic step-size problem.

Used to check the float32/float64 meta-gradients of Wang, Yuan, Wu & Ge (ICML 2021,
arXiv 2006.16495). The reference does *not* use the closed form: it runs forward-mode
differentiation (dual numbers) through the GD recursion itself, in Python's ``decimal`` with a
wide exponent range and ``digits`` significant digits, so nothing over- or underflows:

    w_{k+1} = (1 - eta lam) w_k,    dw_{k+1} = (1 - eta lam) dw_k - lam w_k,    w_0 = c, dw_0 = 0
    f = 1/2 sum lam w_t^2,  f' = sum lam w_t dw_t;   naive F' = f',   log F' = f' / (t f)
"""

from __future__ import annotations

import decimal
import math
from typing import NamedTuple

import numpy as np

from lopt.errors import check_choice, check_range
from lopt.stepsize.quadratic import OBJECTIVES


class ReferenceGradient(NamedTuple):
    """A reference meta-gradient: ``value`` (float64, may be 0 or inf), ``log_abs`` and ``sign``."""

    value: float
    log_abs: float
    sign: int


def reference_meta_gradient(
    eta: float,
    eigenvalues: np.ndarray,
    w0_coords: np.ndarray,
    t: int,
    objective: str = "log",
    digits: int = 60,
) -> ReferenceGradient:
    """Meta-gradient by dual numbers through ``t`` GD steps in ``digits``-digit decimal arithmetic.

    Args:
        eta: scalar step size (its float64 value is used exactly).
        eigenvalues: ``(d,)`` positive eigenvalues.
        w0_coords: ``(d,)`` start point in the eigenbasis.
        t: number of GD steps.
        objective: ``"naive"`` or ``"log"``.
        digits: significant decimal digits of the arithmetic.

    Returns:
        A :class:`ReferenceGradient`; ``value`` is the float64 rounding of the exact result.
    """
    check_choice("objective", objective, OBJECTIVES)
    check_range("t", t, 1)
    ctx = decimal.Context(prec=digits, Emax=10**9, Emin=-(10**9))
    D = lambda x: ctx.create_decimal_from_float(float(x))
    eta_d = D(eta)
    total_f, total_df = ctx.create_decimal(0), ctx.create_decimal(0)
    for lam, c in zip(
        np.asarray(eigenvalues).tolist(), np.asarray(w0_coords).tolist(), strict=True
    ):
        lam_d = D(lam)
        r = ctx.subtract(1, ctx.multiply(eta_d, lam_d))
        w, dw = D(c), ctx.create_decimal(0)
        for _ in range(t):
            w, dw = ctx.multiply(r, w), ctx.subtract(ctx.multiply(r, dw), ctx.multiply(lam_d, w))
        total_f = ctx.add(total_f, ctx.multiply(lam_d, ctx.multiply(w, w)))
        total_df = ctx.add(total_df, ctx.multiply(lam_d, ctx.multiply(w, dw)))
    f = ctx.multiply(ctx.create_decimal("0.5"), total_f)
    grad = total_df if objective == "naive" else ctx.divide(total_df, ctx.multiply(t, f))
    if grad == 0:
        return ReferenceGradient(0.0, -math.inf, 0)
    sign = 1 if grad > 0 else -1
    log_abs = float(ctx.ln(abs(grad)))
    return ReferenceGradient(float(grad), log_abs, sign)
