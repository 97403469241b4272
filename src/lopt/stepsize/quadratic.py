"""Quadratic step-size problems, GD unrolls, meta-objectives and their meta-gradients.

Implements the setting of Wang, Yuan, Wu & Ge, "Guarantees for Tuning the Step Size using a
Learning-to-Learn Approach", ICML 2021 (arXiv 2006.16495), Sections 3-4.

Everything is written in the eigenbasis of the Hessian: ``f(w) = 1/2 * sum_i lam_i * w_i**2``
with ``lam_i > 0`` (``L = max lam``, ``alpha = min lam``) and ``c_i = <w0, u_i>`` the coordinates
of the unit-norm start point. Gradient descent with step size ``eta`` gives
``w_t,i = r_i**t * c_i`` with ``r_i = 1 - eta * lam_i``, so

    f(w_t)       = 1/2 * sum_i c_i^2 lam_i r_i^(2t)
    naive F(eta) = f(w_t),                 F'(eta) = -t * sum_i c_i^2 lam_i^2 r_i^(2t-1)
    log   F(eta) = (1/t) * log f(w_t),     F'(eta) = -2 * sum_i c_i^2 lam_i^2 r_i^(2t-1)
                                                       / sum_i c_i^2 lam_i r_i^(2t)

Backpropagating through the unroll touches ``r_i**t``, which under- or overflows long before the
log objective's gradient does. The stable method evaluates the closed forms in log space: every
term is ``sign * exp(log_magnitude)`` with ``sign(r_i^(2t-1)) = sign(r_i)`` (odd power), and the
signed sums are taken with ``logsumexp(..., b=signs, return_sign=True)``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from lopt.errors import LoptError, check_choice, check_range

OBJECTIVES = ("naive", "log")
METHODS = ("stable", "autodiff")
DTYPES = ("float32", "float64")
SPECTRA = ("linear", "geometric")


class QuadraticProblem(NamedTuple):
    """A quadratic ``f(w) = 1/2 w^T H w`` in the eigenbasis of ``H``.

    Attributes:
        eigenvalues: ``(d,)`` positive eigenvalues ``lam_i`` of ``H``.
        w0_coords: ``(d,)`` coordinates ``c_i`` of the unit-norm start point in that basis.
    """

    eigenvalues: jax.Array
    w0_coords: jax.Array


class StableGradient(NamedTuple):
    """A meta-gradient held as ``sign * exp(log_abs)`` so that it never over- or underflows.

    Attributes:
        value: the meta-gradient as a float (``+-inf`` or ``0`` only where the true value is
            outside the dtype's range).
        log_abs: natural log of ``|value|`` (``-inf`` where the value is exactly zero).
        sign: ``-1``, ``0`` or ``+1``.
    """

    value: jax.Array
    log_abs: jax.Array
    sign: jax.Array


def make_spectrum(d: int, L: float, alpha: float, kind: str = "linear") -> np.ndarray:
    """Eigenvalues ``(d,)`` from ``alpha`` (smallest) to ``L`` (largest), float64 numpy.

    ``kind="linear"`` spaces them evenly, ``"geometric"`` evenly in log scale.
    """
    check_choice("spectrum kind", kind, SPECTRA)
    check_range("d", d, 1)
    check_range("alpha", alpha, np.finfo(np.float64).tiny)
    check_range("L", L, alpha)
    if kind == "linear":
        return np.linspace(alpha, L, d)
    return np.geomspace(alpha, L, d)


def make_quadratic(
    d: int, L: float, alpha: float, *, key: jax.Array, kind: str = "linear"
) -> QuadraticProblem:
    """A quadratic with the given spectrum and a start point drawn uniformly from the unit sphere.

    Returns float64 numpy arrays (cast with ``jnp.asarray(..., dtype)`` where needed).
    """
    lam = make_spectrum(d, L, alpha, kind)
    c = np.asarray(jax.random.normal(key, (d,), dtype=jnp.float32), dtype=np.float64)
    return QuadraticProblem(lam, c / np.linalg.norm(c))


def gd_unroll(eta: jax.Array, eigenvalues: jax.Array, w0_coords: jax.Array, t: int) -> jax.Array:
    """``w_t`` after ``t`` GD steps ``w <- w - eta * H w`` (a ``lax.scan``), shape ``(d,)``."""

    def step(w: jax.Array, _: None) -> tuple[jax.Array, None]:
        return w - eta * (eigenvalues * w), None

    w_t, _ = jax.lax.scan(step, w0_coords, None, length=t)
    return w_t


def quadratic_loss(w: jax.Array, eigenvalues: jax.Array) -> jax.Array:
    """``f(w) = 1/2 sum_i lam_i w_i^2`` for ``w`` of shape ``(d,)``; a scalar."""
    return 0.5 * jnp.sum(eigenvalues * w**2)


def meta_objective(
    eta: jax.Array, eigenvalues: jax.Array, w0_coords: jax.Array, t: int, objective: str = "log"
) -> jax.Array:
    """The meta-objective computed by unrolling GD (what autodiff differentiates); a scalar."""
    f_t = quadratic_loss(gd_unroll(eta, eigenvalues, w0_coords, t), eigenvalues)
    return f_t if objective == "naive" else jnp.log(f_t) / t


def _log_sums(
    eta: jax.Array, eigenvalues: jax.Array, w0_coords: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``log|N|, sign(N), log D`` for ``N = sum c^2 lam^2 r^(2t-1)``, ``D = sum c^2 lam r^(2t)``."""
    r = 1.0 - eta * eigenvalues
    log_abs_r = jnp.log(jnp.abs(r))  # -inf where r == 0: that term is exactly zero
    log_c2 = 2.0 * jnp.log(jnp.abs(w0_coords))  # -inf where c == 0
    log_lam = jnp.log(eigenvalues)
    log_num_terms = log_c2 + 2.0 * log_lam + (2 * t - 1) * log_abs_r
    log_den_terms = log_c2 + log_lam + (2 * t) * log_abs_r
    log_num, sign_num = logsumexp(log_num_terms, b=jnp.sign(r), return_sign=True)
    log_den = logsumexp(log_den_terms)
    return log_num, sign_num, log_den


@functools.partial(jax.jit, static_argnames=("objective",))
def stable_meta_gradient(
    eta: jax.Array, eigenvalues: jax.Array, w0_coords: jax.Array, t: jax.Array, objective: str
) -> StableGradient:
    """Closed-form meta-gradient evaluated in log space (no intermediate over/underflow).

    Args:
        eta: scalar step size.
        eigenvalues: ``(d,)`` positive eigenvalues.
        w0_coords: ``(d,)`` start point in the eigenbasis.
        t: number of GD steps (may be traced).
        objective: ``"naive"`` or ``"log"``.

    Returns:
        A :class:`StableGradient` of scalars.
    """
    log_num, sign_num, log_den = _log_sums(eta, eigenvalues, w0_coords, t)
    if objective == "naive":
        log_abs = jnp.log(jnp.asarray(t, log_num.dtype)) + log_num
    else:
        log_abs = jnp.log(jnp.asarray(2.0, log_num.dtype)) + log_num - log_den
    sign = -sign_num
    return StableGradient(sign * jnp.exp(log_abs), log_abs, sign)


@functools.partial(jax.jit, static_argnames=("objective",))
def stable_log_objective(
    eta: jax.Array, eigenvalues: jax.Array, w0_coords: jax.Array, t: jax.Array, objective: str
) -> jax.Array:
    """``log F(eta)`` for the naive objective or ``F(eta)`` for the log objective, in log space.

    Finite wherever ``f(w_t) > 0``, whatever ``t``; a scalar.
    """
    _, _, log_den = _log_sums(eta, eigenvalues, w0_coords, t)
    log_f = jnp.log(jnp.asarray(0.5, log_den.dtype)) + log_den
    return log_f if objective == "naive" else log_f / t


@functools.partial(jax.jit, static_argnames=("t", "objective"))
def autodiff_meta_gradient(
    eta: jax.Array, eigenvalues: jax.Array, w0_coords: jax.Array, t: int, objective: str
) -> jax.Array:
    """``jax.grad`` of :func:`meta_objective` through the ``lax.scan`` unroll; a scalar."""
    return jax.grad(meta_objective)(eta, eigenvalues, w0_coords, t, objective)


def predicted_growth_rate(eigenvalues: np.ndarray, w0_coords: np.ndarray, eta: float) -> float:
    """Per-step growth of ``log|F'_naive|`` as ``t -> inf``: ``2 * log max_i |1 - eta lam_i|``.

    The max runs over directions with ``c_i != 0``; for ``eta > 2/(L + alpha)`` it is
    ``2 * log|1 - eta L|`` (exponential explosion once ``eta > 2/L``).
    """
    lam = np.asarray(eigenvalues, np.float64)[np.asarray(w0_coords) != 0]
    return float(2.0 * np.log(np.max(np.abs(1.0 - eta * lam))))


def _is_concrete(x: object) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _numbers(name: str, x: object) -> np.ndarray:
    """``x`` as a float64 array, or one clear error if it holds anything but real numbers."""
    try:
        values = np.asarray(x)
        if values.dtype.kind not in "biuf":
            raise TypeError
        return values.astype(np.float64)
    except (TypeError, ValueError):
        raise LoptError(f"invalid value for {name}: {x!r} (expected real numbers)") from None


def _validate(eta, eigenvalues, w0_coords, t, objective, method, dtype) -> None:
    check_choice("objective", objective, OBJECTIVES)
    check_choice("method", method, METHODS)
    check_choice("dtype", jnp.dtype(dtype).name, DTYPES)
    if isinstance(t, bool) or not isinstance(t, int | np.integer):
        raise LoptError(f"invalid value for t: {t!r} (allowed: an integer >= 1)")
    check_range("t", int(t), 1)
    if _is_concrete(eigenvalues) and _is_concrete(w0_coords):
        lam, c = _numbers("eigenvalues", eigenvalues), _numbers("w0_coords", w0_coords)
        if lam.ndim != 1 or lam.shape != c.shape:
            raise LoptError(
                f"eigenvalues and w0_coords must be 1-D of the same shape; got {lam.shape} "
                f"and {c.shape}"
            )
        if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise LoptError("invalid value for eigenvalues: all must be finite and > 0")
        if not np.all(np.isfinite(c)) or not np.any(c != 0):
            raise LoptError("invalid value for w0_coords: must be finite and not all zero")
    if _is_concrete(eta):
        e = _numbers("eta", eta)
        if not np.all(np.isfinite(e)) or np.any(e < 0):
            raise LoptError(f"invalid value for eta: {eta!r} (allowed: finite and >= 0)")


def meta_gradient(
    eta: float | jax.Array,
    eigenvalues: jax.Array,
    w0_coords: jax.Array,
    t: int,
    objective: str = "log",
    method: str = "stable",
    dtype: jnp.dtype = jnp.float64,
) -> jax.Array:
    """Meta-gradient ``dF/deta`` of the naive or log meta-objective after ``t`` GD steps.

    Args:
        eta: step size, a scalar or an array of any shape ``S`` (each entry is independent).
        eigenvalues: ``(d,)`` positive eigenvalues of ``H``.
        w0_coords: ``(d,)`` start point in the eigenbasis (need not be normalized).
        t: number of GD steps, an int >= 1.
        objective: ``"naive"`` (``f(w_t)``) or ``"log"`` (``(1/t) log f(w_t)``).
        method: ``"stable"`` (closed form in log space) or ``"autodiff"`` (``jax.grad`` through a
            ``lax.scan`` unroll, which under/overflows at large ``t``).
        dtype: ``jnp.float32`` or ``jnp.float64``; float64 is enabled only for this call.

    Returns:
        Array of shape ``S`` and dtype ``dtype``.

    Example:
        >>> meta_gradient(0.1, jnp.array([1.0, 10.0]), jnp.array([0.6, 0.8]), t=50)
    """
    _validate(eta, eigenvalues, w0_coords, t, objective, method, dtype)
    dtype = jnp.dtype(dtype)
    with jax.enable_x64(dtype == jnp.float64):
        eta_arr = jnp.asarray(eta, dtype)
        lam = jnp.asarray(eigenvalues, dtype)
        c = jnp.asarray(w0_coords, dtype)
        if method == "stable":
            fn = lambda e: stable_meta_gradient(e, lam, c, t, objective).value
        else:
            fn = lambda e: autodiff_meta_gradient(e, lam, c, int(t), objective)
        flat = jax.vmap(fn)(eta_arr.reshape(-1))
        return flat.reshape(eta_arr.shape)


def meta_gradient_log_abs(
    eta: float | jax.Array,
    eigenvalues: jax.Array,
    w0_coords: jax.Array,
    t: int,
    objective: str = "log",
    dtype: jnp.dtype = jnp.float64,
) -> StableGradient:
    """Like ``meta_gradient(..., method="stable")`` but also returns ``log|F'|`` and its sign.

    Use it when ``|F'|`` is beyond the float range (naive objective at large ``t``).
    Fields have the shape of ``eta``.
    """
    _validate(eta, eigenvalues, w0_coords, t, objective, "stable", dtype)
    dtype = jnp.dtype(dtype)
    with jax.enable_x64(dtype == jnp.float64):
        eta_arr = jnp.asarray(eta, dtype)
        lam = jnp.asarray(eigenvalues, dtype)
        c = jnp.asarray(w0_coords, dtype)
        out = jax.vmap(lambda e: stable_meta_gradient(e, lam, c, t, objective))(eta_arr.reshape(-1))
        return StableGradient(*(x.reshape(eta_arr.shape) for x in out))
