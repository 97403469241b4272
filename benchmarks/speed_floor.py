"""What the cheapest learned optimizer lopt can build costs per update, against Adam.

    python benchmarks/speed_floor.py                  # JAX, then torch (1 thread) if installed
    python benchmarks/speed_floor.py --no-torch

The issue's speed targets ask a learned update to cost at most 3× (``small``) or 8×
(``rnn-mlp``) an Adam update. This measures how far the architecture itself allows that on this
machine, going down a ladder from the shipped ``small`` to the least the issue's feature list
permits, all side by side in one process (JAX: ``update_times`` of ``lopt.bench_learned``,
interleaved, best of 5; torch: ``step_time`` of ``lopt.torch.bench``, best of 3, taking turns):

- ``small``: the shipped architecture (random weights);
- ``minimal``: an ``mlp`` learned optimizer with the fewest inputs the library allows (momenta
  and second moments at two decays, 0.9 and 0.999 — the decays of Adam's direction, which the
  network corrects — so 8 normalized per-parameter features, no time, loss, horizon or distance
  inputs, no trust region) and one hidden layer of 4;
- ``accumulators``: only the EMAs of g and g² at those two decays, no features and no network
  (JAX only): what keeping two momenta and two second moments costs, whatever the network.
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import jax
import optax

from lopt.bench_learned import SIZES, accumulators_only, mlp_params, update_times
from lopt.learned import build_architecture
from lopt.pretrained import shipped_architecture

MINIMAL = {
    "kind": "mlp",
    "hidden": [4],
    "decays": [0.9, 0.999],
    "timescales": [],
    "nominal": True,
}
LADDER = {"small": shipped_architecture("small"), "minimal": MINIMAL}


def jax_ratios(sizes=SIZES, calls: int = 30, repeats: int = 5) -> dict[int, dict[str, float]]:
    """Per size: Adam's update in ms and every rung's update time ÷ Adam's."""
    rows = {}
    for size in sizes:
        params = mlp_params(size)
        optimizers = {"adam": optax.with_extra_args_support(optax.adam(1e-3))}
        for name, config in LADDER.items():
            arch = build_architecture(config)
            optimizers[name] = arch.optimizer(arch.init_theta(jax.random.key(0)))
        optimizers["accumulators"] = accumulators_only(tuple(MINIMAL["decays"]))
        times = update_times(optimizers, params, calls, repeats)
        adam = times.pop("adam")
        rows[size] = {"adam_ms": 1e3 * adam, **{n: t / adam for n, t in times.items()}}
    return rows


def torch_ratios(sizes=SIZES, calls: int = 20, repeats: int = 3) -> dict[int, dict[str, float]]:
    """Per size: torch.optim.Adam's step in ms and each rung's step time ÷ Adam's, eager and
    compiled (``compile=True``), on one intra-op thread."""
    import torch

    from lopt.torch.bench import mlp_params as torch_params
    from lopt.torch.bench import step_time, write_random_optimizer
    from lopt.torch.optimizer import LearnedOptimizer

    torch.set_num_threads(1)
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        stems = {name: pathlib.Path(folder) / name for name in LADDER}
        for name, config in LADDER.items():
            write_random_optimizer(stems[name], config)
        for size in sizes:
            params = torch_params(size)
            optimizers = {"adam": torch.optim.Adam(params, lr=1e-3)}
            for name, stem in stems.items():
                optimizers[name] = LearnedOptimizer(params, stem)
                optimizers[f"{name} compiled"] = LearnedOptimizer(params, stem, compile=True)
            best = dict.fromkeys(optimizers, float("inf"))
            for _ in range(repeats):
                for name, optimizer in optimizers.items():
                    best[name] = min(best[name], step_time(optimizer, params, calls, 1))
            adam = best.pop("adam")
            rows[size] = {"adam_ms": 1e3 * adam, **{n: t / adam for n, t in best.items()}}
    return rows


def table(title: str, rows: dict[int, dict[str, float]]) -> str:
    names = [n for n in next(iter(rows.values())) if n != "adam_ms"]
    lines = [
        f"{title}\n",
        "| params | Adam (ms) | " + " | ".join(f"{n} ÷ Adam" for n in names) + " |",
        "|---:|---:|" + "---:|" * len(names),
    ]
    for size, row in rows.items():
        cells = [f"{size:,}", f"{row['adam_ms']:.3f}", *(f"{row[n]:.1f}×" for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-torch", action="store_true", help="JAX only")
    args = parser.parse_args()
    print(table("JAX: jitted update ÷ optax.adam", jax_ratios()), flush=True)
    if not args.no_torch:
        print()
        print(table("torch (1 thread): step ÷ torch.optim.Adam", torch_ratios()))


if __name__ == "__main__":
    main()
