"""Tests for the step-size laboratory (Wang, Yuan, Wu & Ge 2021): tiny shapes, seconds in total."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.errors import LoptError
from lopt.stepsize import (
    compare,
    make_quadratic,
    meta_gradient,
    meta_gradient_descent,
    meta_gradient_log_abs,
    optimal_step_size,
    predicted_growth_rate,
    reference_meta_gradient,
    steps_to_converge,
)
from lopt.stepsize import least_squares as ls
from lopt.stepsize.quadratic import stable_log_objective

L, ALPHA = 5.0, 0.5


@pytest.fixture(scope="module")
def problem():
    return make_quadratic(5, L, ALPHA, key=jax.random.key(0))


ETAS = np.array([0.0, 0.05, 0.2, 0.36, 0.5, 0.8])


@pytest.mark.parametrize("objective", ["naive", "log"])
@pytest.mark.parametrize("t", [1, 7, 60, 400])
def test_stable_matches_autodiff_float64(problem, objective, t):
    stable = np.asarray(meta_gradient(ETAS, *problem, t, objective, "stable"))
    auto = np.asarray(meta_gradient(ETAS, *problem, t, objective, "autodiff"))
    assert stable.dtype == np.float64 and stable.shape == ETAS.shape
    ok = np.isfinite(auto) & (auto != 0)
    assert ok.sum() >= 3
    np.testing.assert_allclose(stable[ok], auto[ok], rtol=1e-6)


@pytest.mark.parametrize("objective", ["naive", "log"])
@pytest.mark.parametrize("eta", [0.05, 0.3, 0.45])
def test_stable_matches_finite_differences(problem, objective, eta):
    t, h = 20, 1e-6
    with jax.enable_x64(True):
        lam, c = jnp.asarray(problem.eigenvalues), jnp.asarray(problem.w0_coords)
        value = lambda e: float(stable_log_objective(jnp.float64(e), lam, c, t, objective))
        # stable_log_objective returns log F for the naive objective
        f = (lambda e: np.exp(value(e))) if objective == "naive" else value
        fd = (f(eta + h) - f(eta - h)) / (2 * h)
    grad = float(meta_gradient(eta, *problem, t, objective))
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


@pytest.mark.parametrize("objective", ["naive", "log"])
@pytest.mark.parametrize("eta", [0.1, 0.6])
def test_stable_matches_high_precision_reference_at_large_t(problem, objective, eta):
    t = 2500  # naive: ~1e-115 for eta = 0.1, ~1e+880 (beyond float64) for eta = 0.6
    ref = reference_meta_gradient(eta, *problem, t, objective)
    got = meta_gradient_log_abs(eta, *problem, t, objective)
    assert int(got.sign) == ref.sign
    np.testing.assert_allclose(float(got.log_abs), ref.log_abs, rtol=1e-12, atol=1e-10)
    assert float(got.value) == pytest.approx(ref.value, rel=1e-9)  # both inf when beyond range
    if objective == "naive" and eta == 0.6:
        assert float(got.value) == np.inf


def test_float32_autodiff_breaks_where_stable_does_not(problem):
    t = 2000
    for eta in (0.1, 0.6):  # f(w_t) ~ 0.95^(2t) underflows float32; ~ 2^(2t) overflows
        ref = reference_meta_gradient(eta, *problem, t, "log").value
        auto = float(meta_gradient(eta, *problem, t, "log", "autodiff", jnp.float32))
        stable = meta_gradient(eta, *problem, t, "log", "stable", jnp.float32)
        assert stable.dtype == jnp.float32
        assert not np.isfinite(auto) or auto == 0.0
        assert float(stable) == pytest.approx(ref, rel=1e-4)


def test_naive_growth_rate_matches_prediction(problem):
    ts = np.arange(150, 401)
    for eta in (0.1, 0.3, 0.45, 0.6):  # 2/L = 0.4
        rows = [float(meta_gradient_log_abs(eta, *problem, int(t), "naive").log_abs) for t in ts]
        slope = np.polyfit(ts, np.asarray(rows) - np.log(ts), 1)[0]
        predicted = predicted_growth_rate(problem.eigenvalues, problem.w0_coords, eta)
        assert (predicted > 0) == (eta > 2 / L)
        assert slope == pytest.approx(predicted, abs=1e-3)


def test_log_meta_gradient_is_bounded(problem):
    etas = np.linspace(0.0, 1.0, 41)
    lam = np.asarray(problem.eigenvalues)
    for t in (1, 10, 100, 1000):
        grad = np.abs(np.asarray(meta_gradient(etas, *problem, t, "log")))
        # |F'| = 2 |sum w_i lam_i / r_i| with weights w_i >= 0 summing to 1.
        with np.errstate(divide="ignore"):  # r_i = 0 makes the bound infinite, fine
            bound = 2 * np.max(lam[None, :] / np.abs(1 - etas[:, None] * lam[None, :]), axis=1)
        assert np.all(np.isfinite(grad)) and np.all(grad <= bound * (1 + 1e-9))


def test_meta_gradient_descent_converges_on_paper_setting():
    prob = make_quadratic(20, L, ALPHA, key=jax.random.key(0))
    t = 80
    eta_star = optimal_step_size(*prob, t)
    res = meta_gradient_descent(*prob, t, eta0=0.1, num_steps=300, step_scale=0.01)
    assert res.etas.shape == (301,) and res.grads.shape == (300,)
    k = steps_to_converge(res.etas, eta_star, rel_tol=0.01)
    assert k is not None and k <= 300
    naive = meta_gradient_descent(*prob, t, eta0=0.1, num_steps=300, objective="naive")
    assert abs(naive.etas[-1] - 0.1) < 1e-3  # vanishing meta-gradient: stuck near eta0


def test_x64_is_not_left_enabled(problem):
    meta_gradient(0.1, *problem, 5)
    assert jnp.ones(1).dtype == jnp.float32


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"objective": "square"}, "objective"),
        ({"method": "backprop"}, "method"),
        ({"dtype": jnp.float16}, "dtype"),
        ({"t": 0}, "t"),
        ({"t": 2.5}, "t"),
        ({"eta": -0.1}, "eta"),
        ({"eta": float("nan")}, "eta"),
        ({"eigenvalues": np.array([1.0, -1.0, 2.0, 3.0, 4.0])}, "eigenvalues"),
        ({"w0_coords": np.ones(3)}, "w0_coords"),
        ({"eta": "0.1"}, r"eta: '0.1' \(expected real numbers\)"),
        ({"eigenvalues": ["a", "b", "c", "d", "e"]}, r"eigenvalues: .*\(expected real numbers\)"),
    ],
)
def test_bad_input_raises_lopt_error(problem, kwargs, field):
    args = {"eta": 0.1, "eigenvalues": problem.eigenvalues, "w0_coords": problem.w0_coords, "t": 5}
    args |= kwargs
    with pytest.raises(LoptError, match=field):
        meta_gradient(**args)


def test_bad_choice_lists_allowed_values(problem):
    with pytest.raises(LoptError, match=r"allowed: \['naive', 'log'\]"):
        meta_gradient(0.1, *problem, 5, objective="square")


def test_least_squares_closed_form_matches_unroll():
    with jax.enable_x64(True):
        for n in (12, 40):  # fewer and more samples than dimensions
            p = ls.sample_problem(jax.random.key(n), 20, n)
            y = ls.targets(p, 0.5)
            basis = ls.decompose(p.x)
            fit = ls.project(basis, p.x, y)
            eta = jnp.asarray([0.05, 0.3])
            unrolled = jax.vmap(lambda e, p=p, y=y: ls.gd_unroll(e, p.x, y, 15))(eta)
            for i, w in enumerate(unrolled):
                a = ls.coefficients(eta, basis, fit, 15)[i]
                np.testing.assert_allclose(basis.v @ a, w, atol=1e-12)
                loss = jnp.mean((p.x @ w - y) ** 2) / 2
                np.testing.assert_allclose(ls.train_loss(eta, basis, fit, 15)[i], loss, rtol=1e-10)
                err = jnp.sum((w - p.w_star) ** 2)
                np.testing.assert_allclose(
                    ls.test_error(eta, basis, fit, 15, p.w_star)[i], err, rtol=1e-10
                )


def test_train_by_validation_wins_with_few_noisy_samples():
    c = compare(
        jax.random.key(0),
        d=60,
        n=30,
        sigmas=[0.0, 2.0],
        t=50,
        eta_grid=np.geomspace(1e-4, 1.0, 41),
        num_meta_problems=3,
        num_test_problems=3,
    )
    assert c.test_tbt.shape == (2, 3) and c.tbt_objective.shape == (2, 41)
    assert c.test_tbt[1].mean() > 2 * c.test_tbv[1].mean()  # noise: TbT overfits
    assert c.test_tbt[0].mean() < c.test_tbv[0].mean()  # no noise: more training data wins
    assert c.eta_tbv[1] < c.eta_tbt[1]


@pytest.mark.slow
def test_report_runs_on_tiny_config(tmp_path):
    import dataclasses

    from lopt.stepsize import report

    cfg = dataclasses.replace(
        report.quick_config(),
        growth_t_max=60,
        growth_fit_from=20,
        growth_autodiff_ts=(10, 40),
        precision_t_max=200,
        precision_num_t=4,
        meta_steps=20,
        spectra=((5.0, 0.5),),
        ls_d=20,
        ls_sample_counts=(10,),
        ls_num_meta=2,
        ls_num_test=2,
        ls_grid_size=21,
    )
    metrics = report.run(tmp_path, config=cfg, neural=False)
    assert "growth" in metrics
    for name in ("report.md", "metrics.json", "config.json", "growth.png", "least_squares.png"):
        assert (tmp_path / name).exists()
