"""Task augmentation (``lopt.meta.augment``): a rescaled task is the same problem, and a
meta-training bank draws its scales as configured."""

import jax
import numpy as np
import optax
import pytest

from lopt.errors import LoptError
from lopt.inner import train
from lopt.meta.augment import ParameterScaled
from lopt.meta.config import MetaTrainConfig
from lopt.meta.outer import bank_tasks
from lopt.tasks import get_task

SCALE = 8.0


def test_a_rescaled_task_is_the_same_problem_with_a_larger_gradient():
    base = get_task("mlp-digits-32")
    scaled = ParameterScaled(base, SCALE)
    key, batch = jax.random.key(0), base.eval_batch("train")
    params, scaled_params = base.init(key), scaled.init(key)
    for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(scaled_params), strict=True):
        np.testing.assert_allclose(q * SCALE, p, rtol=1e-6)
    np.testing.assert_allclose(scaled.loss(scaled_params, batch), base.loss(params, batch), 1e-6)
    grads = jax.tree.leaves(jax.grad(base.loss)(params, batch))
    scaled_grads = jax.tree.leaves(jax.grad(scaled.loss)(scaled_params, batch))
    for g, h in zip(grads, scaled_grads, strict=True):
        np.testing.assert_allclose(h, SCALE * g, rtol=1e-4, atol=1e-7)
    assert scaled.name == f"{base.name}*p/8"
    assert scaled.normalizer == pytest.approx(base.normalizer, rel=1e-5)


def test_adam_on_the_rescaled_task_follows_adam_at_a_scaled_learning_rate():
    """Adam's step is invariant to the gradient's scale, so Adam(η) in the rescaled coordinates
    moves the original parameters as Adam(η·scale) does: the task wants a learning rate
    ``1/scale`` times as large."""
    base = get_task("mlp-digits-32")
    scaled = ParameterScaled(base, SCALE)
    key = jax.random.key(1)
    _, curves = train(base, optax.adam(1e-3 * SCALE, eps=1e-12), key, 60, eval_every=20)
    _, scaled_curves = train(scaled, optax.adam(1e-3, eps=1e-12), key, 60, eval_every=20)
    np.testing.assert_allclose(scaled_curves.eval["test"], curves.eval["test"], rtol=2e-3)
    _, same_lr = train(base, optax.adam(1e-3, eps=1e-12), key, 60, eval_every=20)
    assert abs(same_lr.eval["test"][-1] - scaled_curves.eval["test"][-1]) > 0.05


def test_a_bank_draws_its_scales_log_uniformly_in_the_configured_range():
    families = ("mlp-digits", "quadratic")
    cfg = MetaTrainConfig(families=families, task_bank=40, parameter_scale=(0.1, 10.0))
    tasks = bank_tasks(cfg)
    assert tasks[0].name == bank_tasks(cfg)[0].name  # the same config, the same bank
    scales = np.array([t.scale for t in tasks])
    assert np.all((scales >= 0.1) & (scales <= 10.0))
    assert (scales < 1).sum() >= 10 and (scales > 1).sum() >= 10  # both sides of 1
    unscaled = bank_tasks(MetaTrainConfig(families=families, task_bank=4))
    assert not any(isinstance(t, ParameterScaled) for t in unscaled)
    assert [t.inner.name for t in tasks[:4]] == [t.name for t in unscaled]  # same samples


@pytest.mark.parametrize("bad", [(10.0, 0.1), (1e-4, 1.0), (1.0,), (1.0, 1e4)])
def test_a_bad_scale_range_is_refused(bad):
    with pytest.raises(LoptError, match="invalid value for parameter_scale"):
        MetaTrainConfig(parameter_scale=bad)
