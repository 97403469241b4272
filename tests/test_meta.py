"""The outer loop: it learns, checkpoints atomically, and resumes to the θ of an uninterrupted
run."""

import json
import re

import jax
import numpy as np
import pytest
from tiny_configs import TINY_META_TRAIN
from tolerances import TINY_THETA, assert_trees_close

from lopt.errors import CheckpointError, LoptError
from lopt.inner import train
from lopt.learned import build_architecture, load_theta
from lopt.meta import MetaTrainConfig, meta_train
from lopt.meta.outer import bank_tasks
from lopt.storage.files import read_checkpoint

TINY = TINY_META_TRAIN


def _theta(run_dir, stem="optimizer"):
    return load_theta(run_dir / stem)[1]


def _assert_same_theta(actual, expected):
    """A resumed run's programs are compiled apart from the uninterrupted run's: the same θ to
    float32 rounding (amplified by the meta-gradient estimate), not bit for bit."""
    assert_trees_close(actual, expected, **TINY_THETA)


def _checkpoint_step(run_dir):
    return read_checkpoint(run_dir / "checkpoint.safetensors")[1]["step"]


def _mean_loss(theta, task):
    arch = build_architecture(TINY["architecture"])
    _, curves = train(task, arch.optimizer(theta), jax.random.key(7), 60, 10)
    return float(np.mean(curves.eval["outer_valid"]))


def test_tiny_meta_training_lowers_the_meta_loss(tmp_path):
    cfg = MetaTrainConfig(outer_steps=30, **TINY)
    meta_train(tmp_path / "run", cfg)
    arch = build_architecture(TINY["architecture"])
    task = bank_tasks(cfg)[0]
    before = _mean_loss(arch.init_theta(jax.random.key(0)), task)
    after = _mean_loss(_theta(tmp_path / "run"), task)
    assert after < 0.8 * before
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(30))
    assert (tmp_path / "run" / "meta_loss.png").exists()


def test_interrupted_run_resumes_to_the_uninterrupted_theta(tmp_path):
    cfg = MetaTrainConfig(outer_steps=10, **TINY)
    meta_train(tmp_path / "straight", cfg)
    # First attempt stops at step 6 (checkpoint at 4, metrics up to 6), as if killed there.
    meta_train(tmp_path / "resumed", MetaTrainConfig(outer_steps=6, **TINY))
    assert _checkpoint_step(tmp_path / "resumed") == 6
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "meta_lo')  # a kill in the middle of the next record's append
    meta_train(tmp_path / "resumed", cfg)
    _assert_same_theta(_theta(tmp_path / "resumed"), _theta(tmp_path / "straight"))
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(10))


def test_a_damaged_record_inside_a_jsonl_file_is_one_clear_error(tmp_path):
    from lopt.meta.rundir import read_jsonl

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1\n{"step": 2}\n')
    with pytest.raises(LoptError, match=r"metrics.jsonl, line 2, is not a JSON record"):
        read_jsonl(path)
    path.write_text('{"step": 0}\n{"step": 1}\n{"step": ')
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]


def test_init_from_continues_a_saved_optimizer(tmp_path):
    meta_train(tmp_path / "first", MetaTrainConfig(outer_steps=6, **TINY))
    first = _theta(tmp_path / "first")
    cfg = MetaTrainConfig(outer_steps=0, init_from=str(tmp_path / "first"), **TINY)
    meta_train(tmp_path / "second", cfg)
    for a, b in zip(
        jax.tree.leaves(first), jax.tree.leaves(_theta(tmp_path / "second")), strict=True
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b))  # read from the file, saved as is
    fresh = build_architecture(TINY["architecture"]).init_theta(jax.random.key(0))
    assert not np.array_equal(np.asarray(fresh["log_lr"]), np.asarray(first["log_lr"]))
    # Settings outside θ may change (here the initial lr, which only shapes a fresh θ) ...
    same_theta = {**TINY, "architecture": {"kind": "learned-adam", "init_lr": 1e-2}}
    cfg = MetaTrainConfig(outer_steps=0, init_from=str(tmp_path / "first"), **same_theta)
    meta_train(tmp_path / "fourth", cfg)
    assert np.array_equal(_theta(tmp_path / "fourth")["log_lr"], first["log_lr"])  # saved as is
    # ... but θ itself must fit.
    other = {**TINY, "architecture": {"kind": "mlp", "hidden": [2]}}
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors holds the architecture"):
        meta_train(tmp_path / "third", MetaTrainConfig(init_from=str(tmp_path / "first"), **other))
    with pytest.raises(CheckpointError, match="no saved optimizer"):
        meta_train(tmp_path / "third", MetaTrainConfig(init_from=str(tmp_path / "missing"), **TINY))
    assert not (tmp_path / "third").exists()  # refused before anything is written
    # A warm-started run resumes from its own checkpoint, without reading init_from again.
    warm = {**TINY, "init_from": str(tmp_path / "first")}
    meta_train(tmp_path / "warm", MetaTrainConfig(outer_steps=4, **warm))
    (tmp_path / "first").rename(tmp_path / "moved")
    meta_train(tmp_path / "warm", MetaTrainConfig(outer_steps=6, **warm))
    assert _checkpoint_step(tmp_path / "warm") == 6


def test_corrupt_checkpoint_falls_back_to_previous(tmp_path):
    run = tmp_path / "run"
    meta_train(run, MetaTrainConfig(outer_steps=8, **TINY))  # checkpoints at 4 (prev) and 8
    blob = bytearray((run / "checkpoint.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (run / "checkpoint.safetensors").write_bytes(bytes(blob))
    messages = []

    class Console:
        def log(self, msg):
            messages.append(msg)

    meta_train(run, MetaTrainConfig(outer_steps=10, **TINY), console=Console())
    assert any("corrupt" in m for m in messages)
    assert any("resuming" in m and "step 4" in m for m in messages)
    straight = tmp_path / "straight"
    meta_train(straight, MetaTrainConfig(outer_steps=10, **TINY))
    _assert_same_theta(_theta(run), _theta(straight))


def test_trainable_features_move_only_their_first_layer_weights(tmp_path):
    """With ``trainable_features``, ES perturbs and updates only the first-layer weights that
    read those inputs: every other weight of θ stays bit for bit where it started (its
    perturbation and meta-gradient are masked to 0, so each step adds exactly 0)."""
    arch = {"kind": "mlp", "hidden": [2], "timescales": [10.0], "with_horizon_feature": True}
    base = {**TINY, "architecture": arch, "outer_lr": 0.01}
    meta_train(tmp_path / "all", MetaTrainConfig(outer_steps=3, **base))
    start = _theta(tmp_path / "all")
    names = ("fraction_of_horizon", "tanh_step_over_10")
    cfg = MetaTrainConfig(
        outer_steps=3, init_from=str(tmp_path / "all"), trainable_features=names, **base
    )
    meta_train(tmp_path / "some", cfg)
    theta = _theta(tmp_path / "some")
    features = build_architecture(arch).feature_names
    columns = [features.index(n) for n in names]
    others = [i for i in range(len(features)) if i not in columns]
    w, w0 = np.asarray(theta["mlp"][0].weight), np.asarray(start["mlp"][0].weight)
    assert np.array_equal(w[:, others], w0[:, others])
    assert np.all(w[:, columns] != w0[:, columns])
    rest = lambda th: jax.tree.leaves({**th, "mlp": [th["mlp"][0].bias, *th["mlp"][1:]]})
    for a, b in zip(rest(theta), rest(start), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(LoptError, match=r"unknown input feature\(s\) \['gradient'\]"):
        MetaTrainConfig(**{**base, "trainable_features": ("gradient",)})
    with pytest.raises(LoptError, match="only 'mlp' can"):
        MetaTrainConfig(**{**TINY, "trainable_features": ("grad",)})


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(LoptError, match="invalid config field 'outer_step'"):
        MetaTrainConfig.from_dict({"outer_step": 3})
    with pytest.raises(LoptError, match="invalid value for sigma"):
        MetaTrainConfig(sigma=-1.0)
    with pytest.raises(LoptError, match="families"):
        MetaTrainConfig(families=("imagenet",))
    with pytest.raises(LoptError, match="truncation.size"):
        MetaTrainConfig(truncation={"size": 3})
    for field, value, expected in [
        ("families", "quadratic", "'quadratic' (expected a list of strings)"),
        ("num_particles", 2.5, "2.5 (expected an integer)"),
        ("seed", 1.5, "1.5 (expected an integer)"),
        ("outer_lr", "abc", "'abc' (expected a number)"),
        ("truncation", 50, "50 (expected an object)"),
        ("init_from", 3, "3 (expected a string or null)"),
    ]:
        with pytest.raises(LoptError, match=re.escape(f"invalid value for {field}: {expected}")):
            MetaTrainConfig.from_dict({**TINY, field: value})
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(LoptError, match="list.json holds list, not a JSON object"):
        MetaTrainConfig.from_file(tmp_path / "list.json")
    with pytest.raises(LoptError, match=re.escape("truncation length: 'a' (expected a number)")):
        MetaTrainConfig.from_dict({**TINY, "truncation": {"length": "a"}})
    # built in Python rather than read from JSON: the same checks (a list passes for a tuple)
    with pytest.raises(LoptError, match=re.escape("num_particles: 2.5 (expected an integer)")):
        MetaTrainConfig(**{**TINY, "num_particles": 2.5})
    assert MetaTrainConfig(**{**TINY, "families": ["quadratic"]}).families == ["quadratic"]
    meta_train(tmp_path / "run", MetaTrainConfig(outer_steps=2, **TINY))
    with pytest.raises(LoptError, match="different config"):
        meta_train(tmp_path / "run", MetaTrainConfig(outer_steps=2, **{**TINY, "sigma": 0.1}))


def test_a_run_directory_is_used_by_one_process_at_a_time(tmp_path):
    from lopt.storage.lock import exclusive

    run = tmp_path / "run"
    run.mkdir()
    with exclusive(run):  # another holder: flock conflicts across open files, even in-process
        with pytest.raises(LoptError, match=r"in use by another process \(pid \d+\)"):
            meta_train(run, MetaTrainConfig(outer_steps=1, **TINY))
        assert not (run / "metrics.jsonl").exists()
    with exclusive(run):  # released when the holder's block ends
        pass


def test_a_time_limit_stops_with_a_checkpoint_and_the_run_resumes(tmp_path):
    import time

    from lopt.runtime.stopping import StopRequest

    request = StopRequest()
    assert request.reason(time.time(), None) is None
    assert request.reason(time.time() - 61, 1.0) == "time limit"
    run = tmp_path / "run"
    meta_train(run, MetaTrainConfig(outer_steps=10, **TINY), max_minutes=1e-9)
    assert _checkpoint_step(run) == 1  # stopped after one
    meta_train(run, MetaTrainConfig(outer_steps=10, **TINY))
    straight = tmp_path / "straight"
    meta_train(straight, MetaTrainConfig(outer_steps=10, **TINY))
    _assert_same_theta(_theta(run), _theta(straight))


def test_near_the_mapping_limit_meta_training_stops_with_a_checkpoint(tmp_path, monkeypatch):
    """Before compiling for a task it has not visited yet, a run whose process is close to the
    kernel's memory-mapping limit (where XLA's compiler would abort it) stops with one clear
    error and a checkpoint, and resumes to the θ of an uninterrupted run."""
    import lopt.runtime.mappings

    # Linux: the kernel reports both numbers
    assert lopt.runtime.mappings.mapping_usage() is not None
    cfg = MetaTrainConfig(outer_steps=6, **{**TINY, "task_bank": 3})
    run = tmp_path / "run"
    calls = []

    def usage_after_first_task():  # over the limit from the second task's first visit on
        calls.append(1)
        return (0 if len(calls) == 1 else 60_000), 65_530

    monkeypatch.setattr(lopt.runtime.mappings, "mapping_usage", usage_after_first_task)
    with pytest.raises(LoptError, match=r"outer step 1: .*60,000 of the 65,530 .*vm.max_map_count"):
        meta_train(run, cfg)
    assert _checkpoint_step(run) == 1
    monkeypatch.setattr(lopt.runtime.mappings, "mapping_usage", lambda: (0, 65_530))
    meta_train(run, cfg)
    meta_train(tmp_path / "straight", cfg)
    _assert_same_theta(_theta(run), _theta(tmp_path / "straight"))


def test_released_programs_give_their_memory_mappings_back():
    """What lets a refreshed bank stay under the kernel's mapping limit: compiled programs hold
    memory mappings until ``release_compiled_programs`` drops them."""
    import jax.numpy as jnp

    from lopt.runtime.mappings import mapping_usage, release_compiled_programs

    release_compiled_programs()
    before = mapping_usage()[0]
    for width in range(3, 43):  # forty programs, one per input shape
        jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((width, 4))).block_until_ready()
    compiled = mapping_usage()[0]
    release_compiled_programs()
    released = compiled - mapping_usage()[0]
    assert compiled - before > 80 and released > 0.4 * (compiled - before)  # measured: 60-65%


def test_a_refreshed_bank_brings_new_tasks_and_resumes(tmp_path):
    """With ``bank_refresh`` every few outer steps train on a newly sampled bank; a run stopped
    at a bank boundary or inside a bank resumes to the θ of an uninterrupted run."""
    refreshing = {**TINY, "bank_refresh": 4}
    cfg = MetaTrainConfig(outer_steps=10, **refreshing)
    assert [t.name for t in bank_tasks(cfg, 0)] == [
        t.name for t in bank_tasks(MetaTrainConfig(**TINY))
    ]
    banks = [[t.name for t in bank_tasks(cfg, g)] for g in range(3)]
    assert len({name for bank in banks for name in bank}) == 6  # six different tasks
    meta_train(tmp_path / "straight", cfg)
    records = [
        json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["task"] for r in records] == [banks[step // 4][step % 2] for step in range(10)]
    run = tmp_path / "resumed"
    for stop in (4, 6):  # at the first boundary (the checkpoint holds bank 0), then inside bank 1
        meta_train(run, MetaTrainConfig(outer_steps=stop, **refreshing))
    meta_train(run, cfg)
    _assert_same_theta(_theta(run), _theta(tmp_path / "straight"))


def test_bank_refresh_must_be_a_multiple_of_the_bank():
    with pytest.raises(LoptError, match=r"bank_refresh: 3 \(a multiple of task_bank=2"):
        MetaTrainConfig(**{**TINY, "bank_refresh": 3})
