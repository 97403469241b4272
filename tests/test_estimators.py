"""Gradient estimators against the true gradient of a smooth quadratic meta-problem.

The meta-problem: learned Adam hyperparameters (θ: log lr, log(1-β₁), log(1-β₂), log ε) training
a noiseless quadratic. Its meta-loss is smooth in θ, and backpropagation through the whole
unroll gives the true gradient.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.errors import LoptError
from lopt.learned import LearnedAdam, build_architecture
from lopt.meta import TruncationConfig, make_estimator
from lopt.tasks.synthetic import Quadratic, QuadraticConfig

TASK = Quadratic(QuadraticConfig(dim=8, min_eig=0.1, max_eig=1.0, noise=0.0, seed=3))
ARCH = LearnedAdam(init_lr=0.05)
THETA = ARCH.init_theta(jax.random.key(0))
T, K = 10, 4  # truncation length, truncations per inner run
ALIGNED = dict(valid_every=5, transform="linear", meta_loss="train", stagger=False)


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def _cosine(a, b):
    a, b = _flat(a), _flat(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _mean_grad(kind, trunc, particles, estimates, seed=0):
    est = make_estimator(kind, ARCH, TASK, trunc, sigma=0.01, num_particles=particles)
    state = est.init(jax.random.key(seed))
    total = None
    for i in range(estimates):
        grad, state, _ = est.estimate(THETA, state, jax.random.key(100 + i))
        total = grad if total is None else jax.tree.map(jnp.add, total, grad)
    return jax.tree.map(lambda g: g / estimates, total)


def _only_log_lr_and_b1(tree):
    """ε's gradient is ~0 (Adam's ε hardly matters here): compare the informative coordinates."""
    return {k: tree[k] for k in ("log_lr", "log_one_minus_b1", "log_one_minus_b2")}


def test_truncated_es_matches_true_gradient_of_one_truncation():
    trunc = TruncationConfig(length=T, min_horizon=T, max_horizon=T, **ALIGNED)
    true = _mean_grad("tbptt", trunc, particles=4, estimates=1)
    es = _mean_grad("es", trunc, particles=256, estimates=1)
    assert _cosine(_only_log_lr_and_b1(es), _only_log_lr_and_b1(true)) > 0.9


def test_pes_is_unbiased_over_a_whole_run_like_full_es():
    """Over K truncations of one aligned run, the mean PES estimate is the full-run gradient."""
    h = K * T
    trunc = TruncationConfig(length=T, min_horizon=h, max_horizon=h, **ALIGNED)
    whole = TruncationConfig(length=h, min_horizon=h, max_horizon=h, **ALIGNED)
    true = _mean_grad("tbptt", whole, particles=4, estimates=1)
    pes = _mean_grad("pes", trunc, particles=256, estimates=K)
    full = _mean_grad("full-es", trunc, particles=256, estimates=1)
    truncated_bptt = _mean_grad("tbptt", trunc, particles=4, estimates=K)
    pick = _only_log_lr_and_b1
    assert _cosine(pick(pes), pick(true)) > 0.9
    assert _cosine(pick(full), pick(true)) > 0.9
    assert _cosine(pick(pes), pick(full)) > 0.9
    # Truncation makes backprop short-sighted: PES must be closer to the truth than TBPTT.
    err = lambda g: np.linalg.norm(_flat(pick(g)) - _flat(pick(true)))
    assert err(pes) < err(truncated_bptt)


def test_estimator_errors_are_clear():
    trunc = TruncationConfig(length=T, min_horizon=T, max_horizon=T)
    with pytest.raises(LoptError, match="unknown estimator 'sgd'"):
        make_estimator("sgd", ARCH, TASK, trunc)
    with pytest.raises(LoptError, match="multiple of devices"):
        make_estimator("es", ARCH, TASK, trunc, num_particles=3, devices=2)
    with pytest.raises(LoptError, match="meta_loss"):
        TruncationConfig(meta_loss="test")


@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs 2 local devices (XLA_FLAGS)")
def test_sharded_estimates_compile_once_and_match_one_device():
    """Over 2 devices the second estimate, whose state comes back sharded, reuses the program
    the fresh state compiled (it used to compile a second one: twice the time and memory
    mappings per task), and the estimates are those of one device."""
    from jax._src import monitoring

    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    trunc = TruncationConfig(length=T, min_horizon=2 * T, max_horizon=4 * T)
    grads = {}
    monitoring.register_event_duration_secs_listener(listen)
    try:
        for devices in (1, 2):
            est = make_estimator("es", ARCH, TASK, trunc, num_particles=4, devices=devices)
            state, out = est.init(jax.random.key(0)), []
            for i in range(3):
                grad, state, _ = est.estimate(THETA, state, jax.random.key(i))
                out.append(_flat(grad))
                if i == 0:
                    first = len(compiles)
            assert len(compiles) == first, f"{devices} device(s): recompiled after the first call"
            grads[devices] = np.stack(out)
    finally:
        monitoring.unregister_event_duration_listener(listen)
    np.testing.assert_allclose(grads[2], grads[1], rtol=1e-4, atol=1e-7)


@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs 2 local devices (XLA_FLAGS)")
def test_a_guarded_learned_optimizer_estimates_over_two_devices_as_on_one():
    """The guard's checks (a ``lax.cond`` on the gradients) trace under ``shard_map``, whose
    branches must agree on which values vary across devices."""
    arch = build_architecture({"kind": "fast", "hidden": 2})
    theta = arch.init_theta(jax.random.key(0))
    trunc = TruncationConfig(length=T, min_horizon=2 * T, max_horizon=4 * T)
    grads = {}
    for devices in (1, 2):
        est = make_estimator("es", arch, TASK, trunc, num_particles=4, devices=devices)
        grad, _, _ = est.estimate(theta, est.init(jax.random.key(0)), jax.random.key(1))
        grads[devices] = _flat(grad)
    np.testing.assert_allclose(grads[2], grads[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("schedule", ["uniform", "log-uniform", "growing"])
def test_horizon_schedules_stay_in_range(schedule):
    from lopt.meta.truncation import _sample_horizon

    cfg = TruncationConfig(length=10, min_horizon=20, max_horizon=200, schedule=schedule)
    keys = jax.random.split(jax.random.key(0), 400)
    for progress in (0.0, 1.0):
        h = np.asarray(jax.vmap(lambda k, p=progress: _sample_horizon(cfg, k, 20, p))(keys))
        assert h.min() >= 20 and h.max() <= 200 and np.all(h % 10 == 0)
        if schedule == "growing" and progress == 0.0:
            assert h.max() <= 30  # the cap starts at the minimum horizon
        else:
            assert h.max() >= 150  # long runs do occur


def test_tbptt_over_several_devices_warns_that_it_is_slow():
    trunc = TruncationConfig(length=T, min_horizon=T, max_horizon=T)
    with pytest.warns(UserWarning, match="tbptt sharded over several local CPU devices"):
        make_estimator("tbptt", ARCH, TASK, trunc, num_particles=2, devices=2)
