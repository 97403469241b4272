"""Baselines: vmapped tuning is the same computation as a loop; selection is honest."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.baselines import ADAM_LRS, NADAMW_TRIALS, global_best_index, run_trials, selection_score
from lopt.baselines import make as make_baseline
from lopt.errors import LoptError
from lopt.inner import Curves, train
from lopt.tasks import get_task


def test_adam_grid_is_14_log_spaced_lrs():
    assert len(ADAM_LRS) == 14
    assert ADAM_LRS[0] == pytest.approx(1e-4) and ADAM_LRS[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log(ADAM_LRS)), np.log(ADAM_LRS[1] / ADAM_LRS[0]))
    assert len(NADAMW_TRIALS) >= 5


def test_vmapped_tuning_equals_a_loop():
    task = get_task("quadratic-16")
    key = jax.random.key(0)
    lrs = jnp.asarray([1e-3, 3e-2, 0.3], jnp.float32)
    curves = run_trials(task, lambda lr: make_baseline("adam", lr), lrs, key, 40, 2, 20)
    assert curves.eval["test"].shape == (3, 2, 3)
    for seed in range(2):
        _, single = jax.jit(
            lambda k: train(task, optax.adam(lrs[1]), k, num_steps=40, eval_every=20)
        )(jax.random.fold_in(key, seed))
        for split, c in single.eval.items():
            np.testing.assert_allclose(curves.eval[split][1, seed], c, rtol=1e-5, atol=1e-7)


def _curves(inner_valid: np.ndarray) -> Curves:
    """Hand-made curves ``(T, S, E)``; only inner_valid matters for selection."""
    t, s, e = inner_valid.shape
    return Curves(np.arange(e), np.zeros((t, s, e)), {"inner_valid": inner_valid})


def test_selection_picks_the_min():
    # trial 0: fast start, worse end; trial 1: slow start, best end; trial 2: diverges.
    per_trial = np.array([[1.0, 0.2, 0.2, 0.2], [1.0, 0.9, 0.5, 0.1], [1.0, 0.1, np.nan, 0.0]])
    iv = np.stack([per_trial, per_trial + 0.02], axis=1)  # two seeds
    curve = selection_score(_curves(iv))  # default: mean over the curve
    np.testing.assert_allclose(curve[:2], [0.41, 0.635])
    assert curve[2] == np.inf
    assert int(np.argmin(curve)) == 0
    final = selection_score(_curves(iv), criterion="final")
    np.testing.assert_allclose(final, [0.21, 0.11, 0.01])
    assert int(np.argmin(final)) == 2
    with pytest.raises(LoptError, match="criterion"):
        selection_score(_curves(iv), criterion="best")


def test_global_best_index():
    scores = [
        np.array([3.0, 1.0, 2.0, np.inf]),  # task A: trial 1 best
        np.array([30.0, 20.0, 10.0, 5.0]),  # task B: trial 3 best, trial 1 fine
        np.array([0.5, 0.1, 0.3, 0.0]),
    ]
    # min-max scaled: trial 1 -> (0 + 0.4 + 0.2) / 3 = 0.2, trial 3 -> (1 + 0 + 0) / 3
    assert global_best_index(scores) == 1
    assert global_best_index([np.array([np.inf, np.inf]), np.array([2.0, 1.0])]) == 1
