"""Commands check their output directory and list options before any work, and keep each
result as it finishes: a bad ``--out`` or an empty list is one line and exit 2 at once, and an
interrupted ``bench``, ``hub --cost`` or ``eval`` keeps what it had done."""

from __future__ import annotations

import json
import os

import pytest

import lopt.bench.suite
import lopt.evaluation.harness
import lopt.hybrid.cost
from lopt.cli import main

# Each command that writes into --out, and the function that does its work.
COMMANDS = {
    "eval": (
        ["eval", "--optimizer", "sgd@0.1", "--tasks", "quadratic-16"],
        "lopt.evaluation.harness._evaluate_resolved",
    ),
    "bench": (["bench"], "lopt.bench.run_bench"),
    "demo": (["demo"], "lopt.cli.demo.run_demo"),
    "hub": (["hub", "--quick"], "lopt.hybrid.compare.compare"),
    "hub-cost": (["hub", "--cost", "--tasks", "quadratic-16"], "lopt.hybrid.cost.measure_costs"),
    "stepsize": (["stepsize", "--quick"], "lopt.stepsize.report.run"),
    "meta-train": (["meta-train", "--config", "mlp-from-scratch"], "lopt.meta.meta_train"),
    "self-train": (["self-train", "--config", "self-train"], "lopt.population.self_train"),
}


def _forbid(monkeypatch, work: str) -> None:
    """Make the function ``work`` (``module.name``) fail the test if it is called."""

    def called(*args, **kwargs):
        raise AssertionError(f"{work} ran although the command should have failed first")

    monkeypatch.setattr(work, called)


def _fails_at_once(argv, capsys) -> str:
    """Run ``lopt ARGV``; assert it fails with one line and exit 2; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))  # argparse's own errors exit from inside main
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def unwritable_dir(tmp_path):
    """An existing directory in which this process cannot create files. Root ignores file
    modes, so for root it is ``/proc`` (where no one can create files)."""
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o555)
    try:
        os.close(os.open(path / "probe", os.O_CREAT | os.O_WRONLY))
    except PermissionError:
        yield path
    else:
        if not os.path.isdir("/proc"):
            pytest.skip("no directory here that this process cannot write")
        yield "/proc"
    path.chmod(0o755)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_as_out_fails_before_any_work(command, tmp_path, monkeypatch, capsys):
    argv, work = COMMANDS[command]
    _forbid(monkeypatch, work)
    existing = tmp_path / "results.json"
    existing.write_text("{}")
    err = _fails_at_once([*argv, "--out", str(existing)], capsys)
    assert f"{existing}: it is a file" in err
    assert existing.read_text() == "{}"
    blocked = existing / "run"  # a directory that cannot be created
    err = _fails_at_once([*argv, "--out", str(blocked)], capsys)
    assert f"cannot write results to {blocked}: {existing} is a file" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_out_fails_before_any_work(
    command, unwritable_dir, tmp_path, monkeypatch, capsys
):
    argv, work = COMMANDS[command]
    _forbid(monkeypatch, work)
    err = _fails_at_once([*argv, "--out", str(unwritable_dir)], capsys)
    assert f"cannot write to {unwritable_dir} (" in err
    err = _fails_at_once([*argv, "--out", os.path.join(unwritable_dir, "new", "run")], capsys)
    assert f"cannot create {unwritable_dir}/new/run in {unwritable_dir} (" in err


EVAL = ["eval", "--optimizer", "sgd@0.1"]
EVALUATE = "lopt.evaluation.harness._evaluate_resolved"
EMPTY = "empty"


@pytest.mark.parametrize(
    ("argv", "bad", "message", "work"),
    [
        (["eval", "--optimizer", ""], "", EMPTY, EVALUATE),
        (["eval", "--optimizer", "sgd@0.1,,adam"], "sgd@0.1,,adam", EMPTY, EVALUATE),
        (["eval", "--optimizer", "sgd@0.1,"], "sgd@0.1,", EMPTY, EVALUATE),
        ([*EVAL, "--tasks", ""], "", EMPTY, EVALUATE),
        ([*EVAL, "--tasks", "quadratic-16, "], "quadratic-16, ", EMPTY, EVALUATE),
        ([*EVAL, "--seeds", ""], "", "expected an integer", EVALUATE),
        (["hub", "--tasks", "logreg-wine,,mlp-wine-16"], "logreg-wine,,mlp-wine-16", EMPTY, None),
        (["hub", "--modes", ""], "", EMPTY, None),
        (["hub", "--modes", "weighting,,select"], "weighting,,select", EMPTY, None),
        (["hub", "--cost", "--tasks", ""], "", EMPTY, "lopt.hybrid.cost.step_costs"),
        (["hub", "--cost", "--tasks", ","], ",", EMPTY, "lopt.hybrid.cost.step_costs"),
        (["average", "--optimizer", "small,,small"], "small,,small", EMPTY, None),
    ],
)
def test_empty_lists_are_errors_before_any_work(
    argv, bad, message, work, tmp_path, monkeypatch, capsys
):
    """An empty list, or one with an empty item, is one line naming it; nothing runs."""
    _forbid(monkeypatch, "lopt.hybrid.compare.compare")
    _forbid(monkeypatch, "lopt.learned.io.average_optimizers")
    if work is not None:
        _forbid(monkeypatch, work)
    err = _fails_at_once([*argv, "--out", str(tmp_path / "out")], capsys)
    assert repr(bad) in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_bench_keeps_each_benchmark_as_it_finishes(tmp_path, monkeypatch):
    """Interrupted after the first family, bench.json holds the peak and that family."""
    calls = []

    def one_family(task, optimizer, num_steps, repeats):
        if calls:
            raise KeyboardInterrupt
        calls.append(task.name)
        return {"steps_per_s": 1.0, "compile_s": 0.0, "flops_per_step": 2.0, "gflop_per_s": 3.0}

    monkeypatch.setattr(lopt.bench.suite, "matmul_peak", lambda *args: 30.0)
    monkeypatch.setattr(lopt.bench.suite, "inner_throughput", one_family)
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 130
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["finished"] is False and saved["matmul_peak_gflop_per_s"] == 30.0
    ((family, stats),) = saved["families"].items()
    assert (
        family == next(iter(lopt.bench.suite.FAMILIES))
        and stats["task"] == calls[0]
        and stats["fraction_of_peak"] == pytest.approx(0.1)
    )


def test_hub_cost_keeps_each_task_as_it_finishes(tmp_path, monkeypatch):
    def one_task(name, **kwargs):
        if name != "quadratic-16":
            raise KeyboardInterrupt
        return {"ms_per_step": {"hub": 1.0}, "ratios": {"hub / small": 2.0}}

    monkeypatch.setattr(lopt.hybrid.cost, "step_costs", one_task)
    argv = ["hub", "--cost", "--tasks", "quadratic-16,beale", "--out", str(tmp_path)]
    assert main(argv) == 130
    saved = json.loads((tmp_path / "cost.json").read_text())
    assert saved["tasks"] == {"quadratic-16": one_task("quadratic-16")}


def test_an_interrupted_eval_resumes_from_its_finished_grids(tmp_path, monkeypatch):
    """Each grid's run is kept as it finishes; the re-run runs only the others, and its results
    match an evaluation that was never interrupted."""
    run_grid = lopt.evaluation.harness._run_grid
    ran = []

    def counted(task, spec, *args):
        if len(ran) == stop_after:
            raise KeyboardInterrupt
        ran.append((task.name, spec.grid))
        return run_grid(task, spec, *args)

    monkeypatch.setattr(lopt.evaluation.harness, "_run_grid", counted)
    argv = ["eval", "--optimizer", "sgd@0.1", "--tasks", "quadratic-16,beale", "--steps"]
    argv += ["20", "--seeds", "1", "--eval-every", "10", "--no-progress", "--no-baseline-cache"]
    stop_after = 3  # of the 4 grids: 2 optimizers' grids (sgd@0.1, Adam's lrs) × 2 tasks
    assert main([*argv, "--out", str(tmp_path / "run")]) == 130
    assert len(list((tmp_path / "run" / "grids").glob("*.npz"))) == 3
    first = list(ran)
    ran.clear()
    stop_after = None
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert len(first) == 3 and len(ran) == 1 and ran[0] not in first
    assert not (tmp_path / "run" / "grids").exists()  # the results hold what it kept
    ran.clear()
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert len(ran) == 4
    resumed, whole = (
        json.loads((tmp_path / d / "results.json").read_text()) for d in ("run", "whole")
    )
    assert resumed["config"] == whole["config"]
    for task in whole["tasks"]:
        for label, metrics in whole["tasks"][task]["optimizers"].items():
            again = resumed["tasks"][task]["optimizers"][label]
            assert again["hyperparameters"] == metrics["hyperparameters"]
            for name in ("final_test_loss", "normalized_curve"):  # sgd@0.1 diverges on beale
                assert again[name] == pytest.approx(metrics[name], rel=1e-5, nan_ok=True)


def test_stepsize_keeps_each_experiment_as_it_finishes(tmp_path, monkeypatch):
    import dataclasses

    from lopt.stepsize import experiments, report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "precision", interrupted)  # the second experiment
    config = dataclasses.replace(
        report.quick_config(), growth_t_max=30, growth_fit_from=10, growth_autodiff_ts=(10,)
    )
    with pytest.raises(KeyboardInterrupt):
        report.run(tmp_path, config=config, neural=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert list(saved) == ["growth"] and saved["growth"]
