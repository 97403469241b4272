"""Normalized loss, optimizer specs and the evaluation loop on tiny runs."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tolerances import assert_records_close

import lopt
from lopt.baselines import ADAM_LRS
from lopt.errors import LoptError
from lopt.evaluation import report
from lopt.evaluation.harness import (
    REFERENCE_SPECS,
    EvalResult,
    Metrics,
    TaskResult,
    evaluate,
    evaluate_into,
    normalized_loss,
    reference_losses,
    run_config,
)
from lopt.evaluation.optimizer_specs import loss_only, resolve_optimizer


def test_normalized_loss_by_hand():
    curve = [2.0, 1.25, 0.5, np.nan, 10.0, -1.0, np.inf]
    np.testing.assert_allclose(
        normalized_loss(curve, initial=2.0, best=0.5), [1.0, 0.5, 0.0, 2.0, 2.0, -1.0, 2.0]
    )


def test_reference_losses_by_hand():
    # Two reference grids (T, S, E): L0 is the seed-mean first point, L* the lowest seed-mean
    # point of any trial at any evaluation point (here trial 1 of the second grid, step 1).
    adam = np.array([[[4.0, 3.0, 2.0], [2.0, 1.0, 2.0]], [[4.0, 9.0, np.nan], [2.0, 1.0, 1.0]]])
    nadamw = np.array([[[4.0, 1.0, 5.0], [2.0, 0.5, 5.0]], [[4.0, 0.6, 0.9], [2.0, 0.2, 0.9]]])
    initial, best = reference_losses([adam, nadamw])
    assert initial == 3.0
    assert best == pytest.approx(0.4)
    test = adam[0].mean(axis=0)  # (3.0, 2.0, 2.0)
    norm = normalized_loss(test, initial, best)
    np.testing.assert_allclose(norm, [1.0, 1.6 / 2.6, 1.6 / 2.6])
    assert norm.mean() == pytest.approx((1 + 2 * 1.6 / 2.6) / 3)


def test_resolve_optimizer_specs():
    assert resolve_optimizer("adam-tuned").select == "task"
    assert resolve_optimizer("adam-global").select == "global"
    tuned = resolve_optimizer("adam-tuned")
    assert len(tuned.hparams) == len(ADAM_LRS) and tuned.grid == "adam-lrs"
    assert len(jax.tree.leaves(resolve_optimizer("nadamw-tuned").hparams)[0]) >= 5
    fixed = resolve_optimizer("adam@3e-3")
    assert (fixed.label, fixed.select, fixed.describe(0)) == ("adam@3e-3", "fixed", "lr=0.003")
    assert resolve_optimizer("sgd").describe(0) == "lr=0.1"


def test_a_loss_only_spec_passes_the_training_loss_alone():
    seen = []

    def update(updates, state, params=None, **extra):
        seen.append(sorted(extra))
        return updates, state

    recorder = optax.GradientTransformationExtraArgs(lambda params: (), update)
    loss_only(recorder).update({"w": 1.0}, (), None, loss=2.0, valid_loss=3.0, horizon=9, batch=0)
    assert seen == [["loss"]]
    spec = resolve_optimizer("small:loss-only")
    assert spec.label == "small:loss-only"
    assert spec.weights_sha256 == resolve_optimizer("small").weights_sha256
    params = {"w": jnp.ones(3)}
    opt = spec.build(None, 100)
    state = opt.init(params)
    grads = {"w": jnp.array([0.1, -0.2, 0.3])}
    full = lopt.pretrained("small")
    expected, _ = full.update(grads, full.init(params), params, loss=jnp.float32(1.0))
    got, _ = opt.update(grads, state, params, loss=jnp.float32(1.0), valid_loss=0.5, horizon=100)
    np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-6)
    with pytest.raises(LoptError, match="applies to learned optimizers only"):
        resolve_optimizer("adam:loss-only")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "adma",
            r"unknown optimizer 'adma' \(did you mean 'adam'\?\); valid optimizers: .*NAME@LR",
        ),
        ("sdg@0.1", r"unknown optimizer 'sdg@0.1' \(did you mean 'sgd'\?\)"),
        ("adam@fast", "invalid learning rate in optimizer 'adam@fast'"),
        ("adam@-1", "invalid value for learning rate of 'adam@-1'"),
    ],
)
def test_bad_optimizer_specs(spec, message):
    with pytest.raises(LoptError, match=message):
        resolve_optimizer(spec)


def test_bad_evaluate_arguments():
    key = jax.random.key(0)
    with pytest.raises(LoptError, match="unknown task 'nope'"):
        evaluate(["nope"], ["adam"], 20, 1, key)
    with pytest.raises(LoptError, match="seeds"):
        evaluate(["quadratic-16"], ["adam"], 20, 0, key)
    with pytest.raises(LoptError, match="eval_every"):
        evaluate(["quadratic-16"], ["adam"], 20, 1, key, eval_every=15)
    with pytest.raises(LoptError, match=r"steps: '20' \(expected an integer\)"):
        evaluate(["quadratic-16"], ["adam"], "20", 1, key)
    with pytest.raises(LoptError, match=r"seeds: 1.5 \(expected an integer\)"):
        evaluate(["quadratic-16"], ["adam"], 20, 1.5, key)


def test_bad_training_schedule_is_one_clear_error():
    import optax

    from lopt.inner import train
    from lopt.tasks.registry import get_task

    task, key = get_task("quadratic-16"), jax.random.key(0)
    with pytest.raises(LoptError, match=r"num_steps: '100' \(expected an integer\)"):
        train(task, optax.sgd(0.1), key, "100", 10)
    with pytest.raises(LoptError, match=r"eval_every: 0 \(allowed: >= 1\)"):
        train(task, optax.sgd(0.1), key, 100, 0)


def test_evaluate_tiny_run():
    result = evaluate(
        ["quadratic-16"], ["sgd@0.1", "adam-tuned"], 20, 2, jax.random.key(0), 10, False
    )
    assert result.optimizers == ("sgd@0.1", "adam-tuned", *REFERENCE_SPECS[1:])
    task = result.tasks["quadratic-16"]
    np.testing.assert_array_equal(task.steps, [0, 10, 20])
    assert task.best_loss <= task.initial_loss
    for label in result.optimizers:
        assert task.curves[label]["test"].shape == (2, 3)
        # Common random numbers: every optimizer starts from the same initial test loss.
        assert task.curves[label]["test"][:, 0].mean() == pytest.approx(task.initial_loss)
        m = task.metrics[label]
        assert -1.0 <= m.normalized_final <= 2.0 and -1.0 <= m.normalized_curve <= 2.0
    tuned = task.metrics["adam-tuned"]
    # adam-tuned on one task is also the global best; both report the same trial (of the one
    # Adam grid run: the same numbers).
    assert tuned == task.metrics["adam-global"]
    assert tuned.hyperparameters.startswith("lr=")
    assert task.metrics["sgd@0.1"].hyperparameters == "lr=0.1"


def _without_timings(result) -> dict:
    data = result.to_json()
    for task in data["tasks"].values():
        task.pop("seconds")
    return data


def test_baseline_cache_reuses_reference_grids_of_the_same_code(tmp_path, monkeypatch):
    from lopt.evaluation import baseline_cache, harness

    cache = baseline_cache.BaselineCache(tmp_path / "cache")
    args = (["quadratic-16"], ["sgd@0.1"], 20, 2, jax.random.key(0), 10, False)
    first = evaluate(*args, baseline_cache=cache)
    entries = sorted((tmp_path / "cache").glob("*.npz"))
    assert len(entries) == 1  # the Adam grid; the fixed sgd@0.1 is never cached
    grids = []
    run_grid = harness._run_grid
    monkeypatch.setattr(
        harness,
        "_run_grid",
        lambda task, spec, *a: grids.append(spec.grid) or run_grid(task, spec, *a),
    )
    second = evaluate(*args, baseline_cache=cache)
    assert grids == ["sgd@0.1"]  # Adam's 14 learning rates came from the cache
    # sgd@0.1 ran again, in a program of its own: equal to float32 rounding.
    assert_records_close(_without_timings(second), _without_timings(first), rtol=1e-5, atol=1e-6)
    # Other code (a different source digest) or a damaged entry: run again, store again.
    monkeypatch.setattr(baseline_cache, "source_digest", lambda: "other code")
    evaluate(*args, baseline_cache=cache)
    assert grids == ["sgd@0.1", "sgd@0.1", "adam-lrs"]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    entries[0].write_bytes(b"not an npz")
    monkeypatch.undo()
    assert cache.load(entries[0].stem) is None
    again = evaluate(*args, baseline_cache=cache)
    assert_records_close(_without_timings(again), _without_timings(first), rtol=1e-5, atol=1e-6)
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_baseline_cache_key_covers_the_grids_code_and_not_the_learned_optimizers():
    """The digest keying cached Adam grids follows the evaluation code's lopt imports: inner
    training, the tasks (every module of the package) and the baselines are in it, a learned
    optimizer's or meta-training's source is not, so editing those keeps the cache."""
    from lopt.evaluation.baseline_cache import grid_source_files

    root = pathlib.Path(lopt.__file__).parent
    files = {str(p.relative_to(root)) for p in grid_source_files()}
    tasks = {f"tasks/{p.name}" for p in (root / "tasks").glob("*.py")}
    assert {"inner.py", "evaluation/harness.py", "baselines/tuning.py"} <= files
    assert "baselines/optimizers.py" in files
    assert tasks <= files
    assert not {f for f in files if f.startswith(("learned/", "meta/", "torch/", "population/"))}


def _metrics(curve: float) -> Metrics:
    return Metrics(0.0, curve, curve, "")


def test_summary_and_wins():
    tasks = {
        name: TaskResult(name, 1.0, 0.0, np.arange(2), {}, {"a": _metrics(a), "b": _metrics(b)}, {})
        for name, a, b in [("t1", 0.1, 0.2), ("t2", 0.5, 0.3), ("t3", 0.0, 0.9)]
    }
    summary = EvalResult({}, ("a", "b"), tasks).summary()
    assert summary["a"]["mean_curve"] == pytest.approx(0.2)
    assert summary["a"]["median_curve"] == pytest.approx(0.1)
    assert summary["a"]["wins"] == {"b": 2} and summary["b"]["wins"] == {"a": 1}


def test_group_rows_split_heldout_families_and_configs():
    scores = {"logreg-wine": (0.1, 0.2), "beale": (0.5, 0.3), "rosenbrock": (0.2, 0.4)}
    tasks = {
        name: TaskResult(name, 1.0, 0.0, np.arange(2), {}, {"a": _metrics(a), "b": _metrics(b)}, {})
        for name, (a, b) in scores.items()
    }
    config = {"tasks": list(scores), "steps": 2, "seeds": 1, "eval_every": 1}
    data = EvalResult(config, ("a", "b"), tasks).to_json()
    rows = report.group_rows(data)
    assert rows[0][:4] == ["held-out families (1)", "a", "0.100", "0.100"]
    assert rows[2] == ["held-out configs (2)", "a", "0.350", "0.350", "1 vs b"]
    assert "## By task group" in report.markdown(data)
    one_group = {k: v for k, v in data["tasks"].items() if k != "logreg-wine"}
    assert report.group_rows({**data, "tasks": one_group}) == []


def test_other_specs_go_through_lopt_load(monkeypatch):
    import optax

    import lopt
    from lopt.evaluation import optimizer_specs

    def fake_load(path):
        if path != "runs/my-opt":
            raise LoptError(f"no saved optimizer at {path}")
        return optax.with_extra_args_support(optax.sgd(0.1))

    monkeypatch.setattr(lopt, "load", fake_load, raising=False)
    monkeypatch.setattr(optimizer_specs, "weights_digest", lambda path: f"digest of {path}")
    spec = resolve_optimizer("runs/my-opt")
    assert (spec.label, spec.grid, spec.select) == ("runs/my-opt", "runs/my-opt", "fixed")
    assert spec.weights_sha256 == "digest of runs/my-opt"
    with pytest.raises(LoptError, match="unknown optimizer 'nope'; valid .*loading 'nope' failed"):
        resolve_optimizer("nope")


def test_reuse_needs_the_same_learned_weights(tmp_path):
    """An evaluation records the SHA-256 of each learned optimizer's weights and architecture:
    re-running it on unchanged weights reuses the results, on retrained weights it refuses to
    report stale numbers (or, with ``replace``, evaluates again)."""
    import hashlib
    import json

    from lopt.learned import build_architecture, save_optimizer

    arch = build_architecture({"kind": "learned-adam"})
    stem = tmp_path / "opt"
    theta = arch.init_theta(jax.random.key(0))
    save_optimizer(stem, arch, theta)
    out = tmp_path / "eval"
    args = (["quadratic-16"], [str(stem), "sgd@0.1"], 20, 1, jax.random.key(0), 10, False)
    config = run_config(*args[:6])
    digest = hashlib.sha256((tmp_path / "opt.safetensors").read_bytes())
    digest.update(json.dumps(arch.config(), sort_keys=True).encode())
    digest = digest.hexdigest()
    assert config["learned_sha256"] == {str(stem): digest}  # hand-designed ones have none
    assert "learned_sha256" not in run_config(["quadratic-16"], ["sgd@0.1"], 20, 1, *args[4:6])
    first, reused = evaluate_into(out, *args)
    assert not reused and first["config"]["learned_sha256"] == {str(stem): digest}
    assert digest[:16] in (out / "results.md").read_text()
    assert evaluate_into(out, *args)[1]  # same weights: reused

    save_optimizer(stem, arch, jax.tree.map(lambda x: x + 0.1, theta))  # retrained
    with pytest.raises(LoptError, match="different evaluation .*learned_sha256"):
        evaluate_into(out, *args)
    second, reused = evaluate_into(out, *args, replace=True)
    assert not reused and second["config"]["learned_sha256"][str(stem)] != digest
    assert evaluate_into(out, *args)[1]  # the replacement is what is on disk now


def test_digest_covers_the_architecture(tmp_path):
    """The same weights under other settings outside θ are another optimizer."""
    from lopt.evaluation.optimizer_specs import weights_digest
    from lopt.learned import build_architecture, save_optimizer

    theta = build_architecture({"kind": "mlp", "hidden": [4]}).init_theta(jax.random.key(0))
    for name, settings in (("a", {}), ("b", {"distance_power": 0.5})):
        save_optimizer(
            tmp_path / name, build_architecture({"kind": "mlp", "hidden": [4], **settings}), theta
        )
    a, b = (tmp_path / "a.safetensors").read_bytes(), (tmp_path / "b.safetensors").read_bytes()
    assert a == b and weights_digest(str(tmp_path / "a")) != weights_digest(str(tmp_path / "b"))


def test_progress_is_one_plain_line_per_unit_where_stderr_is_no_terminal(capsys):
    with report.progress_bar(2) as start:
        start("quadratic-16 / adam-tuned")
        start("quadratic-16 / small")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[1/2] quadratic-16 / adam-tuned (elapsed 0:00:0")
    assert lines[1].startswith("[2/2] quadratic-16 / small (elapsed 0:00:0")
    assert len(lines) == 2
    with report.progress_bar(2, enabled=False) as start:
        start("quadratic-16 / adam-tuned")
    assert capsys.readouterr().err == ""
