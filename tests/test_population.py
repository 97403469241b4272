"""Self-training: PBT on a toy population, the no-hand-designed-optimizer guard, a tiny run end to
end, and resume of the whole population."""

import json
import shlex
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_configs import TINY_SELF_TRAIN
from tolerances import TINY_POPULATION, assert_records_close, assert_trees_close

import lopt
from lopt.baselines import make, tune_adam
from lopt.cli import main
from lopt.configs import config_path, shipped_config_path
from lopt.errors import LoptError
from lopt.inner import train
from lopt.learned import LearnedAdam, MLPOptimizer, build_architecture, load_theta
from lopt.population import (
    HandDesignedOptimizerError,
    PopulationConfig,
    check_learned_from_scratch,
    no_hand_designed_optimizers,
    pbt,
    self_train,
    selftrain,
)
from lopt.population.lopt_task import RATIO_CAP, LearnedOptimizerTask, LearnedOptimizerTaskConfig
from lopt.pretrained import pretrained_path
from lopt.storage.files import read_checkpoint, read_metadata
from lopt.tasks import get_task


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- PBT on a toy population -------------------------------------------------------------------


def test_pbt_replaces_the_worst_with_copies_of_the_best_deterministically():
    scores = np.array([0.5, np.nan, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8])
    parents = pbt.plan(jax.random.key(3), scores, fraction=0.25)
    # Worst two: the non-finite one (slot 1) and 0.9 (slot 3); best two: slots 2 and 6.
    replaced = np.flatnonzero(parents != np.arange(8))
    assert sorted(replaced) == [1, 3]
    assert set(parents[replaced]) <= {2, 6}
    assert np.array_equal(parents, pbt.plan(jax.random.key(3), scores, fraction=0.25))
    draws = {tuple(pbt.plan(jax.random.key(k), scores, 0.25)[[1, 3]]) for k in range(20)}
    assert len(draws) > 1  # the parent is drawn, not fixed
    assert pbt.num_replaced(1, 0.25) == 0 and pbt.num_replaced(3, 0.1) == 1
    assert pbt.num_replaced(8, 0.5) == 4


def test_exploit_copies_members_and_explore_perturbs_only_the_copies():
    tree = {"w": jnp.arange(12.0).reshape(4, 3), "b": jnp.arange(4.0)}
    parents = np.array([0, 0, 2, 2])
    copied = pbt.exploit(tree, parents)
    assert np.array_equal(copied["w"][1], tree["w"][0])
    assert np.array_equal(copied["b"], np.array([0.0, 0.0, 2.0, 2.0]))
    replaced = parents != np.arange(4)
    moved = pbt.explore(jax.random.key(0), copied, replaced, sigma=0.1)
    delta = np.asarray(moved["w"] - copied["w"])
    assert np.all(delta[[0, 2]] == 0) and np.all(delta[[1, 3]] != 0)
    again = pbt.explore(jax.random.key(0), copied, replaced, 0.1)  # the same ops on the same inputs
    assert np.array_equal(moved["w"], again["w"])
    lrs = pbt.explore_log_scale(jax.random.key(1), jnp.zeros(4), replaced, 2.0)
    assert np.allclose(np.abs(np.asarray(lrs)), np.log(2.0) * replaced)


def test_lineage_names_who_copied_whom():
    parents = np.array([0, 0, 2, 2])
    records, ids, next_id = pbt.lineage(
        40, parents, np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 5, 2, 3]), 6
    )
    assert [(r["slot"], r["member"], r["parent"], r["replaced"]) for r in records] == [
        (1, 6, 0, 5),
        (3, 7, 2, 3),
    ]
    assert records[0]["step"] == 40 and records[0]["parent_score"] == 0.1
    assert list(ids) == [0, 6, 2, 7] and next_id == 8


# --- the guard ---------------------------------------------------------------------------------


def test_guard_trips_on_every_hand_designed_optimizer_and_restores_them():
    task = get_task("quadratic-16")
    with no_hand_designed_optimizers() as names:
        assert {"sgd", "adam", "adamw", "lion", "scale_by_adam", "trace"} <= set(names)
        for build in (
            lambda: optax.adam(1e-3),
            lambda: optax.sgd(0.1, momentum=0.9),
            lambda: optax.scale_by_rms(),
            lambda: optax.chain(optax.clip(1.0), optax.adamw(1e-3)),
            lambda: make("nadamw", 1e-3),
            lambda: tune_adam(task, jax.random.key(0), 10, 1),
            lambda: LearnedAdam().optimizer(LearnedAdam().init_theta(jax.random.key(0))),
        ):
            with pytest.raises(HandDesignedOptimizerError, match="hand-designed optimizer"):
                build()
        optax.clip(1.0)  # a clip is not an optimizer
    optax.adam(1e-3)  # restored on exit


def test_members_start_random_and_move():
    """A zeroed output layer would never update anything (itself included): members start with
    every layer random, each from its own key."""
    arch = MLPOptimizer(hidden=(4,), nominal=False)
    a, b = arch.init_theta(jax.random.key(0)), arch.init_theta(jax.random.key(1))
    assert np.any(np.asarray(a["mlp"][-1].weight) != 0)
    assert not np.array_equal(np.asarray(a["mlp"][-1].weight), np.asarray(b["mlp"][-1].weight))
    params = {"w": jnp.ones(3)}
    opt = arch.optimizer(a)
    updates, _ = opt.update({"w": jnp.arange(3.0)}, opt.init(params), params)
    assert np.any(np.asarray(updates["w"]) != 0)


def test_self_training_rejects_architectures_with_a_hand_designed_update():
    check_learned_from_scratch(MLPOptimizer(nominal=False))
    for arch in (MLPOptimizer(), LearnedAdam()):
        with pytest.raises(HandDesignedOptimizerError, match="Adam's formula"):
            check_learned_from_scratch(arch)
    with pytest.raises(HandDesignedOptimizerError):
        PopulationConfig(architecture={"kind": "rnn-mlp"})
    PopulationConfig(architecture={"kind": "learned-adam"}, outer="adam")  # the comparison
    with pytest.raises(LoptError, match="invalid value for outer"):
        PopulationConfig(outer="sgd")


# --- runs --------------------------------------------------------------------------------------


def test_tiny_self_training_runs_under_the_guard_end_to_end(tmp_path, monkeypatch):
    """The default setup (outer="self", nominal-free mlp) runs inside the guard, never trips it,
    and writes every output."""
    inside = []

    def bank_tasks_spy(cfg):
        with pytest.raises(HandDesignedOptimizerError):
            optax.adam(1e-3)
        inside.append(True)
        return selftrain_bank_tasks(cfg)

    selftrain_bank_tasks = selftrain.bank_tasks
    monkeypatch.setattr(selftrain, "bank_tasks", bank_tasks_spy)
    run = tmp_path / "run"
    summary = self_train(run, PopulationConfig(outer_steps=8, **TINY_SELF_TRAIN))
    assert inside == [True] and summary["finished"]
    for name in ("config.json", "metrics.jsonl", "lineage.jsonl", "summary.json", "best.json"):
        assert (run / name).exists(), name
    assert (run / "meta_loss.png").exists() and (run / "feedback_loop.png").exists()
    assert len(list((run / "members").glob("member-*.safetensors"))) == 4
    records = _records(run / "metrics.jsonl")
    steps = [r["step"] for r in records if "meta_loss" in r]
    assert steps == list(range(1, 9))
    assert all(len(r["meta_loss"]) == 4 for r in records if "meta_loss" in r)
    assert [r["step"] for r in records if "validation" in r] == [0, 4, 8]
    lineage = _records(run / "lineage.jsonl")
    assert [r["step"] for r in lineage] == [4, 8]  # one member replaced per round (P=4)
    assert summary["best_initial"] == records[0]["best"]  # read back from metrics.jsonl
    arch, theta, meta = load_theta(run)
    assert arch.kind == "mlp" and not arch.nominal
    assert meta["info"]["outer_step"] == 8
    # The saved optimizers record how they were made: by themselves, inside the guard.
    member_meta = json.loads((run / "members" / "member-0.json").read_text())
    for info in (meta["info"], member_meta["info"]):
        assert info["outer"] == "self" and info["hand_designed_optimizer_guard"] is True
        assert PopulationConfig.from_dict(info["self_train_config"]).outer_steps == 8


@pytest.mark.parametrize("outer", ["best", "random", "adam"])
def test_other_outer_optimizers_run(tmp_path, outer):
    summary = self_train(
        tmp_path / outer, PopulationConfig(outer=outer, outer_steps=4, **TINY_SELF_TRAIN)
    )
    assert summary["finished"] and np.isfinite(summary["best_final"])
    info = load_theta(tmp_path / outer)[2]["info"]
    assert info["outer"] == outer and info["hand_designed_optimizer_guard"] == (outer != "adam")


def test_interrupted_run_resumes_to_the_uninterrupted_population(tmp_path):
    devices = min(2, len(jax.devices()))
    cfg = PopulationConfig(outer_steps=10, devices=devices, **TINY_SELF_TRAIN)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    self_train(straight, cfg)
    # Killed after step 6: its checkpoint is the one from step 4, metrics run up to step 6.
    self_train(resumed, PopulationConfig(outer_steps=6, devices=devices, **TINY_SELF_TRAIN))
    shutil.move(resumed / "checkpoint-prev.safetensors", resumed / "checkpoint.safetensors")
    assert read_checkpoint(resumed / "checkpoint.safetensors")[1]["step"] == 4
    assert main(["self-train", "--out", str(resumed), "--outer-steps", "10"]) == 0
    # The resumed run's programs are compiled apart from the uninterrupted run's: its arrays and
    # metrics agree to float32 rounding (amplified by the meta-gradient estimate); its integers
    # (steps, keys, member ids, PBT's choices) exactly.
    expected, actual = (
        read_checkpoint(run / "checkpoint.safetensors")[0] for run in (straight, resumed)
    )
    assert_trees_close(actual, expected, **TINY_POPULATION)
    for slot in range(4):
        name = f"members/member-{slot}"
        assert_trees_close(
            load_theta(resumed / name)[1], load_theta(straight / name)[1], **TINY_POPULATION
        )
    timeless = lambda path: [
        {k: v for k, v in r.items() if k not in ("wall", "seconds")} for r in _records(path)
    ]
    assert_records_close(
        timeless(resumed / "metrics.jsonl"),
        timeless(straight / "metrics.jsonl"),
        rtol=1e-4,
        atol=1e-6,
    )
    assert_records_close(
        _records(resumed / "lineage.jsonl"), _records(straight / "lineage.jsonl"), rtol=1e-4
    )


def test_shipped_config_and_cli_mistakes(tmp_path, capsys):
    cfg = PopulationConfig.from_file(shipped_config_path("self-train"))
    assert cfg.outer == "self" and cfg.architecture["nominal"] is False
    assert main(["self-train", "--config", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown shipped config 'nope'" in capsys.readouterr().err
    argv = ["self-train", "--config", "self-train", "--outer", "sgd", "--out", str(tmp_path / "y")]
    assert main(argv) == 2
    assert "invalid value for outer: 'sgd'" in capsys.readouterr().err


# --- "train a tiny learned optimizer" tasks ----------------------------------------------------


LO_TASK = LearnedOptimizerTask(LearnedOptimizerTaskConfig(dim=4, unroll=5, problems=2))


def test_learned_optimizer_task_runs_under_the_guard():
    task = LO_TASK
    theta = task.init(jax.random.key(0))
    with no_hand_designed_optimizers():
        loss, grad = jax.value_and_grad(task.loss)(theta, task.batch(jax.random.key(1), "train"))
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))
    assert 0.5 < task.normalizer.initial < RATIO_CAP


@pytest.mark.slow
def test_learned_optimizer_task_is_learnable():
    """Its parameters are an optimizer's weights; a plain optimizer can train them (test only)."""
    task = LO_TASK
    _, curves = jax.jit(lambda k: train(task, optax.adam(1e-2), k, 60, 20))(jax.random.key(0))
    valid = np.asarray(curves.eval["outer_valid"])
    assert valid[-1] < 0.7 * valid[0]


@pytest.mark.slow
def test_self_training_with_learned_optimizer_tasks_in_the_outer_loss(tmp_path):
    cfg = PopulationConfig(outer_steps=4, learned_optimizer_tasks=1, **TINY_SELF_TRAIN)
    summary = self_train(tmp_path / "run", cfg)
    tasks = {r["task"] for r in _records(tmp_path / "run" / "metrics.jsonl") if "task" in r}
    assert any(name.startswith("learned-optimizer[") for name in tasks)
    assert summary["finished"] and np.isfinite(summary["best_final"])


def test_sigterm_stops_self_training_with_a_checkpoint(tmp_path):
    """SIGTERM finishes the outer step, checkpoints the population, then exits with 143."""

    class TerminateAtValidation4:
        def log(self, message):
            if message.startswith("validation at 4"):
                signal.raise_signal(signal.SIGTERM)

    cfg = PopulationConfig(outer_steps=8, **{**TINY_SELF_TRAIN, "checkpoint_every": 100})
    with pytest.raises(SystemExit) as exit_info:
        self_train(tmp_path, cfg, console=TerminateAtValidation4())
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert read_checkpoint(tmp_path / "checkpoint.safetensors")[1]["step"] == 4
    member = json.loads((tmp_path / "members" / "member-0.json").read_text())
    assert member["info"]["outer_step"] == 4


def test_pbt_tunes_a_learned_outer_optimizers_step_like_adams_lr(tmp_path):
    from safetensors.numpy import load_file

    from lopt.population.outer import learned_rule

    arch = build_architecture(PopulationConfig().architecture)
    theta = arch.init_theta(jax.random.key(0))
    rule = learned_rule(arch)
    grad = jax.tree.map(jnp.ones_like, theta)
    moved = [
        rule.update((theta, jnp.log(jnp.float32(s))), theta, rule.init(theta), grad, 1.0)[0]
        for s in (1.0, 2.0)
    ]
    for a, b, t in zip(*map(jax.tree.leaves, (*moved, theta)), strict=True):
        np.testing.assert_allclose(b - t, 2 * (a - t), rtol=1e-3, atol=1e-7)
        assert np.any(a != t)

    self_train(
        tmp_path / "run", PopulationConfig(outer_steps=8, tune_learned_step=True, **TINY_SELF_TRAIN)
    )
    arrays = load_file(tmp_path / "run" / "checkpoint.safetensors")
    (log_step,) = [v for k, v in arrays.items() if "log_step" in k]
    steps = np.round(log_step / np.log(1.25)).astype(int)
    np.testing.assert_allclose(log_step, steps * np.log(np.float32(1.25)), rtol=1e-5, atol=1e-6)
    assert 1 <= np.count_nonzero(steps) <= 2  # one member replaced (and explored) per round


def test_learned_step_multipliers_start_log_spaced_over_their_range():
    from lopt.population.outer import initial_hyperparameters

    cfg = PopulationConfig(tune_learned_step=True, learned_step_range=(0.01, 1.0), population=3)
    np.testing.assert_allclose(
        np.exp(initial_hyperparameters(cfg)["log_step"]), [0.01, 0.1, 1.0], rtol=1e-5
    )
    default = initial_hyperparameters(PopulationConfig(tune_learned_step=True))["log_step"]
    np.testing.assert_array_equal(default, np.zeros(8))
    assert initial_hyperparameters(PopulationConfig()) == {}
    for bad in ((1.0, 0.1), (0.0, 1.0), (1.0,)):
        with pytest.raises(LoptError, match="invalid value for learned_step_range"):
            PopulationConfig(learned_step_range=bad)


def test_best_outer_applies_the_best_members_theta_as_of_the_latest_validation():
    from lopt.population.outer import appliers

    cfg = PopulationConfig(outer="best", **TINY_SELF_TRAIN)
    thetas = {"w": jnp.arange(4.0)}
    state = {"thetas": thetas, "scores": jnp.asarray([0.5, 0.2, np.nan, 0.9]), "best_theta": None}
    selftrain._remember_best(state)
    assert float(state["best_theta"]["w"]) == 1.0  # slot 1 scored best
    moved = {"w": thetas["w"] + 10.0}  # the members (slot 1 too) move after the validation
    applier, log_step = appliers(cfg, jax.random.key(0), moved, {}, state["best_theta"])
    np.testing.assert_array_equal(applier["w"], np.full(4, 1.0))
    np.testing.assert_array_equal(log_step, np.zeros(4))


def test_the_shipped_self_trained_optimizer_records_its_guard_and_recipe():
    """``lopt.pretrained("self-trained")`` loads a nominal-free optimizer whose file says that no
    hand-designed optimizer took part and holds the config of the recipe's command."""
    info = read_metadata(pretrained_path("self-trained"))["info"]
    assert info["outer"] == "self" and info["hand_designed_optimizer_guard"] is True
    recipe = info["produced_by"].split(" (")[0]
    assert recipe.startswith("lopt self-train --config ")
    shipped = PopulationConfig.from_file(config_path(shlex.split(recipe)[3]))
    assert PopulationConfig.from_dict(info["self_train_config"]) == shipped
    arch, theta, _ = load_theta("self-trained")
    check_learned_from_scratch(arch)  # no Adam formula inside
    opt = lopt.pretrained("self-trained")
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), params)
    updates, _ = opt.update(grads, opt.init(params), params, loss=jnp.float32(1.0))
    assert all(np.all(np.isfinite(u)) and np.any(u != 0) for u in jax.tree.leaves(updates))
