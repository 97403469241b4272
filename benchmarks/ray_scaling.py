"""Ray backend scaling: outer steps/s with real workers, and one learner under N simulated ones.

    python benchmarks/ray_scaling.py --out runs/ray-scaling            # as in BENCHMARKS.md
    python benchmarks/ray_scaling.py --out runs/ray-scaling --quick    # a smoke run

1. Real workers: the shipped ``mlp-from-scratch`` config (one task per family, 8 particles)
   meta-trained in-process, then on a local Ray with 1 and 2 synchronous workers and 2
   asynchronous ones. A warm-up run (3 visits to every task) compiles every program in every
   process first; steps/s then counts the measured run's steps after its first visit to every
   task.
2. Simulated workers (``lopt.distributed.simulated``): N actors that each take a fixed time
   per estimate and return zeros, feeding the real learner (``meta_train``, asynchronous, a
   staleness bound of N so nothing is dropped). Ideal throughput is N ÷ that time; where the
   measured rate falls below it, the learner is the bottleneck. Its ceiling: the rate with
   workers that answer at once.

Prints both tables and writes ``ray_scaling.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import shutil

import jax
import numpy as np

from lopt.configs import shipped_config_path
from lopt.distributed import RayBackend
from lopt.distributed.simulated import SimulatedWorker
from lopt.learned import load_theta
from lopt.meta import MetaTrainConfig, meta_train
from lopt.runtime.compilation_cache import enable_compilation_cache


class Quiet:
    def log(self, message):
        pass


def steps_per_second(run_dir: pathlib.Path, skip: int) -> tuple[float, int]:
    """Outer steps/s over the steps after the first ``skip`` (from metrics.jsonl)."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = [x["seconds"] for x in lines if "seconds" in x][skip:]
    return len(timed) / sum(timed), len(timed)


def real_workers(out: pathlib.Path, steps: int) -> list[dict]:
    base = MetaTrainConfig.from_file(shipped_config_path("mlp-from-scratch"))
    families = len(base.families)
    cfg = dataclasses.replace(
        base,
        task_bank=families,
        outer_steps=families + steps,
        validate_every=0,
        checkpoint_every=10_000,
        log_every=10_000,
    )
    warm_up = dataclasses.replace(cfg, outer_steps=3 * families)
    variants = [
        ("in-process", None),
        ("ray, 1 worker, synchronous", RayBackend(workers=1)),
        ("ray, 2 workers, synchronous", RayBackend(workers=2)),
        ("ray, 2 workers, asynchronous (staleness ≤ 1)", RayBackend(workers=2, max_staleness=1)),
    ]
    rows, reference = [], None
    for name, backend in variants:
        run = out / "real" / "".join(c if c.isalnum() else "-" for c in name)
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(run.with_name(run.name + "-warm-up"), ignore_errors=True)
        try:
            meta_train(
                run.with_name(run.name + "-warm-up"), warm_up, console=Quiet(), backend=backend
            )
            meta_train(run, cfg, console=Quiet(), backend=backend)
        finally:
            if backend is not None:
                backend.close()
        rate, measured = steps_per_second(run, skip=families)
        theta = jax.tree.leaves(load_theta(run / "optimizer")[1])
        reference = reference or theta
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(theta, reference, strict=True))
        rows.append({"backend": name, "steps_per_s": rate, "steps": measured, "theta_diff": diff})
        print(f"  {name}: {rate:.2f} outer steps/s", flush=True)
    return rows


def simulated_run(out: pathlib.Path, n: int, seconds: float, steps: int) -> tuple[float, int]:
    """Steps/s of the learner fed by ``n`` simulated workers taking ``seconds`` per estimate."""
    cfg = dataclasses.replace(
        MetaTrainConfig.from_file(shipped_config_path("mlp-from-scratch")),
        families=("quadratic",),
        task_bank=n,
        outer_steps=n + steps,
        validate_every=0,
        checkpoint_every=1_000_000,
        log_every=1_000_000,
    )
    run = out / "simulated" / f"workers-{n}-seconds-{seconds}"
    shutil.rmtree(run, ignore_errors=True)
    backend = RayBackend(
        workers=n,
        max_staleness=n,
        cpus_per_worker=0,
        worker_class=SimulatedWorker,
        worker_args=((seconds,),),
    )
    with backend:
        meta_train(run, cfg, console=Quiet(), backend=backend)
    return steps_per_second(run, skip=n)


def simulated_workers(
    out: pathlib.Path, counts: list[int], seconds: float, window: float
) -> list[dict]:
    """Each count runs the outer steps N workers would deliver in ``window`` seconds."""
    rows = []
    for n in counts:
        rate, measured = simulated_run(out, n, seconds, round(window * n / seconds))
        ideal = n / seconds
        rows.append(
            {
                "workers": n,
                "ideal_steps_per_s": ideal,
                "steps_per_s": rate,
                "efficiency": rate / ideal,
                "steps": measured,
            }
        )
        print(f"  {n} simulated workers: {rate:.1f} steps/s (ideal {ideal:.1f})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ray-scaling")
    parser.add_argument("--quick", action="store_true", help="fewer steps and worker counts")
    args = parser.parse_args()
    enable_compilation_cache()
    out = pathlib.Path(args.out)
    steps = 5 if args.quick else 20
    counts = [1, 4] if args.quick else [1, 2, 4, 8, 16, 32]
    seconds, window = 0.2, (2.0 if args.quick else 10.0)
    print("real workers (shipped mlp-from-scratch config):", flush=True)
    real = real_workers(out, steps)
    print(f"simulated workers ({seconds} s per estimate):", flush=True)
    simulated = simulated_workers(out, counts, seconds, window)
    ceiling, _ = simulated_run(out, 4, 0.0, 100 if args.quick else 500)
    print(f"learner ceiling (4 workers answering at once): {ceiling:.1f} steps/s", flush=True)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
            "jax": jax.__version__,
        },
        "real": real,
        "simulated": {"seconds_per_estimate": seconds, "rows": simulated},
        "learner_ceiling_steps_per_s": ceiling,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray_scaling.json").write_text(json.dumps(result, indent=2))
    print("\n| backend | outer steps/s | max |θ − θ in-process| |\n|---|---:|---:|")
    for r in real:
        print(f"| {r['backend']} | {r['steps_per_s']:.2f} | {r['theta_diff']:.2g} |")
    print("\n| simulated workers | ideal steps/s | measured steps/s | efficiency |")
    print("|---:|---:|---:|---:|")
    for r in simulated:
        print(
            f"| {r['workers']} | {r['ideal_steps_per_s']:.0f} | {r['steps_per_s']:.1f} "
            f"| {r['efficiency']:.0%} |"
        )
    print(f"\nlearner ceiling (simulated workers answering at once): {ceiling:.1f} steps/s")
    print(f"wrote {out / 'ray_scaling.json'}")


if __name__ == "__main__":
    main()
