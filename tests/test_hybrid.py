"""HUB: pinned weights reproduce each component, conformance, the selection mode's forward
passes, the fine-tuning tasks' pretrained start, and ``lopt hub`` end to end."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.cli import main
from lopt.errors import LoptError
from lopt.hybrid import (
    FINETUNE_TASKS,
    HUB_TASKS,
    SCRATCH_TASKS,
    FineTuneTask,
    Pretraining,
    hub,
    hub_task_names,
    mean_learned_weight,
    softmax_weight,
)
from lopt.hybrid.finetune import MovedTeacherStudent, label_subset, pretrain, shifted_signals
from lopt.hybrid.report import beats_all
from lopt.inner import init_state, train
from lopt.learned import LearnedAdam, MLPOptimizer
from lopt.tasks import TASKS
from lopt.tasks.datasets import load
from lopt.tasks.regression import TeacherStudent, TeacherStudentConfig

ARCH = MLPOptimizer(hidden=(4,))


def _theta(seed=0):
    """A learned optimizer that is not Adam (the fresh one is: its last layer is zero)."""
    theta = ARCH.init_theta(jax.random.key(seed))
    return jax.tree.map(lambda x: x + 0.1, theta)


def _params(dtype=jnp.float32):
    k1, k2 = jax.random.split(jax.random.key(3))
    return {"w": jax.random.normal(k1, (3, 5), dtype), "b": jax.random.normal(k2, (5,), dtype)}


def _loss(params, batch):
    """A tiny regression loss; ``batch`` is ``(x (n, 3), y (n, 5))``."""
    x, y = batch
    pred = x @ params["w"].astype(jnp.float32) + params["b"].astype(jnp.float32)
    return jnp.mean((pred - y) ** 2)


def _batch(i):
    kx, ky = jax.random.split(jax.random.fold_in(jax.random.key(7), i))
    return jax.random.normal(kx, (8, 3)), jax.random.normal(ky, (8, 5))


def _assert_same_updates(actual, expected):
    """Two runs' updates agree to float32 rounding: each jitted ``step`` is its own program,
    whose fusion and reduction order XLA may choose differently. ``atol`` scales with the
    tensor's largest update (entries near 0 lose relative precision to cancellation)."""
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())


def _run(opt, params, steps=4):
    """``steps`` real training steps (jitted); returns every step's updates and the final
    state."""
    opt = optax.with_extra_args_support(opt)

    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(_loss)(params, batch)
        updates, state = opt.update(grads, state, params, loss=loss, batch=batch)
        return optax.apply_updates(params, updates), state, updates

    state = opt.init(params)
    history = []
    for i in range(steps):
        params, state, updates = step(params, state, _batch(i))
        history.append(updates)
    return history, state


@pytest.mark.parametrize(("weight", "side"), [(1.0, "learned"), (0.0, "hand")])
def test_pinned_weight_reproduces_that_component(weight, side):
    learned = ARCH.optimizer(_theta())
    hand = optax.sgd(0.05, momentum=0.9)
    params = _params()
    pinned, _ = _run(hub(learned, hand, weight=weight), params)
    alone, _ = _run(learned if side == "learned" else hand, params)
    other, _ = _run(hand if side == "learned" else learned, params)
    _assert_same_updates(pinned, alone)
    for step_alone, step_other in zip(alone, other, strict=True):
        for b, c in zip(*map(jax.tree.leaves, (step_alone, step_other)), strict=True):
            assert not np.allclose(np.asarray(b), np.asarray(c))  # the components differ


def test_weighting_is_a_scale_free_softmax_over_magnitudes():
    big, small = jnp.full((4,), 3.0), jnp.full((4,), 1.0)
    w = float(softmax_weight(big, small, 0.25, finetune=False))
    assert 0.5 < w < 1  # the larger proposal dominates from scratch
    assert w == pytest.approx(float(jax.nn.sigmoid((3 - 1) / 4 / 0.25)))
    assert float(softmax_weight(big, small, 0.25, finetune=True)) == pytest.approx(1 - w)
    assert float(softmax_weight(1e-4 * big, 1e-4 * small, 0.25, False)) == pytest.approx(w)
    assert float(softmax_weight(big, small, 1.0, False)) < w  # hotter: closer to even
    assert float(softmax_weight(small, small, 0.25, False)) == pytest.approx(0.5)
    assert float(softmax_weight(0 * big, 0 * small, 0.25, False)) == pytest.approx(0.5)


def test_weighting_mixes_convexly_per_tensor():
    learned, hand = optax.sgd(1.0), optax.sgd(0.1)
    opt = hub(learned, hand, temperature=0.5)
    params = _params()
    (updates,), state = _run(opt, params, steps=1)
    grads = jax.grad(_loss)(params, _batch(0))
    for key in params:
        w = float(state.learned_weight[key])
        assert 0.5 < w < 1  # sgd(1.0) proposes the larger step
        expected = -(w * 1.0 + (1 - w) * 0.1) * grads[key]
        np.testing.assert_allclose(updates[key], expected, rtol=1e-5)
    assert float(mean_learned_weight(state)) == pytest.approx(
        np.mean(list(state.learned_weight.values()))
    )
    assert int(state.extra_forward_passes) == 0


OPTIONS = {
    "weighting": {},
    "weighting-finetune": {"finetune": True},
    "select": {"mode": "select", "loss_fn": _loss},
}
# In "select" the hand-designed side climbs the loss, so the learned update (which depends on
# θ) is the one kept.
HAND = {"weighting": 1e-2, "weighting-finetune": 1e-2, "select": -1e-2}


@pytest.mark.parametrize(
    ("name", "dtype"),
    [(name, jnp.float32) for name in sorted(OPTIONS)]
    + [("weighting", jnp.bfloat16), ("select", jnp.bfloat16)],
)
def test_conformance(name, dtype):
    """jit and vmap over θ and the temperature, no retrace on a second call, finite, dtype.

    The learned side is ``LearnedAdam`` (θ = Adam's hyperparameters): cheap to compile."""
    arch = LearnedAdam()
    thetas = jax.vmap(lambda lr: {**arch.init_theta(None), "log_lr": lr})(
        jnp.log(jnp.asarray([1e-2, 3e-2, 1e-1]))
    )
    temperatures = jnp.asarray([0.1, 0.25, 1.0])
    params = _params(dtype)
    traces = []

    @jax.jit
    def run(theta, temperature, params):
        traces.append(1)
        options = dict(OPTIONS[name])
        if "mode" not in options:
            options["temperature"] = temperature
        opt = hub(arch.optimizer(theta), optax.sgd(HAND[name]), **options)
        state = opt.init(params)
        for i in range(3):
            batch = _batch(i)
            loss, grads = jax.value_and_grad(_loss)(params, batch)
            updates, state = opt.update(grads, state, params, loss=loss, batch=batch)
            params = optax.apply_updates(params, updates)
        return params, updates, state.extra_forward_passes

    batched = jax.jit(jax.vmap(run, in_axes=(0, 0, None)))
    out, updates, passes = batched(thetas, temperatures, params)
    out2, _, _ = batched(jax.tree.map(lambda t: t + 0.5, thetas), temperatures, params)
    assert len(traces) == 1
    for leaf, ref in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        assert leaf.dtype == ref.dtype and leaf.shape == (3, *ref.shape)
        assert np.all(np.isfinite(np.asarray(leaf, np.float32)))
    assert np.all(np.asarray(passes) == (6 if name == "select" else 0))
    assert np.all(np.isfinite(np.asarray(out["w"], np.float32)))
    assert not np.allclose(np.asarray(out["w"], np.float32), np.asarray(out2["w"], np.float32))


def test_select_keeps_the_lower_loss_candidate_and_counts_forward_passes():
    """A 'learned' optimizer that climbs the loss is never chosen; two loss evaluations (one
    per candidate) are made in every step, and counted."""
    calls = []

    def counted_loss(params, batch):
        calls.append(1)
        return _loss(params, batch)

    uphill, downhill = optax.sgd(-0.05), optax.sgd(0.05)
    opt = hub(uphill, downhill, "select", loss_fn=counted_loss)
    params = _params()
    steps = 5
    history, state = _run(opt, params, steps)
    assert len(calls) == 2  # the jitted step evaluates the loss once per candidate
    assert int(state.extra_forward_passes) == 2 * steps
    assert all(float(w) == 0.0 for w in jax.tree.leaves(state.learned_weight))  # 0/1 flags: exact
    expected, _ = _run(downhill, params, steps)
    _assert_same_updates(history, expected)
    # Swapped roles: the downhill 'learned' candidate wins every step.
    _, state = _run(hub(downhill, uphill, "select", loss_fn=_loss), params, steps)
    assert all(float(w) == 1.0 for w in jax.tree.leaves(state.learned_weight))


def test_select_through_train_gets_the_minibatch():
    task = TASKS["quadratic-16"]()
    opt = hub(optax.sgd(-0.01), optax.sgd(0.1), "select", loss_fn=task.loss)
    _, curves = jax.jit(lambda k: train(task, opt, k, 20, 10))(jax.random.key(0))
    test = np.asarray(curves.eval["test"])
    assert test[-1] < 0.9 * test[0]  # the uphill candidate was rejected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "blend"}, "invalid value for mode: 'blend'"),
        ({"mode": "select"}, "mode='select' needs loss_fn"),
        ({"weight": 1.5}, "invalid value for weight: 1.5"),
        ({"temperature": 0.0}, "invalid value for temperature"),
        ({"temperature": "0.25"}, "invalid value for temperature: '0.25' (expected a number)"),
        ({"weight": "1"}, "invalid value for weight: '1' (expected a number)"),
        ({"mode": "select", "loss_fn": _loss, "weight": 1.0}, "weight= pins"),
    ],
)
def test_bad_settings_are_one_clear_error(kwargs, message):
    with pytest.raises(LoptError, match=re.escape(message)):
        hub(optax.sgd(0.1), optax.adam(1e-3), **kwargs)


def test_select_without_batch_says_what_to_pass():
    opt = hub(optax.sgd(0.1), optax.adam(1e-3), "select", loss_fn=_loss)
    params = _params()
    with pytest.raises(LoptError, match="batch=batch"):
        opt.update(params, opt.init(params), params)


def test_seventeen_tasks_thirteen_from_scratch_four_fine_tuning():
    assert len(HUB_TASKS) == 17 and len(SCRATCH_TASKS) == 13 and len(FINETUNE_TASKS) == 4
    assert all(name in TASKS for name in SCRATCH_TASKS)
    assert hub_task_names("finetune") == tuple(FINETUNE_TASKS)
    assert hub_task_names("finetune,scratch") == tuple(FINETUNE_TASKS) + tuple(SCRATCH_TASKS)
    with pytest.raises(LoptError, match="unknown task or task set 'nope'"):
        hub_task_names("mlp-digits-32,nope")


def test_fine_tuning_starts_from_the_pretrained_weights():
    config = TeacherStudentConfig(input_dim=4, teacher_hidden=8, student_hidden=8, seed=1)
    source, target = TeacherStudent(config), MovedTeacherStudent(config, move=1.0)
    task = FineTuneTask("ft-tiny", source, target, Pretraining(steps=200, lr=1e-2))
    pretrained = task.pretrained_params
    for key in (0, 1):  # every seed starts from the one pretrained checkpoint
        for a, b in zip(
            *map(jax.tree.leaves, (task.init(jax.random.key(key)), pretrained)), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same buffers
    fresh = source.init(jax.random.key(0))
    test = source.eval_batch("test")
    assert source.loss(pretrained, test) < 0.5 * source.loss(fresh, test)  # really pretrained
    assert target.loss(pretrained, target.eval_batch("test")) > source.loss(pretrained, test)
    again = pretrain(source, Pretraining(steps=200, lr=1e-2))
    for a, b in zip(*map(jax.tree.leaves, (again, pretrained)), strict=True):
        # deterministic: the same jitted _pretrain (same static task and settings), same inputs
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    start = init_state(task, optax.adam(1e-3), jax.random.key(5)).params  # what train uses
    for a, b in zip(*map(jax.tree.leaves, (start, pretrained)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same buffers


def test_shifted_datasets():
    digits = load("digits")
    high = label_subset(digits, range(5, 10))
    for split, y in high.y.items():
        assert len(y) > 0 and set(np.unique(y)) == set(range(5, 10)), split
        np.testing.assert_array_equal(high.x[split], digits.x[split][digits.y[split] >= 5])
    rolled = shifted_signals(digits, 3)
    np.testing.assert_array_equal(rolled.x["test"], np.roll(digits.x["test"], 3, axis=-1))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FINETUNE_TASKS))
def test_registered_fine_tuning_tasks_start_pretrained(name):
    from lopt.hybrid import get_hub_task

    task = get_hub_task(name)
    start = task.init(jax.random.key(9))
    for a, b in zip(*map(jax.tree.leaves, (start, task.pretrained_params)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same buffers
    fresh = task.source.init(jax.random.key(0))
    test = task.source.eval_batch("test")
    assert task.source.loss(start, test) < 0.7 * task.source.loss(fresh, test)


def _report_task(losses: dict, finetune=False) -> dict:
    return {
        "finetune": finetune,
        "optimizers": {k: {"final_test_loss": v} for k, v in losses.items()},
    }


def test_beats_all_needs_a_clearly_lower_loss_than_every_competitor():
    losses = {"hub": 1.0, "learned": 1.1, "adam": 1.2, "adamw": 1.3, "sgd-momentum": float("nan")}
    assert beats_all(_report_task(losses), "hub")
    assert not beats_all(_report_task({**losses, "adamw": 1.0}), "hub")
    assert not beats_all(_report_task({**losses, "hub": float("nan")}), "hub")
    near_tie = {**losses, "learned": 1.0 + 1e-6}  # lower in the sixth digit: a tie
    assert not beats_all(_report_task(near_tie), "hub")
    assert beats_all(_report_task(near_tie), "hub", tolerance=0.0)


def test_cli_writes_table_and_resumes(tmp_path, capsys):
    out = tmp_path / "hub"
    argv = ["hub", "--tasks", "quadratic-16", "--steps", "20", "--seeds", "1", "--lrs", "2"]
    argv += ["--out", str(out), "--no-progress"]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    optimizers = data["tasks"]["quadratic-16"]["optimizers"]
    assert set(optimizers) == {"hub", "hub-select", "learned", "adam", "adamw", "sgd-momentum"}
    assert all(np.isfinite(o["final_test_loss"]) for o in optimizers.values())
    assert set(data["summary"]["hub"]) == {"hub", "hub-select"}
    report = (out / "results.md").read_text()
    assert "| quadratic-16 | scratch |" in report and "curves-quadratic-16.png" in report
    assert (out / "curves-quadratic-16.png").stat().st_size > 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert {json.loads(line)["optimizer"] for line in lines} == set(optimizers)
    assert "beats every competitor on" in capsys.readouterr().out

    mtime = (out / "tasks" / "quadratic-16.json").stat().st_mtime_ns
    assert main(argv) == 0  # resumes: the finished task is reused, not recomputed
    assert "reused 1 finished task" in capsys.readouterr().err
    assert (out / "tasks" / "quadratic-16.json").stat().st_mtime_ns == mtime
    other = list(argv)
    other[other.index("--seeds") + 1] = "2"
    assert main(other) == 2
    assert "other settings (differs in: seeds)" in capsys.readouterr().err
    # a task file cut short (written before writes became atomic, or damaged) is recomputed
    task_file = out / "tasks" / "quadratic-16.json"
    task_file.write_text('{"optimizers": ')
    assert main(argv) == 0
    assert json.loads(task_file.read_text())["optimizers"].keys() == optimizers.keys()
    (out / "config.json").write_text("{")
    assert main(argv) == 2
    assert "config.json is not the config of a HUB comparison" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "nope"], "error: unknown task or task set 'nope'"),
        (["--modes", "blend"], "error: invalid value for mode: 'blend'"),
        (["--hand-designed", "adma@1e-3"], "error: unknown baseline optimizer 'adma'"),
        (["--hand-designed", "adam"], "error: invalid hand-designed optimizer 'adam'"),
        (["--learned", "huge"], "error: unknown pretrained optimizer 'huge'"),
    ],
)
def test_cli_mistakes_are_one_line(args, message, capsys, tmp_path):
    assert main(["hub", *args, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing is written for a bad command


@pytest.mark.slow
def test_cost_benchmark_reports_ratios_against_each_component(tmp_path):
    from lopt.hybrid.cost import measure_costs, write_costs

    costs = measure_costs(["quadratic-16"], num_steps=10, rounds=1)
    ms = costs["quadratic-16"]["ms_per_step"]
    assert set(ms) == {"adam@1e-3", "small", "hub", "hub-select"}
    assert all(v > 0 for v in ms.values())
    ratios = costs["quadratic-16"]["ratios"]
    assert ratios["hub / small"] == pytest.approx(ms["hub"] / ms["small"])
    assert json.loads(write_costs(costs, tmp_path).read_text())["tasks"] == costs


def test_adam_and_adamw_grids_are_the_named_baselines():
    """Each row of the vmapped grid makes the named baseline's updates (to float32 rounding:
    other programs); Adam's and AdamW's updates differ by 2·10⁻⁴ relative, far above it."""
    from lopt.baselines import make
    from lopt.hybrid.compare import tuned_grids

    lrs = np.asarray([1e-3, 1e-2])
    (labels, build, table), _ = tuned_grids(lrs)
    assert labels == ("adam", "adamw") and table.shape == (4, 2)
    params = _params()
    for row, (name, lr) in zip(
        table, [("adam", 1e-3), ("adam", 1e-2), ("adamw", 1e-3), ("adamw", 1e-2)], strict=True
    ):
        ours, _ = _run(build(row), params, steps=3)
        _assert_same_updates(ours, _run(make(name, jnp.float32(lr)), params, steps=3)[0])
