"""What distance scaling costs: each shipped architecture with and without it.

    python benchmarks/distance_scaling.py          # as in BENCHMARKS.md

Distance scaling (``lopt.learned.distance``; in ``small`` since v7) multiplies the steps by a
function of Prodigy's distance estimate, which keeps two more parameter-sized arrays and makes
one more pass over them per update. For each shipped architecture (``small``, ``rnn-mlp``) both
variants are timed with ``update_time`` of ``lopt.bench.learned`` on MLP-shaped parameters of
about 10k, 100k and 1M entries, interleaved in one process with ``optax.adam`` (the
denominator), best of 3 rounds.
"""

from __future__ import annotations

import jax
import optax

from lopt.bench.learned import SIZES, mlp_params, update_time
from lopt.learned import build_architecture
from lopt.pretrained import SHIPPED, shipped_architecture

SCALING = {"distance_power": 0.5, "distance_ref": 0.05, "distance_max": 3.0}


def variants() -> dict[str, dict]:
    """Label -> architecture config: every shipped one with and without distance scaling."""
    out = {}
    for name in SHIPPED:
        shipped = shipped_architecture(name)
        scaled = shipped if shipped.get("distance_power") else {**shipped, **SCALING}
        out[f"{name} with"] = scaled
        out[f"{name} without"] = {**shipped, "distance_power": 0.0}
    return out


def main() -> None:
    configs = variants()
    print("| params | Adam update (ms) | " + " | ".join(f"{v} ÷ Adam" for v in configs) + " |")
    print("|---:|---:|" + "---:|" * len(configs))
    adam = optax.with_extra_args_support(optax.adam(1e-3))
    for size in SIZES:
        params = mlp_params(size)
        archs = {name: build_architecture(config) for name, config in configs.items()}
        optimizers = {n: a.optimizer(a.init_theta(jax.random.key(0))) for n, a in archs.items()}
        best = dict.fromkeys(["adam", *optimizers], float("inf"))
        for _ in range(3):
            best["adam"] = min(best["adam"], update_time(adam, params, 30, 5))
            for name, optimizer in optimizers.items():
                best[name] = min(best[name], update_time(optimizer, params, 30, 5))
        num_params = sum(p.size for p in jax.tree.leaves(params))
        ratios = " | ".join(f"{best[name] / best['adam']:.1f}×" for name in optimizers)
        print(f"| {num_params:,} | {1e3 * best['adam']:.3f} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
