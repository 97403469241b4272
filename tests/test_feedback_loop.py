"""The feedback-loop measure of a self-training run (``lopt.population.feedback``), on synthetic
curves: a slow start then a fast drop shows the loop; a curve that drops fastest at its start
does not."""

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

from lopt.population.feedback import LOOP_FACTOR, acceleration, feedback_summary, loop_rates
from lopt.population.plots import plot_comparison, plot_population

STEPS = np.arange(0, 3001, 50.0)  # a validation every 50 outer steps


def delayed_drop(steps, centre=1500.0, width=150.0):
    """Flat near 0.95, then a sigmoid drop to 0.05 around ``centre``."""
    return 0.05 + 0.9 / (1 + np.exp((steps - centre) / width))


def noisy(values, seed, scale=0.05):
    return values * np.exp(scale * np.random.default_rng(seed).normal(size=values.shape))


@pytest.mark.parametrize("seed", range(3))
def test_a_slow_start_then_a_fast_drop_shows_the_loop(seed):
    measure = acceleration(STEPS, noisy(delayed_drop(STEPS), seed))
    assert measure["loop_shown"]
    assert measure["loop_ratio"] >= LOOP_FACTOR
    assert 0.45 < measure["loop_best_at"] < 0.65  # log L falls fastest just after the centre


@pytest.mark.parametrize(
    "curve",
    [
        pytest.param(lambda s: 0.05 + 1 / (1 + s / 50), id="hyperbolic: fastest at the start"),
        pytest.param(lambda s: 0.07 + 0.9 * np.exp(-s / 150), id="converges in the first 10%"),
        pytest.param(lambda s: np.exp(-s / 300), id="exponential: a constant rate of log L"),
    ],
)
@pytest.mark.parametrize("seed", range(2))
def test_a_curve_that_drops_fastest_at_its_start_does_not_show_it(curve, seed):
    measure = acceleration(STEPS, noisy(curve(STEPS), seed, scale=0.01))
    assert not measure["loop_shown"]
    assert measure["loop_ratio"] < 2


def test_an_acceleration_inside_the_first_tenth_or_below_the_factor_is_not_the_loop():
    early = acceleration(STEPS, delayed_drop(STEPS, centre=150.0, width=30.0))
    assert early["loop_best_at"] < 0.1 and not early["loop_shown"]
    # log L falls at rate r for the first half, then 3r: faster later, but not 5x
    log_curve = -np.where(STEPS < 1500, STEPS, 1500 + 3 * (STEPS - 1500)) / 2000
    mild = acceleration(STEPS, np.exp(log_curve))
    assert mild["loop_best_at"] > 0.4 and mild["loop_ratio"] == pytest.approx(3.0, rel=0.02)
    assert not mild["loop_shown"]


def test_rates_are_the_drop_of_log_loss_per_thousand_steps_and_skip_non_finite_values():
    starts, rates = loop_rates(STEPS, np.exp(-STEPS / 500))
    assert starts[0] == 0 and starts[-1] == pytest.approx(0.95 * 3000)
    np.testing.assert_allclose(rates, 2.0, rtol=1e-9)  # 1000 / 500
    values = np.exp(-STEPS / 500)
    values[[3, 10]] = [math.nan, math.inf]
    np.testing.assert_allclose(loop_rates(STEPS, values)[1], 2.0, rtol=1e-9)
    with pytest.raises(ValueError, match="two or more"):
        loop_rates(np.array([0.0, 1.0]), np.array([1.0, math.nan]))


def test_a_first_window_without_improvement_still_allows_the_loop():
    values = np.where(STEPS < 1000, 1.0, np.exp(-(STEPS - 1000) / 400))
    measure = acceleration(STEPS, values)
    assert measure["loop_first_rate"] == pytest.approx(0.0, abs=1e-9)
    assert measure["loop_ratio"] == math.inf and measure["loop_shown"]


def write_run(run_dir, best, median):
    run_dir.mkdir()
    with (run_dir / "metrics.jsonl").open("w") as f:
        for step, b, m in zip(STEPS, best, median, strict=True):
            record = {"step": step, "wall": step / 10, "best": b, "median": m}
            f.write(json.dumps(record | {"validation": [b, m, m * 1.1]}) + "\n")
    return run_dir


def test_the_summary_and_the_plots_carry_the_measure(tmp_path):
    slow = delayed_drop(STEPS)
    self_run = write_run(tmp_path / "self", slow, slow * 1.2)
    fast = 0.07 + 0.9 * np.exp(-STEPS / 150)
    adam_run = write_run(tmp_path / "adam", fast, fast * 1.2)
    summary, twin = feedback_summary(self_run), feedback_summary(adam_run)
    assert summary["loop_shown"] and summary["median_loop_shown"]
    assert not twin["loop_shown"]
    assert summary["loop_ratio"] == acceleration(STEPS, slow)["loop_ratio"]  # same inputs
    assert [p.name for p in plot_population(self_run)] == ["feedback_loop.png"]
    path = plot_comparison({"self": self_run, "adam": adam_run}, tmp_path / "both.png")
    assert path.stat().st_size > 10_000


def _seeds_script():
    path = pathlib.Path(__file__).resolve().parent.parent / "reproduce" / "self_train_seeds.py"
    spec = importlib.util.spec_from_file_location("self_train_seeds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seeds_comparison_tables_both_runs_of_every_seed(tmp_path):
    script = _seeds_script()
    finals = {0: (0.08, 0.07), 1: (0.09, 0.10)}  # self, Adam-outer at the last validation
    for seed, (self_final, adam_final) in finals.items():
        slow = delayed_drop(STEPS)
        slow = slow * self_final / slow[-1]
        fast = 0.07 + 0.9 * np.exp(-STEPS / 150)
        fast = fast * adam_final / fast[-1]
        for outer, curve in (("self", slow), ("adam", fast)):
            run = write_run(script.run_dir(tmp_path, seed, outer), curve, curve * 1.2)
            (run / "config.json").write_text(json.dumps({"outer_steps": int(STEPS[-1])}))
            (run / "summary.json").write_text(json.dumps(feedback_summary(run)))
            assert script.finished(run)
    text = script.table(tmp_path, [0, 1])
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ")][1:]
    assert [r[0].strip() for r in rows] == ["0", "1", "mean"]
    assert [r[3].strip() for r in rows[:2]] == ["yes", "yes"]  # self-training: the loop
    assert [r[6].strip() for r in rows[:2]] == ["no", "no"]  # Adam-outer: none
    assert [r[9].strip() for r in rows] == ["1.14", "0.90", "**1.00**"]  # 0.085 / 0.085
    assert (tmp_path / "comparison-seed1.png").stat().st_size > 10_000
