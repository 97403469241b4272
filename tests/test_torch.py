"""The PyTorch front end (``lopt.torch``): parity with the JAX update, state, param groups, errors.

Weights are random perturbations of a fresh θ (a fresh output layer is zero, which would make
every optimizer equal Adam), saved with ``lopt.learned.save_optimizer``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lopt  # noqa: E402
from lopt.errors import LoptError  # noqa: E402
from lopt.learned import build_architecture, save_optimizer  # noqa: E402
from lopt.torch import LearnedOptimizer, MLPConfig, RNNMLPConfig  # noqa: E402
from lopt.torch import network_steps as update_hook_module  # noqa: E402
from lopt.torch.networks import CONFIGS  # noqa: E402

# Trust ratios near the median update ÷ parameter RMS of the problem below: the trust region
# caps about half of the updates, so parity covers both of its branches.
ARCHITECTURES = {
    "fast": {"kind": "fast", "guard_ratio": 3e-4},
    "fast-hierarchical": {
        "kind": "fast",
        "lstm_hidden": 4,
        "relative_step": True,
        "valid_over_train": True,
        "adaptive_step": True,
        "guard_ratio": 3e-4,
    },
    "mlp": {"kind": "mlp", "hidden": [8], "trust_ratio": 5e-4},
    "rnn-mlp": {"kind": "rnn-mlp", "mlp_hidden": [8, 8], "trust_ratio": 3e-4},
    "mlp-loss-features": {
        "kind": "mlp",
        "hidden": [8],
        "trust_ratio": 5e-4,
        "with_loss_features": True,
    },
    "mlp-distance": {  # the step multiplier moves within (1, 3) over the 100 steps
        "kind": "mlp",
        "hidden": [8],
        "trust_ratio": 5e-4,
        "with_loss_features": True,
        "with_horizon_feature": True,
        "horizon_thresholds": [0.4, 0.9],
        "distance_power": 0.5,
        "distance_ref": 2e-3,
    },
    "rnn-mlp-distance": {  # likewise, and its log falls to 0 at the horizon (step 80)
        "kind": "rnn-mlp",
        "mlp_hidden": [8, 8],
        "trust_ratio": 3e-4,
        "distance_power": 0.5,
        "distance_ref": 2e-3,
        "distance_decay": True,
    },
    "mlp-per-parameter": {  # features scaled per parameter, no reduction over the tensor
        "kind": "mlp",
        "hidden": [8],
        "trust_ratio": 5e-4,
        "with_loss_features": True,
        "feature_normalization": "parameter",
    },
    "rnn-mlp-run-features": {  # the loss and horizon features in the per-parameter MLP too
        "kind": "rnn-mlp",
        "mlp_hidden": [8, 8],
        "trust_ratio": 3e-4,
        "mlp_loss_features": True,
        "with_horizon_feature": True,
        "horizon_thresholds": [0.4, 0.9],
    },
}
# Scalar, vector, matrix and rank-5 tensors (the rank-4 shape features keep the last 4 dims).
SHAPES = [(5, 3), (3,), (), (3, 2), (2, 1, 2, 3, 2)]
STEPS = 100
HORIZON = 80  # the run's announced length: the horizon feature reaches its cap of 1 at step 80
RTOL, ATOL = 1e-5, 1e-5


def perturbed_theta(arch, seed: int = 0):
    """A fresh θ plus N(0, 0.3²) noise on every leaf; gradient clipping made active."""
    theta = arch.init_theta(jax.random.key(seed))
    leaves, treedef = jax.tree.flatten(theta)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    theta = jax.tree.unflatten(treedef, leaves)
    if "log_clip" in theta:
        theta["log_clip"] = jnp.asarray(-1.5)  # clip at ≈ 2.2× the gradient RMS
    return theta


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def saved(request, tmp_path_factory):
    """``(label, stem)`` of a saved optimizer with random weights (label: ARCHITECTURES key)."""
    arch = build_architecture(ARCHITECTURES[request.param])
    stem = tmp_path_factory.mktemp(request.param) / "opt"
    save_optimizer(stem, arch, perturbed_theta(arch))
    return request.param, stem


def problem(seed: int = 0):
    """Initial parameters, a gradient sequence (scales differ per tensor) and losses."""
    rng = np.random.default_rng(seed)
    params = [np.asarray(rng.normal(size=s), np.float32) for s in SHAPES]
    scales = [10.0 ** rng.uniform(-3, 1) for _ in SHAPES]
    drift = [rng.normal(size=s) for s in SHAPES]
    grads = [
        [
            np.asarray(sc * (0.5 * d + rng.normal(size=s)), np.float32)
            for s, sc, d in zip(SHAPES, scales, drift, strict=True)
        ]
        for _ in range(STEPS)
    ]
    losses = (2.0 * np.exp(-np.arange(STEPS) / 30) + 0.1 * rng.random(STEPS)).astype(np.float32)
    losses[37] = np.nan  # non-finite losses are replaced by the running mean
    valid = (losses + 0.05).astype(np.float32)
    return params, grads, losses, valid


def jax_run(stem, params, grads, losses, valid, multipliers, total_steps=None):
    """Per-step updates and final parameters of the JAX optimizer (updates × multipliers),
    told the run's length when ``total_steps`` is given."""
    opt = lopt.load(stem, total_steps=total_steps)
    params = [jnp.asarray(p) for p in params]
    state = opt.init(params)
    update = jax.jit(opt.update)
    history = []
    for g, loss, vl in zip(grads, losses, valid, strict=True):
        g = [jnp.asarray(x) for x in g]
        updates, state = update(g, state, params, loss=jnp.float32(loss), valid_loss=vl)
        updates = [mult * u for mult, u in zip(multipliers, updates, strict=True)]
        params = [p + u for p, u in zip(params, updates, strict=True)]
        history.append([np.asarray(u) for u in updates])
    return history, [np.asarray(p) for p in params]


def torch_run(optimizer, params, grads, losses, valid):
    """Per-step updates (as computed, before they are added to the parameters)."""
    history, applied = [], []
    apply = update_hook_module.apply_update

    def record(p, update, multiplier):
        applied.append(multiplier * update.reshape(p.shape).detach().cpu().numpy())
        apply(p, update, multiplier)

    update_hook_module.apply_update = record
    try:
        for g, loss, vl in zip(grads, losses, valid, strict=True):
            for p, x in zip(params, g, strict=True):
                p.grad = torch.from_numpy(x).to(p.device)
            optimizer.step(loss=torch.tensor(loss), valid_loss=float(vl))
            history.append(list(applied))
            applied.clear()
    finally:
        update_hook_module.apply_update = apply
    return history


def same(a, b) -> bool:
    """Nested state (dicts, lists, tensors, numbers) equal bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def torch_params(arrays, device="cpu"):
    return [torch.tensor(a, device=device, requires_grad=True) for a in arrays]


def errors(actual, expected) -> tuple[float, float]:
    """Largest elementwise relative error, and largest absolute error ÷ the largest update."""
    scale = max(np.max(np.abs(y)) for y in expected)
    rel = max(
        np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-30))
        for x, y in zip(actual, expected, strict=True)
    )
    return float(rel), float(
        max(np.max(np.abs(x - y)) for x, y in zip(actual, expected, strict=True)) / scale
    )


def assert_close(actual, expected):
    """rtol 1e-5, atol 1e-5 × the step's largest update (entries near 0 lose relative precision
    where the learned direction cancels Adam's)."""
    atol = ATOL * max(np.max(np.abs(y)) for y in expected)
    for x, y in zip(actual, expected, strict=True):
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=atol)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_parity_with_jax(saved, compile):
    """100 steps on the same gradients and losses: updates and parameters agree to 1e-5, for
    the eager update and the ``torch.compile`` one."""
    kind, stem = saved
    arrays, grads, losses, valid = problem()
    ones = [1.0] * len(SHAPES)
    ref_updates, ref_params = jax_run(stem, arrays, grads, losses, valid, ones, HORIZON)
    params = torch_params(arrays)
    optimizer = LearnedOptimizer(params, stem, compile=compile, total_steps=HORIZON)
    assert optimizer.config.kind == ARCHITECTURES[kind]["kind"]
    updates = torch_run(optimizer, params, grads, losses, valid)
    assert np.abs(ref_updates[-1][0]).max() > 0
    for step, (u, ref) in enumerate(zip(updates, ref_updates, strict=True)):
        try:
            assert_close(u, ref)
        except AssertionError as e:
            raise AssertionError(f"{kind}: step {step} differs") from e
    assert_close([p.detach().numpy() for p in params], ref_params)
    rel, abs_over_max = np.max([errors(u, r) for u, r in zip(updates, ref_updates, strict=True)], 0)
    print(
        f"{kind} ({'compiled' if compile else 'eager'}): max relative error {rel:.2e}, "
        f"max error / largest update {abs_over_max:.2e}"
    )


@pytest.mark.parametrize("name", ["small", "rnn-mlp", "self-trained"])
def test_shipped_optimizers_match_jax(name):
    """The very files ``lopt.pretrained`` loads give the JAX updates in torch too (30 steps)."""
    arrays, grads, losses, valid = problem()
    steps, total = slice(0, 30), 40  # a run of 40 steps, for optimizers that ask
    ref_updates, _ = jax_run(
        name, arrays, grads[steps], losses[steps], valid[steps], [1.0] * len(SHAPES), total
    )
    params = torch_params(arrays)
    optimizer = LearnedOptimizer(params, name, total_steps=total)
    updates = torch_run(optimizer, params, grads[steps], losses[steps], valid[steps])
    for u, ref in zip(updates, ref_updates, strict=True):
        assert_close(u, ref)


def test_differs_from_adam(saved):
    """The perturbed network changes the update (so parity is not just Adam against Adam)."""
    _, stem = saved
    arrays, grads, losses, valid = problem()
    params = torch_params(arrays)
    adam = torch.optim.Adam(params_adam := torch_params(arrays), lr=1e-3)
    optimizer = LearnedOptimizer(params, stem)
    for p, q, g in zip(params, params_adam, grads[0], strict=True):
        p.grad, q.grad = torch.from_numpy(g), torch.from_numpy(g)
    optimizer.step(loss=1.0)
    adam.step()
    assert not all(
        torch.allclose(p, q, rtol=1e-3) for p, q in zip(params, params_adam, strict=True)
    )


def test_param_groups_and_lr_multiplier(saved):
    """All groups' parameters, in order, are the pytree leaves; lr_multiplier scales updates."""
    _, stem = saved
    arrays, grads, losses, valid = problem()
    multipliers = [1.0, 1.0, 0.5, 0.5, 0.0]
    _, ref_params = jax_run(stem, arrays, grads[:20], losses[:20], valid[:20], multipliers)
    params = torch_params(arrays)
    optimizer = LearnedOptimizer(
        [
            {"params": params[:2]},
            {"params": params[2:4], "lr_multiplier": 0.5},
            {"params": params[4:], "lr_multiplier": 0.0},
        ],
        stem,
    )
    torch_run(optimizer, params, grads[:20], losses[:20], valid[:20])
    assert_close([p.detach().numpy() for p in params], ref_params)
    np.testing.assert_array_equal(params[4].detach().numpy(), arrays[4])  # p + 0·update is p


def test_closure_and_loss_are_the_same(saved):
    _, stem = saved
    arrays, grads, losses, _ = problem()
    results = []
    for use_closure in (False, True):
        params = torch_params(arrays)
        optimizer = LearnedOptimizer(params, stem)
        for g, loss in zip(grads[:5], losses[:5], strict=True):

            def closure(params=params, g=g, loss=loss):
                for p, x in zip(params, g, strict=True):
                    p.grad = torch.from_numpy(x)
                return torch.tensor(loss)

            if use_closure:
                returned = optimizer.step(closure)
            else:
                closure()
                returned = optimizer.step(loss=torch.tensor(loss))
            assert float(returned) == float(loss)
        results.append([p.detach().clone() for p in params])
    # eager torch: the same operations on the same inputs either way
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_state_dict_round_trip(saved, tmp_path):
    """Save after 10 steps, restore into a fresh optimizer (via torch.save): identical steps."""
    _, stem = saved
    arrays, grads, losses, valid = problem()
    params = torch_params(arrays)
    optimizer = LearnedOptimizer(params, stem)
    torch_run(optimizer, params, grads[:10], losses[:10], valid[:10])
    torch.save(
        {"params": [p.detach() for p in params], "opt": optimizer.state_dict()}, tmp_path / "c.pt"
    )
    expected = torch_run(optimizer, params, grads[10:20], losses[10:20], valid[10:20])

    saved_run = torch.load(tmp_path / "c.pt")
    restored = [p.clone().requires_grad_(True) for p in saved_run["params"]]
    fresh = LearnedOptimizer(restored, stem)
    fresh.load_state_dict(saved_run["opt"])
    actual = torch_run(fresh, restored, grads[10:20], losses[10:20], valid[10:20])
    # eager torch: the same operations on the same (restored) state and inputs
    for a, b in zip(actual, expected, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert all(torch.equal(p, q) for p, q in zip(params, restored, strict=True))


def test_compiled_continues_an_eager_run(saved):
    """An eager run's state_dict loads into a ``compile=True`` optimizer, whose next steps are
    the eager optimizer's to float32 rounding (the state is the same either way)."""
    _, stem = saved
    arrays, grads, losses, valid = problem()
    params = torch_params(arrays)
    eager = LearnedOptimizer(params, stem)
    torch_run(eager, params, grads[:10], losses[:10], valid[:10])
    state, start = copy.deepcopy(eager.state_dict()), [p.detach().clone() for p in params]
    expected = torch_run(eager, params, grads[10:20], losses[10:20], valid[10:20])

    restored = [p.requires_grad_(True) for p in start]
    compiled = LearnedOptimizer(restored, stem, compile=True)
    compiled.load_state_dict(state)
    actual = torch_run(compiled, restored, grads[10:20], losses[10:20], valid[10:20])
    for a, b in zip(actual, expected, strict=True):
        assert_close(a, b)


def test_a_compiled_fast_step_is_one_program_compiled_once(tmp_path):
    """With ``compile=True`` the whole step of a "fast" optimizer, every tensor's update
    included, is one compiled graph, made at the first step: the step count, the fraction of
    the run and the loss statistics enter it as tensors, so the later steps reuse it."""
    from torch._dynamo.utils import counters

    arch = build_architecture(ARCHITECTURES["fast-hierarchical"])
    save_optimizer(tmp_path / "opt", arch, perturbed_theta(arch))
    rng = np.random.default_rng(5)
    params = torch_params([np.asarray(rng.normal(size=s), np.float32) for s in [(4, 7), (7,)]])
    optimizer = LearnedOptimizer(params, tmp_path / "opt", compile=True, total_steps=HORIZON)
    graphs = [counters["stats"]["unique_graphs"]]
    for step in range(6):
        for p in params:
            p.grad = torch.from_numpy(np.asarray(rng.normal(size=p.shape), np.float32))
        optimizer.step(loss=1.0 / (step + 1), valid_loss=2.0 / (step + 1))
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[0] + 1, "the first step compiles one graph"
    assert graphs[-1] == graphs[1], "later steps recompile"


def test_missing_gradients_freeze_state(saved):
    """A parameter without a gradient is untouched, its state frozen; the others step as a
    JAX optimizer over the parameters that have gradients."""
    _, stem = saved
    arrays, grads, losses, valid = problem()
    ref_updates, _ = jax_run(
        stem, arrays[:3], [g[:3] for g in grads[:5]], losses[:5], valid[:5], [1.0] * 3
    )
    params = torch_params(arrays)
    optimizer = LearnedOptimizer(params, stem)
    updates = torch_run(optimizer, params[:3], [g[:3] for g in grads[:5]], losses[:5], valid[:5])
    for u, ref in zip(updates, ref_updates, strict=True):
        assert_close(u, ref)
    assert all(
        np.array_equal(p.detach().numpy(), a) for p, a in zip(params[3:], arrays[3:], strict=True)
    )
    assert all(len(optimizer.state[p]) == 0 for p in params[3:])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_gradient_raises_and_changes_nothing(saved, bad):
    """One clear error; parameters and state stay as they were, so the run continues exactly as
    if the bad step had never been attempted."""
    _, stem = saved
    arrays, grads, losses, valid = problem()
    params = torch_params(arrays)
    optimizer = LearnedOptimizer([{"params": params[:2]}, {"params": params[2:]}], stem)
    torch_run(optimizer, params, grads[:5], losses[:5], valid[:5])
    state, before = copy.deepcopy(optimizer.state_dict()), [p.detach().clone() for p in params]
    poisoned = [g.copy() for g in grads[5]]
    poisoned[3].flat[0] = bad
    with pytest.raises(LoptError, match=r"parameter 1 of param group 1 .* holds NaN or inf"):
        torch_run(optimizer, params, [poisoned], losses[5:6], valid[5:6])
    assert all(torch.equal(p, q) for p, q in zip(params, before, strict=True))
    assert same(optimizer.state_dict(), state)
    actual = torch_run(optimizer, params, grads[5:10], losses[5:10], valid[5:10])

    restored = [p.clone().requires_grad_(True) for p in before]
    fresh = LearnedOptimizer([{"params": restored[:2]}, {"params": restored[2:]}], stem)
    fresh.load_state_dict(state)
    expected = torch_run(fresh, restored, grads[5:10], losses[5:10], valid[5:10])
    # eager torch: the same operations on the same state and inputs
    for a, b in zip(actual, expected, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_dtypes_kept(saved, compile):
    _, stem = saved
    p = torch.zeros(4, 3, dtype=torch.bfloat16, requires_grad=True)
    optimizer = LearnedOptimizer([p], stem, compile=compile)
    p.grad = torch.ones_like(p)
    optimizer.step(loss=1.0)
    assert p.dtype == torch.bfloat16 and torch.isfinite(p.float()).all() and p.abs().max() > 0
    restored = LearnedOptimizer([p], stem)
    restored.load_state_dict(optimizer.state_dict())
    tensors = [v for v in restored.state[p].values() if torch.is_tensor(v)]
    assert tensors and all(t.dtype == torch.float32 for t in tensors)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(saved):
    _, stem = saved
    arrays, grads, losses, valid = problem()
    cpu = torch_params(arrays)
    cuda = torch_params(arrays, device="cuda")
    expected = torch_run(LearnedOptimizer(cpu, stem), cpu, grads[:10], losses[:10], valid[:10])
    actual = torch_run(LearnedOptimizer(cuda, stem), cuda, grads[:10], losses[:10], valid[:10])
    for a, b in zip(actual, expected, strict=True):
        assert_close(a, b)


def test_configs_match_jax_defaults():
    """The torch configs have the JAX architectures' fields and defaults."""
    for kind, cls in CONFIGS.items():
        arch = build_architecture({"kind": kind})
        jax_config = {k: v for k, v in arch.config().items() if k != "kind"}
        assert jax_config == {
            k: list(v) if isinstance(v, tuple) else v for k, v in vars(cls()).items()
        }
    assert set(CONFIGS) == {"fast", "mlp", "rnn-mlp"}
    assert MLPConfig.kind == "mlp" and RNNMLPConfig.kind == "rnn-mlp"


def test_unknown_name_lists_valid_names():
    with pytest.raises(
        LoptError,
        match="unknown pretrained optimizer 'tiny'.*rnn-mlp-v6, self-trained, self-trained-v1",
    ):
        LearnedOptimizer([torch.zeros(2, requires_grad=True)], "tiny")


def test_missing_path(tmp_path):
    with pytest.raises(LoptError, match="no saved optimizer at"):
        LearnedOptimizer([torch.zeros(2)], tmp_path / "nothing.safetensors")
    with pytest.raises(LoptError, match="holds no saved optimizer"):
        LearnedOptimizer([torch.zeros(2)], tmp_path)


def test_run_directory_prefers_best(tmp_path):
    arch = build_architecture(ARCHITECTURES["mlp"])
    save_optimizer(tmp_path / "optimizer", arch, arch.init_theta(jax.random.key(0)))
    save_optimizer(tmp_path / "best", arch, perturbed_theta(arch, seed=3))
    optimizer = LearnedOptimizer([torch.zeros(2)], tmp_path)
    expected = np.asarray(perturbed_theta(arch, seed=3)["log_lr"])  # the same eager ops again
    np.testing.assert_array_equal(optimizer._theta_cpu["['log_lr']"].numpy(), expected)


def test_non_float_parameter_rejected(saved):
    _, stem = saved
    with pytest.raises(LoptError, match="floating-point parameters; got a torch.int64"):
        LearnedOptimizer([torch.zeros(3, dtype=torch.int64)], stem)


def test_invalid_total_steps_rejected(saved):
    _, stem = saved
    with pytest.raises(LoptError, match="total_steps: 0"):
        LearnedOptimizer([torch.zeros(3)], stem, total_steps=0)
    with pytest.raises(LoptError, match=r"total_steps: 10.5 \(expected an integer\)"):
        LearnedOptimizer([torch.zeros(3)], stem, total_steps=10.5)


def test_invalid_loss_rejected(saved):
    _, stem = saved
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    optimizer = LearnedOptimizer([p], stem)
    with pytest.raises(LoptError, match="loss must be a number or a scalar tensor; got 'abc'"):
        optimizer.step(loss="abc")


def test_state_of_other_shapes_rejected_before_loading(saved):
    """torch checks only the number of parameters; a state that does not fit a parameter's
    shape is one clear error, and the optimizer keeps its own state."""
    _, stem = saved
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)
    source = LearnedOptimizer([a, b], stem)
    a.grad, b.grad = torch.ones(3), torch.ones(2, 2)
    source.step(loss=1.0)
    c, d = torch.zeros(3, requires_grad=True), torch.zeros(4, requires_grad=True)
    target = LearnedOptimizer([c, d], stem)
    c.grad, d.grad = torch.ones(3), torch.ones(4)
    target.step(loss=1.0)
    before = copy.deepcopy(target.state_dict())
    with pytest.raises(
        LoptError, match=r"parameter 1 of param group 0 \((momentum|m_fast) of shape"
    ):
        target.load_state_dict(source.state_dict())
    assert same(target.state_dict(), before)


def test_corrupt_file_rejected(saved, tmp_path):
    _, stem = saved
    corrupt = tmp_path / "corrupt"
    data = bytearray(stem.with_suffix(".safetensors").read_bytes())
    data[-1] ^= 0xFF
    corrupt.with_suffix(".safetensors").write_bytes(bytes(data))
    corrupt.with_suffix(".json").write_text(stem.with_suffix(".json").read_text())
    with pytest.raises(LoptError, match="corrupt.safetensors is corrupt"):
        LearnedOptimizer([torch.zeros(2)], corrupt)


def test_a_dot_in_the_stem_is_part_of_the_name(tmp_path):
    arch = build_architecture(ARCHITECTURES["mlp"])
    save_optimizer(tmp_path / "lr-0.5", arch, perturbed_theta(arch))
    assert (tmp_path / "lr-0.5.safetensors").exists()
    param = torch.zeros(3, requires_grad=True)
    param.grad = torch.ones(3)
    LearnedOptimizer([param], tmp_path / "lr-0.5").step()
    assert torch.all(param < 0)


def test_weights_of_another_architecture_rejected(tmp_path):
    """JSON says "rnn-mlp", the weights are an "mlp" optimizer's: one clear error."""
    mlp = build_architecture(ARCHITECTURES["mlp"])
    save_optimizer(tmp_path / "opt", mlp, mlp.init_theta(jax.random.key(0)))
    meta = json.loads((tmp_path / "opt.json").read_text())
    meta["architecture"] = build_architecture(ARCHITECTURES["rnn-mlp"]).config()
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    with pytest.raises(
        LoptError, match="opt.safetensors does not hold the weights of the 'rnn-mlp'"
    ):
        LearnedOptimizer([torch.zeros(2)], tmp_path / "opt")


def test_wrong_width_rejected(tmp_path):
    small = build_architecture({"kind": "mlp", "hidden": [16]})
    save_optimizer(tmp_path / "opt", small, small.init_theta(jax.random.key(0)))
    meta = json.loads((tmp_path / "opt.json").read_text())
    meta["architecture"]["hidden"] = [8]
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    with pytest.raises(
        LoptError, match=r"\['mlp'\]\[0\].weight has shape \(16, 18\).*expected \(8, 18\)"
    ):
        LearnedOptimizer([torch.zeros(2)], tmp_path / "opt")


def test_unknown_feature_normalization_rejected(tmp_path):
    small = build_architecture({"kind": "mlp", "hidden": [4]})
    save_optimizer(tmp_path / "opt", small, small.init_theta(jax.random.key(0)))
    meta = json.loads((tmp_path / "opt.json").read_text())
    meta["architecture"]["feature_normalization"] = "layer"
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    with pytest.raises(LoptError, match=r"opt.json: invalid 'mlp' architecture.*'layer'"):
        LearnedOptimizer([torch.zeros(2)], tmp_path / "opt")


def test_unsupported_architecture_rejected(tmp_path):
    arch = build_architecture({"kind": "learned-adam"})
    save_optimizer(tmp_path / "opt", arch, arch.init_theta(jax.random.key(0)))
    with pytest.raises(LoptError, match="holds a 'learned-adam' optimizer; lopt.torch runs"):
        LearnedOptimizer([torch.zeros(2)], tmp_path / "opt.json")


def test_state_dict_of_other_architecture_rejected(tmp_path):
    stems = {}
    for kind, config in ARCHITECTURES.items():
        arch = build_architecture(config)
        save_optimizer(tmp_path / kind, arch, arch.init_theta(jax.random.key(0)))
        stems[kind] = tmp_path / kind
    state = LearnedOptimizer([torch.zeros(2)], stems["mlp"]).state_dict()
    with pytest.raises(LoptError, match="not from a 'rnn-mlp' LearnedOptimizer"):
        LearnedOptimizer([torch.zeros(2)], stems["rnn-mlp"]).load_state_dict(state)


def test_shipped_names_resolve_to_package_data():
    from lopt.pretrained import SHIPPED, pretrained_path, resolve_stem

    for name in SHIPPED:
        assert resolve_stem(name) == pretrained_path(name)
        assert pretrained_path(name).with_suffix(".safetensors").exists()


_IMPORT_CHECK = (
    "import sys, {module}; print(sorted(m for m in ('jax', 'lopt.learned') if m in sys.modules))"
)


def _imports(module: str, stub_lopt: bool = False) -> list[str]:
    code = _IMPORT_CHECK.format(module=module)
    if stub_lopt:  # a bare `lopt` package, so that lopt/__init__.py does not run
        src = os.path.dirname(os.path.dirname(lopt.__file__))
        code = (
            "import sys, types; pkg = types.ModuleType('lopt'); "
            f"pkg.__path__ = [{os.path.join(src, 'lopt')!r}]; sys.modules['lopt'] = pkg; " + code
        )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().replace("'", '"'))


def test_lopt_torch_itself_does_not_import_jax():
    assert _imports("lopt.torch", stub_lopt=True) == []


def test_import_lopt_torch_does_not_import_jax():
    if _imports("lopt"):
        pytest.skip("lopt/__init__.py imports JAX eagerly")
    assert _imports("lopt.torch") == []


def test_bench_table_has_eager_and_compiled_columns():
    """The benchmark's table (smoke: formatting only; speed is measured by running it)."""
    from lopt.torch.bench import ARCHITECTURES, table

    row = {"num_params": 9940, "adam_ms": 0.1}
    for name in ARCHITECTURES:
        for suffix, ms in (("", 1.0), ("_compiled", 0.5)):
            row[f"{name}{suffix}_ms"], row[f"{name}{suffix}_ratio"] = ms, ms / 0.1
    lines = table({"10000": row}).splitlines()
    assert len(lines) == 3 and "compiled ÷ Adam" in lines[0]
    assert "| 9,940 | 0.100 | 1.000 | 10.0× | 0.500 | 5.0× |" in lines[2]
