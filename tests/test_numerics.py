"""Numerics of the learned optimizers that would otherwise go wrong silently, in JAX and in
PyTorch alike (``lopt.learned.guard``, ``lopt.torch.checks``): low-precision parameters at 0,
empty tensors, gradients whose squares overflow float32, integer parameters, bad horizons, and
closures that return no loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from lopt.errors import LoptError
from lopt.learned import build_architecture
from lopt.learned.guard import overflows

SHIPPED = ["small", "rnn-mlp"]
TOTAL_STEPS = 50


def _params(dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w": np.asarray(0.3 * rng.normal(size=(3, 4)), dtype),
        "b": np.zeros(4, dtype),  # a bias at its initial 0
    }


def _grads(params: dict, step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(step + 1)
    return {k: np.asarray(0.5 * rng.normal(size=p.shape), p.dtype) for k, p in params.items()}


def _losses(steps: int) -> list[float]:
    return [1.0 / (i + 1) for i in range(steps)]


def _jax_run(name: str, params: dict, grads: list[dict], losses=None) -> tuple[list[dict], object]:
    """Per-step updates (as float32 numpy) and the last state of a shipped optimizer (losses:
    ``_losses`` unless given)."""
    opt = lopt.pretrained(name, total_steps=TOTAL_STEPS)
    update = jax.jit(opt.update)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    state, history = opt.init(params), []
    for g, loss in zip(grads, losses or _losses(len(grads)), strict=True):
        g = {k: jnp.asarray(v) for k, v in g.items()}
        updates, state = update(g, state, params, loss=jnp.float32(loss))
        history.append({k: np.asarray(u, np.float32) for k, u in updates.items()})
        params = jax.tree.map(lambda p, u: p + u, params, updates)
    return history, state


def _torch_run(name: str, params: dict, grads: list[dict], losses=None, **kwargs) -> list[dict]:
    """Per-step updates of the PyTorch optimizer on the same problem, as computed in float32
    (zero where it took no step)."""
    torch = pytest.importorskip("torch")
    from lopt.torch import LearnedOptimizer
    from lopt.torch import network_steps as update_hook_module

    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    names = {id(t): k for k, t in tensors.items()}
    opt = LearnedOptimizer(list(tensors.values()), name, total_steps=TOTAL_STEPS, **kwargs)
    history, apply = [], update_hook_module.apply_update

    def record(p, update, multiplier):
        history[-1][names[id(p)]] = update.reshape(p.shape).detach().numpy().copy()
        apply(p, update, multiplier)

    update_hook_module.apply_update = record
    try:
        for g, loss in zip(grads, losses or _losses(len(grads)), strict=True):
            history.append({k: np.zeros(v.shape, np.float32) for k, v in params.items()})
            for k, t in tensors.items():
                t.grad = torch.tensor(g[k])
            opt.step(loss=loss)
    finally:
        update_hook_module.apply_update = apply
    return history


def _assert_updates_close(actual: list[dict], expected: list[dict], rtol: float):
    for step, (a, e) in enumerate(zip(actual, expected, strict=True)):
        for k in e:
            scale = max(np.abs(e[k]).max(initial=0.0), 1e-12)
            np.testing.assert_allclose(
                a[k], e[k], rtol=rtol, atol=rtol * scale, err_msg=f"step {step}, leaf {k}"
            )


@pytest.mark.parametrize("name", SHIPPED)
def test_float16_zero_tensor_gets_finite_updates_as_in_float32_and_torch(name):
    """A float16 bias at 0: finite float16 updates (statistics in float32), those of float32
    parameters to float16 rounding, and those of the PyTorch optimizer."""
    params16 = _params(np.float16)
    grads16 = [_grads(params16, i) for i in range(3)]
    half, _ = _jax_run(name, params16, grads16)
    for updates in half:
        assert all(np.all(np.isfinite(u)) for u in updates.values())
        assert np.abs(updates["b"]).max() > 0
    params32 = {k: v.astype(np.float32) for k, v in params16.items()}
    grads32 = [{k: v.astype(np.float32) for k, v in g.items()} for g in grads16]
    full, _ = _jax_run(name, params32, grads32)
    _assert_updates_close(half[:1], full[:1], rtol=2e-3)  # same parameters at the first step
    _assert_updates_close(_torch_run(name, params16, grads16), half, rtol=2e-3)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name", SHIPPED)
def test_empty_tensor_gets_an_empty_update_and_changes_no_other(name, compile):
    """An empty tensor among the parameters: its updates are empty, and every other tensor's
    updates (and the optimizer's state) are those of a run without it, in JAX and PyTorch."""
    params = _params()
    grads = [_grads(params, i) for i in range(3)]
    expected, state = _jax_run(name, params, grads)
    with_empty = {**params, "e": np.zeros((0,), np.float32)}
    grads_empty = [{**g, "e": np.zeros((0,), np.float32)} for g in grads]
    actual, state_empty = _jax_run(name, with_empty, grads_empty)
    for updates in actual:
        assert updates["e"].shape == (0,)
    _assert_updates_close(actual, expected, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state_empty), jax.tree.leaves(state), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    torch_updates = _torch_run(name, with_empty, grads_empty, compile=compile)
    _assert_updates_close(torch_updates, actual, rtol=1e-4)


def _overflowing(grads: dict) -> dict:
    """``grads`` with one entry of 1e30: finite, but its square overflows float32."""
    w = grads["w"].copy()
    w[0, 0] = 1e30
    return {**grads, "w": w}


@pytest.mark.parametrize(
    ("w0", "b0", "expected"),
    [
        (1.0, 1.0, False),  # finite squares
        (1e30, 1.0, True),  # finite, but its square overflows
        (1e30, np.nan, False),  # a NaN anywhere: not skipped (NaN updates, for apply_if_finite)
        (np.inf, 1.0, False),
        (1e30, -np.inf, False),
    ],
)
def test_overflows_is_finite_entries_with_a_sum_of_squares_that_is_not(w0, b0, expected):
    grads = {"w": jnp.ones((3, 4)).at[0, 0].set(w0), "b": jnp.ones(2).at[1].set(b0)}
    assert bool(jax.jit(overflows)(grads)) is expected
    assert bool(jax.vmap(overflows)(jax.tree.map(lambda x: x[None], grads))[0]) is expected


@pytest.mark.parametrize("name", SHIPPED)
def test_step_with_overflowing_squared_gradient_is_skipped_in_jax(name):
    """One gradient of 1e30 (finite; its square is not): the step is skipped (zero update,
    state unchanged), and the run goes on exactly as one that never saw it."""
    params = _params()
    grads = [_grads(params, i) for i in range(4)]
    expected, _ = _jax_run(name, params, grads)
    opt = lopt.pretrained(name, total_steps=TOTAL_STEPS)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    state = opt.init(jparams)
    updates, after = jax.jit(opt.update)(
        _overflowing(grads[0]), state, jparams, loss=jnp.float32(1.0)
    )
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))
    # the skipped step selects the very arrays it was given: equal bit for bit
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    actual, _ = _jax_run(name, params, [_overflowing(grads[0]), *grads], [1.0, *_losses(4)])
    _assert_updates_close(actual[1:], expected, rtol=1e-5)


@pytest.mark.parametrize("name", SHIPPED)
def test_step_with_overflowing_squared_gradient_is_skipped_in_torch(name):
    """As in JAX: nothing changes at the skipped step (no state is even created), and the
    later updates are those of a run that never saw it, and the JAX ones."""
    params = _params()
    grads = [_grads(params, i) for i in range(4)]
    expected, _ = _jax_run(name, params, grads)
    actual = _torch_run(name, params, [_overflowing(grads[0]), *grads], [1.0, *_losses(4)])
    assert all(np.abs(u).max() == 0.0 for u in actual[0].values())
    _assert_updates_close(actual[1:], expected, rtol=1e-4)


def test_a_nan_gradient_is_not_skipped_but_left_to_optax_guard():
    """Only finite gradients with overflowing squares are skipped: a NaN still gives a NaN
    update (``optax.apply_if_finite`` counts it; docs/learned.md)."""
    params = _params()
    grads = _grads(params, 0)
    grads["w"][0, 0] = np.nan
    updates, _ = _jax_run("small", params, [grads])
    assert np.isnan(updates[0]["w"]).all()


@pytest.mark.parametrize("kind", ["mlp", "rnn-mlp", "learned-adam"])
def test_integer_parameters_are_one_clear_error(kind):
    arch = build_architecture({"kind": kind})
    opt = arch.optimizer(arch.init_theta(jax.random.key(0)))
    floats = {"w": jnp.ones((3, 2))}
    params = {**floats, "steps": jnp.zeros((2,), jnp.int32)}
    message = rf"the {kind!r} learned optimizer needs real floating-point parameters; the one at "
    with pytest.raises(LoptError, match=message + r"\['steps'\] is int32 \(shape \(2,\)\)"):
        opt.init(params)
    grads = {**floats, "steps": jnp.zeros((2,), jnp.float32)}
    with pytest.raises(LoptError, match=message + r"\['steps'\] is int32"):
        jax.jit(opt.update)(grads, opt.init(floats | {"steps": jnp.zeros(2)}), params)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("horizon", [-1, -1.0, np.int32(-5), jnp.asarray(-3), float("nan"), True])
def test_a_bad_horizon_is_one_clear_error(name, horizon):
    opt = lopt.pretrained(name)
    params = {k: jnp.asarray(v) for k, v in _params().items()}
    state = opt.init(params)
    with pytest.raises(LoptError, match=r"invalid value for horizon: .* \(allowed: the run's"):
        opt.update(params, state, params, horizon=horizon)


@pytest.mark.parametrize("name", SHIPPED)
def test_horizon_zero_is_unknown_and_a_traced_negative_one_reads_as_unknown(name):
    """What docs/learned.md says a jitted update does with a horizon it cannot check."""
    opt = lopt.pretrained(name)
    params = {k: jnp.asarray(v) for k, v in _params().items()}
    state = opt.init(params)
    unknown, _ = opt.update(params, state, params, loss=jnp.float32(1.0))
    zero, _ = opt.update(params, state, params, loss=jnp.float32(1.0), horizon=0)
    traced, _ = jax.jit(opt.update)(
        params, state, params, loss=jnp.float32(1.0), horizon=jnp.asarray(-7)
    )
    for a, b, c in zip(*map(jax.tree.leaves, (unknown, zero, traced)), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-5)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_closure_returning_none_leaves_the_loss_to_the_argument(name):
    """PyTorch Lightning's manual optimization calls ``step(closure, loss=...)`` with a closure
    that returns ``None``: the loss comes from ``loss=``; a closure that returns a loss as well
    as ``loss=`` is one clear error."""
    torch = pytest.importorskip("torch")
    from lopt.torch import LearnedOptimizer

    params = _params()
    grads = [_grads(params, i) for i in range(3)]
    runs = []
    for use_closure in (False, True):
        tensors = [torch.tensor(v, requires_grad=True) for v in params.values()]
        opt = LearnedOptimizer(tensors, name)
        for i, g in enumerate(grads):
            for t, x in zip(tensors, g.values(), strict=True):
                t.grad = torch.tensor(x)
            loss = 2.0 / (i + 1)
            if use_closure:
                assert opt.step(lambda: None, loss=loss) == loss
            else:
                opt.step(loss=loss)
        runs.append([t.detach().numpy().copy() for t in tensors])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)  # the same eager torch code on the same inputs
    with pytest.raises(LoptError, match="closure returned a loss and loss= was given too"):
        opt.step(lambda: torch.tensor(1.0), loss=1.0)
