"""One conformance test for every task family, plus every named task and task set."""

from __future__ import annotations

import dataclasses
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tolerances import assert_trees_close

from lopt.errors import LoptError
from lopt.inner import train
from lopt.tasks import (
    FAMILIES,
    HELDOUT_FAMILIES,
    HELDOUT_TASKS,
    META_TRAIN_FAMILIES,
    SPLITS,
    TASK_SETS,
    TASKS,
    DataTask,
    get_task,
    task_names,
)
from lopt.tasks.classifiers import (
    ConvClassifier,
    ConvClassifierConfig,
    MLPClassifier,
    MLPClassifierConfig,
    MLPClassifierFamily,
)
from lopt.tasks.models import conv_as_matmul
from lopt.tasks.registry import (
    HELDOUT_FRESH_TASKS,
    HELDOUT_LARGE_TASKS,
    HELDOUT_PHOTO_TASKS,
    HELDOUT_UNSEEN_TASKS,
    TASK_GROUPS,
    get_family,
)
from lopt.tasks.regression import (
    Autoencoder,
    AutoencoderConfig,
    MLPRegressor,
    MLPRegressorConfig,
    TeacherStudent,
)
from lopt.tasks.synthetic import Quadratic, QuadraticConfig
from lopt.tasks.transformer import TransformerLM, TransformerLMConfig

FAMILY_NAMES = sorted(FAMILIES)
# Adam learning rate per family for the "training reduces the loss" check (default 1e-2).
TRAIN_LR = {"fn2d": 3e-2, "fn2d-booth-himmelblau": 3e-2}


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def _probe(task):
    """One jitted program exercising the Task protocol: init vmapped over keys, loss vmapped
    over params, a minibatch of every split (vmapped over keys) and every evaluation loss."""

    @jax.jit
    def probe(keys):
        params = jax.vmap(task.init)(keys)
        batches = {s: jax.vmap(lambda k, s=s: task.batch(k, s))(keys) for s in SPLITS}
        first = jax.tree.map(lambda b: b[0], batches["train"])
        losses = jax.vmap(task.loss, in_axes=(0, None))(params, first)
        p0 = jax.tree.map(lambda x: x[0], params)
        evals = {s: task.loss(p0, task.eval_batch(s)) for s in SPLITS}
        return params, batches, losses, evals

    return probe


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_conformance(name):
    family = FAMILIES[name]
    keys = jax.random.split(jax.random.key(7), 3)

    # Same key -> same config and same init (to float32 rounding: each probe is its own program).
    a, b = family.sample(jax.random.key(3)), family.sample(jax.random.key(3))
    assert a.config == b.config and a.name == b.name
    params, batches, losses, evals = _probe(a)(keys)
    assert_trees_close(_probe(b)(keys)[0], params, rtol=1e-6, atol=1e-6)

    # Finite losses; the jitted, vmapped loss matches a plain call.
    assert losses.shape == (3,) and np.all(np.isfinite(losses))
    assert all(np.isfinite(v) and v.shape == () for v in evals.values())
    p0 = jax.tree.map(lambda x: x[0], params)
    b0 = jax.tree.map(lambda x: x[0], batches["train"])
    np.testing.assert_allclose(a.loss(p0, b0), losses[0], rtol=1e-4, atol=1e-6)
    assert not _leaves_equal(
        jax.tree.map(lambda x: x[0], params), jax.tree.map(lambda x: x[1], params)
    ), "different keys should give different inits"

    # The four splits are disjoint.
    if isinstance(a, DataTask):
        index = a.data.index
        for s, t in itertools.combinations(SPLITS, 2):
            assert not np.intersect1d(index[s], index[t]).size, (s, t)
        for s in SPLITS:
            assert len(index[s]) == a.data.size(s) > 0
    elif not _leaves_equal(
        jax.tree.map(lambda x: x[0], batches["train"]),
        jax.tree.map(lambda x: x[1], batches["train"]),
    ):  # tasks with data: same key, different split -> different minibatch
        for s, t in itertools.combinations(SPLITS, 2):
            assert not _leaves_equal(batches[s], batches[t]), (s, t)
    # else: no data (2-D test functions, noiseless quadratics): minibatches do not depend on
    # the key, there is one objective, and the splits cannot be disjoint.


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_adam_reduces_train_loss(name):
    task = FAMILIES[name].sample(0)
    optimizer = optax.adam(TRAIN_LR.get(name, 1e-2))
    _, curves = train(task, optimizer, jax.random.key(0), num_steps=60, eval_every=30)
    train_loss = np.asarray(curves.eval["train"])
    assert np.all(np.isfinite(train_loss))
    assert train_loss[-1] < train_loss[0], train_loss


def test_noisy_quadratic_splits_differ():
    task = Quadratic(QuadraticConfig(dim=4, noise=0.1))
    k = jax.random.key(0)
    for s, t in itertools.combinations(SPLITS, 2):
        assert not np.array_equal(task.batch(k, s), task.batch(k, t))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_named_task_builds(name):
    task = get_task(name)  # shapes only: tracing, no compilation
    params = jax.eval_shape(task.init, jax.random.key(0))
    loss = jax.eval_shape(task.loss, params, task.eval_batch("test"))
    assert loss.shape == () and loss.dtype == jnp.float32


def test_task_sets_name_real_tasks():
    for set_name, names in TASK_SETS.items():
        assert names, set_name
        assert task_names(set_name) == names
        assert set(names) <= set(TASKS)
    assert task_names("quadratic-16, beale") == ("quadratic-16", "beale")
    both = task_names("heldout-unseen,heldout-photos")  # sets and names mix; each task once
    assert both == TASK_SETS["heldout-unseen"] + TASK_SETS["heldout-photos"]
    configs = ("beale", "charlm-prose", "rosenbrock", "mlp-digits-128-elu", "quadratic-64-ill")
    assert task_names("beale,heldout-configs") == configs


def test_heldout_tasks_are_never_sampled_in_meta_training():
    """No held-out named task's config can be drawn from a meta-training family (checked on
    2000 draws per family: the config spaces are small and discrete), and held-out families
    share no name with meta-training families."""
    names = (
        *HELDOUT_TASKS,
        *HELDOUT_FRESH_TASKS,
        *HELDOUT_UNSEEN_TASKS,
        *HELDOUT_PHOTO_TASKS,
        *HELDOUT_LARGE_TASKS,
    )
    heldout = {get_task(name).config for name in names}
    assert len(heldout) == len(names)  # all distinct
    for name in META_TRAIN_FAMILIES:
        rng = np.random.default_rng(0)
        sampled = {FAMILIES[name].sample_config(rng) for _ in range(2000)}
        assert not sampled & heldout, (name, sampled & heldout)
    assert not set(HELDOUT_FAMILIES) & set(META_TRAIN_FAMILIES)
    assert set(HELDOUT_FAMILIES) <= set(FAMILIES)


def test_autoencoders_reconstruct_features_in_the_unit_interval():
    """Both autoencoder families reconstruct inputs in [0, 1] through a sigmoid: digits pixels
    as they are, the standardized breast-cancer features min-max scaled over the dataset."""
    digits = Autoencoder(AutoencoderConfig(dataset="digits"))
    np.testing.assert_array_equal(digits.eval_batch("test")[0], digits.data.x["test"])
    cancer = Autoencoder(AutoencoderConfig(16, 4, dataset="breast_cancer"))
    pooled = np.concatenate([np.asarray(cancer.eval_batch(s)[0]) for s in SPLITS])
    assert pooled.shape == (569, 30)  # every row: each split is under the evaluation cap
    np.testing.assert_array_equal(pooled.min(axis=0), 0.0)
    np.testing.assert_allclose(pooled.max(axis=0), 1.0, rtol=1e-6)
    params = cancer.init(jax.random.key(0))
    assert params.layers[0].weight.shape == (16, 30) and params.layers[-1].weight.shape == (30, 16)
    signals = Autoencoder(AutoencoderConfig(dataset="mnist1d"))
    pooled = np.concatenate([np.asarray(signals.eval_batch(s)[0]) for s in SPLITS])
    assert pooled.shape[1] == 40 and pooled.min() >= 0.0 and pooled.max() <= 1.0 + 1e-6
    with pytest.raises(LoptError, match="dataset: 'wine'"):
        Autoencoder(AutoencoderConfig(dataset="wine"))


def test_train_rows_keeps_the_first_training_rows_and_every_other_split():
    """A small-data task trains on the first ``train_rows`` rows of the training split and
    evaluates on the whole of the others; the ``-few`` families draw their other choices as the
    full-data family does from the same generator, then the number of rows."""
    full = MLPClassifier(MLPClassifierConfig("breast_cancer", (8,)))
    few = MLPClassifier(MLPClassifierConfig("breast_cancer", (8,), train_rows=40))
    assert few.rows("train") == 40 and full.rows("train") == full.data.size("train") > 40
    x, y = few.eval_batch("train")
    np.testing.assert_array_equal(x, full.data.x["train"][:40])
    np.testing.assert_array_equal(y, full.data.y["train"][:40])
    for split in SPLITS[1:]:
        np.testing.assert_array_equal(few.eval_batch(split)[0], full.eval_batch(split)[0])
    xb, _ = few.batch(jax.random.key(0), "train")
    assert all(any(np.array_equal(row, r) for r in np.asarray(x)) for row in np.asarray(xb))
    with pytest.raises(LoptError, match="train_rows: 0"):
        MLPClassifier(MLPClassifierConfig("breast_cancer", (8,), train_rows=0))

    family, small = FAMILIES["mlp-digits"], FAMILIES["mlp-digits-few"]
    for seed in range(20):
        a = family.sample_config(np.random.default_rng(seed))
        b = small.sample_config(np.random.default_rng(seed))
        assert b.train_rows in small.train_rows and a.train_rows is None
        assert dataclasses.replace(b, train_rows=None) == a


def test_teacher_student_few_trains_on_fixed_noisy_rows_and_evaluates_on_fresh_ones():
    """``teacher_student-few``: minibatches come from ``train_rows`` rows drawn once; the other
    splits are the infinite-data task's fresh samples; a wide student overfits the rows."""
    few = FAMILIES["teacher_student-few"].sample(0)
    rows = few.config.train_rows
    assert rows in FAMILIES["teacher_student-few"].train_rows and few.config.noise >= 0.3
    x, y = few.eval_batch("train")
    assert x.shape[0] == rows
    xb, yb = few.batch(jax.random.key(1), "train")
    for row, target in zip(np.asarray(xb), np.asarray(yb), strict=True):
        match = np.flatnonzero((np.asarray(x) == row).all(axis=1))
        assert match.size == 1 and np.asarray(y)[match[0]] == target
    assert not np.array_equal(xb, few.batch(jax.random.key(2), "train")[0])
    infinite = TeacherStudent(dataclasses.replace(few.config, train_rows=None))
    for split in SPLITS[1:]:
        np.testing.assert_array_equal(few.eval_batch(split)[0], infinite.eval_batch(split)[0])
        np.testing.assert_array_equal(
            few.batch(jax.random.key(1), split)[1], infinite.batch(jax.random.key(1), split)[1]
        )
    _, curves = train(few, optax.adam(1e-2), jax.random.key(0), num_steps=600, eval_every=100)
    test = np.asarray(curves.eval["test"])
    assert float(np.asarray(curves.eval["train"])[-1]) < 0.5 * test[-1]  # fits its rows ...
    assert test[-1] > test.min()  # ... while the test loss has passed its minimum


def test_regression_on_diabetes_is_half_mse_on_a_standardized_target():
    """The diabetes regressors predict a target standardized over the whole dataset; a linear
    model's loss is ½ MSE computed by hand; classifiers refuse a regression dataset."""
    task = MLPRegressor(MLPRegressorConfig(hidden=()))
    target = np.concatenate([task.data.y[s] for s in SPLITS])
    assert target.shape == (442,) and target.dtype == np.float32
    np.testing.assert_allclose([target.mean(), target.std()], [0.0, 1.0], atol=1e-5)
    params = task.init(jax.random.key(0))
    x, y = task.eval_batch("test")
    layer = params.layers[0]
    by_hand = 0.5 * np.mean((np.asarray(x) @ np.asarray(layer.weight[0]) + layer.bias[0] - y) ** 2)
    np.testing.assert_allclose(task.loss(params, (x, y)), by_hand, rtol=1e-5)
    with pytest.raises(LoptError, match="dataset: 'diabetes'"):
        MLPClassifierFamily("diabetes")
    with pytest.raises(LoptError, match="dataset: 'iris'"):
        MLPRegressor(MLPRegressorConfig(dataset="iris"))


def test_photo_patches_and_pixels_come_from_the_bundled_photographs():
    """Patches: 1500 grayscale 8×8 crops of each photograph in [0, 1], labelled by photograph;
    pixels: a pixel's scaled position maps to its standardized intensity (every fifth pixel)."""
    from sklearn.datasets import load_sample_image

    from lopt.tasks.datasets import load

    patches = load("photo-patches")
    x = np.concatenate([patches.x[s] for s in SPLITS])
    y = np.concatenate([patches.y[s] for s in SPLITS])
    assert x.shape == (3000, 64) and x.min() >= 0.0 and x.max() <= 1.0
    assert np.bincount(y).tolist() == [1500, 1500]
    assert ConvClassifier(ConvClassifierConfig("photo-patches", (4,))).shape == (1, 8, 8)
    pixels = load("flower-pixels")
    assert sum(pixels.size(s) for s in SPLITS) == 86 * 128
    gray = load_sample_image("flower.jpg").astype(np.float32).mean(-1)[::5, ::5] / 255.0
    for split in SPLITS:
        row, col = divmod(int(pixels.index[split][0]), 128)
        np.testing.assert_allclose(
            pixels.x[split][0], [np.linspace(-1, 1, 86)[row], np.linspace(-1, 1, 128)[col]]
        )
        standardized = (gray[row, col] - gray.mean()) / gray.std()
        np.testing.assert_allclose(pixels.y[split][0], standardized, rtol=1e-4, atol=1e-5)


def test_unknown_task_lists_valid_names():
    with pytest.raises(LoptError, match="unknown task or task set 'nope'.*quadratic-16.*tiny"):
        task_names("quadratic-16,nope")
    with pytest.raises(LoptError, match="unknown task 'nope'; valid tasks: .*mlp-digits-32"):
        get_task("nope")  # nothing close: no suggestion
    with pytest.raises(
        LoptError, match=r"unknown task 'mlp-digit-32' \(did you mean 'mlp-digits-32'"
    ):
        get_task("mlp-digit-32")


def test_invalid_config_names_the_field():
    with pytest.raises(LoptError, match="batch_size: 0"):
        MLPClassifier(MLPClassifierConfig(batch_size=0))
    with pytest.raises(LoptError, match=r"activation: 'rleu' \(did you mean 'relu'\?\)"):
        MLPClassifier(MLPClassifierConfig(activation="rleu"))


@pytest.mark.parametrize(("dims", "kernel"), [(1, 3), (1, 5), (2, 3), (2, 5)])
def test_conv_as_matmul_is_the_convolution(dims, kernel):
    """The conv nets' patches-times-kernel convolution equals equinox's convolution, for one set
    of weights and vmapped over several (where JAX would otherwise batch a grouped conv)."""
    spatial = (11,) * dims
    keys = jax.random.split(jax.random.key(0), 4)
    convs = [
        eqx.nn.Conv(dims, 3, 4, kernel, stride=2, padding=kernel // 2, key=k) for k in keys[:3]
    ]
    x = jax.random.normal(keys[3], (3, *spatial))
    expected = [conv(x) for conv in convs]
    for conv, want in zip(convs, expected, strict=True):
        np.testing.assert_allclose(conv_as_matmul(conv, x), want, rtol=1e-5, atol=1e-6)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *convs)
    batched = jax.vmap(conv_as_matmul, in_axes=(0, None))(stacked, x)
    np.testing.assert_allclose(batched, jnp.stack(expected), rtol=1e-5, atol=1e-6)


def _num_params(task) -> int:
    return sum(a.size for a in jax.tree.leaves(jax.eval_shape(task.init, jax.random.key(0))))


def test_meta_training_models_are_a_tenth_of_the_large_heldout_models_or_less():
    """The largest model meta-training samples (50 draws per family) or names has the 8,970
    parameters that registry.py's comment states, and every ``heldout-large`` model has at
    least 10× that."""
    sampled = [
        _num_params(get_family(name).sample(seed))
        for name in META_TRAIN_FAMILIES
        for seed in range(50)
    ]
    largest = max(*sampled, *(_num_params(get_task(name)) for name in TASK_SETS["train"]))
    assert largest == 8_970  # mlp-digits at 64×64; update registry.py's comment if it changes
    for name in TASK_SETS["heldout-large"]:
        assert _num_params(get_task(name)) >= 10 * largest, name


@pytest.mark.parametrize("name", sorted(HELDOUT_LARGE_TASKS))
def test_large_heldout_task_inits_to_a_finite_loss(name):
    task = get_task(name)
    params = task.init(jax.random.key(0))
    assert 100_000 <= sum(a.size for a in jax.tree.leaves(params)) <= 400_000
    loss = jax.jit(task.loss)(params, task.batch(jax.random.key(1), "train"))
    assert np.isfinite(loss) and loss > 0
    assert name in TASK_SETS["heldout-large"] and name in TASK_GROUPS["large held-out"]
    assert task_names("heldout-large") == tuple(HELDOUT_LARGE_TASKS)


def test_transformer_is_causal():
    """A token changes the logits at its own and later positions only."""
    task = TransformerLM(TransformerLMConfig(d_model=16, layers=1, heads=2, seq_len=8))
    params = task.init(jax.random.key(0))
    tokens = jnp.arange(8, dtype=jnp.int32)
    logits = jax.jit(lambda p, t: p(t))
    changed = np.abs(np.asarray(logits(params, tokens.at[5].set(40)) - logits(params, tokens)))
    assert changed[:5].max() < 1e-6
    assert np.all(changed[5:].max(axis=-1) > 1e-3)
    with pytest.raises(LoptError, match="heads: 3"):
        TransformerLM(TransformerLMConfig(d_model=16, heads=3))
