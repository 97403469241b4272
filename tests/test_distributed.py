"""The Ray backend on a local Ray: the in-process θ, bounded staleness, faults.

Faults: a worker killed mid-run, the whole run SIGKILLed and re-run, a truncated checkpoint,
SIGINT and SIGTERM. Every run is test_meta's tiny quadratic meta-training (2 tasks, 4
particles), where a particle's arithmetic does not depend on how many particles one call runs,
so Ray's slices of 2 particles give the in-process θ, to the rounding of programs compiled in
other processes.
"""

import json
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="the Ray backend needs the optional extra lopt[ray]")

from tiny_configs import TINY_META_TRAIN  # noqa: E402
from tolerances import TINY_POPULATION, TINY_THETA, assert_trees_close  # noqa: E402

import lopt  # noqa: E402
from lopt.distributed import RayBackend  # noqa: E402
from lopt.distributed.members import RayMembers  # noqa: E402
from lopt.distributed.simulated import SimulatedWorker  # noqa: E402
from lopt.errors import CheckpointError  # noqa: E402
from lopt.learned import load_theta  # noqa: E402
from lopt.meta import MetaTrainConfig, meta_train  # noqa: E402
from lopt.population import PopulationConfig, self_train  # noqa: E402
from lopt.storage.files import read_checkpoint  # noqa: E402

# All Ray tests share one local cluster: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("ray")

WORKERS = 2
STEPS = 12  # checkpoints at 4, 8 and 12
TINY = {**TINY_META_TRAIN, "log_every": 1}


class Log:
    """A console that records what meta_train logs (and may act on it)."""

    def __init__(self, on_log=None):
        self.lines, self.on_log = [], on_log

    def log(self, message):
        self.lines.append(message)
        if self.on_log is not None:
            self.on_log(message)


def _theta(run_dir):
    return load_theta(run_dir / "optimizer")[1]


def _assert_same_theta(actual, expected, tolerance=TINY_THETA):
    """Ray workers run programs compiled in their own processes: the same θ to float32 rounding
    (amplified by the meta-gradient estimate), not bit for bit."""
    assert_trees_close(actual, expected, **tolerance)


def _lines(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cluster():
    # Logical CPUs: this module's workers (2) and a subprocess run's workers (2).
    ray.init(num_cpus=2 * WORKERS, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def backend(cluster):
    with RayBackend(workers=WORKERS) as b:
        b.connect()  # workers up before any test, whichever runs first
        yield b


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """θ after ``STEPS`` outer steps of the in-process backend."""
    run = tmp_path_factory.mktemp("in-process") / "run"
    meta_train(run, MetaTrainConfig(outer_steps=STEPS, **TINY), console=Log())
    return _theta(run)


def test_synchronous_ray_reproduces_the_in_process_theta(backend, in_process, tmp_path):
    cfg = MetaTrainConfig(outer_steps=STEPS, **TINY)
    meta_train(tmp_path, cfg, console=Log(), backend=backend)
    _assert_same_theta(_theta(tmp_path), in_process)
    lines = _lines(tmp_path)
    assert [x["step"] for x in lines] == list(range(STEPS))
    assert all(x["staleness"] == 0 and x["stale_dropped"] == 0 for x in lines)
    # The workers run this very lopt, not another installed copy.
    assert ray.get(backend.workers[0].ready.remote()) == lopt.__file__


def test_ray_workers_follow_a_refreshed_bank(backend, tmp_path):
    """With ``bank_refresh`` the workers build each new bank's tasks, so synchronous Ray
    training gives the in-process θ (three banks; a worker left on the first would not)."""
    cfg = MetaTrainConfig(outer_steps=STEPS, **{**TINY, "bank_refresh": 4})
    meta_train(tmp_path / "in-process", cfg, console=Log())
    meta_train(tmp_path / "ray", cfg, console=Log(), backend=backend)
    _assert_same_theta(_theta(tmp_path / "ray"), _theta(tmp_path / "in-process"))
    tasks = [x["task"] for x in _lines(tmp_path / "ray")]
    assert tasks == [x["task"] for x in _lines(tmp_path / "in-process")]
    assert len(set(tasks)) == 6  # two tasks in each of three banks


def test_a_killed_worker_is_replaced_and_the_run_goes_on(backend, in_process, tmp_path):
    doomed = backend.workers[0]

    def kill_after_step_3(message):
        if message.startswith("step 3/"):
            ray.kill(doomed)

    cfg = MetaTrainConfig(outer_steps=STEPS, **TINY)
    meta_train(tmp_path, cfg, console=Log(kill_after_step_3), backend=backend)
    assert doomed not in backend.workers
    assert sum(x["workers_replaced"] for x in _lines(tmp_path)) >= 1
    _assert_same_theta(_theta(tmp_path), in_process)  # the lost work was redone


def test_truncated_checkpoint_falls_back_to_the_previous_one(backend, in_process, tmp_path):
    cfg = MetaTrainConfig(outer_steps=STEPS, **TINY)
    meta_train(tmp_path, cfg, console=Log(), backend=backend)
    weights = tmp_path / "checkpoint.safetensors"  # step 12; checkpoint-prev holds step 8
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    log = Log()
    meta_train(tmp_path, cfg, console=log, backend=backend)
    warning = next(m for m in log.lines if "corrupt" in m)
    assert "checkpoint.safetensors is corrupt (" in warning
    assert f"resuming {tmp_path} at outer step 8" in log.lines
    _assert_same_theta(_theta(tmp_path), in_process)
    assert [x["step"] for x in _lines(tmp_path)] == list(range(STEPS))


def test_sigint_saves_a_checkpoint_then_raises_keyboard_interrupt(backend, tmp_path):
    def interrupt_at_step_3(message):
        if message.startswith("step 3/"):
            signal.raise_signal(signal.SIGINT)

    cfg = MetaTrainConfig(outer_steps=STEPS, **TINY)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        meta_train(tmp_path, cfg, console=Log(interrupt_at_step_3), backend=backend)
    assert _checkpoint_step(tmp_path) == 3  # not a periodic checkpoint (every 4)
    assert json.loads((tmp_path / "optimizer.json").read_text())["info"]["outer_step"] == 3
    assert signal.getsignal(signal.SIGINT) is handler  # restored


def test_asynchronous_workers_drop_and_count_stale_estimates(cluster, tmp_path):
    # Task 1 takes 5x longer than task 0: while one worker computes it, the other applies
    # several task-0 estimates, so it comes back more than 1 step stale and is dropped.
    simulated = RayBackend(
        workers=2,
        max_staleness=1,
        cpus_per_worker=0,
        worker_class=SimulatedWorker,
        worker_args=((0.05, 0.25),),
    )
    with simulated:
        cfg = MetaTrainConfig(outer_steps=STEPS, **TINY)
        meta_train(tmp_path, cfg, console=Log(), backend=simulated)
    lines = _lines(tmp_path)
    assert [x["step"] for x in lines] == list(range(STEPS))
    assert max(x["staleness"] for x in lines) <= 1
    assert sum(x["stale_dropped"] for x in lines) >= 1


@pytest.mark.slow  # 13 s with a warm compilation cache, ≈ 1 min cold on busy cores
def test_self_train_on_ray_reproduces_the_in_process_population(cluster, tmp_path):
    cfg = PopulationConfig(
        population=4,
        families=("quadratic",),
        task_bank=1,
        num_particles=2,
        truncation={"length": 10, "min_horizon": 20, "max_horizon": 40, "valid_every": 5},
        outer_steps=8,
        pbt_every=4,  # two PBT rounds: members copy each other
        checkpoint_every=4,
        validation_tasks=("quadratic-16",),
        validation_steps=20,
        validation_seeds=1,
    )
    self_train(tmp_path / "in-process", cfg, console=Log())
    members = RayMembers(workers=WORKERS, cpus_per_worker=0)  # 2 members per worker
    try:
        self_train(tmp_path / "ray", cfg, console=Log(), members=members)
    finally:
        members.close()
    for slot in range(cfg.population):
        member = f"members/member-{slot}"
        ray_theta = load_theta(tmp_path / "ray" / member)[1]
        expected = load_theta(tmp_path / "in-process" / member)[1]
        _assert_same_theta(ray_theta, expected, TINY_POPULATION)


def _start_cli(run_dir, cluster, outer_steps, checkpoint_every):
    config = run_dir.parent / f"{run_dir.name}.json"
    cfg = MetaTrainConfig(**{**TINY, "checkpoint_every": checkpoint_every})
    config.write_text(json.dumps({**cfg.to_dict(), "outer_steps": outer_steps}))
    command = [sys.executable, "-m", "lopt.cli", "meta-train", "--config", str(config)]
    command += ["--out", str(run_dir), "--backend", "ray", "--address", cluster]
    command += ["--workers", "1"]  # one actor to start: the quickest run
    with open(run_dir.parent / f"{run_dir.name}.log", "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _wait_for(condition, process, log, timeout=120.0):
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run exited early:\n{log.read_text()[-2000:]}")
        assert time.time() < deadline, "the run made no progress in time"
        time.sleep(0.01)


def _checkpoint_step(run_dir):
    try:
        return read_checkpoint(run_dir / "checkpoint.safetensors")[1]["step"]
    except CheckpointError:  # none yet, or one being replaced
        return 0


def test_sigkilled_run_resumes_without_losing_or_repeating_a_step(
    cluster, backend, in_process, tmp_path
):
    run = tmp_path / "run"
    process = _start_cli(run, cluster, outer_steps=10_000, checkpoint_every=4)
    _wait_for(lambda: _checkpoint_step(run) >= 4, process, tmp_path / "run.log")
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = _checkpoint_step(run)  # the last checkpoint the killed run completed
    assert 4 <= saved < STEPS
    log = Log()
    meta_train(run, MetaTrainConfig(outer_steps=STEPS, **TINY), console=log, backend=backend)
    assert f"resuming {run} at outer step {saved}" in log.lines
    assert [x["step"] for x in _lines(run)] == list(range(STEPS))
    _assert_same_theta(_theta(run), in_process)


def test_sigterm_saves_a_checkpoint_before_exit(cluster, tmp_path):
    run = tmp_path / "run"
    process = _start_cli(run, cluster, outer_steps=10_000, checkpoint_every=10_000)
    metrics = run / "metrics.jsonl"
    has_steps = lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 3
    _wait_for(has_steps, process, tmp_path / "run.log")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    done = len(metrics.read_text().splitlines())
    assert _checkpoint_step(run) == done  # saved at the step it stopped, not a periodic one
    assert json.loads((run / "optimizer.json").read_text())["info"]["outer_step"] == done
