"""The ``fast`` learned optimizer: its specification, JAX implementation and distillation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.errors import LoptError
from lopt.learned import build_architecture, save_optimizer
from lopt.learned.fast import JAX_OPS
from lopt.learned.io import warm_start_theta
from lopt.meta import distill
from lopt.specs.fast import (
    EPS_ROOT,
    PARAM_FEATURE_NAMES,
    RELATIVE_FLOOR,
    RELATIVE_REF,
    STEP_OFFSET_CLIP,
    TENSOR_FEATURE_NAMES,
    FastSpec,
    update_loss_stats,
)
from lopt.tasks import get_task

FLAT, HIERARCHICAL = {"kind": "fast"}, {"kind": "fast", "lstm_hidden": 4}
RELATIVE = {"kind": "fast", "relative_step": True}
ADAPTIVE = {"adaptive_step": True}


def _params():
    k1, k2 = jax.random.split(jax.random.key(3))
    return {"w": jax.random.normal(k1, (6, 5)), "b": 0.1 * jax.random.normal(k2, (5,))}


def _grads(params, i):
    return jax.tree.map(lambda p: jnp.cos(p * (i + 1)), params)


def _perturbed(theta, scale=0.3):
    keys = dict(zip(theta, jax.random.split(jax.random.key(7), len(theta)), strict=True))
    return {k: v + scale * jax.random.normal(keys[k], v.shape) for k, v in theta.items()}


def test_a_relative_step_scales_each_tensor_by_its_parameter_rms():
    """With ``step_power`` = p, a tensor's step is Adam's × (max(RMS, floor) / ref)^p."""
    arch = build_architecture({**RELATIVE, "guard_ratio": None})
    theta = arch.init_theta(jax.random.key(1)) | {"step_power": jnp.float32(1.5)}
    params = {"big": jnp.full((4, 3), 0.4), "small": jnp.full((3,), 0.05), "zero": jnp.zeros(3)}
    grads = _grads(params, 0)
    u, _ = arch.optimizer(theta).update(grads, arch.optimizer(theta).init(params), params)
    adam = optax.adam(arch.step_mult, eps=0.0, eps_root=EPS_ROOT)
    v, _ = adam.update(grads, adam.init(params), params)
    for name, rms in (("big", 0.4), ("small", 0.05), ("zero", RELATIVE_FLOOR)):
        factor = (rms / RELATIVE_REF) ** 1.5
        np.testing.assert_allclose(u[name], factor * v[name], rtol=2e-5, err_msg=name)


def test_names_and_shapes_are_derived_from_the_config():
    spec = FastSpec(hidden=3, timescales=(10.0, 100.0), lstm_hidden=2)
    assert spec.feature_names[: len(PARAM_FEATURE_NAMES)] == PARAM_FEATURE_NAMES
    assert spec.feature_names[-len(TENSOR_FEATURE_NAMES) :] == TENSOR_FEATURE_NAMES
    shapes = spec.theta_shapes()
    assert shapes["w1"] == (3, len(spec.feature_names))
    assert shapes["lstm_wx"] == (8, len(spec.lstm_feature_names))
    assert shapes["lstm_w_out"] == (4, 2)  # a message per hidden unit, then a log step
    assert "lstm_wx" not in FastSpec().theta_shapes()
    assert (
        "step_power" not in shapes
        and FastSpec(relative_step=True).theta_shapes()["step_power"] == ()
    )


@pytest.mark.parametrize(
    "config", [FLAT, HIERARCHICAL, RELATIVE], ids=["flat", "hierarchical", "relative"]
)
def test_a_fresh_fast_optimizer_is_adam(config):
    """Zero output layers: the update is optax's Adam at λ₂ with ε under the square root."""
    arch = build_architecture(config)
    opt = arch.optimizer(arch.init_theta(jax.random.key(1)))
    adam = optax.adam(arch.step_mult, eps=0.0, eps_root=EPS_ROOT)
    params = _params()
    s, a = opt.init(params), adam.init(params)
    for i in range(5):
        grads = _grads(params, i)
        u, s = opt.update(grads, s, params, loss=jnp.float32(1.0))
        v, a = adam.update(grads, a, params)
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True):
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-10)
        params = optax.apply_updates(params, u)


def test_the_guard_caps_every_entry_at_a_fraction_of_the_tensor_rms():
    arch = build_architecture({"kind": "fast", "guard_ratio": 0.01, "guard_floor": 1e-3})
    theta = {**arch.init_theta(jax.random.key(0)), "log_lr": jnp.float32(8.0)}  # huge steps
    opt = arch.optimizer(theta)
    params = {**_params(), "zero": jnp.zeros(4)}
    state = opt.init(params)
    updates, _ = opt.update(_grads(params, 0), state, params)
    for key, p in params.items():
        cap = 0.01 * max(float(jnp.sqrt(jnp.mean(p * p))), 1e-3)
        assert float(jnp.abs(updates[key]).max()) == pytest.approx(cap, rel=1e-5)


GAP = {"valid_over_train": True}


@pytest.mark.parametrize(
    "saved, extended",
    [
        (FLAT, HIERARCHICAL),
        (FLAT, {**FLAT, **GAP}),
        (HIERARCHICAL, {**HIERARCHICAL, **GAP}),
        (RELATIVE, {**RELATIVE, **HIERARCHICAL, **GAP}),
        ({**RELATIVE, **GAP}, {**RELATIVE, **GAP, **ADAPTIVE}),
    ],
    ids=["lstm", "valid-over-train", "hierarchical-valid-over-train", "both", "adaptive-step"],
)
def test_widened_optimizer_makes_the_saved_ones_updates(tmp_path, saved, extended):
    """An optimizer extended by an LSTM, the ``valid_over_train`` input or ``adaptive_step``,
    warm-started from a saved one, makes its updates (the new weights are zero or feed a zero
    output layer)."""
    small = build_architecture(saved)
    theta = _perturbed(small.init_theta(jax.random.key(0)))
    save_optimizer(tmp_path / "saved", small, theta)
    wide = build_architecture(extended)
    widened = warm_start_theta(tmp_path / "saved", wide)
    new_input = "valid_over_train" in extended and "valid_over_train" not in saved
    assert len(wide.feature_names) == len(small.feature_names) + new_input
    params = _params()
    a, b = small.optimizer(theta), wide.optimizer(widened)
    sa, sb = a.init(params), b.init(params)
    for i in range(4):
        grads, losses = _grads(params, i), {"loss": jnp.float32(1.0 / (i + 1)), "horizon": 10}
        losses["valid_loss"] = jnp.float32(2.0 + i)  # a gap that grows: the new input is not 0
        ua, sa = a.update(grads, sa, params, **losses)
        ub, sb = b.update(grads, sb, params, **losses)
        for x, y in zip(jax.tree.leaves(ua), jax.tree.leaves(ub), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-10)
        params = optax.apply_updates(params, ua)
    if wide.lstm_hidden:
        assert not np.allclose(sb.h, 0.0)  # the LSTM ran; its zero output layer kept it silent
    if wide.adaptive_step:
        assert float(widened["adapt_rate"]) == 0.0 and np.all(sb.step_offset == 0.0)


def test_an_optimizer_is_not_narrowed_or_reshaped_by_warm_start(tmp_path):
    """Warm start widens only: dropping an input or changing the LSTM's width is an error."""
    for saved, other in (
        ({**FLAT, **GAP}, FLAT),
        ({**FLAT, **ADAPTIVE}, FLAT),
        (HIERARCHICAL, {**FLAT, "lstm_hidden": 2}),
    ):
        arch = build_architecture(saved)
        save_optimizer(tmp_path / "saved", arch, arch.init_theta(jax.random.key(0)))
        with pytest.raises(LoptError):
            warm_start_theta(tmp_path / "saved", build_architecture(other))


def test_valid_over_train_grows_where_the_standardized_gap_is_clipped():
    """Over an overfitting run (training loss falling, validation loss rising) the
    standardized gap reaches its clip early; the log ratio keeps telling the runs apart."""
    spec, ops = FastSpec(valid_over_train=True), JAX_OPS
    names = spec.shared_feature_names
    gap, ratio = names.index("valid_loss_standardized"), names.index("log_valid_over_train")
    stats = (jnp.float32(0.0),) * 4 + (jnp.int32(0),)
    rows = []
    for step in range(400):
        train, valid = 0.2 * np.exp(-step / 100), 0.2 + step / 1000
        stats = update_loss_stats(ops, stats, jnp.float32(train), jnp.float32(valid))
        if step in (100, 200, 399):
            rows.append(spec.shared_features(ops, step + 1.0, stats, train, 0.0))
    assert [float(r[gap]) for r in rows] == [5.0, 5.0, 5.0]  # FEATURE_CLIP
    ratios = [float(r[ratio]) for r in rows]
    assert 0.5 < ratios[0] < ratios[1] < ratios[2] < 5.0
    np.testing.assert_allclose(ratios[2], np.log(stats[2] / stats[0]), rtol=1e-5)
    no_valid = update_loss_stats(ops, (jnp.float32(0.0),) * 4 + (jnp.int32(0),), 0.3, 0.3)
    assert float(spec.shared_features(ops, 1.0, no_valid, 0.3, 0.0)[ratio]) == 0.0


@pytest.mark.parametrize("config", [FLAT, {**FLAT, **ADAPTIVE}], ids=["flat", "adaptive-step"])
def test_the_step_inputs_do_not_depend_on_theta(config):
    """What distillation records is θ-free, and ``updates`` from it is what ``update`` gives
    (at the second step, where the adapted step has a previous direction to align with)."""
    arch = build_architecture(config)
    theta = _perturbed(arch.init_theta(jax.random.key(0)))
    opt = arch.optimizer(theta)
    params = _params()
    _, state = opt.update(_grads(params, 0), opt.init(params), params, loss=jnp.float32(3.0))
    grads = _grads(params, 1)
    updates, _ = opt.update(grads, state, params, loss=jnp.float32(2.0))
    inputs = arch.step_inputs(grads, state, params, jnp.float32(2.0), None, None)
    again = arch.updates(theta, inputs, state.h, state.c)[0]
    for x, y in zip(jax.tree.leaves(updates), again, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5)  # float rounding: two eager programs
    if arch.adaptive_step:
        assert np.all(np.abs(inputs.alignment) > 0.1)


def test_distillation_lowers_its_loss_and_moves_towards_the_teacher():
    """The teacher is Adam at 10× the student's base step: fitting recovers that step size."""
    task = get_task("quadratic-16")
    student = build_architecture(FLAT)
    teacher = optax.with_extra_args_support(optax.adam(1e-2, eps=0.0, eps_root=EPS_ROOT))
    record = jax.jit(
        functools.partial(distill.record, task, teacher, student, num_steps=40, num_records=4)
    )
    bank = record(jax.random.key(0))
    theta = student.init_theta(jax.random.key(1))
    before = float(distill.distill_loss(student, theta, bank))
    fitted, losses = distill.fit(student, theta, [bank], 150, jax.random.key(2), batch_size=4)
    after = float(distill.distill_loss(student, fitted, bank))
    assert after < 0.1 * before
    last = jax.tree.map(lambda x: x[-1], bank)
    zeros = jnp.zeros((2, 0))
    for theta_, ratio in ((theta, 0.1), (fitted, 1.0)):
        updates = student.updates(theta_, last.inputs, zeros, zeros)[0]
        rms = lambda xs: float(jnp.sqrt(sum(jnp.sum(x * x) for x in xs)))
        assert rms(updates) / rms(last.target) == pytest.approx(ratio, rel=0.3)
    assert losses[-1] < losses[0]


def test_an_interrupted_distillation_resumes_from_its_records(tmp_path):
    """Records are kept as they are made; a re-run reads them instead of training again (here
    with another teacher, whose records would fit another θ)."""
    tasks = [get_task("quadratic-16")]
    student = build_architecture(FLAT)
    rest = (student, tasks, (20,), 2, 150, jax.random.key(0), tmp_path / "records")
    adam = lambda lr: optax.with_extra_args_support(optax.adam(lr))
    theta, _ = distill.distill_optimizer(adam(1e-2), *rest)
    assert len(list((tmp_path / "records").glob("*.safetensors"))) == 1
    again, _ = distill.distill_optimizer(adam(1.0), *rest)
    other, _ = distill.distill_optimizer(adam(1.0), *rest[:-1])
    for x, y in zip(jax.tree.leaves(theta), jax.tree.leaves(again), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    assert abs(float(theta["log_lr"] - other["log_lr"])) > 0.1


def test_a_learned_optimizer_not_told_the_run_length_says_so_once(caplog):
    from lopt import errors

    arch = build_architecture(FLAT)
    opt = arch.optimizer(arch.init_theta(jax.random.key(0)))
    params = _params()
    state = opt.init(params)
    errors.say_once.cache_clear()
    with caplog.at_level("WARNING", logger="lopt"):
        opt.update(_grads(params, 0), state, params, horizon=100)
        assert not caplog.records
        opt.update(_grads(params, 0), state, params)
        opt.update(_grads(params, 1), state, params)
    assert len(caplog.records) == 1 and "total_steps=N" in caplog.records[0].getMessage()


def test_a_torch_optimizer_not_told_the_run_length_says_so_once(tmp_path, caplog):
    torch = pytest.importorskip("torch")
    from lopt import errors
    from lopt.torch import LearnedOptimizer

    arch = build_architecture(FLAT)
    save_optimizer(tmp_path / "opt", arch, arch.init_theta(jax.random.key(0)))
    params = [torch.zeros(3, requires_grad=True)]
    errors.say_once.cache_clear()
    with caplog.at_level("WARNING", logger="lopt"):
        LearnedOptimizer(params, tmp_path / "opt", total_steps=10)
        assert not caplog.records
        LearnedOptimizer(params, tmp_path / "opt")
        LearnedOptimizer(params, tmp_path / "opt")
    assert len(caplog.records) == 1 and "total_steps=N" in caplog.records[0].getMessage()


def _adaptive_run(gradient, rate: float, steps: int = 30):
    """The adapted log steps of a one-tensor run with gradients ``gradient(i)`` (a flat
    ``fast`` with ``adaptive_step`` and ``adapt_rate = rate``, the guard off)."""
    arch = build_architecture({**FLAT, **ADAPTIVE, "guard_ratio": None})
    theta = {**arch.init_theta(jax.random.key(0)), "adapt_rate": jnp.float32(rate)}
    opt = arch.optimizer(theta)
    params = {"w": jnp.ones(8)}
    state = opt.init(params)
    update = jax.jit(lambda g, s: opt.update({"w": g}, s, params)[1])
    offsets = []
    for i in range(steps):
        state = update(gradient(i), state)
        offsets.append(float(state.step_offset[0]))
    return offsets


def test_adaptive_step_grows_while_steps_agree_and_shrinks_where_they_oscillate():
    """A gradient that keeps its sign lines up with the previous direction (cosine 1): the log
    step rises by ``ADAPT_RATE_SCALE · adapt_rate`` a step up to its clip; one that flips sign
    every step (an overshooting step) drives it down; ``adapt_rate = 0`` leaves it at 0."""
    direction = 0.7 * jnp.array([1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0])  # d = ±1: cos 1
    steady = _adaptive_run(lambda i: direction, rate=1.0)
    assert steady[0] == 0.0  # no previous direction at the first step
    np.testing.assert_allclose(steady[1:4], [0.1, 0.2, 0.3], rtol=1e-4)
    assert steady[-1] == pytest.approx(STEP_OFFSET_CLIP)
    flipping = _adaptive_run(lambda i: direction * (-1.0) ** i, rate=1.0)
    assert flipping[1] == pytest.approx(-0.1, rel=1e-4)
    assert flipping[-1] == pytest.approx(-STEP_OFFSET_CLIP)
    assert _adaptive_run(lambda i: direction, rate=0.0) == [0.0] * 30
