"""Meta-gradient descent on the step size, and the reference optimum it is judged against.

Wang, Yuan, Wu & Ge (ICML 2021, arXiv 2006.16495), Theorem 4 / Algorithm 1: on the log
meta-objective ``F(eta) = (1/t) log f(w_t)``, which is quasi-convex with polynomially bounded
gradient, meta-gradient descent ``eta_k = max(eta_{k-1} - s_k F'(eta_{k-1}), 0)`` with
``s_k = step_scale / sqrt(k)`` reaches an ``eps``-optimal step size in polynomially many steps.
The paper's run: ``d = 20, t = 80, eta_0 = 0.1, s_k = 1 / (100 sqrt k)``, 300 meta-steps.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lopt.errors import check_choice, check_range
from lopt.stepsize.quadratic import (
    METHODS,
    OBJECTIVES,
    autodiff_meta_gradient,
    stable_log_objective,
    stable_meta_gradient,
)


class MetaDescentResult(NamedTuple):
    """Trajectory of meta-gradient descent (numpy float64).

    Attributes:
        etas: ``(num_steps + 1,)`` step sizes ``eta_0 .. eta_K``.
        grads: ``(num_steps,)`` meta-gradients ``F'(eta_{k-1})`` used at step ``k``.
    """

    etas: np.ndarray
    grads: np.ndarray


@functools.partial(jax.jit, static_argnames=("t", "num_steps", "objective", "method"))
def _descend(eta0, step_scale, lam, c, t, num_steps, objective, method):
    def grad_fn(eta):
        if method == "stable":
            return stable_meta_gradient(eta, lam, c, t, objective).value
        return autodiff_meta_gradient(eta, lam, c, t, objective)

    def step(eta, k):
        g = grad_fn(eta)
        new = jnp.maximum(eta - step_scale / jnp.sqrt(k) * g, 0.0)  # reset negative eta to 0
        return new, (new, g)

    ks = jnp.arange(1, num_steps + 1, dtype=lam.dtype)
    _, (etas, grads) = jax.lax.scan(step, eta0, ks)
    return jnp.concatenate([eta0[None], etas]), grads


def meta_gradient_descent(
    eigenvalues: np.ndarray,
    w0_coords: np.ndarray,
    t: int,
    *,
    eta0: float = 0.1,
    num_steps: int = 300,
    step_scale: float = 0.01,
    objective: str = "log",
    method: str = "stable",
    dtype: jnp.dtype = jnp.float64,
) -> MetaDescentResult:
    """Run ``num_steps`` meta-gradient steps ``eta <- max(eta - step_scale/sqrt(k) F'(eta), 0)``.

    Args:
        eigenvalues: ``(d,)`` positive eigenvalues of ``H``.
        w0_coords: ``(d,)`` start point in the eigenbasis.
        t: inner GD steps.
        eta0: initial step size.
        num_steps: meta-steps ``K``.
        step_scale: ``s`` in ``s_k = s / sqrt(k)``.
        objective: ``"naive"`` or ``"log"``.
        method: ``"stable"`` or ``"autodiff"`` meta-gradient.
        dtype: ``jnp.float32`` or ``jnp.float64`` (float64 is enabled only for this call).

    Returns:
        A :class:`MetaDescentResult`.
    """
    check_choice("objective", objective, OBJECTIVES)
    check_choice("method", method, METHODS)
    check_range("t", t, 1)
    check_range("num_steps", num_steps, 1)
    check_range("eta0", eta0, 0.0)
    check_range("step_scale", step_scale, 0.0)
    dtype = jnp.dtype(dtype)
    with jax.enable_x64(dtype == jnp.float64):
        etas, grads = _descend(
            jnp.asarray(eta0, dtype),
            jnp.asarray(step_scale, dtype),
            jnp.asarray(eigenvalues, dtype),
            jnp.asarray(w0_coords, dtype),
            int(t),
            int(num_steps),
            objective,
            method,
        )
        return MetaDescentResult(np.asarray(etas, np.float64), np.asarray(grads, np.float64))


def log_objective_values(
    etas: np.ndarray, eigenvalues: np.ndarray, w0_coords: np.ndarray, t: int
) -> np.ndarray:
    """Stable float64 log meta-objective ``(1/t) log f(w_t)`` at each of ``etas`` (any shape)."""
    with jax.enable_x64(True):
        lam = jnp.asarray(eigenvalues, jnp.float64)
        c = jnp.asarray(w0_coords, jnp.float64)
        e = jnp.asarray(etas, jnp.float64)
        vals = jax.vmap(lambda x: stable_log_objective(x, lam, c, t, "log"))(e.reshape(-1))
        return np.asarray(vals).reshape(e.shape)


def optimal_step_size(
    eigenvalues: np.ndarray, w0_coords: np.ndarray, t: int, *, grid_size: int = 20001
) -> float:
    """The minimizer ``eta*`` of the log meta-objective, to float64 precision.

    A fine grid on ``[0, 2/alpha]`` brackets the minimum (``F`` grows for ``eta > 2/alpha``
    where every ``|1 - eta lam_i| > 1``); bisection on the sign of the stable meta-gradient
    then refines it (``F`` is quasi-convex, so ``F'`` changes sign once).
    """
    lam = np.asarray(eigenvalues, np.float64)
    grid = np.linspace(0.0, 2.0 / lam.min(), grid_size)
    vals = log_objective_values(grid, eigenvalues, w0_coords, t)
    i = int(np.nanargmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid_size - 1)]
    with jax.enable_x64(True):
        lam_j = jnp.asarray(lam)
        c_j = jnp.asarray(w0_coords, jnp.float64)
        sign = lambda e: float(stable_meta_gradient(jnp.float64(e), lam_j, c_j, t, "log").sign)
        if sign(lo) >= 0:  # minimum at the left end of the bracket (e.g. at eta = 0)
            return float(lo)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if sign(mid) < 0:
                lo = mid
            else:
                hi = mid
    return float(0.5 * (lo + hi))


def steps_to_converge(etas: np.ndarray, eta_star: float, rel_tol: float) -> int | None:
    """First meta-step ``k`` from which ``|eta_j - eta*| <= rel_tol * eta*`` for every ``j >= k``.

    ``None`` if the last iterate is outside the tolerance. ``etas`` has shape ``(K + 1,)``.
    """
    inside = np.abs(np.asarray(etas) - eta_star) <= rel_tol * abs(eta_star)
    if not inside[-1]:
        return None
    outside = np.flatnonzero(~inside)
    return 0 if outside.size == 0 else int(outside[-1] + 1)
