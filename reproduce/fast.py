"""Reproduce the shipped ``fast`` learned optimizers (``small`` and ``rnn-mlp``) end to end.

    python reproduce/fast.py                 # every stage; re-run to resume
    python reproduce/fast.py --stages distill

Stages (each skipped when its output exists; the ES stages resume where they stopped):

1. ``distill``: the previous ``small`` (``small-v11``) trains tasks sampled from the
   meta-training families at two horizons; the flat ``fast`` network is fitted to its
   updates along those trajectories (``lopt.meta.distill``) -> ``runs/fast/distilled``
   (the recordings are kept in ``runs/fast/distill-records``, so a re-run resumes).
2. ``es``: evolution strategies from the distilled θ (``reproduce/configs/fast-es.json``)
   -> ``runs/fast/es/optimizer``: the shipped ``small``.
3. ``rnn-es``: the hierarchical variant (a per-tensor LSTM added with a zero output, so it
   starts as stage 2's optimizer), ES again (``reproduce/configs/fast-rnn-es.json``)
   -> ``runs/fast/rnn-es/optimizer``: the shipped ``rnn-mlp``.

Copy the results into ``src/lopt/pretrained/`` with ``lopt`` 's file layout
(``NAME.safetensors`` + ``NAME.json``) to ship them.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
STAGES = ("distill", "es", "rnn-es")
DISTILL_FAMILIES = (
    "quadratic",
    "least_squares",
    "mlp-digits",
    "mlp-breast_cancer",
    "teacher_student",
    "conv-digits",
    "conv-breast_cancer",
    "fn2d-booth-himmelblau",
    "autoencoder-breast_cancer",
    "mlp-digits-few",
    "mlp-breast_cancer-few",
)
TASKS_PER_FAMILY = 2
HORIZONS = (200, 2000)  # the teacher's run lengths (it reads the fraction of the run done)
RECORDS_PER_RUN = 20
FIT_STEPS = 3000


def distill(out: pathlib.Path) -> None:
    import jax

    import lopt
    from lopt.learned import build_architecture, save_optimizer
    from lopt.meta.distill import distill_optimizer
    from lopt.tasks.registry import get_family

    teacher = lopt.pretrained("small-v11")
    student = build_architecture({"kind": "fast"})
    tasks = [
        get_family(name).sample(seed)
        for name in DISTILL_FAMILIES
        for seed in range(TASKS_PER_FAMILY)
    ]
    start = time.time()
    theta, losses = distill_optimizer(
        teacher,
        student,
        tasks,
        HORIZONS,
        RECORDS_PER_RUN,
        FIT_STEPS,
        jax.random.key(0),
        records_dir=out.parent / "distill-records",
        on_progress=lambda message: print(f"[{time.time() - start:6.0f} s] {message}", flush=True),
    )
    info = {
        "produced_by": "python reproduce/fast.py --stages distill",
        "teacher": "small-v11",
        "distill_tasks": [t.name for t in tasks],
        "distill_horizons": list(HORIZONS),
        "distill_fit_steps": FIT_STEPS,
        "distill_final_loss": float(losses[-100:].mean()),
    }
    save_optimizer(out, student, theta, info)


def meta_train(config: str, out: pathlib.Path) -> None:
    command = ["lopt", "meta-train", "--out", str(out)]
    if not (out / "config.json").exists():
        command += ["--config", str(HERE / "configs" / config)]
    subprocess.run(command, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages")
    args = parser.parse_args(argv)
    runs = pathlib.Path("runs/fast")  # the configs' init_from name it
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown} (choose from {list(STAGES)})")
    if "distill" in stages and not (runs / "distilled.json").exists():
        distill(runs / "distilled")
    if "es" in stages:
        meta_train("fast-es.json", runs / "es")
    if "rnn-es" in stages:
        meta_train("fast-rnn-es.json", runs / "rnn-es")
    return 0


if __name__ == "__main__":
    sys.exit(main())
