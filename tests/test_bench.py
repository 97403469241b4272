"""Smoke tests of the benchmark helpers (speed itself is measured by `lopt bench`, not tests)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.bench.inner import inner_throughput, tuning_speedup
from lopt.bench.suite import bench_rows
from lopt.learned import build_architecture
from lopt.tasks import get_task


def test_bench_helpers_on_a_tiny_task():
    task = get_task("quadratic-16")
    stats = inner_throughput(task, optax.adam(1e-3), num_steps=20, repeats=1)
    assert stats["steps_per_s"] > 0 and stats["flops_per_step"] > 0
    assert stats["num_params"] == 16
    tuning = tuning_speedup(task, num_steps=20, repeats=1)
    assert tuning["speedup"] > 0
    result = {
        "families": {"quadratic": {**stats, "task": task.name, "fraction_of_peak": 0.01}},
        "tuning": {"quadratic-16": tuning},
    }
    families, rows = bench_rows(result)
    assert families[0][0] == "quadratic" and rows[0][0] == "quadratic-16"


def test_accumulator_floor_does_the_learned_optimizers_state_update():
    import jax.numpy as jnp
    import numpy as np

    from lopt.bench.learned import accumulators_only, update_time

    decays = (0.5, 0.9)
    params = {"w": jnp.ones((3, 2))}
    floor = accumulators_only(decays)
    state = floor.init(params)
    grads = {"w": jnp.full((3, 2), 2.0)}
    out, state = floor.update(grads, state, params)
    np.testing.assert_allclose(out["w"], 0.5 * 2.0)  # (1 − 0.5)·g after one step
    np.testing.assert_allclose(state.second_moment[1]["w"], 0.1 * 4.0, rtol=1e-6)
    assert int(state.count) == 1
    assert update_time(floor, params, calls=2, repeats=1) > 0


def test_learned_rows_show_how_many_cores_the_estimate_keeps_busy():
    from lopt.bench.suite import ES_HEADER, learned_rows

    update = {"num_params": 10, "adam_ms": 0.1}
    for arch in ("small", "rnn-mlp"):
        update |= {f"{arch}_ratio": 2.0, f"{arch}_accumulators_ratio": 1.5}
    es_row = {"inner_steps_per_s": 1e4, "outer_steps_per_s": 10.0, "gflop_per_s": 1.0}
    es_row["fraction_of_peak"] = 0.1
    result = {
        "learned_updates": {"10": update},
        "es": {
            "devices_1": {**es_row, "cores_busy": 1.57},
            "devices_2": {**es_row, "cores_busy": 1.861},
        },
    }
    _, rows = learned_rows(result)
    assert ES_HEADER[-1] == "cores busy"
    assert rows[0][-1] == "1.57" and rows[1][-1] == "1.86"


def load_benchmark(name: str):
    """A script of ``benchmarks/`` imported as a module."""
    path = pathlib.Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_es_signal_measures_the_smooth_expectation_on_a_linear_loss():
    """benchmarks/es_signal.py: on a linear loss, antithetic ES estimates ((g·ε)ε averaged over
    n pairs) agree with each other as ``smooth_cosine`` says; pure noise gives ≈ 0."""
    es_signal = load_benchmark("es_signal")
    rng = np.random.default_rng(0)
    d, n, repeats = 203, 8, 32
    g = rng.normal(size=d)
    eps = rng.normal(size=(20, repeats, n, d))
    estimates = (eps @ g)[..., None] * eps  # (trial, estimate, pair, d)
    measured = np.mean([es_signal.cosines(e.mean(1)).mean() for e in estimates])
    expected = es_signal.smooth_cosine(n, n * (repeats - 1), d)
    assert abs(measured - expected) < 0.015  # measured 0.138 against 0.144
    noise = np.mean([es_signal.cosines(rng.normal(size=(repeats, d))).mean() for _ in range(20)])
    assert abs(noise) < 0.01
    assert es_signal.mean_pairwise_cosine(np.eye(4)) == 0.0  # particles wanting unrelated changes
    same = np.stack([g, 2 * g, 3 * g])
    assert es_signal.mean_pairwise_cosine(same) == pytest.approx(1.0)


# The rungs of benchmarks/speed_floor.py's ladder timed in both frameworks.
SPEED_FLOOR_RUNGS = (
    "fast",
    "fast hierarchical",
    "fast adaptive",
    "small",
    "per-parameter",
    "minimal",
    "rnn-mlp",
    "rnn-mlp minimal",
)


def test_speed_floor_times_every_rung_against_adam():
    """benchmarks/speed_floor.py: its `minimal` rung is what its docstring says (8 features,
    one hidden layer of 4, nothing else), and the JAX and state tables cover every rung (the
    torch table: the slow test below)."""
    speed_floor = load_benchmark("speed_floor")
    configs = pathlib.Path(__file__).parent.parent / "reproduce" / "configs"
    ab = json.loads((configs / "ab-parameter-normalization.json").read_text())
    assert ab["architecture"] == speed_floor.PER_PARAMETER  # what the A/B run meta-trains
    minimal = build_architecture(speed_floor.MINIMAL)
    assert len(minimal.feature_names) == 8 and minimal.hidden == (4,)
    assert minimal.trust_ratio is None and minimal.distance_power == 0.0
    assert not minimal.with_loss_features and not minimal.with_horizon_feature
    rows = speed_floor.jax_ratios(sizes=(1000,), calls=1, repeats=1)
    assert set(rows[1000]) == {"adam_ms", *SPEED_FLOOR_RUNGS, "no reductions", "accumulators"}
    assert all(value > 0 for value in rows[1000].values())
    assert "| 1,000 |" in speed_floor.table("JAX", rows)
    states = speed_floor.state_ratios(sizes=(1000,))[1000]
    assert states["fast"] == pytest.approx(1.5, rel=0.02)  # three accumulators to Adam's two
    assert "Adam (ms)" not in speed_floor.table("state", {1000: states})  # bytes: no time column


@pytest.mark.slow  # torch.compile of every rung: over a minute on 2 cores
def test_speed_floor_times_every_rung_against_torch_adam():
    pytest.importorskip("torch")
    speed_floor = load_benchmark("speed_floor")
    rows = speed_floor.torch_ratios(sizes=(1000,), calls=1, repeats=1)
    compiled = {f"{name} compiled" for name in [*SPEED_FLOOR_RUNGS, "no reductions"]}
    assert set(rows[1000]) == {"adam_ms", *SPEED_FLOOR_RUNGS, "no reductions", *compiled}
    assert all(value > 0 for value in rows[1000].values())


def test_speed_floor_no_reduction_rung_is_adam_with_its_output_layer_zeroed():
    """The benchmark's reduction-free optimizer computes a real update: with a zero output
    layer it is Adam (β 0.9 / 0.999) to float32 rounding; with random outputs it differs; the
    torch version, eager and compiled, makes the JAX version's updates."""
    speed_floor = load_benchmark("speed_floor")
    params = {"w": jnp.arange(12.0).reshape(3, 4) / 10, "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: jnp.sin(p) + 0.5, params)
    opts = {
        "adam": optax.adam(1e-3),
        "zeroed": speed_floor.no_reduction_optimizer(output_scale=0.0),
        "random": speed_floor.no_reduction_optimizer(),
    }
    updates = {}
    for name, opt in opts.items():
        state = opt.init(params)
        for _ in range(3):
            updates[name], state = opt.update(grads, state, params)
    for key in params:
        np.testing.assert_allclose(updates["zeroed"][key], updates["adam"][key], rtol=1e-5)
    assert not np.allclose(updates["random"]["w"], updates["adam"]["w"], rtol=1e-3)
    torch = pytest.importorskip("torch")
    for compiled in (False, True):
        tensors = {k: torch.tensor(np.asarray(v)).requires_grad_() for k, v in params.items()}
        opt = speed_floor.torch_no_reduction_optimizer(list(tensors.values()), compile=compiled)
        for _ in range(3):
            for key, tensor in tensors.items():
                tensor.grad = torch.tensor(np.asarray(grads[key]))
            before = {k: t.detach().clone() for k, t in tensors.items()}
            opt.step()
        for key, tensor in tensors.items():
            moved = (tensor.detach() - before[key]).numpy()
            np.testing.assert_allclose(moved, updates["random"][key], rtol=1e-4, atol=1e-9)


def test_train_step_times_each_optimizer_against_adam_on_each_model(tmp_path, capsys):
    """benchmarks/train_step.py: a row per model, a ratio per optimizer (a shipped name and a
    saved file's path), written to --out as printed; --out is checked before any work."""
    from lopt.errors import LoptError
    from lopt.pretrained import pretrained_path

    train_step = load_benchmark("train_step")
    saved = f"{pretrained_path('small')}.safetensors"
    out = tmp_path / "steps.json"
    argv = ["--tasks", "quadratic-16,logreg-wine", "--optimizer", f"small,{saved}"]
    result = train_step.main([*argv, "--calls", "2", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result)) and result["finished"]
    assert list(result["models"]) == ["quadratic-16", "logreg-wine"]
    assert result["models"]["logreg-wine"]["num_params"] == 13 * 3 + 3
    for row in result["models"].values():
        assert set(row["ratio"]) == {"small", saved}
        assert row["adam_ms"] > 0 and all(r > 0 for r in row["ratio"].values())
    lines = capsys.readouterr().out.splitlines()
    assert lines[-4].startswith("| model | params | Adam step (ms) | small ÷ Adam |")
    assert [line.split(" | ")[0] for line in lines[-2:]] == ["| quadratic-16", "| logreg-wine"]
    with pytest.raises(LoptError, match="it is a directory"):
        train_step.main([*argv, "--out", str(tmp_path)])
