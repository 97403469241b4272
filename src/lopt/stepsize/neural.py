"""The neural version of train-by-train vs train-by-validation (Wang, Yuan, Wu & Ge 2021, §6).

The small per-parameter learned optimizer (``MLPOptimizer(hidden=(8,))``, whose fresh θ is Adam
at lr 1e-3) is meta-trained on one small-data classification task in two ways that see the same
1000 training samples and spend the same compute:

- **train-by-train (TbT)**: the meta-loss is the inner training loss (``meta_loss="train"``);
  the optimizer sees 1000 samples.
- **train-by-validation (TbV)**: the inner run trains on the same 1000 samples and the meta-loss
  is the loss on 1000 *other* samples (``meta_loss="outer_valid"``); 1000 + 1000 samples.

Both are repeated with a fraction of the labels replaced by wrong random labels. Noise touches
every split the meta-learner sees (train, inner_valid, outer_valid: the data the optimizer and
its meta-objective are computed on, as in the least-squares experiment, where the validation
targets are noisy too); the test split stays clean. Each learned optimizer is then run on fresh
inner runs (new initializations and minibatch orders) and scored by test loss and accuracy.

The task is ``small_data.SmallDataClassifier`` (MNIST-1D, an inner 100-20 ReLU MLP and batch
32, the paper's inner network). ``run_neural(out_dir, quick)`` runs the experiment and writes
``neural.json``, ``neural.md``, ``neural.png`` and each learned optimizer
(``neural-noise*pct-*.safetensors`` and ``.json``, loadable with ``lopt.load``). Nothing is
registered globally: the outer loop here drives ``lopt.meta.estimators.make_estimator``
directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console

from lopt.errors import LoptError, check_range
from lopt.inner import check_schedule, train
from lopt.learned import MLPOptimizer
from lopt.learned.io import save_optimizer
from lopt.meta.estimators import make_estimator
from lopt.meta.truncation import TruncationConfig
from lopt.runtime.compilation_cache import enable_compilation_cache
from lopt.stepsize.small_data import SmallDataClassifier, SmallDataConfig
from lopt.tasks.base import Task
from lopt.tasks.datasets import SPLITS

VARIANTS = ("adam", "train-by-train", "train-by-validation")
META_LOSS = {"train-by-train": "train", "train-by-validation": "outer_valid"}


@dataclasses.dataclass(frozen=True)
class NeuralConfig:
    """The experiment (defaults: the full run, a few minutes of CPU; see :func:`quick_config`).

    Attributes:
        task: the small-data task (``label_noise`` is overridden by ``noise_levels``).
        noise_levels: label-noise fractions to run.
        hidden: hidden widths of the learned optimizer's per-parameter MLP.
        horizon: inner steps per run (meta-training and evaluation).
        truncation: steps per ES truncation (a multiple of ``valid_every``).
        valid_every: steps per meta-loss chunk.
        outer_steps, num_particles, sigma, outer_lr, outer_clip: the outer loop (antithetic ES,
            outer Adam after per-weight clipping of the meta-gradient).
        eval_seeds: fresh inner runs per learned optimizer; eval_every: steps between points.
    """

    task: SmallDataConfig = SmallDataConfig()
    noise_levels: tuple[float, ...] = (0.0, 0.2)
    hidden: tuple[int, ...] = (8,)
    horizon: int = 500
    truncation: int = 50
    valid_every: int = 10
    outer_steps: int = 300
    num_particles: int = 8
    sigma: float = 0.01
    outer_lr: float = 3e-3
    outer_clip: float = 0.1
    eval_seeds: int = 8
    eval_every: int = 50
    seed: int = 0

    def __post_init__(self):
        check_range("outer_steps", self.outer_steps, 1)
        check_range("eval_seeds", self.eval_seeds, 1)
        TruncationConfig(  # validates truncation / valid_every / horizon
            length=self.truncation,
            min_horizon=self.horizon,
            max_horizon=self.horizon,
            valid_every=self.valid_every,
        )
        if self.horizon % self.truncation:
            raise LoptError(
                f"invalid value for horizon: {self.horizon} (allowed: a multiple of "
                f"truncation={self.truncation})"
            )
        check_schedule(self.horizon, self.eval_every, self.valid_every)


def quick_config() -> NeuralConfig:
    """A smoke-test configuration (seconds, mostly compilation)."""
    return NeuralConfig(
        task=SmallDataConfig(n_train=200, n_valid=200, n_inner_valid=100, hidden=(16,)),
        noise_levels=(0.2,),
        horizon=60,
        truncation=20,
        outer_steps=3,
        num_particles=2,
        eval_seeds=2,
        eval_every=20,
    )


def meta_train_variant(task: Task, meta_loss: str, cfg: NeuralConfig, log=None) -> dict[str, Any]:
    """Meta-train ``MLPOptimizer(hidden=cfg.hidden)`` on ``task`` with one meta-loss.

    Same seed, particles, truncation and outer steps whatever ``meta_loss`` is, so the two
    variants differ only in what the meta-objective is computed on. Returns θ and the per-step
    meta-loss history.
    """
    arch = MLPOptimizer(hidden=cfg.hidden)
    trunc = TruncationConfig(
        length=cfg.truncation,
        min_horizon=cfg.horizon,
        max_horizon=cfg.horizon,
        valid_every=cfg.valid_every,
        meta_loss=meta_loss,
    )
    estimator = make_estimator("es", arch, task, trunc, cfg.sigma, cfg.num_particles)
    outer = optax.chain(optax.clip(cfg.outer_clip), optax.adam(cfg.outer_lr))
    key = jax.random.key(cfg.seed)
    theta = arch.init_theta(jax.random.fold_in(key, 0))
    opt_state = outer.init(theta)
    est_state = estimator.init(jax.random.fold_in(key, 1))

    @jax.jit
    def apply(theta, opt_state, grad):
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)]))
        grad = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grad)
        updates, opt_state = outer.update(grad, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state

    history, diverged = [], 0
    t0 = time.perf_counter()
    for step in range(cfg.outer_steps):
        grad, est_state, m = estimator.estimate(
            theta, est_state, jax.random.fold_in(key, 1000 + step), step / cfg.outer_steps
        )
        theta, opt_state = apply(theta, opt_state, grad)
        history.append(float(m["meta_loss"]))
        diverged += int(m["diverged"])
        if log is not None and (step + 1) % max(1, cfg.outer_steps // 4) == 0:
            recent = float(np.mean(history[-max(1, cfg.outer_steps // 10) :]))
            log(
                f"  {meta_loss}: outer step {step + 1}/{cfg.outer_steps}, "
                f"meta-loss (recent mean) {recent:+.4f}, {time.perf_counter() - t0:.0f} s"
            )
    return {
        "theta": theta,
        "meta_loss": history,
        "diverged_truncations": diverged,
        "seconds": time.perf_counter() - t0,
    }


def evaluate_thetas(
    task: SmallDataClassifier, thetas: dict[str, Any], cfg: NeuralConfig
) -> dict[str, dict[str, Any]]:
    """Run each θ on ``cfg.eval_seeds`` fresh inner runs of ``cfg.horizon`` steps.

    One compiled program serves every θ (θ is an argument). Evaluation seeds are disjoint from
    the meta-training ones. Returns, per name, final metrics (means and stds over seeds) and the
    seed-mean loss curves.
    """
    arch = MLPOptimizer(hidden=cfg.hidden)
    keys = jnp.stack(
        [jax.random.fold_in(jax.random.key(cfg.seed), 50_000 + i) for i in range(cfg.eval_seeds)]
    )

    def one(theta, key):
        params, curves = train(
            task, arch.optimizer(theta), key, cfg.horizon, cfg.eval_every, cfg.valid_every
        )
        acc = {s: task.accuracy(params, task.eval_batch(s)) for s in SPLITS}
        clean_train = (task.eval_batch("train")[0], jnp.asarray(task.clean_y["train"]))
        return curves, acc, task.accuracy(params, clean_train)

    run = jax.jit(jax.vmap(one, in_axes=(None, 0)))
    out = {}
    for name, theta in thetas.items():
        curves, acc, clean_acc = jax.device_get(run(theta, keys))
        final = {s: np.asarray(curves.eval[s])[:, -1] for s in SPLITS}
        test_mean = np.mean(np.asarray(curves.eval["test"]), axis=0)
        out[name] = {
            "test_loss": float(final["test"].mean()),
            "test_loss_std": float(final["test"].std()),
            "test_acc": float(np.mean(acc["test"])),
            "test_acc_std": float(np.std(acc["test"])),
            "train_loss": float(final["train"].mean()),
            "train_acc": float(np.mean(acc["train"])),
            "train_acc_clean_labels": float(np.mean(clean_acc)),
            "valid_loss": float(final["outer_valid"].mean()),
            "min_test_loss_on_curve": float(np.min(test_mean)),
            "argmin_test_step": int(np.asarray(curves.step)[0][int(np.argmin(test_mean))]),
            "diverged_runs": int(np.sum(~np.isfinite(final["test"]))),
            "step_multiplier": float(np.exp(np.asarray(theta["log_lr"]))),
            "curves": {
                "step": np.asarray(curves.step)[0].tolist(),
                "test": test_mean.tolist(),
                "train": np.mean(np.asarray(curves.eval["train"]), axis=0).tolist(),
                "outer_valid": np.mean(np.asarray(curves.eval["outer_valid"]), axis=0).tolist(),
            },
        }
    return out


def _label(name: str) -> str:
    return {"adam": "Adam 1e-3 (fresh θ)", "train-by-train": "TbT", "train-by-validation": "TbV"}[
        name
    ]


def markdown(cfg: NeuralConfig, results: dict[str, Any]) -> str:
    """The results table (one row per noise level × optimizer) with its setup line."""
    t = cfg.task
    lines = [
        f"{t.dataset}, MLP {'-'.join(map(str, t.hidden))} ReLU, batch {t.batch_size}, "
        f"{t.n_train} training samples (TbT) vs {t.n_train} + {t.n_valid} (TbV); label noise on "
        f"train/validation labels, clean test. Learned optimizer MLPOptimizer(hidden="
        f"{cfg.hidden}), antithetic ES: {cfg.outer_steps} outer steps, {cfg.num_particles} pairs, "
        f"σ = {cfg.sigma:g}, truncation {cfg.truncation}, horizon {cfg.horizon}, outer Adam "
        f"{cfg.outer_lr:g} (clip {cfg.outer_clip:g}). Evaluation: {cfg.eval_seeds} fresh inner "
        f"runs of {cfg.horizon} steps; mean ± std over runs.",
        "",
        "| label noise | optimizer | test loss | test acc | train loss (as labelled) | "
        "train acc (as labelled) | lowest test loss on the curve (step) | exp(log_lr) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level in results["levels"]:
        for name in VARIANTS:
            r = level["eval"][name]
            lines.append(
                f"| {level['label_noise']:g} | {_label(name)} | "
                f"{r['test_loss']:.3f} ± {r['test_loss_std']:.3f} | "
                f"{r['test_acc']:.3f} ± {r['test_acc_std']:.3f} | {r['train_loss']:.3f} | "
                f"{r['train_acc']:.3f} | {r['min_test_loss_on_curve']:.3f} "
                f"({r['argmin_test_step']}) | {r['step_multiplier']:.3g} |"
            )
    return "\n".join(lines) + "\n"


def plot(path: pathlib.Path, results: dict[str, Any]) -> None:
    """Test (top) and training (bottom) loss curves per variant, one column per noise level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["levels"]
    fig, axes = plt.subplots(2, len(levels), figsize=(5.2 * len(levels), 7), squeeze=False)
    colors = {"adam": "gray", "train-by-train": "tab:red", "train-by-validation": "tab:blue"}
    for j, level in enumerate(levels):
        for name in VARIANTS:
            c = level["eval"][name]["curves"]
            for i, split in enumerate(("test", "train")):
                axes[i, j].plot(c["step"], c[split], color=colors[name], label=_label(name))
        axes[0, j].set(
            title=f"label noise {level['label_noise']:g}: test loss (clean labels)",
            xlabel="inner step",
            ylabel="test loss",
        )
        axes[1, j].set(
            title="training loss (on the labels as given)", xlabel="inner step", ylabel="loss"
        )
        axes[0, j].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(results: dict[str, Any]) -> dict[str, Any]:
    out = dict(results)
    out["levels"] = [
        {k: v for k, v in level.items() if k != "thetas"} for level in results["levels"]
    ]
    return out


def run_neural(
    out_dir: str | pathlib.Path,
    quick: bool = False,
    config: NeuralConfig | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the experiment; write ``neural.json``, ``neural.md``, ``neural.png`` and the learned
    optimizers to ``out_dir`` and return the results (JSON-ready)."""
    cfg = config or (quick_config() if quick else NeuralConfig())
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console = console or Console()
    start = time.perf_counter()
    levels = []
    for noise in cfg.noise_levels:
        task = SmallDataClassifier(dataclasses.replace(cfg.task, label_noise=noise))
        arch = MLPOptimizer(hidden=cfg.hidden)
        thetas = {"adam": arch.init_theta(jax.random.fold_in(jax.random.key(cfg.seed), 0))}
        level: dict[str, Any] = {"label_noise": noise, "meta": {}}
        for name, meta_loss in META_LOSS.items():
            console.log(f"neural: label noise {noise:g}, meta-training {name} ...")
            m = meta_train_variant(task, meta_loss, cfg, console.log)
            thetas[name] = m.pop("theta")
            info = {"label_noise": noise, "meta_loss": meta_loss, "outer_steps": cfg.outer_steps}
            stem = f"neural-noise{round(100 * noise)}pct-{name}"  # no dot: it is a stem
            save_optimizer(out_dir / stem, arch, thetas[name], info)
            level["meta"][name] = m
        console.log(f"neural: label noise {noise:g}, evaluating ...")
        level["eval"] = evaluate_thetas(task, thetas, cfg)
        level["noisy_fraction"] = {
            s: len(task.noisy_rows[s]) / task.size(s) for s in ("train", "outer_valid", "test")
        }
        levels.append(level)
    results = {
        "config": dataclasses.asdict(cfg),
        "levels": levels,
        "seconds": time.perf_counter() - start,
    }
    results = _jsonable(results)
    (out_dir / "neural.json").write_text(json.dumps(results))
    (out_dir / "neural.md").write_text(markdown(cfg, results))
    plot(out_dir / "neural.png", results)
    console.log(f"neural: wrote neural.json, neural.md, neural.png in {results['seconds']:.0f} s")
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m lopt.stepsize.neural --out DIR [--quick]``: this experiment alone."""
    parser = argparse.ArgumentParser(prog="python -m lopt.stepsize.neural")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    return run_neural(args.out, quick=args.quick)


if __name__ == "__main__":
    main()
