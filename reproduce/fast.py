"""Meta-train the ``fast`` learned optimizers (flat, then hierarchical) end to end.

    python reproduce/fast.py                 # the ES stages; re-run to resume
    python reproduce/fast.py --stages distill

Stages (each skipped when its output exists; the ES stages resume where they stopped):

- ``es`` (default): evolution strategies from Adam's start (``reproduce/configs/fast-es.json``:
  a relative step, bank tasks rescaled by ``parameter_scale``) -> ``runs/fast/es``; 12,000
  outer steps, about 40 minutes on the 2-core machine (under load).
- ``rnn-es`` (default): the hierarchical variant (a per-tensor LSTM added with a zero output,
  so it starts as the ``es`` stage's optimizer), ES again (``reproduce/configs/fast-rnn-es.json``)
  -> ``runs/fast/rnn-es``.
- ``es-few``, ``es-gap``, ``es-tsf``, ``es-tsf2`` (on request, in this order): ES continued from
  the ``es`` stage's optimizer against overfitting on small data, 4,000 outer steps each (6,000
  for the last), 10–30 minutes each: ``es-few`` lists the two ``-few`` families three times;
  ``es-gap`` does the same with the ``valid_over_train`` input added (from ``es`` too, so the
  two compare one change); ``es-tsf`` continues ``es-gap`` with the small-data regression
  family ``teacher_student-few`` in the mix; ``es-tsf2`` continues that on fresh task banks
  (``reproduce/configs/fast-<stage>.json`` -> ``runs/fast/<stage>``).
- ``es-adapt``, ``es-adapt-tsf``, ``es-adapt2``, ``es-few-adapt`` (on request): with
  ``adaptive_step`` (each tensor's step adapted along the run; a stage that adds it starts
  with its start's updates), 4,000 outer steps each: ``es-adapt`` adds it to ``es-gap``, on
  ``es-gap``'s mix; ``es-adapt-tsf`` continues that on ``es-tsf``'s mix, ``es-adapt2`` on
  fresh banks; ``es-few-adapt`` adds it to ``es-few`` (no ``valid_over_train``), on its mix.
- ``distill`` (on request): ``small-v11`` trains tasks sampled from the meta-training families
  at two horizons, and the flat ``fast`` network is fitted to its updates along those
  trajectories (``lopt.meta.distill``) -> ``runs/fast/distilled`` (the recordings are kept in
  ``runs/fast/distill-records``, so a re-run resumes); docs/quality.md says how it fares.

None of them has produced a shipped optimizer yet (docs/quality.md); one that passes the
shipping rule is copied into ``src/lopt/pretrained/`` with ``lopt``'s file layout
(``NAME.safetensors`` + ``NAME.json``).
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
# ES stage -> its config in reproduce/configs (each writes runs/fast/<stage>)
ES_STAGES = {
    "es": "fast-es.json",
    "rnn-es": "fast-rnn-es.json",
    "es-few": "fast-es-few.json",
    "es-gap": "fast-es-gap.json",
    "es-tsf": "fast-es-tsf.json",
    "es-tsf2": "fast-es-tsf2.json",
    "es-adapt": "fast-es-adapt.json",
    "es-adapt-tsf": "fast-es-adapt-tsf.json",
    "es-adapt2": "fast-es-adapt2.json",
    "es-few-adapt": "fast-es-few-adapt.json",
}
STAGES = ("distill", *ES_STAGES)
DEFAULT_STAGES = ("es", "rnn-es")
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
    command = [sys.executable, "-m", "lopt.cli", "meta-train", "--out", str(out)]  # any PATH
    if not (out / "config.json").exists():
        command += ["--config", str(HERE / "configs" / config)]
    subprocess.run(command, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stages", default=",".join(DEFAULT_STAGES), help=f"comma-separated, of {STAGES}"
    )
    args = parser.parse_args(argv)
    runs = pathlib.Path("runs/fast")  # the configs' init_from name it
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown} (choose from {list(STAGES)})")
    if "distill" in stages and not (runs / "distilled.json").exists():
        distill(runs / "distilled")
    for stage, config in ES_STAGES.items():  # in this order: each starts from an earlier one
        if stage in stages:
            meta_train(config, runs / stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
