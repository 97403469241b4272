"""Conformance of every learned-optimizer architecture, and saving/loading them."""

import json
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tolerances import assert_trees_close

import lopt
from lopt.errors import CheckpointError, LoptError
from lopt.inner import train
from lopt.learned import ARCHITECTURES, build_architecture, load_theta, save_optimizer
from lopt.learned.base import with_horizon
from lopt.learned.features import horizon_features, per_parameter_features, sqrt0
from lopt.learned.hierarchical import RNNMLPOptimizer
from lopt.learned.io import warm_start_theta
from lopt.learned.mlp import MLPOptimizer
from lopt.learned.trust_region import trust_region
from lopt.meta.truncation import TruncationConfig, init_particle, unroll
from lopt.specs.mlp import param_feature_names
from lopt.tasks import get_task

# "mlp" runs with the trust region, loss and horizon features and distance scaling on (its
# reference so large that the scale stays 1: a fresh "mlp" is still Adam) and "rnn-mlp" without a
# trust region but with distance scaling and the loss and horizon features in its per-parameter
# MLP, so every path passes conformance (the shipped "small"
# is tested below).
TINY = {
    "mlp": {
        "kind": "mlp",
        "hidden": [4],
        "trust_ratio": 0.1,
        "with_loss_features": True,
        "with_horizon_feature": True,
        "horizon_thresholds": [0.5],
        "distance_power": 0.5,
        "distance_ref": 1e9,
    },
    "rnn-mlp": {
        "kind": "rnn-mlp",
        "mlp_hidden": [4, 4],
        "lstm_hidden": 4,
        "to_mlp": 2,
        "deepsets": 2,
        "distance_power": 0.5,
        "distance_ref": 1e9,
        "mlp_loss_features": True,
        "with_horizon_feature": True,
        "horizon_thresholds": [0.5],
    },
    "learned-adam": {"kind": "learned-adam"},
    "fast": {"kind": "fast", "hidden": 3},
}
# Settings that change an architecture's update path, each run through conformance too.
VARIANTS = {
    **TINY,
    "fast-hierarchical": {
        "kind": "fast",
        "hidden": 3,
        "lstm_hidden": 2,
        "relative_step": True,
        "adaptive_step": True,
    },
    "fast-valid-over-train": {"kind": "fast", "hidden": 3, "valid_over_train": True},
    "mlp-per-parameter": {
        "kind": "mlp",
        "hidden": [4],
        "feature_normalization": "parameter",
        "with_loss_features": True,
    },
}


def _params(dtype=jnp.float32):
    k1, k2 = jax.random.split(jax.random.key(3))
    return {"w": jax.random.normal(k1, (3, 5), dtype), "b": jax.random.normal(k2, (5,), dtype)}


def _perturbed(theta, scale: float):
    """``theta`` plus N(0, scale²) noise on every leaf (every layer, the output one included)."""
    leaves, treedef = jax.tree.flatten(theta)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


def _grads(params, i):
    return jax.tree.map(lambda p: jnp.cos(p * (i + 1)).astype(p.dtype), params)


def test_every_architecture_is_covered():
    assert set(TINY) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_conformance(name, dtype):
    arch = build_architecture(VARIANTS[name])
    thetas = jax.vmap(arch.init_theta)(jax.random.split(jax.random.key(0), 3))
    params = _params(dtype)
    traces = []

    @jax.jit
    def run(theta, params):
        traces.append(1)
        opt = arch.optimizer(theta)
        state = opt.init(params)
        for i in range(3):
            updates, state = opt.update(
                _grads(params, i), state, params, loss=jnp.float32(1.0 / (i + 1))
            )
            params = optax.apply_updates(params, updates)
        return params, updates

    batched = jax.jit(jax.vmap(run, in_axes=(0, None)))
    out, updates = batched(thetas, params)
    out2, _ = batched(jax.tree.map(lambda t: t + 0.01, thetas), params)  # same shapes: no retrace
    assert len(traces) == 1
    for leaf, ref in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        assert leaf.dtype == ref.dtype and leaf.shape == (3, *ref.shape)
        assert np.all(np.isfinite(np.asarray(leaf, np.float32)))
    assert not np.allclose(np.asarray(out["w"], np.float32), np.asarray(out2["w"], np.float32))


@pytest.mark.parametrize("name", ["mlp", "rnn-mlp", "mlp-per-parameter"])
def test_fresh_network_optimizers_start_as_adam(name):
    """Zeroed output layers: the learned update equals optax.adam(step_mult) exactly."""
    arch = build_architecture(VARIANTS[name])
    opt = arch.optimizer(arch.init_theta(jax.random.key(1)))
    adam = optax.adam(arch.step_mult)
    params = _params()
    s, a = opt.init(params), adam.init(params)
    for i in range(5):
        grads = _grads(params, i)
        u, s = opt.update(grads, s, params, loss=jnp.float32(1.0))
        v, a = adam.update(grads, a, params)
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True):
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-9)
        params = optax.apply_updates(params, u)


def test_feature_counts_are_derived_from_config():
    small = MLPOptimizer(decays=(0.9, 0.999), timescales=(10.0,))
    assert len(small.feature_names) == 2 + 3 * 2 + 1
    fast = MLPOptimizer(decays=(0.9, 0.999), timescales=(10.0,), feature_normalization="parameter")
    assert len(fast.feature_names) == 1 + 2 * 2 + 1  # no parameter input, no rsqrt features
    assert fast.init_theta(jax.random.key(0))["mlp"][0].weight.shape[1] == 6
    theta = small.init_theta(jax.random.key(0))
    assert theta["mlp"][0].weight.shape[1] == len(small.feature_names)
    rnn = RNNMLPOptimizer(mlp_hidden=(4,), lstm_hidden=3, to_mlp=2, deepsets=2)
    theta = rnn.init_theta(jax.random.key(0))
    assert theta["lstm"].weight_ih.shape[1] == len(rnn.tensor_feature_names)


def test_horizon_features_are_the_fraction_of_the_run_done_and_its_steps():
    count = jnp.asarray(30, jnp.int32)
    np.testing.assert_allclose(horizon_features(count, 120), [0.25])
    np.testing.assert_allclose(horizon_features(count, jnp.asarray(20)), [1.0])  # clipped
    np.testing.assert_allclose(
        horizon_features(count, 120, (0.2, 0.25, 0.9)),
        [0.25, np.tanh(0.5), 0.0, np.tanh(-6.5)],
        rtol=1e-6,
        atol=1e-7,
    )
    for unknown in (None, 0):  # unknown: as at the start of a run
        np.testing.assert_array_equal(horizon_features(count, unknown), [0.0])
        np.testing.assert_allclose(horizon_features(count, unknown, (0.5,)), [0.0, np.tanh(-5)])
    with pytest.raises(LoptError, match="need with_horizon_feature"):
        build_architecture({"kind": "mlp", "horizon_thresholds": [0.5]})


def _with_horizon_weight(arch):
    """θ of a fresh ``arch`` whose network reads the horizon feature (and has an output)."""
    theta = jax.tree.map(lambda x: x + 0.1, arch.init_theta(jax.random.key(0)))
    first = theta["mlp"][0]
    column = arch.feature_names.index("fraction_of_horizon")
    weight = first.weight.at[:, column].set(3.0)
    return {**theta, "mlp": [eqx.tree_at(lambda la: la.weight, first, weight), *theta["mlp"][1:]]}


def test_the_horizon_reaches_the_network_from_update_and_from_total_steps():
    arch = build_architecture({"kind": "mlp", "hidden": [4], "with_horizon_feature": True})
    theta, params = _with_horizon_weight(arch), _params()

    def first_update(opt, **extra):
        updates, _ = opt.update(_grads(params, 0), opt.init(params), params, **extra)
        return updates["w"]

    opt = arch.optimizer(theta)
    short, long = first_update(opt, horizon=2), first_update(opt, horizon=1000)
    assert not np.allclose(short, long)
    # Bitwise below: eager updates, the same operations on the same values (an unknown horizon's
    # features are 0 either way; with_horizon passes the same horizon on).
    np.testing.assert_array_equal(first_update(opt), first_update(opt, horizon=0))
    # lopt.load's total_steps is a default for the update's horizon argument.
    np.testing.assert_array_equal(first_update(with_horizon(opt, 2)), short)
    np.testing.assert_array_equal(first_update(with_horizon(opt, 2), horizon=1000), long)
    with pytest.raises(LoptError, match="total_steps"):
        with_horizon(opt, 0)
    with pytest.raises(LoptError, match=re.escape("total_steps: 2.5 (expected an integer)")):
        with_horizon(opt, 2.5)


def test_training_passes_its_length_as_the_horizon():
    """``lopt.inner.train`` tells the optimizer the run's length; a particle of meta-training its
    sampled horizon."""
    seen = []

    def update(grads, state, params=None, *, horizon=None, **extra):
        jax.debug.callback(lambda h: seen.append(int(h)), horizon)
        return jax.tree.map(jnp.zeros_like, grads), state

    spy = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
    task = get_task("quadratic-16")
    train(task, spy, jax.random.key(0), 20, eval_every=10)
    assert seen and set(seen) == {20}
    cfg = TruncationConfig(length=10, min_horizon=30, max_horizon=60, valid_every=10)
    particle = init_particle(task, spy, cfg, jax.random.key(1))
    seen.clear()
    unroll(task, spy, cfg, particle.inner)
    assert set(seen) == {int(particle.inner.horizon)}
    assert 10 <= int(particle.inner.horizon) <= 60


@pytest.mark.parametrize("name", sorted(TINY))
def test_save_load_round_trip_bit_for_bit(tmp_path, name):
    arch = build_architecture(TINY[name])
    theta = jax.tree.map(lambda x: x + 0.123, arch.init_theta(jax.random.key(5)))
    save_optimizer(tmp_path / "opt", arch, theta, {"note": "test"})
    arch2, theta2, meta = load_theta(tmp_path / "opt.safetensors")
    assert arch2 == arch and meta["info"] == {"note": "test"}
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta2), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    assert isinstance(lopt.load(tmp_path / "opt"), optax.GradientTransformationExtraArgs)


def test_a_dot_in_the_stem_is_part_of_the_name(tmp_path):
    """``lr-0.5`` and ``lr-0.3`` are two files, not both ``lr-0.*`` (Path.with_suffix's reading)."""
    arch = build_architecture(TINY["mlp"])
    thetas = {
        stem: jax.tree.map(lambda x, c=c: x + c, arch.init_theta(jax.random.key(5)))
        for stem, c in (("lr-0.5", 0.5), ("lr-0.3", 0.3))
    }
    for stem, theta in thetas.items():
        save_optimizer(tmp_path / stem, arch, theta)
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "lr-0.3.json",
        "lr-0.3.safetensors",
        "lr-0.5.json",
        "lr-0.5.safetensors",
    ]
    for stem, theta in thetas.items():
        for path in (tmp_path / stem, tmp_path / f"{stem}.safetensors", str(tmp_path / stem)):
            loaded = load_theta(path)[1]
            for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(loaded), strict=True):
                assert np.array_equal(np.asarray(a), np.asarray(b))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no saved optimizer"):
        lopt.load(tmp_path / "missing")
    arch = build_architecture(TINY["mlp"])
    save_optimizer(tmp_path / "opt", arch, arch.init_theta(jax.random.key(0)))
    blob = bytearray((tmp_path / "opt.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / "opt.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt"):
        lopt.load(tmp_path / "opt")
    save_optimizer(tmp_path / "opt", arch, arch.init_theta(jax.random.key(0)))
    with pytest.raises(CheckpointError, match="holds a 'mlp' optimizer, expected 'rnn-mlp'"):
        load_theta(tmp_path / "opt", expected_kind="rnn-mlp")
    meta = json.loads((tmp_path / "opt.json").read_text())
    meta["architecture"]["hidden"] = [7]  # weights no longer fit the declared architecture
    meta.pop("sha256")
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape"):
        lopt.load(tmp_path / "opt", verify=False)
    meta["architecture"]["hidden"] = ["4"]
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"opt.json: invalid value for hidden of 'mlp'"):
        lopt.load(tmp_path / "opt")
    del meta["architecture"]
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="opt.json: unknown architecture"):
        lopt.load(tmp_path / "opt")
    (tmp_path / "opt.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="opt.json is not a JSON object"):
        lopt.load(tmp_path / "opt")


def test_warm_start_widens_an_mlp_to_more_features(tmp_path):
    """A saved plain ``mlp`` starts an ``mlp`` with loss features: old weights kept by feature
    name, zero weights on the new features, so the first updates are the saved optimizer's."""
    plain = build_architecture({"kind": "mlp", "hidden": [4]})
    theta = jax.tree.map(lambda x: x + 0.1, plain.init_theta(jax.random.key(0)))
    save_optimizer(tmp_path / "plain", plain, theta)
    wide = build_architecture({"kind": "mlp", "hidden": [4], "with_loss_features": True})
    widened = warm_start_theta(tmp_path / "plain", wide)
    weight, saved_weight = widened["mlp"][0].weight, theta["mlp"][0].weight
    n = len(plain.feature_names)
    assert wide.feature_names[:n] == plain.feature_names
    np.testing.assert_array_equal(weight[:, :n], saved_weight)
    np.testing.assert_array_equal(weight[:, n:], 0.0)
    params = _params()
    moves = []
    for arch, th in ((plain, theta), (wide, widened)):
        opt, p = arch.optimizer(th), params
        state = opt.init(p)
        for i in range(3):
            loss = jnp.float32(2.0 / (i + 1))
            updates, state = opt.update(_grads(p, i), state, p, loss=loss, valid_loss=loss + 1)
            p = optax.apply_updates(p, updates)
        moves.append(jax.tree.map(jnp.subtract, p, params))
    # The wider network multiplies more features (by 0): other shapes, so other programs whose
    # reductions may round differently. A weight of 10⁻² on the new features moves them by 1%.
    assert_trees_close(moves[1], moves[0], rtol=1e-5, atol_of_max=1e-6)
    assert np.abs(moves[0]["w"]).max() > 0
    # Dropping features is refused, as is any other change of θ's shapes.
    save_optimizer(tmp_path / "wide", wide, widened)
    with pytest.raises(CheckpointError, match=r"wide\.safetensors holds the architecture"):
        warm_start_theta(tmp_path / "wide", plain)
    with pytest.raises(CheckpointError, match="does not fit"):
        warm_start_theta(tmp_path / "plain", build_architecture({"kind": "mlp", "hidden": [5]}))


# Every input and setting of the shipped "small"; on the problem below (20 steps) the trust region
# caps about half of the updates and the distance scale moves within (1, 3).
SMALL_LIKE = {
    "kind": "mlp",
    "hidden": [4],
    "trust_ratio": 5e-4,
    "with_loss_features": True,
    "with_horizon_feature": True,
    "horizon_thresholds": [0.5],
    "distance_power": 0.5,
    "distance_ref": 3e-4,
}


def test_rnn_mlp_widened_from_an_mlp_makes_its_updates(tmp_path):
    """An ``rnn-mlp`` warm-started from a saved ``mlp`` (more decays, a second hidden layer, the
    LSTM) makes the saved optimizer's updates, through the trust region and distance scaling."""
    small = build_architecture(SMALL_LIKE)
    theta = _perturbed(small.init_theta(jax.random.key(0)), scale=0.5)
    save_optimizer(tmp_path / "small", small, theta)
    settings = {k: v for k, v in SMALL_LIKE.items() if k not in ("kind", "hidden")}
    settings.pop("with_loss_features")
    rnn = build_architecture(
        {**settings, "kind": "rnn-mlp", "mlp_hidden": [4, 4], "mlp_loss_features": True}
    )
    widened = warm_start_theta(tmp_path / "small", rnn)
    updates = []
    for arch, th in ((small, theta), (rnn, widened)):
        opt, p, steps = arch.optimizer(th), _params(), []
        state = opt.init(p)
        for i in range(20):
            losses = {"loss": jnp.float32(2.0 / (i + 1)), "valid_loss": jnp.float32(3.0 / (i + 1))}
            u, state = opt.update(_grads(p, i), state, p, horizon=16, **losses)
            p = optax.apply_updates(p, u)
            steps.append(u)
        updates.append(steps)
    for saved, mine in zip(*updates, strict=True):
        for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(saved), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert np.abs(updates[0][-1]["w"]).max() > 0
    # Averaged with an rnn-mlp, the mlp enters widened.
    from lopt.learned.io import average_optimizers

    trained = _perturbed(widened, scale=0.1)
    save_optimizer(tmp_path / "rnn", rnn, trained)
    averaged_arch, mean = average_optimizers([tmp_path / "rnn", tmp_path / "small"], [1.0, 3.0])
    assert averaged_arch == rnn
    for m, a, b in zip(*(jax.tree.leaves(t) for t in (mean, trained, widened)), strict=True):
        np.testing.assert_allclose(m, 0.25 * a + 0.75 * b, rtol=1e-6, atol=1e-7)
    # An mlp whose hidden layers do not start the rnn-mlp's, or without the nominal direction,
    # does not fit.
    for other in ({"hidden": [5]}, {"nominal": False}):
        arch = build_architecture({**SMALL_LIKE, **other})
        save_optimizer(tmp_path / "other", arch, arch.init_theta(jax.random.key(0)))
        with pytest.raises(CheckpointError, match="does not fit"):
            warm_start_theta(tmp_path / "other", rnn)


def test_average_is_the_weighted_mean_of_one_architecture(tmp_path):
    from lopt.learned.io import average_optimizers

    arch = build_architecture(TINY["mlp"])
    thetas = [arch.init_theta(jax.random.key(i)) for i in range(2)]
    for i, theta in enumerate(thetas):
        save_optimizer(tmp_path / f"opt{i}", arch, theta)
    stems = [tmp_path / "opt0", tmp_path / "opt1"]
    averaged_arch, theta = average_optimizers(stems, [1.0, 3.0])  # normalized: 1/4, 3/4
    assert averaged_arch == arch
    for mean, a, b in zip(*(jax.tree.leaves(t) for t in (theta, *thetas)), strict=True):
        np.testing.assert_allclose(mean, 0.25 * a + 0.75 * b, rtol=1e-6, atol=1e-7)
    other = build_architecture(TINY["rnn-mlp"])
    save_optimizer(tmp_path / "other", other, other.init_theta(jax.random.key(0)))
    with pytest.raises(CheckpointError, match=r"other\.safetensors holds the architecture"):
        average_optimizers([stems[0], tmp_path / "other"])
    with pytest.raises(LoptError, match="two or more"):
        average_optimizers(stems[:1])
    for weights in ([1.0, -1.0], [0.0, 0.0], [1.0, float("nan")], [1.0]):
        with pytest.raises(LoptError, match="invalid weights"):
            average_optimizers(stems, weights)


def test_bad_architecture_config():
    with pytest.raises(LoptError, match="unknown architecture 'nope'"):
        build_architecture({"kind": "nope"})
    with pytest.raises(LoptError, match="invalid field 'width'"):
        build_architecture({"kind": "mlp", "width": 3})


@pytest.mark.parametrize("name", ["small", "rnn-mlp"])
def test_optax_guard_skips_a_non_finite_gradient(name):
    """docs/learned.md's advice: optax.apply_if_finite around a shipped optimizer skips a step
    whose gradient holds a NaN (zero update, inner state unchanged) and passes loss= through."""
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.ones(2)}
    bare = lopt.pretrained(name, total_steps=100)
    guarded = optax.apply_if_finite(bare, max_consecutive_errors=3)
    state = guarded.init(params)
    poisoned = {**grads, "w": grads["w"].at[0, 0].set(jnp.nan)}
    updates, after = guarded.update(poisoned, state, params, loss=jnp.float32(1.0))
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))
    assert int(after.notfinite_count) == 1
    inner = zip(jax.tree.leaves(after.inner_state), jax.tree.leaves(state.inner_state), strict=True)
    for a, b in inner:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the old state, kept as is
    updates, _ = guarded.update(grads, after, params, loss=jnp.float32(1.0))
    expected, _ = bare.update(grads, bare.init(params), params, loss=jnp.float32(1.0))
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
        assert float(jnp.abs(a).max()) > 0


def test_shipped_optimizers_load_with_their_trust_region():
    from lopt.pretrained import SHIPPED, shipped_architecture

    for name in SHIPPED:
        arch, theta, _ = load_theta(name)
        assert build_architecture(shipped_architecture(name)) == arch  # what benchmarks time
        # Meta-trained from Adam's start under a trust region; self-trained without one.
        assert arch.trust_ratio == (None if name.startswith("self-trained") else 0.1)
        params = _params()
        opt = lopt.pretrained(name)
        updates, _ = opt.update(_grads(params, 0), opt.init(params), params, loss=jnp.float32(1))
        assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))


def test_unknown_pretrained_name_lists_valid_ones():
    valid = "rnn-mlp, rnn-mlp-v6, self-trained, self-trained-v1, small, small-v11"
    with pytest.raises(LoptError, match=f"valid pretrained optimizers: {valid}"):
        lopt.pretrained("huge")


@pytest.mark.parametrize("name", ["mlp", "rnn-mlp"])
def test_update_without_matching_parameters_is_one_clear_error(name):
    arch = build_architecture(TINY[name])
    opt = arch.optimizer(arch.init_theta(jax.random.key(0)))
    params = {"w": jnp.ones((3, 2)), "b": [jnp.zeros(2)]}
    state = opt.init(params)
    update = jax.jit(opt.update)
    with pytest.raises(LoptError, match=r"reads the parameters: call update\(grads, state, params"):
        update(params, state)
    with pytest.raises(
        LoptError, match=r"the gradient at \['b'\]\[0\] has shape \(4,\), its parameter \(2,\)"
    ):
        update({"w": jnp.ones((3, 2)), "b": [jnp.ones(4)]}, state, params)
    with pytest.raises(LoptError, match="structure"):
        update({"w": jnp.ones((3, 2))}, state, params)


@pytest.mark.parametrize("source", [3, None, b"small"])
def test_load_of_neither_name_nor_path_is_one_clear_error(source):
    with pytest.raises(LoptError, match=r"expected the name of a shipped optimizer .* got "):
        lopt.load(source)


def test_invalid_network_settings_are_named():
    with pytest.raises(LoptError, match="invalid hidden sizes for 'mlp'"):
        build_architecture({"kind": "mlp", "hidden": []})
    with pytest.raises(LoptError, match="must include"):
        build_architecture({"kind": "rnn-mlp", "decays": [0.5, 0.99]})
    with pytest.raises(LoptError, match="invalid value for trust_ratio of 'mlp'"):
        build_architecture({"kind": "mlp", "trust_ratio": 0.0})
    with pytest.raises(LoptError, match="invalid value for trust_floor of 'rnn-mlp'"):
        build_architecture({"kind": "rnn-mlp", "trust_floor": -1.0})
    with pytest.raises(LoptError, match="invalid value for distance_power of 'mlp'"):
        build_architecture({"kind": "mlp", "distance_power": -0.5})
    with pytest.raises(LoptError, match="invalid value for distance_max of 'mlp'"):
        build_architecture({"kind": "mlp", "distance_max": 0.5})


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"kind": "mlp", "hidden": ["a"]}, "hidden of 'mlp': ['a'] (expected a list of integers)"),
        ({"kind": "mlp", "hidden": [8.0]}, "hidden of 'mlp': [8.0] (expected a list of integers)"),
        ({"kind": "mlp", "decays": 0.5}, "decays of 'mlp': 0.5 (expected a list of numbers)"),
        ({"kind": "mlp", "nominal": 1}, "nominal of 'mlp': 1 (expected true or false)"),
        (
            {"kind": "mlp", "distance_power": "x"},
            "distance_power of 'mlp': 'x' (expected a number)",
        ),
        (
            {"kind": "mlp", "trust_ratio": "x"},
            "trust_ratio of 'mlp': 'x' (expected a number or null)",
        ),
        (
            {"kind": "rnn-mlp", "lstm_hidden": 3.5},
            "lstm_hidden of 'rnn-mlp': 3.5 (expected an integer)",
        ),
    ],
)
def test_settings_of_the_wrong_type_are_named(setting, expected):
    """Values from a JSON config or ``lopt reconfigure --set`` of the wrong type: one clear error,
    not a TypeError from deep inside the architecture."""
    with pytest.raises(LoptError, match=re.escape(f"invalid value for {expected}")):
        build_architecture(setting)


def test_settings_of_the_right_type_build():
    arch = build_architecture(
        {"kind": "mlp", "trust_ratio": None, "distance_max": 4, "hidden": [4]}
    )
    assert arch.distance_max == 4 and arch.hidden == (4,) and arch.trust_ratio is None


def test_distance_estimate_is_prodigys():
    """Along any trajectory (here plain Adam's), the estimate equals optax's Prodigy's."""
    from optax.contrib import prodigy

    from lopt.learned.distance import init_distance, update_distance

    params, adam, reference = _params(), optax.adam(0.05), prodigy(1.0)
    a, r, d = adam.init(params), reference.init(params), init_distance(params)
    for i in range(40):
        grads = jax.tree.map(lambda p, i=i: p - 2.0 + 0.3 * jnp.cos(p * i), params)
        _, r = reference.update(grads, r, params)
        d = update_distance(d, grads, params)
        np.testing.assert_allclose(d.d, r.estim_lr, rtol=1e-5)
        updates, a = adam.update(grads, a, params)
        params = optax.apply_updates(params, updates)
    assert float(d.d) > 0.1  # far from the minimum at 2: the estimate grew from 1e-6


@pytest.mark.parametrize("kind", ["mlp", "rnn-mlp"])
@pytest.mark.parametrize(("ref", "factor"), [(1e-9, 3.0), (1e9, 1.0)])
def test_distance_scaling_multiplies_the_step_within_its_bounds(kind, ref, factor):
    """A fresh ``mlp`` or ``rnn-mlp`` with distance scaling is Adam times ``(d/ref)^power``
    clipped to ``[1, distance_max]``: the largest factor for a tiny ``ref``, none for a huge one."""
    arch = _distance_scaled(kind, {"distance_power": 0.5, "distance_ref": ref})
    _assert_adam_times(arch, [factor] * 3)


def _distance_scaled(kind: str, settings: dict):
    base = {"mlp": {"kind": "mlp", "hidden": [4]}, "rnn-mlp": TINY["rnn-mlp"]}[kind]
    return build_architecture({**base, **settings})


def _assert_adam_times(arch, factors, horizon=None):
    """A fresh ``arch`` makes Adam's updates (lr 10⁻³) times ``factors[t]`` at step t."""
    opt = arch.optimizer(arch.init_theta(jax.random.key(1)))
    params, adam = _params(), optax.adam(1e-3)
    s, a = opt.init(params), adam.init(params)
    for i, factor in enumerate(factors):
        u, s = opt.update(_grads(params, i), s, params, loss=jnp.float32(1.0), horizon=horizon)
        v, a = adam.update(_grads(params, i), a, params)
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True):
            np.testing.assert_allclose(x, factor * y, rtol=2e-5, atol=1e-9)
        params = optax.apply_updates(params, u)


@pytest.mark.parametrize("kind", ["mlp", "rnn-mlp"])
def test_distance_decay_shrinks_the_log_multiplier_over_the_run(kind):
    """With ``distance_decay`` the saturated multiplier 3 is ``3^(1 − t/T)`` at update t of a
    run of T steps (1 at its end), and stays 3 when the run's length is not given."""
    settings = {"distance_power": 0.5, "distance_ref": 1e-9, "distance_decay": True}
    arch = _distance_scaled(kind, settings)
    _assert_adam_times(arch, 3.0 ** (1 - np.arange(1, 5) / 4), horizon=4)
    _assert_adam_times(arch, [3.0] * 4)


def test_trust_region_caps_the_update_rms_and_keeps_its_direction():
    rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(x))))
    param = jax.random.normal(jax.random.key(0), (6, 7)) * 0.2
    big = jax.random.normal(jax.random.key(1), (6, 7))
    capped = trust_region(big, param, 0.1, 1e-3)
    assert rms(capped) == pytest.approx(0.1 * rms(param), rel=1e-5)
    np.testing.assert_allclose(capped / rms(capped), big / rms(big), rtol=1e-5)
    small = 1e-3 * big  # inside the region: untouched
    np.testing.assert_array_equal(trust_region(small, param, 0.1, 1e-3), small)  # small × 1
    zero_param = jnp.zeros((5,))  # near-zero tensors get the floor as their scale
    assert rms(trust_region(jnp.ones((5,)), zero_param, 0.1, 0.01)) == pytest.approx(1e-3)
    assert trust_region(big, param, None, 1e-3) is big
    assert not np.isfinite(rms(trust_region(big.at[0, 0].set(jnp.nan), param, 0.1, 1e-3)))


@pytest.mark.parametrize("name", ["mlp", "rnn-mlp"])
def test_trust_region_bounds_every_step_of_the_network_optimizers(name):
    """A θ with a huge step size: every tensor's update is capped at trust_ratio × its RMS."""
    arch = build_architecture({**TINY[name], "trust_ratio": 0.05})
    theta = arch.init_theta(jax.random.key(0))
    theta["log_lr"] = jnp.asarray(8.0)  # λ₂·e⁸ ≈ 3: far outside the region
    opt = arch.optimizer(theta)
    params = _params()
    state = opt.init(params)
    for i in range(3):
        updates, state = opt.update(_grads(params, i), state, params, loss=jnp.float32(1.0))
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
            rms_u, rms_p = (float(jnp.sqrt(jnp.mean(jnp.square(x)))) for x in (u, p))
            assert rms_u == pytest.approx(0.05 * rms_p, rel=1e-4)
        params = optax.apply_updates(params, updates)


@pytest.mark.parametrize("hidden", [(8,), (8, 8)])
def test_fused_per_parameter_mlp_equals_the_matrix_form(hidden):
    import equinox as eqx

    from lopt.learned.features import per_param_mlp

    sizes = (5 + 3, *hidden, 2)  # 5 per-parameter features + 3 per-tensor constants
    keys = jax.random.split(jax.random.key(0), len(sizes))
    pairs = zip(sizes[:-1], sizes[1:], keys[:-1], strict=True)
    layers = [eqx.nn.Linear(a, b, key=k) for a, b, k in pairs]
    features = [jax.random.normal(k, (4, 6)) for k in jax.random.split(keys[-1], 5)]
    constants = jnp.asarray([0.5, -1.0, 2.0])
    x = jnp.stack([f.reshape(-1) for f in features], axis=-1)
    x = jnp.concatenate([x, jnp.broadcast_to(constants, (x.shape[0], 3))], axis=-1)
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer.weight.T + layer.bias)
    expected_pooled = jnp.mean(x, axis=0)
    expected = x @ layers[-1].weight.T + layers[-1].bias
    for pool in (False, True):
        outputs, pooled = per_param_mlp(layers, features, constants, pool=pool)
        for j, out in enumerate(outputs):
            assert out.shape == (4, 6)
            np.testing.assert_allclose(out.reshape(-1), expected[:, j], rtol=1e-5, atol=1e-5)
        if pool:
            np.testing.assert_allclose(pooled, expected_pooled, rtol=1e-5, atol=1e-6)
        else:
            assert pooled is None


@pytest.mark.parametrize("name", ["mlp", "rnn-mlp"])
def test_backprop_through_updates_is_finite_where_gradients_are_exactly_zero(name):
    """Weights whose gradient is always 0 (behind a dead unit) and a bias at its initial 0 have
    a zero second moment and a zero RMS; backpropagating through the optimizer's updates (the
    ``tbptt`` estimator) must still give a finite meta-gradient, not 0 · ∞ = NaN."""
    arch = build_architecture(TINY[name])
    theta = arch.init_theta(jax.random.key(0))
    params = {"w": jax.random.normal(jax.random.key(3), (3, 5)), "b": jnp.zeros((5,))}
    loss = lambda p: jnp.sum(jnp.square(p["w"][:, :2] - 1.0))  # no gradient anywhere else

    def final_loss(th):
        opt = arch.optimizer(th)

        def step(carry, _):
            p, state = carry
            value, grads = jax.value_and_grad(loss)(p)
            updates, state = opt.update(grads, state, p, loss=value)
            return (optax.apply_updates(p, updates), state), None

        (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), length=8)
        return loss(p)

    meta_grad = jax.jit(jax.grad(final_loss))(theta)
    meta_grad = np.concatenate([np.ravel(g) for g in jax.tree.leaves(meta_grad)])
    assert np.isfinite(meta_grad).all()
    assert np.abs(meta_grad).max() > 0


def test_sqrt0_is_sqrt_with_a_zero_derivative_at_zero():
    x = jnp.asarray([0.0, 1e-12, 0.25, 4.0])
    np.testing.assert_array_equal(sqrt0(x), jnp.sqrt(x))  # eager: the very same jnp.sqrt
    np.testing.assert_allclose(jax.vmap(jax.grad(sqrt0))(x)[1:], 0.5 / jnp.sqrt(x[1:]), rtol=1e-6)
    assert float(jax.grad(sqrt0)(0.0)) == 0.0


def test_per_parameter_features_need_no_reduction_and_are_scale_free():
    """``feature_normalization="parameter"``: every feature of a parameter depends on that
    parameter's statistics alone (changing another entry of the tensor changes nothing), and
    scaling the gradients scales nothing (they are ratios of g to its own RMS)."""
    decays = (0.9, 0.999)
    g = jnp.array([0.1, -2.0, 3.0, 0.0])
    ms = [0.5 * g, 0.2 * g]
    vs = [0.3 * g**2, 0.1 * g**2 + 1e-3]
    count = jnp.int32(4)
    base = per_parameter_features(g, ms, vs, count, decays)
    other = per_parameter_features(
        g.at[1].set(50.0),
        [m.at[1].set(9.0) for m in ms],
        [v.at[1].set(7.0) for v in vs],
        count,
        decays,
    )
    for a, b in zip(base, other, strict=True):  # the same eager ops; entry 1 alone differs
        np.testing.assert_array_equal(np.delete(np.asarray(a), 1), np.delete(np.asarray(b), 1))
    scaled = per_parameter_features(
        100 * g, [100 * m for m in ms], [1e4 * v for v in vs], count, decays
    )
    for a, b in zip(base[:3], scaled[:3], strict=True):  # the ones scaled by the shared √v̂
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert len(base) == len(param_feature_names(decays, "parameter"))
    assert all(float(jnp.max(jnp.abs(x))) <= 5.0 for x in base)


def test_feature_normalization_is_checked():
    with pytest.raises(LoptError, match="invalid feature_normalization for 'mlp': 'layer'"):
        build_architecture({"kind": "mlp", "feature_normalization": "layer"})
    with pytest.raises(LoptError, match="must include 0.999"):
        build_architecture(
            {
                "kind": "mlp",
                "decays": [0.5, 0.9],
                "nominal": False,
                "feature_normalization": "parameter",
            }
        )


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_conformance_on_float16_with_a_zero_and_an_empty_tensor(name):
    """float16 parameters, one tensor at 0 (a bias at its initial value) and one empty: every
    update finite and in float16, the zero tensor moved, the empty one given an empty update
    (``lopt.learned.guard``: statistics in float32, empty tensors left out)."""
    arch = build_architecture(VARIANTS[name])
    theta = _perturbed(arch.init_theta(jax.random.key(0)), 0.3)
    params = {
        **_params(jnp.float16),
        "zero": jnp.zeros((4,), jnp.float16),
        "empty": jnp.zeros((0, 2), jnp.float16),
    }

    @jax.jit
    def run(params):
        opt = arch.optimizer(theta)
        state, history = opt.init(params), []
        for i in range(3):
            grads = _grads(params, i)
            updates, state = opt.update(grads, state, params, loss=jnp.float32(1.0 / (i + 1)))
            params = optax.apply_updates(params, updates)
            history.append(updates)
        return history

    for updates in run(params):
        for key, update in updates.items():
            assert update.dtype == jnp.float16 and update.shape == params[key].shape
            assert np.all(np.isfinite(np.asarray(update, np.float32))), key
        assert float(jnp.abs(updates["zero"]).max()) > 0
