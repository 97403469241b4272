"""Run checkpoints survive a kill at any file operation of a save, lost or unverifiable files,
and a second process on the same run directory; the JSON lopt writes is strict."""

import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from tiny_configs import TINY_META_TRAIN, TINY_SELF_TRAIN
from tolerances import TINY_POPULATION, TINY_THETA, assert_trees_close

import lopt
from lopt.cli import main
from lopt.errors import CheckpointError, LoptError
from lopt.learned import LearnedAdam, load_theta, save_optimizer
from lopt.meta import MetaTrainConfig, meta_train
from lopt.meta.rundir import CHECKPOINT, PREVIOUS, UNUSABLE, restore, save_checkpoint
from lopt.population import PopulationConfig
from lopt.storage.files import from_json, read_checkpoint, read_metadata, to_json
from lopt.storage.lock import exclusive

KILLED = 86  # the exit status of a process killed by the fault injection
SAVE_OPERATIONS = 5  # of a save that replaces a checkpoint: rename, then open, write, sync, rename

# Makes the K-th file operation (open for writing, write, fsync, rename, unlink) exit the process
# with status KILLED; a write is cut in the middle first. ``arm(k)`` starts counting.
FAULTS = textwrap.dedent(
    f"""
    import builtins, os

    def arm(k):
        count = [0]

        def operation(torn=None):
            count[0] += 1
            if count[0] == k:
                if torn is not None:
                    torn()
                os._exit({KILLED})

        def counted(function):
            def call(*args, **kwargs):
                operation()
                return function(*args, **kwargs)
            return call

        for name in ("replace", "rename", "unlink", "remove", "fsync"):
            setattr(os, name, counted(getattr(os, name)))
        real_open = builtins.open

        class Written:
            def __init__(self, f):
                self._f = f

            def write(self, data):
                def torn():
                    self._f.write(data[: len(data) // 2])
                    self._f.flush()
                operation(torn)
                return self._f.write(data)

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self._f.__exit__(*exc)

        def opened(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if any(c in mode for c in "wax+"):
                operation()
                return Written(f)
            return f

        builtins.open = opened
    """
)


def _tree(step: int) -> dict:
    """A run state of NumPy arrays (no JAX computation: the fault injection forks)."""
    return {
        "theta": {"w": np.full((3, 2), step, np.float32), "b": np.float32(-step)},
        "count": np.int32(step),
    }


def _assert_tree(tree, step: int) -> None:
    # Read back from a file: the bytes written, so equal bit for bit.
    expected = _tree(step)
    assert np.array_equal(tree["theta"]["w"], expected["theta"]["w"])
    assert np.array_equal(tree["theta"]["b"], expected["theta"]["b"])
    assert int(tree["count"]) == step


def _restored_step(run_dir: pathlib.Path) -> int:
    """The step of the checkpoint a resume would use (0: none), its tree checked."""
    restored = restore(run_dir, _tree(0), log=lambda message: None)
    if restored is None:
        return 0
    tree, meta = restored
    _assert_tree(tree, meta["step"])
    return meta["step"]


SAVE_DRIVER = textwrap.dedent(
    """
    import json, os, pathlib, sys
    sys.path.insert(0, {tests!r})
    from test_checkpoints import _tree
    from lopt.meta.rundir import save_checkpoint

    root = pathlib.Path(sys.argv[1])
    cases = []
    for before in (0, 1, 2):
        k = 0
        while True:  # until a save runs to its end: every operation has been the K-th
            k += 1
            run_dir = root / f"{{before}}-{{k}}"
            run_dir.mkdir()
            for step in range(1, before + 1):
                save_checkpoint(run_dir, _tree(step), {{"step": step}})
            pid = os.fork()
            if pid == 0:
                arm(k)
                save_checkpoint(run_dir, _tree(before + 1), {{"step": before + 1}})
                os._exit(0)
            status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            assert status in (0, {killed}), status
            cases.append([before, k, str(run_dir), status == {killed}])
            if status == 0:
                break
    print(json.dumps(cases))
    """
)


def test_a_kill_at_any_file_operation_of_a_save_leaves_a_checkpoint_to_resume(tmp_path):
    """A save killed at its k-th file operation, for every k, before the run's first, second
    and third checkpoints: the resume finds the new checkpoint or the previous one, whole;
    the killed save's temporary file goes when the run is resumed; later saves work."""
    script = FAULTS + SAVE_DRIVER.format(tests=str(pathlib.Path(__file__).parent), killed=KILLED)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = json.loads(proc.stdout)
    operations = {before: max(k for b, k, _, _ in cases if b == before) - 1 for before in (0, 1)}
    assert operations == {0: SAVE_OPERATIONS - 1, 1: SAVE_OPERATIONS}  # the first has no rename
    assert max(k for b, k, _, _ in cases if b == 2) - 1 == SAVE_OPERATIONS
    for before, k, run_dir, killed in cases:
        run_dir = pathlib.Path(run_dir)
        step = _restored_step(run_dir)
        assert step in ((before, before + 1) if killed else (before + 1,)), (before, k)
        with exclusive(run_dir):  # as a resumed run does
            assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name], (before, k)
            save_checkpoint(run_dir, _tree(7), {"step": 7})
        assert _restored_step(run_dir) == 7
        (run_dir / CHECKPOINT).unlink()
        assert _restored_step(run_dir) == step  # the fallback is the checkpoint it replaced


def test_a_deleted_checkpoint_falls_back_to_the_previous_and_the_run_goes_on(tmp_path):
    for step in (1, 2):
        save_checkpoint(tmp_path, _tree(step), {"step": step})
    (tmp_path / CHECKPOINT).unlink()
    assert _restored_step(tmp_path) == 1
    save_checkpoint(tmp_path, _tree(3), {"step": 3})  # the next save works
    assert _restored_step(tmp_path) == 3
    save_checkpoint(tmp_path, _tree(4), {"step": 4})
    assert _restored_step(tmp_path) == 4
    (tmp_path / CHECKPOINT).unlink()
    assert _restored_step(tmp_path) == 3


def test_a_corrupt_checkpoint_is_moved_aside_so_the_next_save_keeps_the_previous(tmp_path):
    """Resumed from the previous checkpoint, the next save must not rotate the corrupt one over
    it: a kill between that save's renames would leave nothing usable."""
    for step in (1, 2):
        save_checkpoint(tmp_path, _tree(step), {"step": step})
    blob = bytearray((tmp_path / CHECKPOINT).read_bytes())
    blob[-3] ^= 0xFF  # a tensor byte
    (tmp_path / CHECKPOINT).write_bytes(bytes(blob))
    messages = []
    restore(tmp_path, _tree(0), log=messages.append)
    assert "is corrupt (checksum does not match its contents)" in messages[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREVIOUS, UNUSABLE]
    save_checkpoint(tmp_path, _tree(3), {"step": 3})
    (tmp_path / CHECKPOINT).unlink()  # as if that save were killed after its first rename
    assert _restored_step(tmp_path) == 1


@pytest.mark.parametrize("size", [4, 40, -4])
def test_a_truncated_checkpoint_is_corrupt_and_the_previous_one_is_used(size, tmp_path):
    for step in (1, 2):
        save_checkpoint(tmp_path, _tree(step), {"step": step})
    blob = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(blob[:size])  # inside the header, or the data
    messages = []
    assert restore(tmp_path, _tree(0), log=messages.append)[1]["step"] == 1
    assert f"{tmp_path / CHECKPOINT} is corrupt (" in messages[0]


def test_a_checkpoint_without_its_checksum_or_with_changed_metadata_is_refused(tmp_path):
    from safetensors.numpy import save_file

    save_checkpoint(tmp_path, _tree(1), {"step": 1})
    arrays, meta = read_checkpoint(tmp_path / CHECKPOINT)
    save_file(arrays, tmp_path / CHECKPOINT, metadata={"lopt": to_json(meta)})
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        restore(tmp_path, _tree(0), log=lambda message: None)
    with pytest.raises(CheckpointError, match="holds no 'lopt' metadata and 'sha256' checksum"):
        read_checkpoint(tmp_path / CHECKPOINT)
    save_checkpoint(tmp_path, _tree(2), {"step": 2})
    blob = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(blob.replace(b'step\\": 2', b'step\\": 3', 1))
    with pytest.raises(CheckpointError, match="is corrupt"):
        read_checkpoint(tmp_path / CHECKPOINT)


def test_a_saved_optimizer_without_a_checksum_loads_only_when_asked(tmp_path):
    arch, stem = LearnedAdam(), tmp_path / "opt"
    save_optimizer(stem, arch, arch.init_theta(jax.random.key(0)))
    meta = read_metadata(stem)
    del meta["sha256"]
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    weights = stem.with_suffix(".safetensors")
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0x01  # unverifiable now: a flipped data byte must not load silently
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"holds no sha256 checksum.*verify=False"):
        lopt.load(stem)
    with pytest.raises(CheckpointError, match="verify=False"):
        load_theta(stem)
    lopt.load(stem, verify=False)  # deliberately accepted


def test_torch_loading_refuses_a_file_without_a_checksum(tmp_path):
    torch_files = pytest.importorskip("lopt.torch.files")
    from lopt.torch.bench import ARCHITECTURES, write_random_optimizer

    stem = tmp_path / "opt"
    write_random_optimizer(stem, ARCHITECTURES["small"])
    meta = read_metadata(stem)
    del meta["sha256"]
    (tmp_path / "opt.json").write_text(json.dumps(meta))
    with pytest.raises(LoptError, match=r"holds no sha256 checksum.*verify=False"):
        torch_files.load(stem)
    config, theta = torch_files.load(stem, verify=False)
    assert config.kind == "mlp" and theta


def test_shipped_optimizers_carry_checksums_and_load():
    from lopt.pretrained import SHIPPED, pretrained_path

    for name in SHIPPED:
        assert len(read_metadata(pretrained_path(name))["sha256"]) == 64
        lopt.pretrained(name)


def test_json_that_lopt_writes_is_strict_and_reads_back():
    data = {"score": math.inf, "low": -math.inf, "curve": [1.0, math.nan], "name": "quadratic"}
    text = to_json(data)

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    json.loads(text, parse_constant=refuse)
    back = from_json(text)
    assert back["score"] == math.inf and back["low"] == -math.inf
    assert back["curve"][0] == 1.0 and math.isnan(back["curve"][1])
    assert back["name"] == "quadratic"
    assert from_json("[NaN, Infinity]")[1] == math.inf  # files written before: still read


def test_a_run_writes_strict_json_and_resumes_with_an_infinite_best_score(tmp_path):
    """Before its first validation a run's best score is infinite: its checkpoint and metrics
    hold strict JSON, and the resumed run reads the score back as infinity."""
    from safetensors import safe_open

    run = tmp_path / "run"
    cfg = MetaTrainConfig(outer_steps=4, **{**TINY_META_TRAIN, "validate_every": 0})
    meta_train(run, cfg)

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    with safe_open(run / CHECKPOINT, "np") as f:
        header = f.metadata()
    assert json.loads(header["lopt"], parse_constant=refuse)["best"]["score"] == "Infinity"
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=refuse)
    for name in ("config.json", "optimizer.json"):
        json.loads((run / name).read_text(), parse_constant=refuse)
    assert read_checkpoint(run / CHECKPOINT)[1]["best"] == {"score": math.inf, "step": -1}


# --- a second process on a run directory ----------------------------------------------------


def _files(directory: pathlib.Path) -> dict:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _forbid(monkeypatch, work: str) -> None:
    def called(*args, **kwargs):
        raise AssertionError(f"{work} ran although the directory is in use")

    monkeypatch.setattr(work, called)


COMMANDS = {
    "meta-train": (["meta-train", "--outer-steps", "3000"], None),
    "self-train": (["self-train", "--outer-steps", "3000"], None),
    "eval": (
        ["eval", "--optimizer", "sgd@0.1", "--tasks", "quadratic-16"],
        "lopt.evaluation.harness.evaluate_into",
    ),
    "bench": (["bench", "--quick"], "lopt.bench.run_bench"),
    "demo": (["demo"], "lopt.cli.demo.run_demo"),
    "hub": (["hub", "--quick"], "lopt.hybrid.compare.compare"),
    "hub-cost": (["hub", "--cost", "--tasks", "quadratic-16"], "lopt.hybrid.cost.measure_costs"),
    "stepsize": (["stepsize", "--quick"], "lopt.stepsize.report.run"),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_refused_for_a_directory_in_use_changes_nothing_there(
    command, tmp_path, monkeypatch, capsys
):
    argv, work = COMMANDS[command]
    if work is not None:
        _forbid(monkeypatch, work)
    run = tmp_path / "run"
    run.mkdir()
    if command == "meta-train":
        config = MetaTrainConfig(outer_steps=4, **TINY_META_TRAIN).to_dict()
    elif command == "self-train":
        config = PopulationConfig(outer_steps=4, **TINY_SELF_TRAIN).to_dict()
    else:
        config = {"something": "earlier"}
    (run / "config.json").write_text(json.dumps(config))
    (run / "results.json").write_text("{}")
    with exclusive(run):  # another holder: flock conflicts across open files, even in-process
        before = _files(run)
        assert main([*argv, "--out", str(run)]) == 2
        assert _files(run) == before
    err = capsys.readouterr().err
    assert f"error: {run} is in use by another process (pid {os.getpid()})" in err, err


# --- a kill inside a real run's save ----------------------------------------------------------

VERB_DRIVER = textwrap.dedent(
    """
    import sys
    import lopt.meta.outer, lopt.population.selftrain
    from lopt.cli import main

    verb, config, out, function, call, k = sys.argv[1:]
    module = lopt.meta.outer if verb == "meta-train" else lopt.population.selftrain
    real = getattr(module, function)
    calls = []

    def armed(*args):
        calls.append(1)
        if len(calls) == int(call):
            arm(int(k))
        return real(*args)

    setattr(module, function, armed)
    sys.exit(main([verb, "--config", config, "--out", out]))
    """
)
# 8 outer steps, a checkpoint every 2: the third save replaces one and keeps another. Then the
# config of each verb's tiny run and the tolerance of its arrays resumed in another process.
RUNS = {
    "meta-train": ({**TINY_META_TRAIN, "checkpoint_every": 2}, TINY_THETA),
    "self-train": ({**TINY_SELF_TRAIN, "checkpoint_every": 2}, TINY_POPULATION),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run directory of each verb's run, uninterrupted (computed once, when first needed)."""
    done = {}

    def run(verb: str) -> pathlib.Path:
        if verb not in done:
            fields = RUNS[verb][0]
            root = tmp_path_factory.mktemp(verb)
            (root / "config.json").write_text(json.dumps({**fields, "outer_steps": 8}))
            assert (
                main([verb, "--config", str(root / "config.json"), "--out", str(root / "run")]) == 0
            )
            done[verb] = root / "run"
        return done[verb]

    return run


def _final_state(run_dir: pathlib.Path) -> dict:
    arrays, meta = read_checkpoint(run_dir / CHECKPOINT)
    members = {
        p.name: load_theta(p.with_suffix(""))[1] for p in run_dir.glob("members/*.safetensors")
    }
    return {"step": meta["step"], "state": arrays, "optimizer": load_theta(run_dir)[1], **members}


def _kill_and_resume(verb, function, call, k, tmp_path, uninterrupted) -> None:
    """Run ``verb`` with its ``call``-th call of ``function`` killed at its k-th file operation,
    resume it, and compare its end with the uninterrupted run's."""
    reference = uninterrupted(verb)
    config, run = tmp_path / "config.json", tmp_path / "run"
    fields, tolerance = RUNS[verb]
    config.write_text(json.dumps({**fields, "outer_steps": 8}))
    argv = [verb, str(config), str(run), function, str(call), str(k)]
    proc = subprocess.run(
        [sys.executable, "-c", FAULTS + VERB_DRIVER, *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == KILLED, proc.stderr[-3000:]
    assert main([verb, "--out", str(run)]) == 0
    # Resumed in this process after a start in another: other compilations, so to rounding.
    assert_trees_close(_final_state(run), _final_state(reference), **tolerance)
    assert not list(run.rglob(".*.tmp-*"))


def test_a_meta_training_run_killed_while_saving_resumes_to_the_same_theta(tmp_path, uninterrupted):
    """The kill tears the new checkpoint's temporary file after the rename that made the
    current checkpoint the previous one (the slow variant tries every operation)."""
    _kill_and_resume("meta-train", "save_checkpoint", 3, 3, tmp_path, uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(1, SAVE_OPERATIONS + 1))
@pytest.mark.parametrize("verb", RUNS)
def test_a_run_killed_at_any_file_operation_of_a_save_resumes_to_the_same_end(
    verb, k, tmp_path, uninterrupted
):
    _kill_and_resume(verb, "save_checkpoint", 3, k, tmp_path, uninterrupted)


@pytest.mark.slow
def test_self_training_killed_while_saving_its_members_resumes_them(tmp_path, uninterrupted):
    """The last save's member files are torn (member 0's weights new, its JSON not yet): the
    run's checkpoint is still the one before, and the resumed run writes them again."""
    _kill_and_resume("self-train", "_save_members", 4, 6, tmp_path, uninterrupted)
