"""The four experiments of the step-size laboratory, as functions returning plain numbers.

Reproduces the quadratic and least-squares experiments of Wang, Yuan, Wu & Ge, "Guarantees for
Tuning the Step Size using a Learning-to-Learn Approach" (ICML 2021, arXiv 2006.16495):

1. :func:`growth` -- ``|F'(eta)|`` against ``t``: the naive objective's meta-gradient vanishes
   (``eta < 2/L``) or explodes (``eta > 2/L``) at rate ``2 log max_i |1 - eta lam_i|`` per step;
   the log objective's stays bounded.
2. :func:`precision` -- autodiff through the unroll (float32, float64) against the stable closed
   form and a 60-digit reference, as ``t`` grows.
3. :func:`meta_descent` -- meta-gradient descent on ``eta`` (paper setting ``d = 20, t = 80,
   eta_0 = 0.1, s_k = 1/(100 sqrt k)``, 300 steps) for the log and the naive objective.
4. :func:`least_squares` -- train-by-train vs train-by-validation, see
   :mod:`lopt.stepsize.least_squares`.

Every function takes its configuration as arguments and returns a dict of numpy arrays and
floats (JSON-friendly after :func:`to_json`); nothing is global.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt.stepsize import least_squares as ls
from lopt.stepsize.metadescent import (
    log_objective_values,
    meta_gradient_descent,
    optimal_step_size,
    steps_to_converge,
)
from lopt.stepsize.quadratic import (
    QuadraticProblem,
    autodiff_meta_gradient,
    make_quadratic,
    predicted_growth_rate,
    stable_meta_gradient,
)
from lopt.stepsize.reference import reference_meta_gradient


def _stable_over_t(problem: QuadraticProblem, eta: float, ts: np.ndarray, objective: str):
    """Stable float64 ``(log|F'|, F')`` for every ``t`` in ``ts`` ``(m,)``."""
    with jax.enable_x64(True):
        lam = jnp.asarray(problem.eigenvalues, jnp.float64)
        c = jnp.asarray(problem.w0_coords, jnp.float64)
        out = jax.vmap(lambda t: stable_meta_gradient(jnp.float64(eta), lam, c, t, objective))(
            jnp.asarray(ts)
        )
        return np.asarray(out.log_abs), np.asarray(out.value)


def _autodiff_over_t(
    problem: QuadraticProblem, etas: Sequence[float], ts: Sequence[int], objective: str, dtype
) -> np.ndarray:
    """Autodiff meta-gradients ``(len(etas), len(ts))`` in ``dtype`` (one compile per ``t``)."""
    dtype = jnp.dtype(dtype)
    with jax.enable_x64(dtype == jnp.float64):
        lam = jnp.asarray(problem.eigenvalues, dtype)
        c = jnp.asarray(problem.w0_coords, dtype)
        e = jnp.asarray(etas, dtype)
        cols = [
            np.asarray(jax.vmap(lambda x, t=t: autodiff_meta_gradient(x, lam, c, t, objective))(e))
            for t in ts
        ]
        return np.stack(cols, axis=1).astype(np.float64)


def _stable_grid(problem: QuadraticProblem, etas, ts, objective: str, dtype) -> np.ndarray:
    """Stable meta-gradient values ``(len(etas), len(ts))`` in ``dtype``."""
    dtype = jnp.dtype(dtype)
    with jax.enable_x64(dtype == jnp.float64):
        lam = jnp.asarray(problem.eigenvalues, dtype)
        c = jnp.asarray(problem.w0_coords, dtype)
        fn = lambda e, t: stable_meta_gradient(e, lam, c, t, objective).value
        grid = jax.vmap(jax.vmap(fn, (None, 0)), (0, None))
        return np.asarray(grid(jnp.asarray(etas, dtype), jnp.asarray(ts)), np.float64)


def growth(
    problem: QuadraticProblem,
    etas: Sequence[float],
    ts: np.ndarray,
    fit_from: int,
    autodiff_ts: Sequence[int],
) -> dict[str, Any]:
    """Measured vs predicted exponential growth rate of the naive meta-gradient.

    Args:
        problem: the quadratic.
        etas: step sizes to study (some below, some above ``2/L``).
        ts: ``(m,)`` unroll lengths for the stable curves.
        fit_from: the slope of ``log|F'|`` vs ``t`` is fitted on ``t >= fit_from``.
        autodiff_ts: unroll lengths at which float32/float64 autodiff is also evaluated.
    """
    lam = np.asarray(problem.eigenvalues)
    out: dict[str, Any] = {"ts": ts, "etas": np.asarray(etas), "two_over_L": 2.0 / lam.max()}
    naive, log_obj, measured, detrended, predicted = [], [], [], [], []
    mask = ts >= fit_from
    for eta in etas:
        log_abs, _ = _stable_over_t(problem, eta, ts, "naive")
        naive.append(log_abs)
        log_obj.append(_stable_over_t(problem, eta, ts, "log")[1])
        measured.append(float(np.polyfit(ts[mask], log_abs[mask], 1)[0]))
        # F' = t * (sum ...): removing the polynomial factor t leaves the pure exponential rate.
        detrended.append(float(np.polyfit(ts[mask], log_abs[mask] - np.log(ts[mask]), 1)[0]))
        predicted.append(predicted_growth_rate(lam, problem.w0_coords, eta))
    out |= {
        "naive_log_abs": np.stack(naive),
        "log_grad": np.stack(log_obj),
        "measured_rate": np.asarray(measured),
        "measured_rate_without_t": np.asarray(detrended),
        "predicted_rate": np.asarray(predicted),
        "log_grad_max_abs": float(np.max(np.abs(np.stack(log_obj)))),
        "autodiff_ts": np.asarray(autodiff_ts),
    }
    for name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
        out[f"naive_autodiff_{name}"] = _autodiff_over_t(problem, etas, autodiff_ts, "naive", dtype)
    return out


def _first_failure(values: np.ndarray, ts: np.ndarray, ref: np.ndarray, rtol: float) -> int | None:
    """First ``t`` where ``values`` is non-finite, zero or off the reference by more than rtol."""
    bad = ~np.isfinite(values) | (values == 0) | (np.abs(values - ref) > rtol * np.abs(ref))
    idx = np.flatnonzero(bad)
    return None if idx.size == 0 else int(ts[idx[0]])


def precision(
    problem: QuadraticProblem, etas: Sequence[float], ts: Sequence[int], rtol: float = 1e-3
) -> dict[str, Any]:
    """Log-objective meta-gradient by four methods against a 60-digit reference, per ``t``.

    Returns the values ``(len(etas), len(ts))`` of each method, the reference, relative errors,
    and per ``eta`` the first ``t`` at which each method fails (non-finite, zero, or relative
    error above ``rtol``).
    """
    ts_arr = np.asarray(ts)
    ref = np.array(
        [[reference_meta_gradient(e, *problem, int(t), "log").value for t in ts] for e in etas]
    )
    methods = {
        "autodiff_float32": _autodiff_over_t(problem, etas, ts, "log", jnp.float32),
        "autodiff_float64": _autodiff_over_t(problem, etas, ts, "log", jnp.float64),
        "stable_float32": _stable_grid(problem, etas, ts_arr, "log", jnp.float32),
        "stable_float64": _stable_grid(problem, etas, ts_arr, "log", jnp.float64),
    }
    out: dict[str, Any] = {"ts": ts_arr, "etas": np.asarray(etas), "reference": ref, "rtol": rtol}
    for name, vals in methods.items():
        with np.errstate(invalid="ignore"):
            rel = np.abs(vals - ref) / np.abs(ref)
        out[name] = vals
        out[f"{name}_relerr"] = rel
        out[f"{name}_first_failure"] = [
            _first_failure(vals[i], ts_arr, ref[i], rtol) for i in range(len(etas))
        ]
        out[f"{name}_max_relerr"] = float(np.max(np.where(np.isfinite(rel), rel, np.inf)))
    return out


def meta_descent(
    problem: QuadraticProblem,
    t: int,
    eta0: float,
    num_steps: int,
    step_scale: float,
    rel_tol: float,
) -> dict[str, Any]:
    """Meta-gradient descent on the log and naive objectives, judged against ``eta*``."""
    eta_star = optimal_step_size(*problem, t)
    f_star = float(log_objective_values(np.asarray(eta_star), *problem, t))
    out: dict[str, Any] = {"eta_star": eta_star, "f_star": f_star, "rel_tol": rel_tol}
    runs = {
        "log_stable": ("log", "stable", jnp.float64),
        "log_autodiff_float32": ("log", "autodiff", jnp.float32),
        "naive_stable": ("naive", "stable", jnp.float64),
    }
    for name, (objective, method, dtype) in runs.items():
        res = meta_gradient_descent(
            *problem,
            t,
            eta0=eta0,
            num_steps=num_steps,
            step_scale=step_scale,
            objective=objective,
            method=method,
            dtype=dtype,
        )
        gap = log_objective_values(res.etas, *problem, t) - f_star
        out[name] = {
            "etas": res.etas,
            "gap": gap,
            "final_eta": float(res.etas[-1]),
            "final_gap": float(gap[-1]),
            "steps_to_converge": steps_to_converge(res.etas, eta_star, rel_tol),
        }
    return out


def meta_descent_spectra(
    spectra: Sequence[tuple[float, float]],
    *,
    key: jax.Array,
    d: int,
    t: int,
    eta0: float,
    num_steps: int,
    step_scale: float,
    rel_tol: float,
) -> list[dict[str, Any]]:
    """Convergence of log-objective meta-GD for several ``(L, alpha)`` linear spectra."""
    rows = []
    for L, alpha in spectra:
        prob = make_quadratic(d, L, alpha, key=key)
        eta_star = optimal_step_size(*prob, t)
        res = meta_gradient_descent(*prob, t, eta0=eta0, num_steps=num_steps, step_scale=step_scale)
        gap = log_objective_values(res.etas[-1:], *prob, t)[0] - log_objective_values(
            np.asarray(eta_star), *prob, t
        )
        rows.append(
            {
                "L": L,
                "alpha": alpha,
                "eta_star": eta_star,
                "final_eta": float(res.etas[-1]),
                "final_gap": float(gap),
                "steps_to_converge": steps_to_converge(res.etas, eta_star, rel_tol),
            }
        )
    return rows


def least_squares(
    key: jax.Array,
    *,
    d: int,
    sample_counts: Sequence[int],
    sigmas: Sequence[float],
    t: int,
    eta_grid: np.ndarray,
    num_meta_problems: int,
    num_test_problems: int,
) -> dict[int, ls.Comparison]:
    """:func:`lopt.stepsize.least_squares.compare` for each total sample count ``n``."""
    return {
        n: ls.compare(
            jax.random.fold_in(key, n),
            d=d,
            n=n,
            sigmas=sigmas,
            t=t,
            eta_grid=eta_grid,
            num_meta_problems=num_meta_problems,
            num_test_problems=num_test_problems,
        )
        for n in sample_counts
    }


def to_json(x: Any) -> Any:
    """Numpy arrays / scalars / NamedTuples -> JSON-friendly lists and floats (inf -> str)."""
    if isinstance(x, tuple) and hasattr(x, "_asdict"):
        return to_json(x._asdict())
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_json(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
