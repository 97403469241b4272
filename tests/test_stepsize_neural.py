"""Tests for the neural train-by-train vs train-by-validation experiment (lopt.stepsize.neural)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lopt.errors import LoptError
from lopt.stepsize.neural import NeuralConfig, run_neural
from lopt.stepsize.small_data import SmallDataClassifier, SmallDataConfig, corrupt_labels
from lopt.tasks.datasets import load


def test_corrupt_labels_changes_exactly_the_stated_fraction():
    labels = np.arange(1000) % 10
    out, rows = corrupt_labels(labels, 0.2, 10, np.random.default_rng(3))
    assert len(rows) == 200 and len(np.unique(rows)) == 200
    changed = np.flatnonzero(out != labels)
    np.testing.assert_array_equal(changed, rows)  # every chosen row gets a *different* class
    assert out.min() >= 0 and out.max() <= 9
    again, rows2 = corrupt_labels(labels, 0.2, 10, np.random.default_rng(3))
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(rows2, rows)


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_small_data_task_splits_and_label_noise(noise):
    cfg = SmallDataConfig(n_train=300, n_valid=250, n_inner_valid=50, label_noise=noise)
    task = SmallDataClassifier(cfg)
    assert task.size("train") == 300 and task.size("outer_valid") == 250
    assert task.size("inner_valid") == 50
    assert task.x["train"].shape == (300, 40) and task.sizes == (40, 100, 20, 10)
    for split in ("train", "inner_valid", "outer_valid"):
        n = task.size(split)
        wrong = np.flatnonzero(task.y[split] != task.clean_y[split])
        assert len(wrong) == round(noise * n)
        np.testing.assert_array_equal(wrong, task.noisy_rows[split])
    # test split: the dataset's own test set, labels untouched
    data = load("mnist1d")
    np.testing.assert_array_equal(task.y["test"], data.y["test"])
    assert len(task.noisy_rows["test"]) == 0
    # rows of different splits are disjoint (no validation sample is a training sample)
    rows = {s: {r.tobytes() for r in task.x[s]} for s in ("train", "outer_valid", "inner_valid")}
    assert not rows["train"] & rows["outer_valid"] and not rows["train"] & rows["inner_valid"]
    # deterministic from the seed; another seed gives other rows
    same = SmallDataClassifier(cfg)
    np.testing.assert_array_equal(same.y["train"], task.y["train"])
    np.testing.assert_array_equal(same.x["train"], task.x["train"])
    other = SmallDataClassifier(SmallDataConfig(n_train=300, n_valid=250, data_seed=1))
    assert not np.array_equal(other.x["train"], task.x["train"])
    # minibatches: training batch size for train, validation batch size elsewhere
    x, y = task.batch(jax.random.key(0), "train")
    assert x.shape == (32, 40) and y.shape == (32,)
    assert task.batch(jax.random.key(0), "outer_valid")[0].shape == (256, 40)
    assert task.eval_batch("train")[0].shape[0] == 300


def test_small_data_task_rejects_too_many_rows():
    with pytest.raises(LoptError, match="split sizes"):
        SmallDataClassifier(SmallDataConfig(n_train=3000, n_valid=1000))
    with pytest.raises(LoptError, match="label_noise"):
        SmallDataClassifier(SmallDataConfig(label_noise=1.5))


def test_neural_config_validates_its_schedule():
    NeuralConfig()
    with pytest.raises(LoptError, match="eval_every"):
        NeuralConfig(eval_every=25)  # not a multiple of valid_every = 10
    with pytest.raises(LoptError, match="horizon"):
        NeuralConfig(horizon=520)  # not a multiple of the truncation (50)


@pytest.mark.slow
def test_run_neural_quick_writes_outputs(tmp_path):
    results = run_neural(tmp_path, quick=True)
    for name in ("neural.json", "neural.md", "neural.png"):
        assert (tmp_path / name).exists()
    saved = json.loads((tmp_path / "neural.json").read_text())
    assert saved["levels"][0]["label_noise"] == results["levels"][0]["label_noise"]
    for level in results["levels"]:
        assert set(level["eval"]) == {"adam", "train-by-train", "train-by-validation"}
        assert level["noisy_fraction"]["test"] == 0.0
        for r in level["eval"].values():
            assert np.isfinite(r["test_loss"]) and 0.0 <= r["test_acc"] <= 1.0
    assert "TbV" in (tmp_path / "neural.md").read_text()
    import lopt

    assert lopt.load(tmp_path / "neural-noise20pct-train-by-validation") is not None
