"""Train-by-train versus train-by-validation step-size tuning on noisy least squares.

Wang, Yuan, Wu & Ge (ICML 2021, arXiv 2006.16495), Section 5: data ``y = <w*, x> + sigma xi``,
``x ~ N(0, I_d)``, ``xi ~ N(0, 1)``, ``w* ~ N(0, I_d / d)`` (so ``||w*|| ~ 1``). The inner
optimizer is GD for ``t`` steps from ``w = 0`` on ``1/(2n) ||X w - y||^2``. The step size is
meta-learned on a set of training problems either

* train-by-train: each problem's ``n`` samples train GD, the meta-objective is the final
  *training* loss on those same samples; or
* train-by-validation: ``n/2`` samples train GD, the meta-objective is the loss of ``w_t`` on
  the other ``n/2`` samples.

The learned ``eta`` is then used on fresh problems, scored by ``||w_t - w*||^2`` (the excess
risk for isotropic ``x``). With ``n < d`` and noise, train-by-train drives the training loss to
zero with a large ``eta``, interpolating the noise; train-by-validation early-stops.

GD from zero stays in the row space of ``X``, so with ``X^T X / n = V diag(mu) V^T`` and
``r_j = 1 - eta mu_j`` the iterate is ``w_t = V a`` with ``a_j = (1 - r_j^t) <u_j, y> / s_j``
(``s_j = sqrt(n mu_j)``). That closed form lets one meta-objective be evaluated on a whole
``eta`` grid at once; :func:`gd_unroll` (a ``lax.scan``) is the reference it is tested against.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lopt.errors import check_range


class Problem(NamedTuple):
    """One noisy least-squares problem (``y`` noise-free parts and noise are kept apart).

    Attributes:
        x: ``(n, d)`` inputs.
        clean_y: ``(n,)`` targets ``X w*`` without noise.
        noise: ``(n,)`` standard-normal noise; targets are ``clean_y + sigma * noise``.
        w_star: ``(d,)`` ground truth.
    """

    x: jax.Array
    clean_y: jax.Array
    noise: jax.Array
    w_star: jax.Array


class Basis(NamedTuple):
    """Eigen-decomposition ``X^T X / n = V diag(mu) V^T`` over ``k = min(n, d)`` directions.

    Attributes:
        mu: ``(k,)`` eigenvalues (clipped at 0).
        s: ``(k,)`` singular values ``sqrt(n mu)`` of ``X``.
        v: ``(d, k)`` right singular vectors.
        n: ``()`` sample count.
    """

    mu: jax.Array
    s: jax.Array
    v: jax.Array
    n: jax.Array


class Fit(NamedTuple):
    """Targets ``y`` seen through a :class:`Basis`.

    Attributes:
        uy: ``(k,)`` ``<u_j, y>`` with ``u_j = X v_j / s_j``.
        proj_y: ``(k,)`` ``<u_j, y> / s_j``, the least-norm solution's coordinates.
        resid: ``()`` ``||y||^2 - ||uy||^2``, the part of ``y`` no ``w`` can fit.
    """

    uy: jax.Array
    proj_y: jax.Array
    resid: jax.Array


def sample_problem(key: jax.Array, d: int, n: int, dtype: jnp.dtype = jnp.float64) -> Problem:
    """Draw ``w* ~ N(0, I/d)``, ``n`` inputs ``x ~ N(0, I_d)`` and standard noise."""
    check_range("d", d, 1)
    check_range("n", n, 1)
    k_w, k_x, k_xi = jax.random.split(key, 3)
    w_star = jax.random.normal(k_w, (d,), dtype) / jnp.sqrt(d)
    x = jax.random.normal(k_x, (n, d), dtype)
    return Problem(x, x @ w_star, jax.random.normal(k_xi, (n,), dtype), w_star)


def split(problem: Problem, n_train: int) -> tuple[Problem, Problem]:
    """The first ``n_train`` samples and the rest, as two problems sharing ``w*``."""
    head = Problem(
        problem.x[:n_train], problem.clean_y[:n_train], problem.noise[:n_train], problem.w_star
    )
    tail = Problem(
        problem.x[n_train:], problem.clean_y[n_train:], problem.noise[n_train:], problem.w_star
    )
    return head, tail


def targets(problem: Problem, sigma: float) -> jax.Array:
    """``(n,)`` noisy targets ``X w* + sigma xi``."""
    return problem.clean_y + sigma * problem.noise


@jax.jit
def decompose(x: jax.Array) -> Basis:
    """Eigen-decompose the smaller Gram matrix of ``x`` ``(n, d)``."""
    n, d = x.shape
    if n <= d:
        mu, u = jnp.linalg.eigh(x @ x.T / n)
        mu = jnp.maximum(mu, 0.0)
        s = jnp.sqrt(n * mu)
        v = (x.T @ u) / jnp.where(s > 0, s, 1.0)
    else:
        mu, v = jnp.linalg.eigh(x.T @ x / n)
        mu = jnp.maximum(mu, 0.0)
        s = jnp.sqrt(n * mu)
    return Basis(mu, s, v, jnp.asarray(n, x.dtype))


@jax.jit
def project(basis: Basis, x: jax.Array, y: jax.Array) -> Fit:
    """Project targets ``y`` ``(n,)`` of inputs ``x`` ``(n, d)`` onto ``basis``."""
    safe_s = jnp.where(basis.s > 0, basis.s, 1.0)
    uy = jnp.where(basis.s > 0, (basis.v.T @ (x.T @ y)) / safe_s, 0.0)
    return Fit(uy, uy / safe_s, jnp.sum(y**2) - jnp.sum(uy**2))


def _decay(eta: jax.Array, mu: jax.Array, t: int) -> jax.Array:
    """``r^t`` with ``r = 1 - eta mu``; ``eta`` ``(g,)``, ``mu`` ``(k,)`` -> ``(g, k)``."""
    return (1.0 - eta[:, None] * mu[None, :]) ** t


def coefficients(eta: jax.Array, basis: Basis, fit: Fit, t: int) -> jax.Array:
    """``(g, k)`` coordinates of ``w_t`` in ``basis.v`` for each of ``eta`` ``(g,)``."""
    return (1.0 - _decay(eta, basis.mu, t)) * fit.proj_y[None, :]


@functools.partial(jax.jit, static_argnames=("t",))
def train_loss(eta: jax.Array, basis: Basis, fit: Fit, t: int) -> jax.Array:
    """``(g,)`` training loss ``1/(2n)||X w_t - y||^2`` for each ``eta`` ``(g,)``."""
    r_t = _decay(eta, basis.mu, t)
    return (jnp.sum((r_t * fit.uy[None, :]) ** 2, axis=1) + fit.resid) / (2.0 * basis.n)


@functools.partial(jax.jit, static_argnames=("t",))
def heldout_loss(
    eta: jax.Array, basis: Basis, fit: Fit, t: int, xv: jax.Array, y: jax.Array
) -> jax.Array:
    """``(g,)`` loss ``1/(2m)||X' w_t - y'||^2`` on held-out data.

    ``xv`` is ``X' V`` of shape ``(m, k)`` (held-out inputs in the basis), ``y`` is ``(m,)``.
    """
    pred = coefficients(eta, basis, fit, t) @ xv.T  # (g, m)
    return jnp.mean((pred - y[None, :]) ** 2, axis=1) / 2.0


@functools.partial(jax.jit, static_argnames=("t",))
def test_error(eta: jax.Array, basis: Basis, fit: Fit, t: int, w_star: jax.Array) -> jax.Array:
    """``(g,)`` ``||w_t - w*||^2`` for each ``eta`` ``(g,)``; ``w_star`` is ``(d,)``."""
    vw = basis.v.T @ w_star
    outside = jnp.maximum(jnp.sum(w_star**2) - jnp.sum(vw**2), 0.0)
    return jnp.sum((coefficients(eta, basis, fit, t) - vw[None, :]) ** 2, axis=1) + outside


@functools.partial(jax.jit, static_argnames=("t",))
def gd_unroll(eta: jax.Array, x: jax.Array, y: jax.Array, t: int) -> jax.Array:
    """``w_t`` ``(d,)`` after ``t`` GD steps from 0 on ``1/(2n)||Xw - y||^2``, by ``lax.scan``."""
    n = x.shape[0]

    def step(w: jax.Array, _: None) -> tuple[jax.Array, None]:
        return w - eta * (x.T @ (x @ w - y)) / n, None

    w_t, _ = jax.lax.scan(step, jnp.zeros(x.shape[1], x.dtype), None, length=t)
    return w_t


class Comparison(NamedTuple):
    """Train-by-train (TbT) vs train-by-validation (TbV) at one sample count, per noise level.

    Attributes:
        eta_grid: ``(g,)`` step sizes searched.
        sigmas: ``(s,)`` noise levels.
        tbt_objective: ``(s, g)`` mean training loss of ``w_t`` (all ``n`` samples train).
        tbv_objective: ``(s, g)`` mean validation loss (``n/2`` train, ``n/2`` validate).
        eta_tbt: ``(s,)`` minimizers of ``tbt_objective`` over the grid.
        eta_tbv: ``(s,)`` minimizers of ``tbv_objective``.
        test_tbt: ``(s, p)`` ``||w_t - w*||^2`` on ``p`` fresh problems, GD on ``n`` samples.
        test_tbv: ``(s, p)`` the same with ``eta_tbv`` and GD on ``n/2`` samples.
        test_curve_full: ``(s, g)`` mean fresh-problem error of GD on ``n`` samples at each eta.
        test_curve_half: ``(s, g)`` the same for GD on ``n/2`` samples.
    """

    eta_grid: np.ndarray
    sigmas: np.ndarray
    tbt_objective: np.ndarray
    tbv_objective: np.ndarray
    eta_tbt: np.ndarray
    eta_tbv: np.ndarray
    test_tbt: np.ndarray
    test_tbv: np.ndarray
    test_curve_full: np.ndarray
    test_curve_half: np.ndarray


def compare(
    key: jax.Array,
    *,
    d: int,
    n: int,
    sigmas: Sequence[float],
    t: int,
    eta_grid: np.ndarray,
    num_meta_problems: int = 10,
    num_test_problems: int = 10,
) -> Comparison:
    """Meta-learn ``eta`` by train-by-train and by train-by-validation, then test both.

    Each meta-objective is averaged over ``num_meta_problems`` problems and minimized over
    ``eta_grid`` (a 1-D meta-parameter: the grid is an exact meta-optimizer at its resolution).
    Both learned step sizes are then run on ``num_test_problems`` fresh problems (same ``w*``,
    inputs and noise draws for every ``sigma``), in float64.
    """
    check_range("n", n, 2)
    check_range("t", t, 1)
    half = n // 2
    sig = np.asarray(sigmas, np.float64)
    with jax.enable_x64(True):
        grid = jnp.asarray(eta_grid, jnp.float64)
        keys = jax.random.split(key, num_meta_problems + num_test_problems)
        tbt_obj = np.zeros((sig.size, grid.size))
        tbv_obj = np.zeros((sig.size, grid.size))
        for k in keys[:num_meta_problems]:
            p = sample_problem(k, d, n)
            train, valid = split(p, half)
            full, part = decompose(p.x), decompose(train.x)
            xv = valid.x @ part.v
            for i, s in enumerate(sig):
                y_full, y_train = targets(p, s), targets(train, s)
                tbt_obj[i] += np.asarray(train_loss(grid, full, project(full, p.x, y_full), t))
                fit = project(part, train.x, y_train)
                tbv_obj[i] += np.asarray(heldout_loss(grid, part, fit, t, xv, targets(valid, s)))
        tbt_obj /= num_meta_problems
        tbv_obj /= num_meta_problems
        eta_tbt = np.asarray(eta_grid)[np.argmin(tbt_obj, axis=1)]
        eta_tbv = np.asarray(eta_grid)[np.argmin(tbv_obj, axis=1)]
        curve_full = np.zeros((sig.size, grid.size))
        curve_half = np.zeros((sig.size, grid.size))
        test_tbt = np.zeros((sig.size, num_test_problems))
        test_tbv = np.zeros((sig.size, num_test_problems))
        for j, k in enumerate(keys[num_meta_problems:]):
            p = sample_problem(k, d, n)
            train, _ = split(p, half)
            full, part = decompose(p.x), decompose(train.x)
            for i, s in enumerate(sig):
                fit_full = project(full, p.x, targets(p, s))
                fit_part = project(part, train.x, targets(train, s))
                curve_full[i] += np.asarray(test_error(grid, full, fit_full, t, p.w_star))
                curve_half[i] += np.asarray(test_error(grid, part, fit_part, t, p.w_star))
                e_tbt = jnp.asarray([eta_tbt[i]])
                e_tbv = jnp.asarray([eta_tbv[i]])
                test_tbt[i, j] = float(test_error(e_tbt, full, fit_full, t, p.w_star)[0])
                test_tbv[i, j] = float(test_error(e_tbv, part, fit_part, t, p.w_star)[0])
        curve_full /= num_test_problems
        curve_half /= num_test_problems
    return Comparison(
        np.asarray(eta_grid, np.float64),
        sig,
        tbt_obj,
        tbv_obj,
        eta_tbt,
        eta_tbv,
        test_tbt,
        test_tbv,
        curve_full,
        curve_half,
    )
