"""How much signal one ES meta-gradient estimate carries at a given θ.

    python benchmarks/es_signal.py                          # small at the shipped θ, as in
    python benchmarks/es_signal.py --theta nominal          #   docs/quality.md; and at the start
    python benchmarks/es_signal.py --sigma 0.01,0.03,0.1    # three perturbation scales
    python benchmarks/es_signal.py --tbptt                  # and backprop on the same particles

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
inner training, particles (inner runs) whose meta-gradients point different ways, or a
meta-gradient near zero.

With ``--tbptt``, each particle's exact meta-gradient (backpropagation through its truncation,
the ``tbptt`` estimator) is taken at the same held state and compared: with the mean of all the
ES estimates, with that particle's own ES mean (a smooth loss gives ``sqrt(R / (R + d))`` for R
pairs), and with the other particles' (do the particles of one task want the same change?).
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np

from lopt.configs import config_path
from lopt.learned import build_architecture, load_theta
from lopt.meta.config import MetaTrainConfig
from lopt.meta.estimators import make_estimator, particle_keys
from lopt.meta.outer import bank_tasks

# The stage that made small v11: its first bank holds the tasks docs/quality.md measured on.
SMALL_STAGE12 = (
    pathlib.Path(__file__).resolve().parent.parent / "reproduce/configs/small-stage12.json"
)


def flat(tree) -> np.ndarray:
    """Leaves of a pytree with a leading particle axis as one ``(n, d)`` array."""
    return np.concatenate([np.asarray(x).reshape(len(x), -1) for x in jax.tree.leaves(tree)], 1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def cosines(estimates: np.ndarray) -> np.ndarray:
    """Cosine of each estimate (row) with the mean of all the other rows."""
    total = estimates.sum(0)
    return np.array([cosine(e, (total - e) / (len(estimates) - 1)) for e in estimates])


def mean_pairwise_cosine(rows: np.ndarray) -> float:
    """The mean cosine over all pairs of distinct rows."""
    n = len(rows)
    return float(np.mean([cosine(rows[i], rows[j]) for i in range(n) for j in range(i + 1, n)]))


def smooth_cosine(n: int, m: int, d: int) -> float:
    """The expected cosine between ES estimates of ``n`` and ``m`` antithetic pairs of a smooth
    (locally linear) loss in ``d`` dimensions: each has cosine ``1/sqrt(1 + d/n)`` with the
    gradient, and in high dimensions their errors are orthogonal."""
    return float(np.sqrt(n / (n + d)) * np.sqrt(m / (m + d)))


def measure(cfg, arch, theta, task, sigma: float, repeats: int, seed: int, tbptt: bool) -> dict:
    """On one task: the ES estimates' mean cosine with the others' mean, its standard error and
    the smooth-loss expectation; with ``tbptt`` also the exact per-particle comparisons."""
    n = cfg.num_particles
    est = make_estimator("es", arch, task, cfg.truncation_config, sigma, n, devices=1)
    key = jax.random.key(seed)
    state = est.init(key)
    for k in range(5):  # into the runs: the particles start at step 0 of theirs
        _, state, _ = est.estimate(theta, state, jax.random.fold_in(key, 1 + k), 0.5)
    pairs = []  # (repeats, n, d): every pair's estimate
    for r in range(repeats):  # the same particles, fresh perturbations
        keys = particle_keys(jax.random.fold_in(key, 100 + r), n)
        grads, _, _ = est.particles(theta, state, keys, 0.5)
        pairs.append(flat(grads))
    pairs = np.stack(pairs)
    c = cosines(pairs.mean(1))
    d = pairs.shape[-1]
    out = {
        "es": c.mean(),
        "es_err": c.std(ddof=1) / np.sqrt(len(c)),
        "smooth": smooth_cosine(n, n * (repeats - 1), d),
    }
    if tbptt:
        exact = make_estimator("tbptt", arch, task, cfg.truncation_config, sigma, n, devices=1)
        grads, _, _ = exact.particles(theta, state, particle_keys(key, n), 0.5)
        per_particle = flat(grads)  # (n, d)
        own = [cosine(per_particle[j], pairs[:, j].mean(0)) for j in range(n)]
        out |= {
            "tbptt_vs_es": cosine(per_particle.mean(0), pairs.mean((0, 1))),
            "tbptt_vs_own_es": float(np.mean(own)),
            "own_smooth": float(np.sqrt(repeats / (repeats + d))),
            "particles_agree": mean_pairwise_cosine(per_particle),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        default=str(SMALL_STAGE12),
        help="meta-training config (a file, or a shipped config's name)",
    )
    parser.add_argument(
        "--theta", default="small", help="saved optimizer, or 'nominal' for the config's start"
    )
    parser.add_argument("--sigma", default="", help="comma-separated σ (default: the config's)")
    parser.add_argument("--tasks", default="2,3,4,8", help="indices into the config's bank")
    parser.add_argument("--repeats", type=int, default=16, help="estimates per task")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--tbptt", action="store_true", help="also each particle's exact (backprop) meta-gradient"
    )
    args = parser.parse_args()

    cfg = MetaTrainConfig.from_file(config_path(args.config))
    if args.theta == "nominal":
        arch = build_architecture(cfg.architecture)
        theta = arch.init_theta(jax.random.key(cfg.seed))
    else:
        arch, theta, _ = load_theta(args.theta)
    sigmas = [float(s) for s in args.sigma.split(",")] if args.sigma else [cfg.sigma]
    tasks = bank_tasks(cfg)
    pairs = cfg.num_particles
    print(f"θ: {args.theta}; estimates of {pairs} antithetic pairs, {args.repeats} per task")
    head = "| σ | task | ES: cosine with the other estimates' mean | smooth-loss expectation |"
    rule = "|---:|---|---:|---:|"
    if args.tbptt:
        head += (
            " tbptt mean vs all ES | each particle's tbptt vs its ES mean (smooth) |"
            " particles' tbptt, pairwise |"
        )
        rule += "---:|---:|---:|"
    print(head)
    print(rule)
    for sigma in sigmas:
        for i in (int(t) for t in args.tasks.split(",")):
            m = measure(cfg, arch, theta, tasks[i], sigma, args.repeats, args.seed, args.tbptt)
            row = f"| {sigma:g} | {tasks[i].name[:50]} | {m['es']:.3f} ± {m['es_err']:.3f} | "
            row += f"{m['smooth']:.3f} |"
            if args.tbptt:
                row += f" {m['tbptt_vs_es']:.3f} | {m['tbptt_vs_own_es']:.3f} "
                row += f"({m['own_smooth']:.3f}) | {m['particles_agree']:.3f} |"
            print(row)


if __name__ == "__main__":
    main()
