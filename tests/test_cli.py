"""The ``lopt`` command end to end on tiny runs; user mistakes give one line and exit 2."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from tiny_configs import TINY_META_TRAIN
from tolerances import assert_records_close

from lopt.cli import main
from lopt.cli.training import load_run_config
from lopt.meta import MetaTrainConfig
from lopt.population import PopulationConfig
from lopt.tasks import TASK_SETS

EXPECTED_FILES = ("config.json", "results.json", "results.md", "metrics.jsonl", "summary.png")


def test_eval_keeps_baselines_in_the_cache_unless_told_not_to(tmp_path, monkeypatch):
    monkeypatch.setenv("LOPT_BASELINE_CACHE", str(tmp_path / "cache"))
    argv = ["eval", "--optimizer", "sgd@0.1", "--tasks", "quadratic-16", "--steps", "20"]
    argv += ["--seeds", "1", "--eval-every", "10", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--no-baseline-cache"]) == 0
    assert not (tmp_path / "cache").exists()
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # the Adam grid of the task
    results = [json.loads((tmp_path / d / "results.json").read_text()) for d in "ab"]
    # Both runs trained every optimizer, each in programs of its own: equal to float32 rounding.
    assert_records_close(results[1]["summary"], results[0]["summary"], rtol=1e-5, atol=1e-6)


def test_eval_writes_run_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["eval", "--optimizer", "adam@1e-2", "--tasks", "tiny", "--steps", "20"]
    argv += ["--seeds", "1", "--eval-every", "10", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    for name in EXPECTED_FILES:
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.glob("curves-*.png"))) == len(TASK_SETS["tiny"])
    data = json.loads((out / "results.json").read_text())
    assert set(data["tasks"]) == set(TASK_SETS["tiny"])
    assert set(data["summary"]) == {"adam@1e-2", "adam-tuned", "adam-global"}
    entry = data["tasks"]["quadratic-16"]["optimizers"]["adam-tuned"]
    assert set(entry) == {
        "final_test_loss",
        "normalized_curve",
        "normalized_final",
        "hyperparameters",
    }
    report = (out / "results.md").read_text()
    assert "| adam-tuned |" in report and "curves-quadratic-16.png" in report
    assert "adam-global" in capsys.readouterr().out

    # Same config: reuse without recomputing; another config: refuse to overwrite.
    mtime = (out / "results.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert "already holds these results" in capsys.readouterr().err
    assert (out / "results.json").stat().st_mtime_ns == mtime
    other = list(argv)
    other[other.index("--seeds") + 1] = "2"
    assert main(other) == 2
    assert "different evaluation (differs in: seeds)" in capsys.readouterr().err
    # an unreadable results.json is never overwritten unread
    (out / "results.json").write_text('{"tasks": ')
    assert main(argv) == 2
    assert "results.json is not the results of an evaluation" in capsys.readouterr().err
    assert (out / "results.json").read_text() == '{"tasks": '
    assert not list(out.glob(".*tmp*"))  # the atomic writes left no temporary file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--optimizer", "adma"],
            "error: unknown optimizer 'adma' (did you mean 'adam'?); valid optimizers: adam-tuned",
        ),
        (["--optimizer", "adam", "--tasks", "nope"], "error: unknown task or task set 'nope'"),
        (["--optimizer", "adam", "--steps", "0"], "error: argument --steps: expected an integer"),
        (["--optimizer", "adam", "--steps", "25"], "error: num_steps=25 must be a multiple"),
    ],
)
def test_user_mistakes_are_one_line(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        status = main(["eval", *args, "--out", str(tmp_path)])
        raise SystemExit(status)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--address", "localhost:6379"], "error: --address needs --backend ray"),
        (["--backend", "ray", "--max-staleness", "-1"], "error: argument --max-staleness"),
        (["--backend", "ray", "--workers", "0"], "error: argument --workers: expected an integer"),
    ],
)
def test_meta_train_backend_mistakes_are_one_line(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        status = main(["meta-train", "--config", "mlp-from-scratch", "--out", str(tmp_path), *args])
        raise SystemExit(status)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_meta_train_reports_how_it_ended(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY_META_TRAIN, "outer_steps": 2}))
    out = tmp_path / "run"
    assert main(["meta-train", "--config", str(config), "--out", str(out)]) == 0
    assert capsys.readouterr().out.endswith(f"{out}: finished; no validation yet\n")


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["eval", "--optimizer", "sgd@0.1", "--tasks", "quadratic-16", "--steps", "20"]
    assert main([*args, "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    bad = f"cannot write results to {blocker / 'run'}: {blocker} is a file"
    assert err == f"error: {bad}; expected a directory\n", err


def test_script_reports_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lopt.cli", "eval", "--optimizer", "sgd@0.1,nope"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown optimizer 'nope'") and proc.stdout == ""
    assert proc.stderr.count("\n") == 1


def test_average_writes_a_loadable_optimizer(tmp_path, capsys):
    import jax
    import numpy as np

    from lopt.learned import load_theta

    out = tmp_path / "soup"
    assert (
        main(["average", "--optimizer", "small,small", "--weights", "1,2", "--out", str(out)]) == 0
    )
    assert json.loads(out.with_suffix(".json").read_text())["info"]["weights"] == [1.0, 2.0]
    _, averaged, _ = load_theta(out)  # the mean of one θ with itself: the same θ
    for a, b in zip(
        jax.tree.leaves(averaged), jax.tree.leaves(load_theta("small")[1]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert main(["average", "--optimizer", "small,rnn-mlp", "--out", str(tmp_path / "x")]) == 2
    assert "holds the architecture" in capsys.readouterr().err


def test_reconfigure_keeps_theta_and_changes_the_settings(tmp_path, capsys):
    import jax
    import numpy as np

    from lopt.learned import load_theta

    out = tmp_path / "scaled"
    sets = ["--set", "distance_power=0.5", "--set", "trust_ratio=0.2"]
    assert main(["reconfigure", "--optimizer", "small", *sets, "--out", str(out)]) == 0
    arch, theta, meta = load_theta(out)
    assert (arch.distance_power, arch.trust_ratio) == (0.5, 0.2)
    assert meta["info"] == {
        "reconfigured": "small",
        "changes": {"distance_power": 0.5, "trust_ratio": 0.2},
    }
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(load_theta("small")[1]), strict=True):
        np.testing.assert_array_equal(a, b)  # θ read from the file and written back unchanged
    bad = {
        "hiden=[4]": "unknown setting 'hiden' of 'mlp' (did you mean 'hidden'?)",
        "hidden=[4]": "does not fit",  # θ's shapes would change
        "distance_power=-1": "invalid value for distance_power",
        'kind="rnn-mlp"': "cannot change an optimizer's kind",
        "trust_ratio": "invalid --set 'trust_ratio'",
        "distance_power=abc": "distance_power of 'mlp': 'abc' (expected a number)",
    }
    for item, message in bad.items():
        args = ["reconfigure", "--optimizer", "small", "--set", item, "--out", str(tmp_path / "x")]
        assert main(args) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_demo_writes_report(tmp_path):
    from lopt.cli.demo import run_demo

    data, reused = run_demo(tmp_path, minutes=0.5, steps=100, seeds=1, progress=False)
    learned = str(tmp_path / "meta-train" / "optimizer")
    assert not reused
    assert set(data["summary"]) == {"adam-tuned", "adam-global", "nadamw-tuned", "small", learned}
    assert (tmp_path / "eval" / "results.md").exists()
    assert (tmp_path / "eval" / "summary.png").exists()
    assert (tmp_path / "meta-train" / "meta_loss.png").exists()


def test_seed_flag_overrides_the_config_of_a_new_run(tmp_path):
    """``--seed`` (like ``--outer-steps``) overrides the config's field; omitted, it is kept."""
    for config_class, name in (
        (MetaTrainConfig, "mlp-from-scratch"),
        (PopulationConfig, "self-train"),
    ):
        args = argparse.Namespace(config=name, out=str(tmp_path / name))
        assert load_run_config(config_class, args, seed=3).seed == 3
        assert load_run_config(config_class, args, seed=None).seed == 0
