"""How much signal one ES meta-gradient estimate carries at a given θ.

    python benchmarks/es_signal.py                          # small at the shipped θ, as in
    python benchmarks/es_signal.py --theta nominal          #   docs/quality.md; and at the start
    python benchmarks/es_signal.py --sigma 0.01,0.03,0.1    # three perturbation scales

For each task (sampled from a meta-training config's first bank, as ``lopt meta-train`` samples
them), the particles are advanced a few truncations into their inner runs, then held there
while ``--repeats`` estimates of ``num_particles`` antithetic pairs each are drawn with fresh
perturbations. Each estimate is compared with the mean of all the others (cosine): near 1 means
one outer step's estimate already points where many would; near 0 means it is mostly noise and
only thousands of outer steps average the meta-gradient out. For a smooth meta-loss the
expected cosine is set by the dimension alone (``smooth_cosine``: ``sqrt(n / (n + d)) ·
sqrt(m / (m + d))`` for estimates of n and m pairs in d dimensions; a test checks it on a linear
loss); a measured value far below that means the
loss differences are dominated by what the perturbation's direction does not explain — chaotic
inner training, or a meta-gradient near zero.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from lopt.learned import build_architecture, load_theta
from lopt.meta.config import MetaTrainConfig, shipped_config_path
from lopt.meta.estimators import make_estimator, particle_keys
from lopt.meta.outer import bank_tasks


def flat(tree) -> np.ndarray:
    """Leaves of a pytree with a leading particle axis as one ``(n, d)`` array."""
    return np.concatenate([np.asarray(x).reshape(len(x), -1) for x in jax.tree.leaves(tree)], 1)


def cosines(estimates: np.ndarray) -> np.ndarray:
    """Cosine of each estimate (row) with the mean of all the other rows."""
    total = estimates.sum(0)
    out = []
    for e in estimates:
        rest = (total - e) / (len(estimates) - 1)
        out.append(e @ rest / (np.linalg.norm(e) * np.linalg.norm(rest)))
    return np.array(out)


def smooth_cosine(n: int, m: int, d: int) -> float:
    """The expected cosine between ES estimates of ``n`` and ``m`` antithetic pairs of a smooth
    (locally linear) loss in ``d`` dimensions: each has cosine ``1/sqrt(1 + d/n)`` with the
    gradient, and in high dimensions their errors are orthogonal."""
    return float(np.sqrt(n / (n + d)) * np.sqrt(m / (m + d)))


def measure(cfg, arch, theta, task, sigma: float, repeats: int, seed: int) -> tuple:
    """``(mean cosine, its standard error, smooth-loss expectation)`` on one task."""
    n = cfg.num_particles
    est = make_estimator("es", arch, task, cfg.truncation_config, sigma, n, devices=1)
    key = jax.random.key(seed)
    state = est.init(key)
    for k in range(5):  # into the runs: the particles start at step 0 of theirs
        _, state, _ = est.estimate(theta, state, jax.random.fold_in(key, 1 + k), 0.5)
    estimates = []
    for r in range(repeats):  # the same particles, fresh perturbations
        keys = particle_keys(jax.random.fold_in(key, 100 + r), n)
        grads, _, _ = est.particles(theta, state, keys, 0.5)
        estimates.append(flat(grads).mean(0))
    c = cosines(np.stack(estimates))
    smooth = smooth_cosine(n, n * (repeats - 1), estimates[0].size)
    return c.mean(), c.std(ddof=1) / np.sqrt(len(c)), smooth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="small-stage12", help="meta-training config")
    parser.add_argument(
        "--theta", default="small", help="saved optimizer, or 'nominal' for the config's start"
    )
    parser.add_argument("--sigma", default="", help="comma-separated σ (default: the config's)")
    parser.add_argument("--tasks", default="2,3,4,8", help="indices into the config's bank")
    parser.add_argument("--repeats", type=int, default=16, help="estimates per task")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    cfg = MetaTrainConfig.from_file(shipped_config_path(args.config))
    if args.theta == "nominal":
        arch = build_architecture(cfg.architecture)
        theta = arch.init_theta(jax.random.key(cfg.seed))
    else:
        arch, theta, _ = load_theta(args.theta)
    sigmas = [float(s) for s in args.sigma.split(",")] if args.sigma else [cfg.sigma]
    tasks = bank_tasks(cfg)
    pairs = cfg.num_particles
    print(f"θ: {args.theta}; estimates of {pairs} antithetic pairs, {args.repeats} per task")
    print("| σ | task | cosine with the other estimates' mean | smooth-loss expectation |")
    print("|---:|---|---:|---:|")
    for sigma in sigmas:
        for i in (int(t) for t in args.tasks.split(",")):
            mean, err, smooth = measure(cfg, arch, theta, tasks[i], sigma, args.repeats, args.seed)
            print(f"| {sigma:g} | {tasks[i].name[:50]} | {mean:.3f} ± {err:.3f} | {smooth:.3f} |")


if __name__ == "__main__":
    main()
